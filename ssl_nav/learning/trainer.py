"""``finetune``: fine-tuning of an instance encoder on a ViewStore (docs/finetuning.md).

Recipe (SimSiam, arXiv 2011.10566, with CrossIA, arXiv 2404.09645, on SimView's views, arXiv 2404.09647):

- The objective (``learning.objective``) is one class of :mod:`ssl_nav.learning.objectives`: its heads, losses,
  parameter groups, after-step hook and its :class:`~ssl_nav.learning.objectives.Recipe`, which fills
  ``base_lr``, ``weight_decay``, ``warmup_epochs`` and ``head_warmup_epochs`` where the configuration leaves -1
  (:func:`~ssl_nav.learning.objectives.resolve_recipe`; ``model.pt`` records the values that ran).
- SGD, momentum 0.9, lr = ``base_lr * batch_size / 256`` (``batch_size`` is the global batch across DDP ranks);
  linear warm-up for ``warmup_epochs`` then cosine decay to 0, set every step; the SimSiam predictor keeps the
  initial lr when ``fix_pred_lr`` (SimSiam §4.1). For the first ``head_warmup_epochs`` only the heads train
  (projector, predictor, classifier): the backbone's gradients are dropped before each step.
- Loss: the objective's loss on the projections, plus CrossIA's instance cross-entropy on the backbone features of
  both views (weight ``ce_weight``), plus outlier exposure on recoloured copies of the anchor views (weight ``recolour_oe_weight``,
  :mod:`ssl_nav.learning.outlier_exposure`), plus the optional LQ/HQ domain loss behind gradient reversal.
- Hard View Selection (arXiv 2310.03940): with ``hard_views = N > 1`` each anchor gets N candidate pairs; the
  current model scores them in train mode, without gradient and with its BatchNorm statistics restored
  afterwards, and the step trains on the highest-loss pair.
- AMP (float16 + GradScaler) only on CUDA; channels_last on CPU and CUDA (oneDNN's convolutions on CPU are
  faster in NHWC: benchmarks/bench_learning.py). A frozen stem (``trainable: last``/``heads``) runs as a
  BatchNorm-folded inference copy (:class:`ssl_nav.learning.backbones.FrozenStem`, ``fuse_frozen_stem``).
- A non-finite loss stops the run with :class:`TrainingError` before the weights are touched.
- ``checkpoint.pt`` every ``checkpoint_every`` epochs and after the last (atomic): model (with MoCo's key
  encoder and queue), optimizer, GradScaler, global step, epoch, RNG states (torch, numpy, python), the sampler
  state and the starting encoder's monitor figures. ``resume=True`` restores all of it, so the schedule and the
  data order continue exactly; ``metrics.jsonl`` is cut back to the checkpoint.
- Deterministic for a seed: model init, pair sampling and every augmentation come from seeded generators.
- DDP under ``torchrun`` (gloo on CPU, nccl on CUDA): ranks train on disjoint shards of each step's global
  batch; only rank 0 writes files, meters energy and runs the monitor.

The run is split into functions that follow the energy phases of ``energy.json`` (docs/energy.md), metered
from before the store is read to after ``model.pt`` is written: :func:`prepare_data` and each batch's loading
(phase ``data``), :func:`train_epoch` / :func:`train_step` with Hard View Selection's scoring (``train``),
:func:`monitor_starting_encoder` and :func:`monitor_epoch` (``monitor``), :func:`resume_run`, the metrics lines,
:func:`write_checkpoint` and :func:`export_model` (``checkpoint``); model building is ``other``.

Run directory: ``model.pt`` (see :func:`ssl_nav.learning.backbones.save_model`), ``metrics.jsonl``,
``energy.json``, ``checkpoint.pt``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssl_nav.atomic import atomic_write_json, atomic_write_text
from ssl_nav.config import LearningConfig, PipelineConfig, to_dict
from ssl_nav.device import resolve_device
from ssl_nav.energy.ledger import with_earlier_parts
from ssl_nav.energy.meter import EnergyMeter, append_ledger
from ssl_nav.errors import CheckpointError, ConfigError, TrainingError
from ssl_nav.learning.backbones import Backbone, FrozenStem, build_backbone, save_model
from ssl_nav.learning.catalog import describe
from ssl_nav.learning.checkpoint import (CHECKPOINT_FORMAT, load_checkpoint, load_init_checkpoint, rng_state,
                                         save_checkpoint, seed_everything, set_rng_state)
from ssl_nav.learning.crossia import DomainDiscriminator, InstanceClassifier
from ssl_nav.learning.data import StoreViews
from ssl_nav.learning.distributed import DistInfo, all_reduce_sum, barrier, init_distributed, shutdown
from ssl_nav.learning.moco import KeyQueue
from ssl_nav.learning.objectives import ForwardOut, Objective, get_objective, instance_ce, resolve_recipe
from ssl_nav.learning.outlier_exposure import outlier_exposure_loss, recolour

#: learning fields a resumed run must share with its checkpoint
RESUME_KEYS = ("backbone", "trainable", "objective", "proj_dim", "pred_hidden_dim", "batch_size", "image_size",
               "crossia", "ce_weight", "domain_adversarial", "hard_views", "seed", "augment", "holdout_fraction",
               "moco_dim", "moco_queue", "view_fraction")


# ---------------------------------------------------------------------------------------------------------
# the model


class FinetuneModel(nn.Module):
    """Backbone + the objective's heads (:mod:`ssl_nav.learning.objectives`) + CrossIA's instance classifier
    (+ the optional domain discriminator).

    The heads are attributes of the model, named as the official SimSiam code names them, so checkpoints load
    unchanged: ``projector`` (SimSiam, SimCLR, Barlow Twins, MoCo's MLP head), ``predictor`` (SimSiam), and MoCo's
    ``key_encoder`` and ``queue``. The classifier exists when ``ce_weight > 0`` and there are at least 2 instances.
    """

    def __init__(self, backbone: Backbone, lc: LearningConfig, n_classes: int, n_train_views: int = 0) -> None:
        super().__init__()
        self.backbone = backbone
        self.method: Objective = get_objective(lc.objective)
        self.projector: nn.Module | None = None
        self.predictor: nn.Module | None = None
        self.key_encoder: nn.Sequential | None = None
        self.queue: KeyQueue | None = None
        self.method.build_heads(self, lc, n_train_views)
        self.classifier = InstanceClassifier(backbone.dim, n_classes) if lc.ce_weight > 0 and n_classes > 1 else None
        self.discriminator = DomainDiscriminator(backbone.dim) if lc.domain_adversarial else None
        #: the BatchNorm-folded copy of a frozen stem (:meth:`fuse_frozen_stem`); not a submodule, not saved
        self.frozen_stem: FrozenStem | None = None

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, outliers: torch.Tensor | None = None) -> ForwardOut:
        stem = self.frozen_stem or self.backbone.stem
        h1, h2 = stem(x1), stem(x2)
        out = ForwardOut(self.backbone.head(h1), self.backbone.head(h2))
        self.method.project(self, out, x1, x2, h1, h2)
        if self.classifier is not None:
            out.c1, out.c2 = self.classifier(out.f1), self.classifier(out.f2)
            if outliers is not None:  # outlier exposure (recoloured views)
                out.c_out = self.classifier(self.backbone.head(stem(outliers)))
        if self.discriminator is not None:
            out.d1, out.d2 = self.discriminator(out.f1), self.discriminator(out.f2)
        return out

    @torch.no_grad()
    def keys(self, x: torch.Tensor, stem: torch.Tensor) -> torch.Tensor:
        """MoCo keys of ``x``. A frozen stem (``trainable: last`` or ``heads``) has the same weights in both
        encoders, so the query encoder's stem output is reused and the key encoder runs its last stage only."""
        key_backbone, key_head = self.key_encoder
        feats = key_backbone(x) if self.backbone.trainable == "all" else key_backbone.head(stem)
        return key_head(feats)

    def fuse_frozen_stem(self, memory_format: torch.memory_format = torch.contiguous_format) -> bool:
        """With a frozen stem (``trainable: last`` / ``heads``), run it from now on as a BatchNorm-folded
        inference copy (:class:`ssl_nav.learning.backbones.FrozenStem`). Call it once the weights are final
        (after ``init_checkpoint`` and resume). False when the stem trains or cannot be fused."""
        self.frozen_stem = None
        if self.backbone.trainable == "all":
            return False
        try:
            stem = FrozenStem(self.backbone)
        except Exception as e:  # a stem whose BatchNorms cannot be folded: the unfused stem is the same function
            warnings.warn(f"learning: frozen stem of {self.backbone.name} not fused ({type(e).__name__}: {e})")
            return False
        device = next(self.backbone.parameters()).device
        self.frozen_stem = stem.to(device=device, memory_format=memory_format)
        return True

    @torch.no_grad()
    def sync_key_encoder(self) -> None:
        """MoCo: the key encoder starts as a copy of the query encoder (after any init checkpoint is loaded)."""
        if self.key_encoder is not None:
            self.key_encoder.load_state_dict(nn.Sequential(self.backbone, self.projector).state_dict())

    def export_state(self) -> dict[str, torch.Tensor]:
        """What ``model.pt`` keeps: the encoder, the objective's heads and the instance classifier (its rows are
        the store's instances, ``extra["class_ids"]``); not the key encoder, queue or discriminator."""
        keep = ("backbone.", "projector.", "predictor.", "classifier.")
        return {k: v for k, v in self.state_dict().items() if k.startswith(keep)}


# ---------------------------------------------------------------------------------------------------------
# losses


def hardness(model: FinetuneModel, out: ForwardOut, labels: torch.Tensor, lc: LearningConfig) -> torch.Tensor:
    """The per-pair training loss Hard View Selection ranks candidates by: objective + weighted cross-entropy."""
    h = torch.zeros(len(labels), device=labels.device)
    ssl = model.method.pair_loss(model, out, labels, lc)
    if ssl is not None:
        h = h + ssl.float()
    if out.c1 is not None and lc.ce_weight > 0:
        h = h + lc.ce_weight * 0.5 * (instance_ce(out.c1, labels) + instance_ce(out.c2, labels))
    return h


def total_loss(model: FinetuneModel, out: ForwardOut, batch: dict[str, torch.Tensor], lc: LearningConfig
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The objective's loss + ``ce_weight`` x instance cross-entropy + ``recolour_oe_weight`` x outlier exposure on
    recoloured views + ``domain_weight`` x domain loss, and the parts."""
    labels = batch["label"]
    parts: dict[str, torch.Tensor] = {}
    ssl = model.method.batch_loss(model, out, labels, lc)
    if ssl is not None:
        parts["loss_ssl"] = ssl
    if out.c1 is not None and lc.ce_weight > 0:
        parts["loss_ce"] = 0.5 * (instance_ce(out.c1, labels) + instance_ce(out.c2, labels)).mean()
    if out.c_out is not None:
        parts["loss_oe"] = outlier_exposure_loss(out.c_out)
    if out.d1 is not None:
        dom = lambda d, y: F.cross_entropy(d.float(), y)  # noqa: E731
        parts["loss_domain"] = 0.5 * (dom(out.d1, batch["dom1"]) + dom(out.d2, batch["dom2"]))
    if not parts:
        raise ConfigError("learning: nothing to train: objective is 'none' and there is no instance classifier "
                          "(ce_weight 0, or a store with a single instance)")
    weights = {"loss_ssl": 1.0, "loss_ce": lc.ce_weight, "loss_oe": lc.recolour_oe_weight,
               "loss_domain": lc.domain_weight}
    loss = sum(weights[k] * v for k, v in parts.items())
    return loss, {k: v.detach() for k, v in parts.items()}


# ---------------------------------------------------------------------------------------------------------
# Hard View Selection


@contextlib.contextmanager
def bn_stats_kept(model: nn.Module) -> Iterator[None]:
    """Run ``model`` in train mode and put its BatchNorm running statistics back afterwards. Only the BatchNorms
    that train mode updates are touched: a frozen stem stays in eval mode, and writing its buffers back would
    invalidate its BatchNorm-folded copy (:class:`ssl_nav.learning.backbones.FrozenStem`)."""
    was = model.training
    model.train()
    bns = [m for m in model.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.training]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in bns]
    try:
        yield
    finally:
        model.train(was)
        for m, (mean, var, n) in zip(bns, saved):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(n)


@torch.no_grad()
def select_hard_views(model: FinetuneModel, batch: dict[str, torch.Tensor], lc: LearningConfig,
                      autocast: Callable[[], Any] = contextlib.nullcontext
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hard View Selection (arXiv 2310.03940): forward the N candidate pairs of each anchor through the current
    model in train mode, and keep each anchor's highest-loss pair. Returns (x1, x2, dom2) of the chosen pairs."""
    x1, x2, dom2 = batch["x1"], batch["x2"], batch["dom2"]
    b, n = x1.shape[:2]
    labels = batch["label"].repeat_interleave(n)
    with bn_stats_kept(model), autocast():
        out = model(x1.flatten(0, 1), x2.flatten(0, 1))
        scores = hardness(model, out, labels, lc).float().view(b, n)
    pick = scores.argmax(dim=1)
    rows = torch.arange(b, device=x1.device)
    return x1[rows, pick], x2[rows, pick], dom2[rows, pick]


# ---------------------------------------------------------------------------------------------------------
# schedule


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up to 1 over ``warmup_steps``, then half-cosine to 0 at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))


