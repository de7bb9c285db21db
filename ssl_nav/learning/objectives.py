"""The self-supervised objectives, one class each, in a registry (:data:`OBJECTIVES`), in the manner of solo-learn.

An objective owns everything that differs between methods: its heads (built onto the
:class:`~ssl_nav.learning.trainer.FinetuneModel`), what its forward pass adds to :class:`ForwardOut`, its
per-pair loss (what Hard View Selection ranks candidates by), its batch loss, its parameter groups, its
after-step hook, and its default :class:`Recipe` (learning rate, weight decay, warm-up). Everything else --
backbone, data, CrossIA pairing, the instance classifier, outlier exposure, the schedule -- is shared.

``learning.objective`` names one:

- ``simsiam``: SimSiam (Chen & He, arXiv 2011.10566): projector + predictor, negative cosine with a
  stop-gradient on the target, symmetrised. Its recipe starts from CrossIA's code (Sakaguchi et al., arXiv
  2404.09645: lr 0.1 at batch 32, weight decay 1.5e-6) at a quarter of its lr, which the ablation chose; the
  predictor at a fixed lr (SimSiam §4.1).
- ``moco``: MoCo v2 as published (Chen et al., arXiv 2003.04297): MLP head, momentum key encoder, a queue of
  negatives, InfoNCE at temperature 0.2; no labels.
- ``moco_masked``: **not MoCo v2**: MoCo v2 whose queue negatives exclude keys of the anchor's own map
  instance, so it uses the map's instance ids (labels). ssl_nav's default before SimSiam was made to train.
- ``simclr``: SimCLR's NT-Xent (Chen et al., arXiv 2002.05709) on the SimSiam projector.
- ``barlow``: Barlow Twins (Zbontar et al., arXiv 2103.03230) on the SimSiam projector.
- ``none``: no self-supervised term; the instance classifier alone (needs ``learning.ce_weight > 0``).

A recipe value applies where the configuration leaves the field at ``-1`` (``learning.base_lr``,
``learning.weight_decay``, ``learning.warmup_epochs``, ``learning.head_warmup_epochs``); any other value
overrides it. :func:`resolve_recipe` fills them in; the run's ``model.pt`` and ``checkpoint.pt`` record the
values that ran. The recipes were chosen by the per-objective lr sweep of ``benchmarks/bench_objectives.py``
(BENCHMARKS.md, docs/finetuning.md).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ssl_nav.config import LearningConfig
from ssl_nav.errors import ConfigError
from ssl_nav.learning.barlow import barlow_twins_loss
from ssl_nav.learning.catalog import TITLES
from ssl_nav.learning.moco import (KeyQueue, MoCoProjectionHead, gather_from_ranks, info_nce_per_sample,
                                   momentum_update, queue_size)
from ssl_nav.learning.simclr import nt_xent_loss
from ssl_nav.learning.simsiam import SimSiamPredictionHead, SimSiamProjectionHead, negative_cosine, simsiam_loss_per_sample

if TYPE_CHECKING:  # the model is built from the objective, not the other way round
    from ssl_nav.learning.trainer import FinetuneModel


@dataclass(frozen=True)
class Recipe:
    """An objective's defaults. ``base_lr`` follows the linear scaling rule: lr = base_lr * batch_size / 256."""

    base_lr: float
    weight_decay: float
    warmup_epochs: int = 1
    #: epochs at the start that train the heads (projector, predictor, classifier) with the backbone frozen
    head_warmup_epochs: int = 0
    source: str = ""


#: the LearningConfig fields a recipe fills in when they are -1
RECIPE_FIELDS = ("base_lr", "weight_decay", "warmup_epochs", "head_warmup_epochs")


@dataclass
class ForwardOut:
    """What :meth:`FinetuneModel.forward` returns for a pair of views (x1, x2): backbone features ``f``, the
    objective's projections ``z``, predictions ``p`` (SimSiam) and momentum keys ``k`` (MoCo), the instance
    classifier's logits ``c`` (and ``c_out`` on recoloured outliers), the domain discriminator's ``d``."""

    f1: torch.Tensor
    f2: torch.Tensor
    z1: torch.Tensor | None = None
    z2: torch.Tensor | None = None
    p1: torch.Tensor | None = None
    p2: torch.Tensor | None = None
    k1: torch.Tensor | None = None
    k2: torch.Tensor | None = None
    c1: torch.Tensor | None = None
    c2: torch.Tensor | None = None
    c_out: torch.Tensor | None = None
    d1: torch.Tensor | None = None
    d2: torch.Tensor | None = None


