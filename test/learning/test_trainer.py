import json

import pytest
import torch
from testkit.training import sgd_steps, two_views

from ssl_nav.errors import CheckpointError, ConfigError, TrainingError
from ssl_nav.learning.backbones import Backbone, read_model, save_model
from ssl_nav.learning.trainer import finetune, lr_factor


def test_simsiam_loss_falls_on_a_tiny_store(tiny_store, tmp_path, learning_config):
    """SimSiam alone (no classifier) on 16 views: the loss falls over 24 steps and the embedding does not
    collapse (no CollapseWarning, no epoch flagged). The last stage trains (the default), at base_lr 2: a
    higher rate makes the loss fall by collapsing, a lower one leaves it inside its noise in so few steps."""
    import warnings

    from ssl_nav.learning.monitor import CollapseWarning

    cfg = learning_config(epochs=12, objective="simsiam", crossia=False, holdout_fraction=0.0, base_lr=2.0,
                          ce_weight=0.0, trainable="last")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = finetune(tiny_store, tmp_path / "run", cfg, progress=False)
    assert not [w for w in caught if issubclass(w.category, CollapseWarning)], [str(w.message) for w in caught]
    assert not any(m.get("collapse_warning") for m in res.metrics)
    losses = [m["loss"] for m in res.metrics]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.05, losses
    assert res.summary["status"] == "completed"
    for name in ("model.pt", "metrics.jsonl", "energy.json", "checkpoint.pt"):
        assert (tmp_path / "run" / name).is_file()
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == list(range(1, 13))
    assert {"emb_std_sqrt_d", "eff_rank", "silhouette", "cluster_agreement", "entropy", "collapse_warning",
            "emb_norm_mean", "knn_top1", "kmeans_ari", "loss_ssl"} <= set(lines[-1])
    assert "loss_ce" not in lines[-1] and res.model.classifier is None  # ce_weight 0: no classifier
    energy = json.loads((tmp_path / "run" / "energy.json").read_text())
    assert energy["source"] == "unavailable" and energy["joules"]["total"] is None
    assert energy["phases"]["train"]["images"] == res.summary["images"] > 0  # no Hard View Selection here


def test_energy_phases_count_the_work_of_each_phase(tiny_store, tmp_path, learning_config):
    """Hard View Selection with 2 candidates: every step forwards 2 x 2 candidate images per anchor to score
    them, 2 more to train and the recoloured anchor (outlier exposure); the loader augmented 2 x 2; the
    monitor embeds its views once before training and after each monitored epoch; the cache decoded every view
    once."""
    cfg = learning_config(epochs=3, hard_views=2, monitor_every=2, checkpoint_every=1)
    res = finetune(tiny_store, tmp_path / "run", cfg, progress=False)
    rec = json.loads((tmp_path / "run" / "energy.json").read_text())
    ph = rec["phases"]
    assert list(ph) == ["data", "train", "monitor", "checkpoint", "other"]
    pairs = res.summary["images"] // 2
    steps = res.metrics[-1]["step"]
    assert pairs == steps * cfg.learning.batch_size and ph["train"]["steps"] == steps == rec["steps"]
    assert cfg.learning.recolour_oe_weight > 0 and res.model.classifier is not None
    assert ph["train"]["images"] == 2 * pairs * (2 + 1) + pairs
    assert ph["data"]["images"] == res.summary["n_views"] + 2 * pairs * 2
    n_monitor = sum(1 for m in res.metrics if "eff_rank" in m) + 1  # epochs 2 and 3, and the starting encoder
    assert n_monitor == 3 and ph["monitor"]["entries"] == 3
    assert ph["monitor"]["images"] % n_monitor == 0 and ph["monitor"]["images"] >= 3 * 2
    assert ph["checkpoint"]["images"] == 0 and ph["checkpoint"]["entries"] == 1 + 3 + 1  # metrics, 3 epochs, export
    assert rec["images"] == sum(p["images"] for p in ph.values())
    assert rec["wall_s"] == pytest.approx(sum(p["wall_s"] for p in ph.values()), abs=1e-5)
    assert rec["wall_s"] <= res.summary["wall_s"] + 0.01
    assert rec["total_covers"] is None and rec["view_fraction"] == 1.0


