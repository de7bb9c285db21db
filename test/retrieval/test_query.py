"""Retriever and the index / query / eval / calibrate commands on a small real store (MobileNetV2 baseline),
with the bad inputs each command must refuse cleanly (exit 2, naming the file, line or key)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_nav.cli import main as cli_main
from ssl_nav.config import RetrievalConfig
from ssl_nav.errors import RetrievalIndexError, SslNavError
from ssl_nav.frames import write_png
from ssl_nav.retrieval.index import InstanceIndex
from ssl_nav.retrieval.build import build_index
from ssl_nav.retrieval.embedder import Embedder
from ssl_nav.retrieval.query import Retriever
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
    build_index(store, "mobilenet_v2", cfg, root / "idx", progress=False)
    return root, store, cfg, root / "idx"


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
    strict = RetrievalConfig(image_size=SIZE, device="cpu", reject_threshold=0.999)
    ans = Retriever.open(idx, strict).query(open_set_image(rng))
    assert not ans["in_map"] and "sim_softmax" in ans["reason"] and "< threshold 0.999 (uncalibrated)" in ans["reason"]
    assert ans["open_set"]["score"] == "sim_softmax" and ans["open_set"]["calibrated"] is False


def test_queries_are_embedded_like_the_index_whatever_the_callers_config(setup, tmp_path):
    """An index built without flip TTA (the default before it was on) is queried without it, at its image size:
    a stored view's own image finds itself at cosine 1, which the caller's settings would not give."""
    root, store, _, _ = setup
    built = RetrievalConfig(image_size=SIZE, device="cpu", flip_tta=False)
    build_index(store, "mobilenet_v2", built, tmp_path / "plain", progress=False)
    caller = RetrievalConfig(image_size=2 * SIZE, device="cpu", flip_tta=True)
    r = Retriever.open(tmp_path / "plain", caller)
    view = store.views("3")[0]
    img = store.load_image(view)
    ans = r.query(img)
    assert ans["matches"][0]["instance_id"] == "3" and ans["best_score"] == pytest.approx(1.0, abs=1e-4)
    own, as_caller = (Embedder(r.embedder.encoder, c).embed([img])[0] for c in (built, caller))
    assert float(own @ as_caller) < 0.999  # embedded at the caller's settings, it would not find itself at 1


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
    assert "16 robot views of 4 instances" in capsys.readouterr().out
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
    assert "reject_threshold:" in capsys.readouterr().out
    t = json.loads((out_idx / "meta.json").read_text())["thresholds"]
    assert t["score"] == "sim_softmax" and 0.0 <= t["threshold"] <= 1.0 and t["balanced_accuracy"] >= 0.5
    assert t["fit_on"]["path"] == str((root / "queries.jsonl").resolve()) and len(t["fit_on"]["sha256"]) == 64
    assert InstanceIndex.load(out_idx).thresholds["threshold"] == t["threshold"]
    # evaluating on the file the threshold was fitted on is flagged
    assert cli_main(["eval", "--index", str(out_idx), "--queries", str(root / "queries.jsonl"), "--config", c,
                     "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "is the file the open-set threshold" in err and "calibration.jsonl" in err
    # a missing index directory is a clean CLI error (exit 2, message names it)
    proc = subprocess.run([sys.executable, "-m", "ssl_nav", "query", "--index", str(tmp_path / "nope"),
                           str(root / "queries" / "2.png")], capture_output=True, text=True)
    assert proc.returncode == 2 and "nope" in proc.stderr


# ------------------------------------------------------------------------------------------------ bad input

def test_cuda_on_a_cpu_host_is_a_config_error(setup, tmp_path, capsys):
    """--device cuda / retrieval.device: cuda without CUDA exits 2 naming the key, in index, query and eval."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this host has CUDA")
    root, store, cfg, idx = setup
    c = str(root / "cfg.yaml")
    photo = str(root / "queries" / "0.png")
    for argv in (["index", "--store", str(root / "store"), "--model", "mobilenet_v2", "--out", str(tmp_path / "i"),
                  "--device", "cuda", "--no-progress"],
                 ["query", "--index", str(idx), photo, "--device", "cuda"],
                 ["eval", "--index", str(idx), "--queries", str(root / "queries.jsonl"), "--device", "cuda"]):
        assert cli_main(argv + ["--config", c]) == 2, argv[0]
        err = capsys.readouterr().err
        assert "retrieval.device" in err and "no CUDA device" in err and "Traceback" not in err, err
    (tmp_path / "cuda.yaml").write_text(f"retrieval:\n  image_size: {SIZE}\n  device: cuda\n")
    assert cli_main(["query", "--index", str(idx), photo, "--config", str(tmp_path / "cuda.yaml")]) == 2
    assert "retrieval.device" in capsys.readouterr().err