def make_optimizer(model: FinetuneModel, lc: LearningConfig) -> tuple[torch.optim.SGD, float]:
    """SGD over the objective's parameter groups, lr = ``base_lr * batch_size / 256``."""
    init_lr = lc.base_lr * lc.batch_size / 256
    groups = [g for g in model.method.param_groups(model, lc) if g["params"]]
    return torch.optim.SGD(groups, lr=init_lr, momentum=lc.momentum, weight_decay=lc.weight_decay), init_lr


def set_lr(opt: torch.optim.Optimizer, init_lr: float, factor: float) -> float:
    for g in opt.param_groups:
        g["lr"] = init_lr if g.get("fix_lr") else init_lr * factor
    return init_lr * factor


# ---------------------------------------------------------------------------------------------------------
# the run: state and phases


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns. ``model`` is the trained module (rank-local under DDP)."""

    run_dir: Path
    model_path: Path | None
    metrics: list[dict]
    energy: dict
    summary: dict
    model: nn.Module | None = field(default=None, repr=False)


@dataclass
class TrainData:
    """Data preparation's product: the split views, their image cache, the pair loader and the monitor set."""

    sv: StoreViews
    cache: Any
    sampler: Any
    loader: torch.utils.data.DataLoader
    mon_loader: torch.utils.data.DataLoader
    mon_labels: np.ndarray
    mon_holdout: np.ndarray