def test_an_unavailable_energy_source_is_never_zero_joules(tiny_store, tmp_path, learning_config, capsys):
    """No sensor: energy.json, the ledger line and the printed report say null / n/a, never 0 J."""
    import re

    from ssl_nav.cli import main

    cfg_file = tmp_path / "cfg.yaml"
    lc = learning_config(epochs=1).learning
    cfg_file.write_text(json.dumps({"learning": {k: getattr(lc, k) for k in (
        "backbone", "pretrained", "image_size", "batch_size", "proj_dim", "pred_hidden_dim", "warmup_epochs",
        "threads", "holdout_fraction", "device")}, "energy": {"backend": "none"}}))
    out = tmp_path / "runs" / "r"
    assert main(["finetune", "--store", str(tiny_store), "--out", str(out), "--config", str(cfg_file),
                 "--epochs", "1", "--no-progress"]) == 0
    text = capsys.readouterr().out
    rec = json.loads((out / "energy.json").read_text())
    ledger = [json.loads(x) for x in (tmp_path / "runs" / "energy.jsonl").read_text().splitlines()]
    assert ledger == [rec]
    for r in (rec, ledger[0]):
        figures = list(r["joules"].values()) + [r["avg_w"], r["j_per_1k_images"], r["total_covers"]]
        for p in r["phases"].values():
            figures += list(p["joules"].values()) + [p["avg_w"], p["j_per_1k_images"]]
        assert r["source"] == "unavailable" and all(v is None for v in figures)
        assert r["phases"]["train"]["images"] > 0 and r["phases"]["train"]["steps"] >= 1
    assert "energy: not measured" in text and "n/a" in text
    assert re.search(r"^train\s", text, re.M)  # the phase table is printed
    assert not re.search(r"(?<![\d.])0(\.0*)? ?(J|W)\b", text)


@pytest.mark.parametrize("objective", ["simsiam", "moco"])
def test_resume_continues_exactly_like_an_uninterrupted_run(tiny_store, tmp_path, learning_config, objective):
    cfg = learning_config(epochs=3, hard_views=2, objective=objective, moco_dim=16)
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
    # the whole training state too: MoCo's key encoder and queue continue as if never interrupted
    fa, fb = full.model.state_dict(), resumed.model.state_dict()
    assert fa.keys() == fb.keys() and (objective != "moco" or "queue.keys" in fa)
    for k in fa:
        assert torch.allclose(fa[k].float(), fb[k].float(), atol=1e-6), k
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
def test_alternative_objectives_train_and_lower_their_loss(tiny_store, tmp_path, objective, learning_config):
    from ssl_nav.learning.trainer import FinetuneModel

    res = finetune(tiny_store, tmp_path / "run", learning_config(epochs=1, objective=objective), progress=False)
    assert res.model.predictor is None and res.summary["final_loss"] is not None
    # the objective learns: SGD steps on one fixed batch of positive pairs lower its loss
    lc = learning_config(objective=objective, ce_weight=0.0).learning
    torch.manual_seed(0)
    model = FinetuneModel(Backbone("resnet18"), lc, n_classes=4).train()
    x1, x2 = two_views()
    losses = [p["loss_ssl"] for p in sgd_steps(model, lc, x1, x2, {"label": torch.arange(8) % 4}, 8)]
    assert sum(losses[-3:]) / 3 < 0.5 * losses[0], losses


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


def test_hard_view_selection_scores_in_train_mode_and_the_hardest_pair_wins(learning_config):
    from ssl_nav.learning.trainer import FinetuneModel, select_hard_views

    lc = learning_config(objective="simclr", ce_weight=0.0).learning
    torch.manual_seed(0)
    model = FinetuneModel(Backbone("resnet18"), lc, n_classes=4).eval()
    modes = []
    model.backbone.net.layer4.register_forward_hook(lambda m, i, o: modes.append(m.training))
    g = torch.Generator().manual_seed(0)
    b, n = 4, 3
    x = torch.rand(b, 3, 32, 32, generator=g)
    other = torch.rand(b, 3, 32, 32, generator=g)
    hard = torch.tensor([2, 0, 1, 2])  # candidate of each anchor whose partner is a different image
    x1 = x[:, None].repeat(1, n, 1, 1, 1)
    x2 = x1.clone()
    x2[torch.arange(b), hard] = other
    dom2 = torch.arange(b * n).view(b, n)
    bn = model.backbone.net.bn1
    before = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    batch = {"x1": x1, "x2": x2, "dom2": dom2, "label": torch.arange(b)}
    s1, s2, sd = select_hard_views(model, batch, lc)
    assert modes and all(modes)  # scored in train mode (batch statistics), as in the paper
    assert not model.training  # the caller's mode is back
    assert torch.equal(sd, dom2[torch.arange(b), hard]) and torch.equal(s2, other) and torch.equal(s1, x)
    assert all(torch.equal(a, c) for a, c in zip(before, (bn.running_mean, bn.running_var, bn.num_batches_tracked)))