class Objective:
    """Base class: no heads, no loss (``none``). Subclasses override what their method changes."""

    name: ClassVar[str] = "none"
    title: ClassVar[str] = TITLES["none"]
    uses_labels: ClassVar[bool] = False
    recipe: ClassVar[Recipe] = Recipe(base_lr=0.05, weight_decay=1e-4, source="ssl_nav's CE-only recipe")

    def build_heads(self, model: FinetuneModel, lc: LearningConfig, n_train_views: int) -> None:
        """Create the objective's heads as attributes of ``model`` (projector, predictor, key encoder, queue)."""

    def project(self, model: FinetuneModel, out: ForwardOut, x1: torch.Tensor, x2: torch.Tensor,
                h1: torch.Tensor, h2: torch.Tensor) -> None:
        """Add the objective's outputs to ``out`` (``h`` are the stem's outputs, for a shared frozen stem)."""

    def pair_loss(self, model: FinetuneModel, out: ForwardOut, labels: torch.Tensor,
                  lc: LearningConfig) -> torch.Tensor | None:
        """The per-pair (B,) loss; Hard View Selection ranks candidate pairs by it."""
        return None

    def batch_loss(self, model: FinetuneModel, out: ForwardOut, labels: torch.Tensor,
                   lc: LearningConfig) -> torch.Tensor | None:
        """The loss the step trains on; the mean of the per-pair loss unless the method is a batch loss."""
        per_pair = self.pair_loss(model, out, labels, lc)
        return None if per_pair is None else per_pair.mean()

    def param_groups(self, model: FinetuneModel, lc: LearningConfig) -> list[dict]:
        """Optimiser groups; ``fix_lr`` keeps a group at the initial lr (no schedule)."""
        return [{"params": [p for p in model.parameters() if p.requires_grad], "fix_lr": False}]

    @torch.no_grad()
    def after_step(self, model: FinetuneModel, out: ForwardOut, labels: torch.Tensor, lc: LearningConfig) -> None:
        """Called after each optimiser step."""


class SimSiam(Objective):
    """SimSiam (Chen & He, arXiv 2011.10566) with CrossIA's recipe (arXiv 2404.09645)."""

    name, title = "simsiam", TITLES["simsiam"]
    #: CrossIA's code trains at lr 0.1 for batch 32 (base_lr 0.8) with wd 1.5e-6; with the instance classifier and
    #: outlier exposure beside it, a quarter of that lr is better on every ablation seed (docs/finetuning.md)
    recipe = Recipe(base_lr=0.2, weight_decay=1.5e-6,
                    source="CrossIA's code (wd 1.5e-6), at a quarter of its lr 0.1 for batch 32 (ablation)")

    def build_heads(self, model, lc, n_train_views):
        model.projector = SimSiamProjectionHead(model.backbone.dim, lc.proj_dim)
        model.predictor = SimSiamPredictionHead(lc.proj_dim, lc.pred_hidden_dim)

    def project(self, model, out, x1, x2, h1, h2):
        out.z1, out.z2 = model.projector(out.f1), model.projector(out.f2)
        out.p1, out.p2 = model.predictor(out.z1), model.predictor(out.z2)

    def pair_loss(self, model, out, labels, lc):
        return simsiam_loss_per_sample(out.p1, out.p2, out.z1, out.z2)

    def param_groups(self, model, lc):
        pred = {id(p) for p in model.predictor.parameters()}
        main = [p for p in model.parameters() if p.requires_grad and id(p) not in pred]
        head = [p for p in model.predictor.parameters() if p.requires_grad]
        return [{"params": main, "fix_lr": False}, {"params": head, "fix_lr": lc.fix_pred_lr}]


