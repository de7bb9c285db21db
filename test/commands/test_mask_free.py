"""Issue acceptance: simulate, drop every instance mask, then collect, finetune, index and eval from the CLI."""

import json

from ssl_nav.cli import main
from ssl_nav.views.store import ViewStore

CONFIG = """\
sim:
  width: 240
  height: 180
  n_objects_min: 9
  n_objects_max: 9
  n_twins: 2
  n_distractors: 2
  n_open_set: 2
  n_explore_positions: 3
  n_turn_steps: 6
  n_user_photos: 2
  n_queries_per_instance: 1
mapping:
  geometric_stride: 1
views:
  crop_size: 48
  max_views_per_instance: 6
learning:
  epochs: 1
  batch_size: 8
  image_size: 32
  pretrained: false
  holdout_fraction: 0.0
retrieval:
  image_size: 32
"""


def test_simulate_then_mask_free_collect_finetune_index_eval(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    d = tmp_path / "frames"
    assert main(["simulate", "--seed", "3", "--out", str(d), "--no-progress", "--config", str(cfg)]) == 0
    lines = [json.loads(line) for line in (d / "frames.jsonl").read_text().splitlines()]
    for rec in lines:
        rec["instance"] = None
    (d / "frames.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    capsys.readouterr()
    store, run, idx = tmp_path / "store", tmp_path / "run", tmp_path / "idx"
    assert main(["collect", "--frames", str(d), "--store", str(store), "--config", str(cfg), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "segmenter: geometric (auto: the frames carry no instance masks)" in out
    inst = ViewStore(store).instances()
    assert len(inst) >= 3 and all("gt_instance_id" in v for v in inst.values())
    assert sum(v["gt_instance_id"] is not None for v in inst.values()) >= 3
    assert main(["finetune", "--store", str(store), "--out", str(run), "--config", str(cfg), "--device", "cpu",
                 "--ledger", "none", "--no-progress"]) == 0
    assert main(["index", "--store", str(store), "--model", str(run / "model.pt"), "--out", str(idx),
                 "--config", str(cfg), "--device", "cpu", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", "--index", str(idx), "--queries", str(d / "queries.jsonl"), "--baseline", "none",
                 "--config", str(cfg), "--no-progress", "--out", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert "mAP" in capsys.readouterr().out and metrics