@dataclass
class Run:
    """Everything one fine-tune carries from phase to phase."""

    cfg: PipelineConfig
    lc: LearningConfig
    store: Path
    run_dir: Path
    dd: DistInfo
    device: torch.device
    data: TrainData
    model: FinetuneModel
    train_model: nn.Module  # the model, or its DDP wrapper
    opt: torch.optim.Optimizer
    init_lr: float
    scaler: torch.amp.GradScaler
    total_steps: int
    warmup_steps: int
    init_from: str
    head_warmup_steps: int = 0
    step: int = 0
    start_epoch: int = 0
    metrics: list[dict] = field(default_factory=list)
    monitor_start: dict = field(default_factory=dict)

    @property
    def is_main(self) -> bool:
        return self.dd.rank == 0

    @property
    def use_amp(self) -> bool:
        return self.device.type == "cuda" and self.lc.amp

    @property
    def channels_last(self) -> bool:
        return self.lc.channels_last

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.float16, enabled=self.use_amp)

    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"


def prepare_data(store: Path, lc: LearningConfig, dd: DistInfo, on_cuda: bool, progress: bool,
                 meter: EnergyMeter) -> TrainData:
    """Phase *data*: read the store, keep ``view_fraction`` of its robot views, split them, decode them into the
    cache (counted as images), build the loaders."""
    from ssl_nav.learning.data import (Augment, EvalDataset, ImageCache, PairDataset, PairSampler, open_store,
                                       split_views, subsample_views)

    st = open_store(store)
    views = subsample_views(st.views(), lc.view_fraction, lc.seed)
    sv = split_views(views, lc.holdout_fraction, lc.seed, lc.crossia)
    cache = ImageCache(st, sv.views, lc.cache_images, lc.cache_max_mb)
    cache.fill(progress=progress and dd.rank == 0)
    if cache.enabled:
        meter.count(images=len(sv.views))
    sampler = PairSampler(sv, lc.batch_size, lc.seed, lc.crossia, lc.hard_views, dd.rank, dd.world)
    loader = torch.utils.data.DataLoader(
        PairDataset(sv, cache, Augment(lc.augment, lc.image_size)), batch_size=sampler.batch_per_rank,
        sampler=sampler, num_workers=lc.num_workers, pin_memory=on_cuda, drop_last=False, persistent_workers=False)
    mon_idx = monitor_views(sv, lc.monitor_max_views, lc.seed)
    mon_loader = torch.utils.data.DataLoader(EvalDataset(mon_idx, cache, lc.image_size),
                                             batch_size=max(2, sampler.batch_per_rank), shuffle=False)
    return TrainData(sv, cache, sampler, loader, mon_loader, sv.labels[mon_idx], np.isin(mon_idx, sv.holdout))