class MoCoV2(Objective):
    """MoCo v2 (He et al., arXiv 1911.05722; Chen et al., arXiv 2003.04297), as published: no labels."""

    name, title = "moco", TITLES["moco"]
    recipe = Recipe(base_lr=0.03, weight_decay=1e-4, source="MoCo v2: lr 0.03 at batch 256, wd 1e-4")

    def build_heads(self, model, lc, n_train_views):
        model.projector = MoCoProjectionHead(model.backbone.dim, lc.moco_dim)
        model.key_encoder = nn.Sequential(copy.deepcopy(model.backbone), copy.deepcopy(model.projector))
        model.key_encoder.requires_grad_(False)
        model.queue = KeyQueue(max(2, queue_size(lc.moco_queue, n_train_views, 2 * lc.batch_size)), lc.moco_dim,
                               lc.seed)

    def project(self, model, out, x1, x2, h1, h2):
        out.z1, out.z2 = model.projector(out.f1), model.projector(out.f2)
        out.k1, out.k2 = model.keys(x1, h1), model.keys(x2, h2)

    def _masks(self, labels: torch.Tensor, model: FinetuneModel):
        return None, None  # MoCo v2: every queue entry is a negative

    def pair_loss(self, model, out, labels, lc):
        t, q = lc.moco_temperature, model.queue
        own, queued = self._masks(labels, model)
        return 0.5 * (info_nce_per_sample(out.z1, out.k2, q.keys, t, own, queued)
                      + info_nce_per_sample(out.z2, out.k1, q.keys, t, own, queued))

    @torch.no_grad()
    def after_step(self, model, out, labels, lc):
        momentum_update(model.key_encoder, nn.Sequential(model.backbone, model.projector), lc.moco_momentum)
        keys = gather_from_ranks(torch.cat([out.k1, out.k2]).float())
        model.queue.enqueue(keys, gather_from_ranks(torch.cat([labels, labels])))


class MoCoMasked(MoCoV2):
    """MoCo v2 whose queue negatives exclude keys of the anchor's own map instance: it uses the map's instance
    ids as labels, so it is a label-aware contrastive loss, not MoCo v2 (compare the false-negative elimination
    of Huynh et al., arXiv 2011.11765, with the ids known instead of guessed)."""

    name, title, uses_labels = "moco_masked", TITLES["moco_masked"], True
    recipe = Recipe(base_lr=0.05, weight_decay=1e-4, source="ssl_nav's default before SimSiam trained")

    def _masks(self, labels, model):
        return labels, model.queue.labels


class SimCLR(Objective):
    """SimCLR's NT-Xent (Chen et al., arXiv 2002.05709) on the SimSiam projector, a batch loss."""

    name, title = "simclr", TITLES["simclr"]
    recipe = Recipe(base_lr=0.3, weight_decay=1e-6, source="SimCLR: lr 0.3 at batch 256, wd 1e-6 (SGD, not LARS)")

    def build_heads(self, model, lc, n_train_views):
        model.projector = SimSiamProjectionHead(model.backbone.dim, lc.proj_dim)

    def project(self, model, out, x1, x2, h1, h2):
        out.z1, out.z2 = model.projector(out.f1), model.projector(out.f2)

    def pair_loss(self, model, out, labels, lc):  # the batch loss has no per-pair form: HVS ranks by -cos
        return negative_cosine(out.z1.float(), out.z2.float())

    def batch_loss(self, model, out, labels, lc):
        return nt_xent_loss(out.z1, out.z2, lc.temperature)


class BarlowTwins(SimCLR):
    """Barlow Twins (Zbontar et al., arXiv 2103.03230) on the SimSiam projector, a batch loss."""

    name, title = "barlow", TITLES["barlow"]
    recipe = Recipe(base_lr=0.2, weight_decay=1.5e-6, source="Barlow Twins: lr 0.2 (weights), wd 1.5e-6 (SGD)")

    def batch_loss(self, model, out, labels, lc):
        scale = 1.0 / out.z1.shape[1] if lc.barlow_per_dimension else 1.0
        return barlow_twins_loss(out.z1, out.z2, lc.barlow_lambda, scale=scale)


#: ``learning.objective`` -> its class
OBJECTIVES: dict[str, type[Objective]] = {c.name: c for c in (SimSiam, MoCoV2, MoCoMasked, SimCLR, BarlowTwins,
                                                              Objective)}


def get_objective(name: str) -> Objective:
    try:
        return OBJECTIVES[name]()
    except KeyError:
        raise ConfigError(f"learning.objective: unknown objective {name!r} (known: {', '.join(OBJECTIVES)})") from None


def resolve_recipe(lc: LearningConfig) -> LearningConfig:
    """``lc`` with every recipe field left at -1 (any negative value) set from its objective's :class:`Recipe`."""
    recipe = get_objective(lc.objective).recipe
    return dataclasses.replace(lc, **{f: getattr(recipe, f) for f in RECIPE_FIELDS if getattr(lc, f) < 0})


def instance_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CrossIA's instance cross-entropy per sample (B,)."""
    return F.cross_entropy(logits.float(), labels, reduction="none")
