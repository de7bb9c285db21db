"""End to end: ``ssl-nav demo --quick`` on the embedded simulator, then ``ssl-nav eval`` on its queries."""

import json
import subprocess
import sys

import cv2
import pytest


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "quick"
    proc = subprocess.run([sys.executable, "-m", "ssl_nav", "demo", "--quick", "--no-progress", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def test_demo_quick_writes_a_valid_report(demo_out):
    out, stdout = demo_out
    report = json.loads((out / "report.json").read_text())
    for model in ("baseline", "finetuned"):
        m = report["metrics"][model]
        assert 0.0 <= m["top1"] <= 1.0 and 0.0 <= m["mAP"] <= 1.0
        assert m["n_open_set"] > 0 and m["auroc"] is not None
    assert report["energy"]["source"] == "unavailable" and report["energy"]["joules"]["total"] is None
    assert set(report["stage_seconds"]) >= {"simulate", "map_views", "finetune", "index", "evaluate"}
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


def test_simulate_with_the_quick_preset_writes_the_demos_frames_directory(demo_out, tmp_path):
    """One simulate stage: `ssl-nav simulate --preset quick --seed 0` is the scene `ssl-nav demo --quick` used."""
    out, _ = demo_out
    sim = tmp_path / "q0"
    proc = subprocess.run([sys.executable, "-m", "ssl_nav", "simulate", "--preset", "quick", "--seed", "0",
                           "--out", str(sim), "--no-progress"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    demo_frames = out / "frames"
    ours = sorted(p.relative_to(sim) for p in sim.rglob("*") if p.is_file())
    theirs = sorted(p.relative_to(demo_frames) for p in demo_frames.rglob("*") if p.is_file())
    assert ours == theirs and (sim / "calibration.jsonl").is_file()
    for rel in ours:
        assert (sim / rel).read_bytes() == (demo_frames / rel).read_bytes(), rel