def test_malformed_vectors_entry_names_the_key(setup, tmp_path, capsys):
    """A bad 'vectors' entry in meta.json is an error naming the entry, not a ValueError."""
    root, store, cfg, idx = setup
    for bad in ([0, "v"], ["x", "v", "1"], [0, None, "1"], "oops"):
        d = tmp_path / f"bad{len(list(tmp_path.iterdir()))}"
        shutil.copytree(idx, d)
        meta = json.loads((d / "meta.json").read_text())
        meta["vectors"][3] = bad
        (d / "meta.json").write_text(json.dumps(meta))
        with pytest.raises(RetrievalIndexError, match=r"meta.json: key 'vectors'\[3\]"):
            InstanceIndex.load(d)
        assert cli_main(["query", "--index", str(d), str(root / "queries" / "0.png"),
                         "--config", str(root / "cfg.yaml")]) == 2
        assert "key 'vectors'[3]" in capsys.readouterr().err


def test_index_without_instances_json_warns(setup, tmp_path, capsys):
    """No instances.json: the answers carry null goals and say why, on stderr and in the answer."""
    root, store, cfg, idx = setup
    d = tmp_path / "noinst"
    shutil.copytree(idx, d)
    (d / "instances.json").unlink()
    r = Retriever.open(d, cfg)
    ans = r.query(pattern(1, np.random.default_rng(3)))
    assert ans["matches"][0]["goal"] is None and "instances.json is missing" in ans["warnings"][0]
    assert cli_main(["query", "--index", str(d), str(root / "queries" / "0.png"), "--config",
                     str(root / "cfg.yaml")]) == 0
    captured = capsys.readouterr()
    assert "warning" in captured.err and "instances.json is missing" in captured.err
    assert json.loads(captured.out)["matches"][0]["goal"] is None


def test_query_batch_with_bad_photos(setup, tmp_path, capsys):
    """A 1x1 px photo, a missing one and an undecodable one are errors for those photos only; the
    good photos are still answered, and the command exits 2."""
    root, store, cfg, idx = setup
    tiny = tmp_path / "tiny.png"
    write_png(tiny, np.full((1, 1, 3), 200, np.uint8))
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    good = [str(root / "queries" / "0.png"), str(root / "queries" / "1.png")]
    argv = ["query", "--index", str(idx), good[0], str(tiny), str(tmp_path / "missing.png"), str(junk), good[1],
            "--config", str(root / "cfg.yaml")]
    assert cli_main(argv) == 2
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert [("error" in a) for a in out] == [False, True, True, True, False]
    assert out[0]["matches"][0]["instance_id"] == "1" and out[4]["matches"][0]["instance_id"] == "2"
    assert "1x1 px is smaller than retrieval.min_query_px" in out[1]["error"] and str(tiny) in out[1]["error"]
    assert "missing.png" in out[2]["error"] and "cannot decode" in out[3]["error"]
    assert "3 of 5 photos could not be answered" in captured.err
    # the Retriever refuses a 1x1 photo even without calibration (it used to answer "in map" with a goal)
    with pytest.raises(ValueError, match="min_query_px"):
        Retriever.open(idx, cfg).query(np.zeros((1, 1, 3), np.uint8))


