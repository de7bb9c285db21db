import json

from testkit.locks import lock_held_elsewhere
from testkit.stores import write_store

from ssl_nav.cli import main

TINY_YAML = """
learning: {backbone: resnet18, pretrained: false, image_size: 32, batch_size: 8, proj_dim: 64,
           pred_hidden_dim: 16, warmup_epochs: 0, threads: 1, holdout_fraction: 0.25, trainable: last}
energy: {backend: none}
"""


def test_finetune_command_writes_the_run_and_prints_a_summary(tmp_path, capsys):
    store = write_store(tmp_path / "store")
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


def _tiny(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_YAML)
    return ["--config", str(cfg), "--epochs", "1", "--device", "cpu", "--no-progress", "--ledger", "none"]


def test_finetune_refuses_to_overwrite_a_run_unless_asked(tmp_path, capsys):
    """An existing run is kept unless --resume or --overwrite; --overwrite starts from scratch."""
    store = write_store(tmp_path / "store", n_instances=2, views_per_instance=3)
    out = tmp_path / "run"
    assert main(["finetune", "--store", str(store), "--out", str(out), *_tiny(tmp_path)]) == 0
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(["finetune", "--store", str(store), "--out", str(out), *_tiny(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{out}: already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files
    assert main(["finetune", "--store", str(store), "--out", str(out), *_tiny(tmp_path), "--resume",
                 "--overwrite"]) == 2
    (out / "metrics.jsonl").write_text('{"epoch": 1, "stale": true}\n')
    assert main(["finetune", "--store", str(store), "--out", str(out), *_tiny(tmp_path), "--overwrite"]) == 0
    assert "stale" not in (out / "metrics.jsonl").read_text()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_finetune_refuses_duplicate_views(tmp_path, capsys):
    """A view listed twice is not trained on twice silently: the store is refused, naming both lines."""
    store = write_store(tmp_path / "store", n_instances=2, views_per_instance=3)
    lines = (store / "views.jsonl").read_text().splitlines()
    (store / "views.jsonl").write_text("\n".join(lines + [lines[1]]) + "\n")
    assert main(["finetune", "--store", str(store), "--out", str(tmp_path / "run"), *_tiny(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "views.jsonl:7: bad view line (duplicate view id 'v1_1' (first on line 2))" in err
    assert not (tmp_path / "run").exists()


def test_finetune_warns_about_a_store_too_small_to_learn_from(tmp_path, capsys):
    """One instance (or one view each) still trains, but says why the result means little."""
    store = write_store(tmp_path / "store", n_instances=1, views_per_instance=2)
    assert main(["finetune", "--store", str(store), "--out", str(tmp_path / "run"), *_tiny(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "only 2 view(s) of 1 instance(s)" in err
    store2 = write_store(tmp_path / "store2", n_instances=2, views_per_instance=3)
    assert main(["finetune", "--store", str(store2), "--out", str(tmp_path / "run2"), *_tiny(tmp_path)]) == 0
    assert "warning" not in capsys.readouterr().err


def test_a_second_finetune_of_the_same_run_is_refused_with_the_holders_pid(tmp_path, capsys):
    """Two finetune --out R at once interleaved metrics.jsonl."""
    store = write_store(tmp_path / "store")
    out = tmp_path / "run"
    out.mkdir()
    with lock_held_elsewhere("from ssl_nav.locking import DirLock",
                             f"l = DirLock({str(out)!r}, 'finetune').acquire()", "l.release()") as holder:
        assert main(["finetune", "--store", str(store), "--out", str(out), *_tiny(tmp_path)]) == 2
        assert f"another process is writing it (PID {holder.pid}" in capsys.readouterr().err
        assert [p.name for p in out.iterdir()] == [".lock"]
    assert list(out.iterdir()) == []
    assert main(["finetune", "--store", str(store), "--out", str(out), *_tiny(tmp_path)]) == 0
    assert not (out / ".lock").exists()


def test_energy_of_a_resumed_run_covers_the_whole_run_and_a_bad_ledger_fails_first(tmp_path, capsys):
    """Energy.json of a resumed run covered only the resumed part; --ledger DIR failed only
    after training."""
    store = write_store(tmp_path / "store")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_YAML)
    common = ["--store", str(store), "--config", str(cfg), "--device", "cpu", "--no-progress", "--epochs", "1"]
    out = tmp_path / "runs" / "r"
    assert main(["finetune", *common, "--out", str(out), "--ledger", str(tmp_path)]) == 2
    assert "is a directory; the energy ledger is a file" in capsys.readouterr().err
    assert not out.exists()
    ledger = tmp_path / "energy.jsonl"
    assert main(["finetune", *common, "--out", str(out), "--ledger", str(ledger)]) == 0
    first = json.loads((out / "energy.json").read_text())
    assert main(["finetune", *common, "--out", str(out), "--ledger", str(ledger), "--resume"]) == 0
    e = json.loads((out / "energy.json").read_text())
    assert e["resumed"]["steps_before"] == first["steps"] > 0 and not e["resumed"]["missing"]
    assert [p["run_id"] for p in e["resumed"]["parts"]] == [first["run_id"], e["run_id"]]
    assert e["resumed"]["whole_run"]["wall_s"] == round(first["wall_s"] + e["wall_s"], 3)
    # the part before the resume killed before it wrote its record: flagged, not silently dropped
    (out / "energy.json").unlink()
    ledger.unlink()
    assert main(["finetune", *common, "--out", str(out), "--ledger", "none", "--resume"]) == 0
    e = json.loads((out / "energy.json").read_text())
    assert e["resumed"]["missing"] and e["resumed"]["whole_run"]["joules_total"] is None


def test_duplicate_views_are_warned_about_and_a_plain_state_dict_is_accepted(tmp_path, capsys):
    """A store with duplicate views trained without a warning; a backbone saved with
    torch.save(model.state_dict()), as the refused-pickle message advises, was refused."""
    import shutil

    import torch
    import torchvision

    store = write_store(tmp_path / "store")
    lines = [json.loads(x) for x in (store / "views.jsonl").read_text().splitlines()]
    extra = []
    for rec in lines[:3]:  # three views stored a second time under new ids
        vid = rec["view_id"] + "_again"
        shutil.copy(store / rec["image"], store / "views" / rec["instance_id"] / f"{vid}.png")
        extra.append({**rec, "view_id": vid, "image": f"views/{rec['instance_id']}/{vid}.png"})
    with open(store / "views.jsonl", "a") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in extra))
    weights = tmp_path / "resnet18_weights.pt"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_YAML.replace("trainable: last}", f"trainable: last, init_checkpoint: '{weights}'}}"))
    rc = main(["finetune", "--store", str(store), "--out", str(tmp_path / "run"), "--config", str(cfg),
               "--epochs", "1", "--device", "cpu", "--no-progress", "--ledger", "none"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "3 duplicate view(s)" in captured.err
    assert "(backbone" in captured.out  # started from the state dict's backbone
    from ssl_nav.learning.backbones import load_encoder

    assert load_encoder(str(weights)).name == "resnet18"
