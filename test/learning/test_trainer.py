import json

import pytest
import torch

from ssl_nav.errors import CheckpointError, TrainingError
from ssl_nav.learning.backbones import Backbone, read_model, save_model
from ssl_nav.learning.trainer import finetune, lr_factor


def test_simsiam_loss_falls_on_a_tiny_store(tiny_store, tmp_path, learning_config):
    cfg = learning_config(epochs=6, crossia=False, holdout_fraction=0.0, base_lr=8.0)
    res = finetune(tiny_store, tmp_path / "run", cfg, progress=False)
    losses = [m["loss"] for m in res.metrics]
    assert len(losses) == 6
    assert sum(losses[-2:]) / 2 < losses[0] - 0.1
    assert res.summary["status"] == "completed"
    for name in ("model.pt", "metrics.jsonl", "energy.json", "checkpoint.pt"):
        assert (tmp_path / "run" / name).is_file()
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2, 3, 4, 5, 6]
    assert {"z_std", "emb_norm_mean", "emb_norm_p5", "emb_norm_p95", "knn_top1", "kmeans_ari"} <= set(lines[-1])
    energy = json.loads((tmp_path / "run" / "energy.json").read_text())
    assert energy["source"] == "unavailable" and energy["joules"]["total"] is None
    assert energy["images"] == res.summary["images"] > 0


def test_resume_continues_exactly_like_an_uninterrupted_run(tiny_store, tmp_path, learning_config):
    cfg = learning_config(epochs=3, hard_views=2)
    full = finetune(tiny_store, tmp_path / "full", cfg, progress=False)

    def kill_after_first(line):
        if line["epoch"] == 1:
            raise KeyboardInterrupt  # a kill right after the epoch-1 checkpoint

    with pytest.raises(KeyboardInterrupt):
        finetune(tiny_store, tmp_path / "part", cfg, progress=False, on_epoch=kill_after_first)
    assert not (tmp_path / "part" / "model.pt").exists()
    resumed = finetune(tiny_store, tmp_path / "part", cfg, progress=False, resume=True)
    a = read_model(full.model_path)["state_dict"]
    b = read_model(resumed.model_path)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k
    assert [m["epoch"] for m in resumed.metrics] == [1, 2, 3]
    assert resumed.metrics[-1]["loss"] == pytest.approx(full.metrics[-1]["loss"], abs=1e-6)


def test_frozen_parameters_stay_unchanged(tiny_store, tmp_path, learning_config):
    cfg = learning_config(epochs=1, trainable="last", base_lr=1.0)
    torch.manual_seed(cfg.learning.seed)
    res = finetune(tiny_store, tmp_path / "run", cfg, progress=False)
    torch.manual_seed(cfg.learning.seed)
    before = Backbone("resnet18").net.state_dict()  # the same seeded init the trainer starts from
    after = res.model.backbone.net.state_dict()
    frozen = [k for k in before if not k.startswith("layer4.")]
    assert all(torch.equal(before[k], after[k]) for k in frozen)  # weights and BN statistics alike
    assert not torch.equal(before["layer4.0.conv1.weight"], after["layer4.0.conv1.weight"])


def test_non_finite_loss_stops_with_a_clear_error(tiny_store, tmp_path, learning_config):
    torch.manual_seed(0)
    bb = Backbone("resnet18")
    state = {f"backbone.net.{k}": v.clone() for k, v in bb.net.state_dict().items()}
    state["backbone.net.conv1.weight"][0, 0, 0, 0] = float("nan")
    init = tmp_path / "nan_model.pt"
    save_model(init, state, backbone="resnet18", embedding_dim=512, image_size=32, config={})
    cfg = learning_config(epochs=1, init_checkpoint=str(init))
    with pytest.raises(TrainingError, match="non-finite loss"):
        finetune(tiny_store, tmp_path / "run", cfg, progress=False)


def test_corrupt_checkpoint_names_the_file(tiny_store, tmp_path, learning_config):
    cfg = learning_config(epochs=1)
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match=str(run / "checkpoint.pt")):
        finetune(tiny_store, run, cfg, progress=False, resume=True)


@pytest.mark.parametrize("objective", ["simclr", "barlow"])
def test_alternative_objectives_train(tiny_store, tmp_path, objective, learning_config):
    res = finetune(tiny_store, tmp_path / "run", learning_config(epochs=1, objective=objective), progress=False)
    assert res.model.predictor is None and res.summary["final_loss"] is not None


def test_should_stop_cancels_without_writing_a_model(tiny_store, tmp_path, learning_config):
    res = finetune(tiny_store, tmp_path / "run", learning_config(epochs=3), progress=False, should_stop=lambda: True)
    assert res.summary["status"] == "cancelled" and res.model_path is None
    assert not (tmp_path / "run" / "model.pt").exists()


def test_warmup_then_cosine():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10) == pytest.approx(0.0)


def test_dataloader_workers_do_not_change_the_result(tiny_store, tmp_path, learning_config):
    a = finetune(tiny_store, tmp_path / "w0", learning_config(epochs=1, num_workers=0), progress=False)
    b = finetune(tiny_store, tmp_path / "w1", learning_config(epochs=1, num_workers=1), progress=False)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.allclose(sa[k].float(), sb[k].float(), atol=1e-6) for k in sa)
