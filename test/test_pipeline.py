"""End to end: ``ssl-nav demo --quick`` on the embedded simulator; ``ssl-nav eval`` on its queries; and the README's
CLI sequence (simulate, collect, finetune, index, eval), which must give the demo's metrics exactly."""

import json
import subprocess
import sys

import cv2
import pytest

from ssl_nav.retrieval.evaluate import auroc

pytestmark = pytest.mark.slow  # the slow tier (the full pipeline): `make test-fast` leaves it out


SEED = 3


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "quick"
    proc = subprocess.run([sys.executable, "-m", "ssl_nav", "demo", "--quick", "--seed", str(SEED), "--no-progress",
                           "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def test_demo_quick_writes_a_valid_report(demo_out):
    out, stdout = demo_out
    report = json.loads((out / "report.json").read_text())
    assert report["map"]["segmenter"] == "masks" and "instance masks" in report["map"]["reason"]
    assert "instances by the masks segmenter" in stdout
    for model in ("baseline", "finetuned"):  # the metrics are those of the per-query results
        m, rows = report["metrics"][model], report["per_query"][model]
        inmap = [r for r in rows if r["gt_instance_id"] is not None]
        opens = [r for r in rows if r["gt_instance_id"] is None]
        assert m["n_in_map"] == len(inmap) > 0 and m["n_open_set"] == len(opens) > 0
        top1 = sum((r["ranked_gt"] or r["ranked_instances"])[0] == r["gt_instance_id"] for r in inmap) / len(inmap)
        assert m["top1"] == pytest.approx(top1)
        assert m["mAP"] == pytest.approx(sum(r["ap"] for r in inmap) / len(inmap), abs=1e-4)  # ap rounded to 4
        assert m["auroc"] == pytest.approx(auroc([r["open_set_value"] for r in inmap],
                                                 [r["open_set_value"] for r in opens]))
        assert f"{m['mAP']:.3f}" in stdout and report["summary"][model]["mAP"] == m["mAP"]
    assert report["energy"]["source"] == "unavailable" and report["energy"]["joules"]["total"] is None
    assert set(report["stage_seconds"]) >= {"simulate", "collect", "finetune", "index", "evaluate"}
    assert (out / "run" / "model.pt").is_file() and (out / "index-finetuned" / "index.faiss").is_file()
    img = cv2.imread(str(out / "report.png"))
    assert img is not None and img.shape[0] > 200 and img.shape[1] > 400
    assert "baseline" in stdout and "fine-tuned" in stdout and "mAP" in stdout
    # the protocol: robot views indexed (user photos are training data); the other protocol as extra rows
    assert report["protocol"]["index_quality"] == "low" and "protocol: robot views indexed" in stdout
    assert "top-1, user photos indexed" in stdout and report["metrics_user_photos"]["finetuned"]["top1"] is not None
    meta = json.loads((out / "index-finetuned" / "meta.json").read_text())
    assert meta["extra"]["embedding"]["quality"] == "low"
    assert report["store"]["views_high"] > 0 and len(meta["vectors"]) == report["store"]["views_low"]


def test_eval_on_the_demo_queries_reproduces_the_demo_metrics(demo_out, tmp_path):
    out, _ = demo_out
    metrics = tmp_path / "metrics.json"
    proc = subprocess.run([sys.executable, "-m", "ssl_nav", "eval", "--no-progress", "--index",
                           str(out / "index-finetuned"), "--queries", str(out / "frames" / "queries.jsonl"),
                           "--out", str(metrics)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(metrics.read_text())["metrics"]
    want = json.loads((out / "report.json").read_text())["metrics"]
    for ours, theirs in (("baseline", "baseline"), ("fine-tuned", "finetuned")):
        assert got[ours]["mAP"] == pytest.approx(want[theirs]["mAP"], abs=1e-6)
        assert got[ours]["top1"] == pytest.approx(want[theirs]["top1"], abs=1e-6)
        assert got[ours]["auroc"] == pytest.approx(want[theirs]["auroc"], abs=1e-6)
        assert got[ours]["open_set_score"] == want[theirs]["open_set_score"]


def _ssl_nav(*args) -> str:
    proc = subprocess.run([sys.executable, "-m", "ssl_nav", *map(str, args)], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"ssl-nav {args[0]}: {proc.stderr[-3000:]}"
    return proc.stdout


def test_the_readme_cli_sequence_reproduces_the_demo(demo_out, tmp_path):
    """README "The demo as CLI commands", for the quick preset: the same frames (byte for byte), the same store,
    and metrics identical to the demo's report.json."""
    out, _ = demo_out
    d = tmp_path / "d"
    d.mkdir()
    (d / "config.yaml").write_text(_ssl_nav("config", "dump", "--preset", "quick", "--seed", SEED))
    cfg = ("--config", d / "config.yaml")
    _ssl_nav("simulate", *cfg, "--out", d / "frames", "--no-progress")
    demo_frames = out / "frames"
    ours = sorted(p.relative_to(d / "frames") for p in (d / "frames").rglob("*") if p.is_file())
    assert ours == sorted(p.relative_to(demo_frames) for p in demo_frames.rglob("*") if p.is_file())
    for rel in ours:
        assert (d / "frames" / rel).read_bytes() == (demo_frames / rel).read_bytes(), rel
    _ssl_nav("collect", *cfg, "--frames", d / "frames", "--store", d / "store", "--quiet")
    assert (d / "store" / "views.jsonl").read_text().count("\n") == (out / "store" / "views.jsonl").read_text().count("\n")
    _ssl_nav("finetune", *cfg, "--store", d / "store", "--out", d / "run", "--no-progress")
    _ssl_nav("index", *cfg, "--store", d / "store", "--model", "mobilenet_v2", "--out", d / "index-baseline",
             "--no-progress")
    _ssl_nav("index", *cfg, "--store", d / "store", "--model", d / "run" / "model.pt", "--out", d / "index-finetuned",
             "--no-progress")
    _ssl_nav("eval", *cfg, "--index", d / "index-finetuned", "--baseline", d / "index-baseline", "--queries",
             d / "frames" / "queries.jsonl", "--out", d / "metrics.json", "--no-progress")
    got = json.loads((d / "metrics.json").read_text())["metrics"]
    want = json.loads((out / "report.json").read_text())["metrics"]
    assert got["baseline"] == want["baseline"]
    assert got["fine-tuned"] == want["finetuned"]


def test_demo_config_takes_the_segmenter():
    """`ssl-nav demo --segmenter geometric` runs the demo on the mask-free map (mapping.segmenter)."""
    from ssl_nav.pipeline import demo_config

    assert demo_config(None, quick=True, seed=3, segmenter="geometric").mapping.segmenter == "geometric"
    assert demo_config(None).mapping.segmenter == "auto"