def _probe_model(store, cfg, path: Path, scale: float = 1.0, seed: int | None = None) -> Path:
    """A model.pt of the ImageNet backbone with a linear probe on the store's views as CrossIA's instance
    classifier (trained as CrossIA's classifier is), its weights times ``scale``."""
    from ssl_nav.learning.backbones import load_encoder, save_model

    enc = load_encoder("mobilenet_v2")
    views = store.views()
    _, raw = Embedder(enc, cfg).encode([store.load_image(v) for v in views])
    class_ids = sorted({str(v["instance_id"]) for v in views})
    y = torch.tensor([class_ids.index(str(v["instance_id"])) for v in views])
    if seed is not None:
        torch.manual_seed(seed)
    head = torch.nn.Linear(raw.shape[1], len(class_ids))
    opt = torch.optim.SGD(head.parameters(), lr=0.05)
    x = torch.from_numpy(raw)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(x), y).backward()
        opt.step()
    state = {f"backbone.net.{k}": v for k, v in enc.backbone.net.state_dict().items()}
    state.update({"classifier.weight": scale * head.weight.detach(), "classifier.bias": scale * head.bias.detach()})
    save_model(path, state, backbone="mobilenet_v2", embedding_dim=1280, image_size=SIZE, config={},
               extra={"class_ids": class_ids})
    return path


def test_classifier_scores_from_model_pt(setup, tmp_path):
    """A model.pt with CrossIA's instance classifier: the open-set score in force is its max softmax ('auto'),
    and it separates mapped objects from noise photos; without a classifier 'auto' falls back to sim_softmax."""
    root, store, cfg, idx = setup
    model = _probe_model(store, cfg, tmp_path / "model.pt")
    build_index(store, model, cfg, tmp_path / "idx", progress=False)
    r = Retriever.open(tmp_path / "idx", cfg)
    assert r.embedder.classifier is not None and r.score_name == "max_softmax"
    from ssl_nav.retrieval.evaluate import evaluate_queries_file

    m, res = evaluate_queries_file(r, root / "queries.jsonl", progress=False)
    assert m["open_set_score"] == "max_softmax" and m["auroc"] >= 0.8, m
    assert set(m["auroc_by_score"]) >= {"best", "max_logit", "energy", "max_softmax", "norm"}
    assert Retriever.open(idx, cfg).score_name == "sim_softmax"


def test_threshold_precedence(setup, tmp_path):
    """A calibrated threshold applies to its own score only; the configuration's applies otherwise."""
    root, store, cfg, idx = setup
    d = tmp_path / "cal"
    shutil.copytree(idx, d)
    index = InstanceIndex.load(d)
    index.thresholds = {"score": "sim_softmax", "threshold": 0.42, "fit_on": {"path": "/x/calibration.jsonl"}}
    index.save(d)
    t = Retriever.open(d, cfg).thresholds
    assert (t.score, t.threshold, t.calibrated) == ("sim_softmax", 0.42, True) and "calibration.jsonl" in t.source
    other = RetrievalConfig(image_size=SIZE, device="cpu", open_set_score="query_z", reject_threshold=2.0)
    r = Retriever.open(d, other)
    assert (r.thresholds.score, r.thresholds.threshold, r.thresholds.calibrated) == ("query_z", 2.0, False)
    assert "calibrated threshold is for the open-set score 'sim_softmax'" in r.warnings[0]
    # an index calibrated before the score could be chosen ({"reject_score", "reject_margin"}) was fitted on best
    index.thresholds = {"reject_score": 0.6, "reject_margin": 0.0}
    index.save(d)
    t = Retriever.open(d, RetrievalConfig(image_size=SIZE, device="cpu", open_set_score="best")).thresholds
    assert (t.score, t.threshold, t.calibrated) == ("best", 0.6, True)
    assert Retriever.open(d, cfg, use_index_thresholds=False).thresholds.threshold == cfg.reject_threshold
    with pytest.raises(SslNavError, match="open_set_score.*classifier"):
        Retriever.open(d, RetrievalConfig(image_size=SIZE, device="cpu", open_set_score="energy"))


