import importlib.util
import json
from pathlib import Path

from ssl_nav.cli import main

_spec = importlib.util.spec_from_file_location("learning_fixtures", Path(__file__).parents[1] / "learning" / "conftest.py")
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)

TINY_YAML = """
learning: {backbone: resnet18, pretrained: false, image_size: 32, batch_size: 8, proj_dim: 64,
           pred_hidden_dim: 16, warmup_epochs: 0, threads: 1, holdout_fraction: 0.25, trainable: last}
energy: {backend: none}
"""


def test_finetune_command_writes_the_run_and_prints_a_summary(tmp_path, capsys):
    store = fixtures.write_store(tmp_path / "store")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_YAML)
    out = tmp_path / "runs" / "r1"
    rc = main(["finetune", "--store", str(store), "--out", str(out), "--config", str(cfg), "--epochs", "2",
               "--device", "cpu", "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    for label in ("epochs", "images/s", "final loss", "eff. rank", "kNN top-1", "energy", "source unavailable"):
        assert label in text
    assert "2/2" in text
    assert {p.name for p in out.iterdir()} == {"model.pt", "metrics.jsonl", "energy.json", "checkpoint.pt"}
    ledger = [json.loads(x) for x in (tmp_path / "runs" / "energy.jsonl").read_text().splitlines()]
    assert len(ledger) == 1 and ledger[0]["source"] == "unavailable" and ledger[0]["run_dir"] == str(out)
    # --resume of a finished run keeps its metrics and rewrites the model
    rc = main(["finetune", "--store", str(store), "--out", str(out), "--config", str(cfg), "--epochs", "2",
               "--resume", "--no-progress", "--ledger", "none"])
    assert rc == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_finetune_command_reports_a_bad_store(tmp_path, capsys):
    rc = main(["finetune", "--store", str(tmp_path / "missing"), "--out", str(tmp_path / "run"), "--no-progress"])
    assert rc == 2
    assert str(tmp_path / "missing") in capsys.readouterr().err
