"""Retriever and the index / query / eval / calibrate commands on a small real store (MobileNetV2 baseline)."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ssl_nav.cli import main as cli_main
from ssl_nav.config import RetrievalConfig
from ssl_nav.errors import RetrievalIndexError
from ssl_nav.frames import write_png
from ssl_nav.retrieval.index import InstanceIndex
from ssl_nav.retrieval.query import Retriever, build_index_from_store
from ssl_nav.views.store import ViewStore

SIZE = 48
COLORS = {1: (220, 30, 30), 2: (30, 200, 40), 3: (40, 60, 220), 4: (230, 210, 30)}


def pattern(iid, rng):
    """A view of instance ``iid``: its colour, its own stripe orientation, noise and a small shift."""
    img = np.full((SIZE, SIZE, 3), 90, np.uint8)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    stripes = ((xx * (iid % 2) + yy * (1 - iid % 2) + rng.integers(0, 4)) // (3 + iid)) % 2 == 0
    img[stripes] = COLORS[iid]
    noise = rng.normal(0, 8, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def open_set_image(rng):
    return (rng.random((SIZE, SIZE, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("q")
    rng = np.random.default_rng(0)
    store = ViewStore(root / "store", create=True)
    store.set_instances({str(i): {"category": f"obj{i}", "centroid": [float(i), 1.0, 0.5],
                                  "aabb": [[i - 0.2, 0.8, 0.3], [i + 0.2, 1.2, 0.7]], "n_points": 100} for i in COLORS})
    for i in COLORS:
        for _ in range(4):
            store.add_view(str(i), pattern(i, rng), "low")
    (root / "queries").mkdir()
    lines = []
    for n, i in enumerate([1, 2, 3, 4, 1, 2, None, None, None]):
        img = pattern(i, rng) if i is not None else open_set_image(rng)
        write_png(root / "queries" / f"{n}.png", img)
        lines.append({"image": f"queries/{n}.png", "instance_id": None if i is None else str(i)})
    (root / "queries.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (root / "scene.json").write_text(json.dumps({"objects": [{"instance_id": i, "centroid": [float(i), 1.0, 0.5]}
                                                             for i in COLORS]}))
    (root / "cfg.yaml").write_text(f"retrieval:\n  image_size: {SIZE}\n  device: cpu\n")
    cfg = RetrievalConfig(image_size=SIZE, device="cpu")
    idx = build_index_from_store(store, "mobilenet_v2", cfg, root / "idx", progress=False)
    return root, store, cfg, idx


def test_build_and_query(setup):
    root, store, cfg, idx = setup
    meta = json.loads((idx / "meta.json").read_text())
    assert meta["model_spec"] == "mobilenet_v2" and meta["ntotal"] == 16
    r = Retriever.open(idx, cfg, is_navigable=lambda p: p[1] < 0.5)
    rng = np.random.default_rng(5)
    for i in COLORS:
        ans = r.query(pattern(i, rng))
        assert ans["matches"][0]["instance_id"] == str(i)
        m = ans["matches"][0]
        assert m["category"] == f"obj{i}" and m["goal"]["navigable"] is True and m["goal"]["position"][1] < 0.5
        assert ans["in_map"] and ans["margin"] > 0
    strict = RetrievalConfig(image_size=SIZE, device="cpu", reject_score=0.999)
    ans = Retriever.open(idx, strict).query(open_set_image(rng))
    assert not ans["in_map"] and "reject_score" in ans["reason"]


def test_reload_keeps_previous_index_on_corruption(setup, tmp_path):
    root, store, cfg, idx = setup
    r = Retriever.open(idx, cfg)
    before = r.index
    bad = tmp_path / "bad"
    shutil.copytree(idx, bad)
    data = (bad / "index.faiss").read_bytes()
    (bad / "index.faiss").write_bytes(data[:100])
    with pytest.raises(RetrievalIndexError, match="index.faiss"):
        r.reload(bad)
    assert r.index is before and r.query(pattern(2, np.random.default_rng(1)))["matches"][0]["instance_id"] == "2"
    good = tmp_path / "good"
    shutil.copytree(idx, good)
    new = r.reload(good)
    assert r.index is new and new is not before


def test_index_of_another_model_is_an_error(setup, tmp_path):
    root, store, cfg, idx = setup
    other = tmp_path / "other"
    shutil.copytree(idx, other)
    meta = json.loads((other / "meta.json").read_text())
    meta["model_hash"] = "0" * 64
    (other / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(RetrievalIndexError, match="built by model"):
        Retriever.open(other, cfg)


def test_cli_query_eval_calibrate(setup, tmp_path, capsys):
    root, store, cfg, idx = setup
    c = str(root / "cfg.yaml")
    out_idx = tmp_path / "idx"
    assert cli_main(["index", "--store", str(root / "store"), "--model", "mobilenet_v2", "--out", str(out_idx),
                     "--config", c, "--no-progress"]) == 0
    assert "16 views of 4 instances" in capsys.readouterr().out
    proc = subprocess.run([sys.executable, "-m", "ssl_nav", "query", "--index", str(out_idx), "--config", c,
                           str(root / "queries" / "2.png")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    ans = json.loads(proc.stdout)
    assert ans["matches"][0]["instance_id"] == "3" and "goal" in ans["matches"][0]
    metrics = tmp_path / "metrics.json"
    assert cli_main(["eval", "--index", str(out_idx), "--queries", str(root / "queries.jsonl"), "--out", str(metrics),
                     "--config", c, "--no-progress"]) == 0
    m = json.loads(metrics.read_text())["metrics"]["model"]
    assert m["n_in_map"] == 6 and m["n_open_set"] == 3 and m["top1"] == 1.0
    assert m["goal_error_median_m"] == 0.0 and m["auroc"] is not None
    assert cli_main(["calibrate", "--index", str(out_idx), "--queries", str(root / "queries.jsonl"),
                     "--config", c, "--no-progress"]) == 0
    assert "reject_score:" in capsys.readouterr().out
    t = json.loads((out_idx / "meta.json").read_text())["thresholds"]
    assert -1.0 <= t["reject_score"] <= 1.0 and t["balanced_accuracy"] >= 0.5
    assert InstanceIndex.load(out_idx).thresholds["reject_score"] == t["reject_score"]
    # a missing index directory is a clean CLI error (exit 2, message names it)
    proc = subprocess.run([sys.executable, "-m", "ssl_nav", "query", "--index", str(tmp_path / "nope"),
                           str(root / "queries" / "2.png")], capture_output=True, text=True)
    assert proc.returncode == 2 and "nope" in proc.stderr