def monitor_views(sv: StoreViews, max_views: int, seed: int) -> np.ndarray:
    """The views the monitor embeds: all held-out views, then a seeded subset of the rest up to ``max_views``."""
    idx = np.arange(len(sv.views))
    if len(idx) <= max_views:
        return idx
    rest = np.setdiff1d(idx, sv.holdout)
    n_rest = max(0, max_views - len(sv.holdout))
    chosen = np.random.default_rng([seed, 31]).choice(rest, size=min(n_rest, len(rest)), replace=False)
    return np.array(sorted(set(sv.holdout.tolist()) | set(chosen.tolist())), dtype=np.int64)


def build_model(lc: LearningConfig, sv: StoreViews) -> tuple[FinetuneModel, str]:
    """The seeded model: ImageNet (or random) backbone, heads, ``init_checkpoint`` when given."""
    seed_everything(lc.seed)
    backbone, imagenet = build_backbone(lc.backbone, pretrained=lc.pretrained)
    model = FinetuneModel(backbone, lc, sv.n_classes, len(sv.train))
    if model.projector is None and model.classifier is None:
        raise ConfigError("learning.objective: 'none' trains only the instance classifier, which needs "
                          "learning.ce_weight > 0 and a store with at least 2 instances")
    init_from = "imagenet" if imagenet else "random"
    if lc.init_checkpoint:
        init_from = load_init_checkpoint(model, lc.init_checkpoint)
    backbone.set_trainable(lc.trainable)
    model.sync_key_encoder()
    if model.key_encoder is not None:
        model.key_encoder[0].set_trainable(lc.trainable)
        model.key_encoder.requires_grad_(False)
    return model, init_from