def test_instance_classifier_is_exported_with_class_ids(tiny_store, tmp_path, learning_config):
    from ssl_nav.learning.backbones import load_encoder, read_classifier

    res = finetune(tiny_store, tmp_path / "run", learning_config(epochs=1), progress=False)
    obj = read_model(res.model_path)
    weight, bias, ids = read_classifier(obj, res.model_path)
    assert weight.shape == (4, 512) and bias.shape == (4,) and ids == ["1", "2", "3", "4"]
    assert torch.equal(weight, res.model.classifier.weight.detach())
    assert load_encoder(res.model_path).dim == 512  # the encoder loads with the classifier keys present
    # without a classifier (ce_weight 0) the accessor says so, and the encoder loads the same way
    res0 = finetune(tiny_store, tmp_path / "run0", learning_config(epochs=1, ce_weight=0.0), progress=False)
    assert read_classifier(read_model(res0.model_path)) is None and load_encoder(res0.model_path).dim == 512
    obj["class_ids"] = ["1", "2"]
    with pytest.raises(CheckpointError, match="class_ids"):
        read_classifier(obj, res.model_path)


def test_classifier_only_objective_trains_without_heads(tiny_store, tmp_path, learning_config):
    res = finetune(tiny_store, tmp_path / "run", learning_config(epochs=6, objective="none", holdout_fraction=0.0),
                   progress=False)
    assert res.model.projector is None and res.model.predictor is None
    ce = [m["loss_ce"] for m in res.metrics]
    assert "loss_ssl" not in res.metrics[-1] and sum(ce[-3:]) / 3 < ce[0]
    with pytest.raises(ConfigError, match="ce_weight"):
        finetune(tiny_store, tmp_path / "bad", learning_config(epochs=1, objective="none", ce_weight=0.0),
                 progress=False)


def test_fused_frozen_stem_trains_like_the_unfused_one(tiny_store, tmp_path, learning_config):
    """trainable last: the BatchNorm-folded stem is the same function, so a run with it matches one without
    (up to float rounding), MoCo's keys included; model.pt holds the unfused weights either way."""
    kw = dict(epochs=2, trainable="last", objective="moco", moco_dim=16)
    a = finetune(tiny_store, tmp_path / "fused", learning_config(**kw), progress=False)
    b = finetune(tiny_store, tmp_path / "plain", learning_config(fuse_frozen_stem=False, **kw), progress=False)
    assert a.model.frozen_stem is not None and b.model.frozen_stem is None
    assert [m["loss"] for m in a.metrics] == pytest.approx([m["loss"] for m in b.metrics], abs=1e-4)
    sa, sb = read_model(a.model_path)["state_dict"], read_model(b.model_path)["state_dict"]
    assert sa.keys() == sb.keys() and any(".running_var" in k for k in sa)
    for k in sa:
        assert torch.allclose(sa[k].float(), sb[k].float(), atol=1e-4), k


def test_hard_view_selection_runs_with_a_fused_frozen_stem(tiny_store, tmp_path, learning_config):
    """HVS puts back the BatchNorm statistics it moved; the frozen stem's are left alone, so its folded copy
    stays valid (writing them back used to stop the run: 'the frozen stem changed')."""
    res = finetune(tiny_store, tmp_path / "run", learning_config(epochs=1, trainable="last", hard_views=2),
                   progress=False)
    assert res.summary["status"] == "completed" and res.model.frozen_stem is not None