def test_calibrate_refuses_a_chance_fit_and_keeps_the_previous_threshold(setup, tmp_path, capsys):
    """With 1 + 1 queries calibrate stored a threshold at balanced accuracy 0.5."""
    import shutil

    root, store, cfg, idx = setup
    c = str(root / "cfg.yaml")
    own = tmp_path / "idx"
    shutil.copytree(idx, own)
    lines = (root / "queries.jsonl").read_text().splitlines()
    few = root / "few.jsonl"  # one in-map and one not-in-map query
    few.write_text(lines[0] + "\n" + lines[6] + "\n")
    before = (own / "meta.json").read_bytes()
    assert cli_main(["calibrate", "--index", str(own), "--queries", str(few), "--config", c, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "1 in-map + 1 not-in-map queries; calibration needs at least 3 of each" in err
    assert "keeps its previous threshold" in err
    assert (own / "meta.json").read_bytes() == before
    # enough to fit, too few to trust: stored, with a loud warning
    assert cli_main(["calibrate", "--index", str(own), "--queries", str(root / "queries.jsonl"), "--config", c,
                     "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "WARNING: " in err and "6 in-map + 3 not-in-map queries: the threshold is unreliable" in err


def test_eval_warns_about_a_query_of_an_instance_not_in_the_index(setup, tmp_path, capsys):
    """A query whose instance_id is in no instance of the index scored top-1 0.0 silently."""
    root, store, cfg, idx = setup
    c = str(root / "cfg.yaml")
    q = root / "stranger.jsonl"
    q.write_text(json.dumps({"image": "queries/0.png", "instance_id": "1"}) + "\n"
                 + json.dumps({"image": "queries/1.png", "instance_id": "99"}) + "\n")
    assert cli_main(["eval", "--index", str(idx), "--queries", str(q), "--config", c, "--no-progress",
                     "--baseline", "none"]) == 0
    err = capsys.readouterr().err
    assert "stranger.jsonl:2: instance_id 99 is in no instance of the index" in err
    assert "stranger.jsonl:1" not in err


def test_self_calibrated_threshold_answers_in_map_queries(setup, tmp_path):
    """A model whose classifier is not confident yet (a short fine-tune) gave in-map queries a
    max softmax under the default 0.5, so a robot with no calibration split answered "not in the map". The
    threshold fitted at fine-tune time on held-out views against recoloured look-alikes (model.pt
    ``self_calibration``) answers them in the map; ``ssl-nav calibrate`` still overrides it."""
    from ssl_nav.config import PipelineConfig
    from ssl_nav.learning.selfcalib import self_calibrate

    root, store, cfg, idx = setup
    # an under-confident classifier, as after a short fine-tune: logits shrunk towards uniform
    model = _probe_model(store, cfg, tmp_path / "model.pt", scale=0.1, seed=0)
    pcfg = PipelineConfig()
    pcfg.retrieval = cfg
    rec = self_calibrate(store.root, model, pcfg)
    assert rec["positives"] == "held-out robot views" and rec["thresholds"]["max_softmax"] < 0.5
    build_index(store, model, cfg, tmp_path / "idx", progress=False)
    rng = np.random.default_rng(7)
    in_map = [(i, pattern(i, rng)) for i in COLORS for _ in range(2)]

    old = Retriever.open(tmp_path / "idx", RetrievalConfig(image_size=SIZE, device="cpu", self_calibration=False))
    answers = [old.query(img) for _, img in in_map]
    assert not any(a["in_map"] for a in answers)  # the regression: every in-map query refused at 0.5
    assert "(uncalibrated)" in answers[0]["reason"]

    r = Retriever.open(tmp_path / "idx", cfg)
    t = r.thresholds
    assert t.self_calibrated and not t.calibrated and t.threshold == rec["thresholds"]["max_softmax"]
    answers = [r.query(img) for _, img in in_map]
    right = [a["in_map"] and a["matches"][0]["instance_id"] == str(i) for (i, _), a in zip(in_map, answers)]
    assert sum(right) >= 6, [a["reason"] for a in answers]
    assert answers[0]["open_set"]["self_calibrated"] and answers[0]["matches"][0]["goal"] is not None
    refused = r.query(open_set_image(rng))
    if not refused["in_map"]:
        assert "(self-calibrated at fine-tune)" in refused["reason"]
    # a threshold fitted by ssl-nav calibrate wins over the self-calibrated one
    index = InstanceIndex.load(tmp_path / "idx")
    index.thresholds = {"score": "max_softmax", "threshold": 0.99, "fit_on": {"path": "/x/calibration.jsonl"}}
    index.save(tmp_path / "idx")
    t = Retriever.open(tmp_path / "idx", cfg).thresholds
    assert (t.threshold, t.calibrated, t.self_calibrated) == (0.99, True, False)