def setup_run(store: Path, out: Path, cfg: PipelineConfig, dd: DistInfo, device: torch.device, progress: bool,
              meter: EnergyMeter) -> Run:
    """Set-up: data (phase *data*), model, optimiser, schedule (no resume yet). The objective's recipe fills the
    learning fields left at -1 (:func:`~ssl_nav.learning.objectives.resolve_recipe`); ``run.cfg`` holds the result."""
    cfg = dataclasses.replace(cfg, learning=resolve_recipe(cfg.learning))
    lc = cfg.learning
    with meter.phase("data"):
        data = prepare_data(store, lc, dd, device.type == "cuda", progress, meter)
    model, init_from = build_model(lc, data.sv)
    model.to(device)
    if lc.channels_last:
        model.to(memory_format=torch.channels_last)
    opt, init_lr = make_optimizer(model, lc)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and lc.amp)
    spe = data.sampler.steps_per_epoch
    train_model: nn.Module = model
    if dd.active:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                          else None)
    return Run(cfg, lc, store, out, dd, device, data, model, train_model, opt, init_lr, scaler,
               total_steps=spe * lc.epochs, warmup_steps=spe * lc.warmup_epochs, init_from=init_from,
               head_warmup_steps=spe * lc.head_warmup_epochs)


def resume_run(run: Run) -> bool:
    """Phase *resume*: restore model, optimiser, scaler, RNGs, sampler, step and metrics from ``checkpoint.pt``.
    False (and nothing changed) when there is no checkpoint."""
    if not run.ckpt_path.is_file():
        run.init_from += f" (nothing to resume: no {run.ckpt_path})"
        return False
    ckpt, lc = load_checkpoint(run.ckpt_path), run.lc
    for key in RESUME_KEYS:
        if ckpt["config"].get(key, getattr(lc, key)) != getattr(lc, key):
            raise ConfigError(f"{run.ckpt_path}: cannot resume with learning.{key} = {getattr(lc, key)!r}; "
                              f"the checkpoint has {ckpt['config'].get(key)!r}")
    if ckpt.get("class_ids") != run.data.sv.class_ids:
        raise TrainingError(f"{run.ckpt_path}: the store's instances changed since the checkpoint; "
                            f"start a new run instead of --resume")
    try:
        run.model.load_state_dict(ckpt["model"])
        run.opt.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            run.scaler.load_state_dict(ckpt["scaler"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{run.ckpt_path}: does not fit this model ({str(e).splitlines()[0][:200]})") from None
    set_rng_state(ckpt["rng"])
    run.data.sampler.load_state_dict(ckpt["sampler"])
    run.start_epoch, run.step = int(ckpt["epoch"]), int(ckpt["step"])
    run.monitor_start = dict(ckpt.get("monitor_start") or {})
    run.metrics = _read_metrics(run.metrics_path, run.start_epoch)
    run.init_from = f"resumed from {run.ckpt_path.name} after epoch {run.start_epoch}"
    return True


@dataclass
class StepResult:
    loss: float
    parts: dict[str, torch.Tensor]
    pairs: int  # pairs trained on this rank
    stop: bool


def train_step(run: Run, batch: dict[str, torch.Tensor], should_stop: Callable[[], bool] | None) -> StepResult:
    """One optimisation step: forward, loss, backward, step (then MoCo's momentum update and enqueue)."""
    x1, x2, batch["dom2"] = pick_views(run, batch)
    set_lr(run.opt, run.init_lr, lr_factor(run.step, run.total_steps, run.warmup_steps))
    outliers = None
    if exposes_outliers(run):  # seeded per step and rank: resumable
        outliers = recolour(x1, torch.Generator().manual_seed(run.lc.seed * 1_000_003 + run.step * 97 + run.dd.rank))
    with run.autocast():
        out = run.train_model(x1, x2, outliers)
        loss, parts = total_loss(run.model, out, batch, run.lc)
    loss_v, stop = reduce_and_check(run, loss, should_stop)  # raises on a non-finite loss, before the step
    run.opt.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if run.step < run.head_warmup_steps:  # heads-only warm-up: the backbone gets no update (nor weight decay)
        for p in run.model.backbone.parameters():
            p.grad = None
    run.scaler.step(run.opt)
    run.scaler.update()
    run.model.method.after_step(run.model, out, batch["label"], run.lc)
    run.step += 1
    return StepResult(loss_v, parts, x1.shape[0], stop)


def exposes_outliers(run: Run) -> bool:
    """Whether each step also trains the classifier on recoloured anchors (outlier exposure)."""
    return run.lc.recolour_oe_weight > 0 and run.model.classifier is not None


def forwarded_images(batch: dict[str, torch.Tensor], outliers: bool = False) -> int:
    """Images a step of this (rank-local) batch sends through the model: both views of every candidate pair
    when Hard View Selection scores them, plus both views of the pair trained on, plus the recoloured anchors
    with ``outliers``. MoCo's key encoder sees the same images again; that pass is part of the step's cost and is
    not counted twice."""
    b, n = batch["x1"].shape[:2]
    return 2 * b * (n + 1 if n > 1 else 1) + (b if outliers else 0)


def augmented_images(batch: dict[str, torch.Tensor]) -> int:
    """Images the DataLoader augmented for this batch: both sides of every candidate pair."""
    b, n = batch["x1"].shape[:2]
    return 2 * b * n


def pick_views(run: Run, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pair each anchor trains on: the hardest of its candidates (HVS), or its only one."""
    if batch["x1"].shape[1] > 1:
        x1, x2, dom2 = select_hard_views(run.model, batch, run.lc, run.autocast)
    else:
        x1, x2, dom2 = batch["x1"][:, 0], batch["x2"][:, 0], batch["dom2"][:, 0]
    if run.channels_last:
        x1, x2 = (x.contiguous(memory_format=torch.channels_last) for x in (x1, x2))
    return x1, x2, dom2


def reduce_and_check(run: Run, loss: torch.Tensor, should_stop: Callable[[], bool] | None) -> tuple[float, bool]:
    """The loss averaged over ranks and whether any rank asked to stop; a non-finite loss raises TrainingError."""
    stop_local = float(bool(should_stop and should_stop()))
    red = torch.stack([loss.detach().float(), torch.tensor(stop_local, device=loss.device)])
    all_reduce_sum(run.dd, red)
    loss_v = float(red[0]) / run.dd.world
    if not math.isfinite(loss_v):
        raise TrainingError(f"non-finite loss ({loss_v}) at step {run.step + 1}: lower learning.base_lr "
                            f"(now {run.lc.base_lr}) or check the views in {run.store}")
    return loss_v, float(red[1]) > 0


def train_epoch(run: Run, epoch: int, meter: EnergyMeter, should_stop: Callable[[], bool] | None = None,
                bar=None) -> tuple[dict, bool]:
    """One epoch: each batch's loading and augmentation in phase *data*, each step in phase *train* (images
    counted for all ranks: rank 0 meters the node). Returns the epoch's metrics line (means of the step
    figures) and whether the run was cancelled."""
    run.data.sampler.set_epoch(epoch)
    run.model.train()
    sums: dict[str, float] = {}
    n_steps, pairs, t0 = 0, 0, time.monotonic()
    cancelled = False
    world = run.dd.world
    for batch in meter.iterate(run.data.loader, "data", images=lambda b: augmented_images(b) * world):
        with meter.phase("train"):
            batch = {k: v.to(run.device, non_blocking=True) for k, v in batch.items()}
            res = train_step(run, batch, should_stop)
            meter.count(images=forwarded_images(batch, exposes_outliers(run)) * world, steps=1)
        n_steps += 1
        pairs += res.pairs * world
        for k, v in {"loss": res.loss, **res.parts}.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{res.loss:.4f}")
        if res.stop:
            cancelled = True
            break
    epoch_s = time.monotonic() - t0
    line = {"epoch": epoch + 1, "step": run.step, "lr": run.init_lr * lr_factor(max(0, run.step - 1), run.total_steps,
                                                                                  run.warmup_steps),
            "epoch_s": round(epoch_s, 3), "images": 2 * pairs,
            "images_per_s": (2 * pairs / epoch_s) if epoch_s > 0 else None,
            **{k: v / max(1, n_steps) for k, v in sums.items()}}
    return line, cancelled


def monitor_epoch(run: Run, meter: EnergyMeter) -> dict:
    """Phase *monitor*: the label-free figures of the current encoder (eval mode), with the collapse verdict
    against the starting encoder (:mod:`ssl_nav.learning.monitor`)."""
    from ssl_nav.learning.monitor import embed, epoch_metrics

    d = run.data
    with meter.phase("monitor"):
        feats = embed(run.model.backbone, d.mon_loader, run.device, run.channels_last)
        meter.count(images=len(d.mon_labels))
        return epoch_metrics(feats, d.mon_labels, d.mon_holdout, run.monitor_start, run.lc.collapse_threshold,
                             run.lc.seed)


def monitor_starting_encoder(run: Run, meter: EnergyMeter) -> dict:
    """Phase *monitor*, before the first step: the starting encoder's figures, the reference for collapse."""
    from ssl_nav.learning.monitor import embed, embedding_metrics

    d = run.data
    with meter.phase("monitor"):
        feats = embed(run.model.backbone, d.mon_loader, run.device, run.channels_last)
        meter.count(images=len(d.mon_labels))
        metrics = embedding_metrics(feats, d.mon_labels, d.mon_holdout, run.lc.seed)
    return {k: _jsonable(v) for k, v in metrics.items()}


def write_checkpoint(run: Run, epoch: int) -> None:
    """Phase *checkpoint*: everything :func:`resume_run` restores, written atomically (rank 0)."""
    save_checkpoint(run.ckpt_path, {
        "format": CHECKPOINT_FORMAT, "epoch": epoch, "step": run.step, "model": run.model.state_dict(),
        "optimizer": run.opt.state_dict(), "scaler": run.scaler.state_dict() if run.use_amp else {},
        "rng": rng_state(), "sampler": {"seed": run.data.sampler.seed, "epoch": epoch},
        "config": to_dict(run.lc), "class_ids": run.data.sv.class_ids, "monitor_start": run.monitor_start})


def export_model(run: Run) -> tuple[Path, str]:
    """Phase *export*: ``model.pt`` with the encoder, heads and instance classifier; returns (path, hash)."""
    path = run.run_dir / "model.pt"
    digest = save_model(path, run.model.export_state(), backbone=run.lc.backbone,
                        embedding_dim=run.model.backbone.dim, image_size=run.lc.image_size, config=to_dict(run.lc),
                        extra={"init_from": run.init_from, "class_ids": run.data.sv.class_ids})
    return path, digest


# ---------------------------------------------------------------------------------------------------------
# finetune


def _read_metrics(path: Path, upto_epoch: int) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            m = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill: dropped, the epoch is re-run
        if m.get("epoch", 10**9) <= upto_epoch:
            out.append(m)
    return out


def _append_line(path: Path, obj: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(obj) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _jsonable(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return float(x)
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x


def finetune(store: str | Path, out: str | Path, cfg: PipelineConfig, *, resume: bool = False, progress: bool = True,
             on_epoch: Callable[[dict], None] | None = None, should_stop: Callable[[], bool] | None = None,
             ledger: str | Path | None = None) -> FinetuneResult:
    """Fine-tune the encoder on the views of ``store``; write the run directory ``out`` (see module docstring).

    ``on_epoch(metrics_line)`` is called after every epoch (rank 0); ``should_stop()`` is polled after every step
    and ends the run early with ``summary["status"] == "cancelled"`` (no model.pt is written then; the last
    epoch checkpoint stays for ``resume``). ``ledger``: append the EnergyRecord to this ``energy.jsonl``.

    The energy meter opens before the store is read and closes after ``model.pt`` is written, so the record
    covers the whole fine-tune in phases ``data``, ``train``, ``monitor``, ``checkpoint`` (and ``other``:
    model building, start-up); ``energy.json`` and the ledger line are written after it closes.
    """
    lc = cfg.learning
    out = Path(out)
    dd = init_distributed("cuda" if lc.device == "cuda" or (lc.device == "auto" and torch.cuda.is_available())
                           else "cpu")
    try:
        t_start = time.monotonic()
        device = resolve_device(lc.device, "learning.device", dd.local_rank if dd.active else None)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if lc.threads > 0:
            torch.set_num_threads(lc.threads)
        if dd.rank == 0:
            out.mkdir(parents=True, exist_ok=True)
        run_id = f"{out.name}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
        # rank 0 meters the whole node (NVML sees every GPU, RAPL every package); other ranks measure nothing
        meter = EnergyMeter(cfg.energy if dd.rank == 0 else dataclasses.replace(cfg.energy, backend="none"),
                            run_id=run_id, sync=torch.cuda.synchronize if device.type == "cuda" else None)
        model_path = model_hash = None
        with meter:
            run = setup_run(Path(store), out, cfg, dd, device, progress, meter)
            with meter.phase("checkpoint"):
                if resume:
                    resume_run(run)
                if run.is_main:
                    atomic_write_text(run.metrics_path, "".join(json.dumps(m) + "\n" for m in run.metrics))
            if run.is_main and not run.monitor_start:
                run.monitor_start = monitor_starting_encoder(run, meter)
            if lc.fuse_frozen_stem:  # the weights are final now (init checkpoint, resume)
                run.model.fuse_frozen_stem(torch.channels_last if run.channels_last else torch.contiguous_format)
            with _progress_bar(run, progress) as bar:
                status, train_s, images = _epochs(run, meter, on_epoch, should_stop, bar)
            if run.is_main and status == "completed":
                with meter.phase("checkpoint"):
                    model_path, model_hash = export_model(run)
            meter.extra.update({"run_dir": str(run.run_dir), "world_size": dd.world, "device": str(run.device),
                                "backbone": lc.backbone, "objective": lc.objective, "trainable": lc.trainable,
                                "view_fraction": lc.view_fraction, "status": status})
        energy = meter.record or {}
        if run.is_main and resume:  # energy.json covers the whole run: the parts before the resume too
            energy = with_earlier_parts(energy, run.run_dir, run.step - int(energy.get("steps") or 0), ledger)
        if run.is_main:
            atomic_write_json(run.run_dir / "energy.json", energy)
            if ledger is not None:
                append_ledger(Path(ledger), energy)
        summary = _summary(run, status, time.monotonic() - t_start, train_s, images, energy, model_hash)
        return FinetuneResult(run.run_dir, model_path, run.metrics, energy, summary, run.model)
    finally:
        shutdown(dd)


@contextlib.contextmanager
def _progress_bar(run: Run, progress: bool):
    if not (progress and run.is_main):
        yield None
        return
    from ssl_nav.progress import tqdm

    bar = tqdm(total=run.total_steps, initial=run.step, desc="finetune", unit="step", dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()


def _epochs(run: Run, meter: EnergyMeter, on_epoch, should_stop, bar) -> tuple[str, float, int]:
    """The epochs from ``run.start_epoch``: train, monitor, log, checkpoint. Returns (status, train s, images)."""
    lc, train_s, images = run.lc, 0.0, 0
    for epoch in range(run.start_epoch, lc.epochs):
        line, cancelled = train_epoch(run, epoch, meter, should_stop, bar)
        train_s += line["epoch_s"]
        images += line["images"]
        if cancelled:
            return "cancelled", train_s, images
        last = epoch + 1 == lc.epochs
        if run.is_main and ((epoch + 1) % lc.monitor_every == 0 or last):
            line.update(monitor_epoch(run, meter))
        line = {k: _jsonable(v) for k, v in line.items()}
        if run.is_main:
            with meter.phase("checkpoint"):
                _append_line(run.metrics_path, line)  # before the checkpoint: a resume cuts lines past it
                if (epoch + 1) % lc.checkpoint_every == 0 or last:
                    write_checkpoint(run, epoch + 1)
        run.metrics.append(line)
        barrier(run.dd)
        if on_epoch is not None and run.is_main:
            on_epoch(line)
    return "completed", train_s, images


def _summary(run: Run, status: str, wall_s: float, train_s: float, images: int, energy: dict,
             model_hash: str | None) -> dict:
    last = run.metrics[-1] if run.metrics else {}
    monitored = next((m for m in reversed(run.metrics) if "eff_rank" in m), {})
    return {"status": status, "run_dir": str(run.run_dir), "objective": describe(run.lc), "lr": run.init_lr,
            "weight_decay": run.lc.weight_decay, "warmup_epochs": run.lc.warmup_epochs,
            "head_warmup_epochs": run.lc.head_warmup_epochs, "epochs": run.lc.epochs, "epochs_done": len(run.metrics),
            "wall_s": round(wall_s, 2),
            "train_s": round(train_s, 2), "images": images, "images_per_s": (images / train_s) if train_s > 0 else None,
            "final_loss": last.get("loss"), "emb_std_sqrt_d": monitored.get("emb_std_sqrt_d"),
            "eff_rank": monitored.get("eff_rank"), "silhouette": monitored.get("silhouette"),
            "knn_top1": monitored.get("knn_top1"), "kmeans_ari": monitored.get("kmeans_ari"),
            "collapse_warning": monitored.get("collapse_warning"), "monitor_start": run.monitor_start,
            "energy_j": (energy.get("joules") or {}).get("total"), "avg_w": energy.get("avg_w"),
            "energy_source": energy.get("source"), "model_hash": model_hash, "init_from": run.init_from,
            "device": str(run.device), "world_size": run.dd.world, "n_views": len(run.data.sv.views),
            "n_instances": run.data.sv.n_classes, "n_holdout": int(len(run.data.sv.holdout)),
            "image_cache": run.data.cache.enabled}
