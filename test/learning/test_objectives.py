"""The objective registry: recipes, honest MoCo v2 against its label-aware variant, the lr = 0 control, the
heads-only warm-up."""

import dataclasses

import pytest
import torch

from ssl_nav.config import LearningConfig
from ssl_nav.errors import ConfigError
from ssl_nav.learning.backbones import Backbone
from ssl_nav.learning.catalog import TITLES, describe
from ssl_nav.learning.objectives import OBJECTIVES, ForwardOut, get_objective, resolve_recipe
from ssl_nav.learning.trainer import FinetuneModel, finetune


def test_every_objective_choice_is_registered_and_the_default_is_simsiam():
    choices = dataclasses.fields(LearningConfig)
    objective = next(f for f in choices if f.name == "objective")
    assert set(objective.metadata["choices"]) == set(OBJECTIVES) == set(TITLES)
    assert all(OBJECTIVES[k].title == TITLES[k] for k in OBJECTIVES)
    assert LearningConfig().objective == "simsiam"
    assert describe() == "SimSiam + instance CE, CrossIA pairing"
    assert describe(dataclasses.replace(LearningConfig(), objective="moco", ce_weight=0.0)).startswith("MoCo v2 only")
    with pytest.raises(ConfigError, match="unknown objective 'byol'"):
        get_objective("byol")


def test_a_recipe_fills_only_the_fields_left_at_minus_one():
    lc = LearningConfig()
    r = resolve_recipe(lc)
    assert (r.base_lr, r.weight_decay) == (0.2, 1.5e-6)  # SimSiam: CrossIA's wd, a quarter of its lr 0.1 at batch 32
    assert r.base_lr * 32 / 256 == pytest.approx(0.1 / 4)
    moco = resolve_recipe(dataclasses.replace(lc, objective="moco"))
    assert (moco.base_lr, moco.weight_decay) == (0.03, 1e-4)
    mine = resolve_recipe(dataclasses.replace(lc, objective="moco", base_lr=0.0, head_warmup_epochs=3))
    assert mine.base_lr == 0.0 and mine.head_warmup_epochs == 3 and mine.weight_decay == 1e-4
    assert min(getattr(resolve_recipe(dataclasses.replace(lc, objective=o)), f)
               for o in OBJECTIVES for f in ("base_lr", "weight_decay", "warmup_epochs", "head_warmup_epochs")) >= 0


def _moco_loss(objective: str, learning_config) -> float:
    lc = learning_config(objective=objective, moco_dim=8, ce_weight=0.0).learning
    torch.manual_seed(0)
    model = FinetuneModel(Backbone("resnet18"), lc, n_classes=2, n_train_views=4).eval()
    z = torch.nn.functional.normalize(torch.randn(2, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    labels = torch.tensor([0, 1])
    # the queue holds the anchors' own projections, labelled with their own instances: false negatives
    model.queue.keys[:2] = z
    model.queue.labels[:] = -1
    model.queue.labels[:2] = labels
    out = ForwardOut(f1=z, f2=z, z1=z, z2=z, k1=-z, k2=-z)  # keys far from the queries: positives are hard
    return float(model.method.pair_loss(model, out, labels, lc).mean())


def test_moco_v2_uses_no_labels_and_moco_masked_removes_same_instance_negatives(learning_config):
    assert not OBJECTIVES["moco"].uses_labels and OBJECTIVES["moco_masked"].uses_labels
    plain, masked = _moco_loss("moco", learning_config), _moco_loss("moco_masked", learning_config)
    assert masked < plain - 0.5  # the anchor's own-instance queue entries are negatives only for MoCo v2


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_lr_zero_is_a_no_op_control_for_every_objective(tiny_store, tmp_path, learning_config, objective):
    """The control of the ablation: with base_lr 0 no weight moves (only BatchNorm statistics)."""
    cfg = learning_config(epochs=1, objective=objective, base_lr=0.0, moco_dim=8, trainable="last")
    torch.manual_seed(cfg.learning.seed)
    res = finetune(tiny_store, tmp_path / "run", cfg, progress=False)
    torch.manual_seed(cfg.learning.seed)
    start = Backbone("resnet18").net.state_dict()
    for name, p in res.model.backbone.net.named_parameters():
        assert torch.equal(p, start[name]), name
    assert res.summary["status"] == "completed" and res.metrics[-1]["lr"] == 0.0


def test_heads_only_warm_up_keeps_the_backbone_and_trains_the_heads(tiny_store, tmp_path, learning_config):
    cfg = learning_config(epochs=1, objective="simsiam", head_warmup_epochs=1, trainable="last", base_lr=0.5)
    torch.manual_seed(cfg.learning.seed)
    res = finetune(tiny_store, tmp_path / "warm", cfg, progress=False)
    torch.manual_seed(cfg.learning.seed)
    start = Backbone("resnet18").net.state_dict()
    for name, p in res.model.backbone.net.named_parameters():
        assert torch.equal(p, start[name]), name  # no step reached the backbone
    torch.manual_seed(cfg.learning.seed)
    moved = finetune(tiny_store, tmp_path / "cold", learning_config(epochs=1, objective="simsiam", trainable="last",
                                                                    base_lr=0.5), progress=False)
    assert any(not torch.equal(p, start[n]) for n, p in moved.model.backbone.net.named_parameters())
    # ...while the heads trained: the projector is not where the same seed starts it
    assert res.summary["final_loss"] is not None
    warm_proj = res.model.projector.state_dict()
    torch.manual_seed(cfg.learning.seed)
    fresh = FinetuneModel(Backbone("resnet18"), resolve_recipe(cfg.learning), 2, 8)  # the run's seeded start
    assert any(not torch.equal(warm_proj[k], v) for k, v in fresh.projector.state_dict().items()
               if v.dtype.is_floating_point and "running" not in k)
