"""``finetune``: SimSiam (+ CrossIA) fine-tuning of an instance encoder on a ViewStore.

Recipe (SimSiam, arXiv 2011.10566; CrossIA, arXiv 2404.09645; SimView, arXiv 2404.09647):

- SGD, momentum 0.9, weight decay 1e-4, lr = ``base_lr * batch_size / 256`` (``batch_size`` is the global
  batch across DDP ranks); linear warm-up for ``warmup_epochs`` then cosine decay to 0, set every step; the
  predictor keeps the initial lr when ``fix_pred_lr`` (SimSiam §4.1).
- Loss: SimSiam (or SimCLR / Barlow Twins, :mod:`ssl_nav.learning.objectives`), plus CrossIA's instance
  cross-entropy on the backbone features of both views (weight ``ce_weight``), plus the optional LQ/HQ domain
  loss behind gradient reversal.
- Hard View Selection (arXiv 2310.03940): with ``hard_views = N > 1`` each anchor gets N candidate pairs, the
  current model scores them (no gradient, eval mode) and the step trains on the highest-loss pair.
- AMP (float16 + GradScaler) and channels_last only on CUDA.
- A non-finite loss stops the run with :class:`TrainingError` before the weights are touched.
- ``checkpoint.pt`` every ``checkpoint_every`` epochs and after the last (atomic): model, optimizer, GradScaler,
  global step, epoch, RNG states (torch, numpy, python) and the sampler state. ``resume=True`` restores all of
  it, so the schedule and the data order continue exactly; ``metrics.jsonl`` is cut back to the checkpoint.
- Deterministic for a seed: model init, pair sampling and every augmentation come from seeded generators.
- DDP under ``torchrun`` (gloo on CPU, nccl on CUDA): ranks train on disjoint shards of each step's global
  batch; only rank 0 writes files, meters energy and runs the monitor.

Run directory: ``model.pt`` (see :func:`ssl_nav.learning.backbones.save_model`), ``metrics.jsonl``,
``energy.json``, ``checkpoint.pt``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssl_nav.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from ssl_nav.config import LearningConfig, PipelineConfig, to_dict
from ssl_nav.errors import CheckpointError, ConfigError, TrainingError
from ssl_nav.learning.backbones import (Backbone, backbone_state_from_model, build_backbone, is_model_file,
                                        official_simsiam_parts, read_model, read_official_simsiam, safe_load,
                                        save_model, _load_into)
from ssl_nav.learning.crossia import DomainDiscriminator, InstanceClassifier
from ssl_nav.learning.objectives import barlow_twins_loss, nt_xent_loss
from ssl_nav.learning.simsiam import (SimSiamPredictionHead, SimSiamProjectionHead, negative_cosine,
                                      simsiam_loss, simsiam_loss_per_sample)

CHECKPOINT_FORMAT = "ssl_nav.checkpoint/1"
#: learning fields a resumed run must share with its checkpoint
RESUME_KEYS = ("backbone", "trainable", "objective", "proj_dim", "pred_hidden_dim", "batch_size", "image_size",
               "crossia", "domain_adversarial", "hard_views", "seed", "augment", "holdout_fraction")


# ---------------------------------------------------------------------------------------------------------
# the model


class FinetuneModel(nn.Module):
    """Backbone + SimSiam projector (+ predictor for SimSiam) (+ CrossIA classifier, domain discriminator)."""

    def __init__(self, backbone: Backbone, lc: LearningConfig, n_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = SimSiamProjectionHead(backbone.dim, lc.proj_dim)
        self.predictor = SimSiamPredictionHead(lc.proj_dim, lc.pred_hidden_dim) if lc.objective == "simsiam" else None
        self.classifier = InstanceClassifier(backbone.dim, n_classes) if lc.crossia and n_classes > 1 else None
        self.discriminator = DomainDiscriminator(backbone.dim) if lc.domain_adversarial else None

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> dict[str, torch.Tensor]:
        f1, f2 = self.backbone(x1), self.backbone(x2)
        z1, z2 = self.projector(f1), self.projector(f2)
        out = {"f1": f1, "f2": f2, "z1": z1, "z2": z2}
        if self.predictor is not None:
            out["p1"], out["p2"] = self.predictor(z1), self.predictor(z2)
        if self.classifier is not None:
            out["c1"], out["c2"] = self.classifier(f1), self.classifier(f2)
        if self.discriminator is not None:
            out["d1"], out["d2"] = self.discriminator(f1), self.discriminator(f2)
        return out

    def export_state(self) -> dict[str, torch.Tensor]:
        """What ``model.pt`` keeps: the encoder and the SimSiam heads (not the store-specific classifier)."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(("backbone.", "projector.", "predictor."))}


def objective_loss(out: dict[str, torch.Tensor], lc: LearningConfig) -> torch.Tensor:
    if lc.objective == "simsiam":
        return simsiam_loss(out["p1"], out["p2"], out["z1"], out["z2"])
    if lc.objective == "simclr":
        return nt_xent_loss(out["z1"], out["z2"], lc.temperature)
    return barlow_twins_loss(out["z1"], out["z2"], lc.barlow_lambda)


def hardness(out: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-pair loss used by Hard View Selection: SimSiam's when there is a predictor, else -cos(z1, z2)."""
    if "p1" in out:
        return simsiam_loss_per_sample(out["p1"], out["p2"], out["z1"], out["z2"])
    return negative_cosine(out["z1"], out["z2"])


def total_loss(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], lc: LearningConfig
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """Objective + CrossIA cross-entropy + domain loss, with the parts for logging."""
    ssl = objective_loss(out, lc)
    loss = ssl
    parts = {"loss_ssl": ssl.detach()}
    if "c1" in out and lc.ce_weight > 0:
        ce = 0.5 * (F.cross_entropy(out["c1"].float(), batch["label"]) + F.cross_entropy(out["c2"].float(), batch["label"]))
        loss = loss + lc.ce_weight * ce
        parts["loss_ce"] = ce.detach()
    if "d1" in out:
        dom = 0.5 * (F.cross_entropy(out["d1"].float(), batch["dom1"]) + F.cross_entropy(out["d2"].float(), batch["dom2"]))
        loss = loss + lc.domain_weight * dom
        parts["loss_domain"] = dom.detach()
    return loss, parts


# ---------------------------------------------------------------------------------------------------------
# schedule


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up to 1 over ``warmup_steps``, then half-cosine to 0 at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))


def make_optimizer(model: FinetuneModel, lc: LearningConfig) -> tuple[torch.optim.SGD, float]:
    init_lr = lc.base_lr * lc.batch_size / 256
    pred_ids = {id(p) for p in model.predictor.parameters()} if model.predictor is not None else set()
    main = [p for p in model.parameters() if p.requires_grad and id(p) not in pred_ids]
    groups = [{"params": main, "fix_lr": False}]
    if pred_ids:
        groups.append({"params": [p for p in model.predictor.parameters() if p.requires_grad],
                       "fix_lr": lc.fix_pred_lr})
    opt = torch.optim.SGD(groups, lr=init_lr, momentum=lc.momentum, weight_decay=lc.weight_decay)
    return opt, init_lr


def set_lr(opt: torch.optim.Optimizer, init_lr: float, factor: float) -> float:
    for g in opt.param_groups:
        g["lr"] = init_lr if g.get("fix_lr") else init_lr * factor
    return init_lr * factor


# ---------------------------------------------------------------------------------------------------------
# RNG state, checkpoints


def rng_state() -> dict:
    np_state = np.random.get_state(legacy=False)
    py = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                      "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                      "gauss": float(np_state["gauss"])},
            "python": {"version": py[0], "state": list(py[1]), "gauss": py[2]}}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937", "state": {"key": n["key"].numpy().astype(np.uint32),
                                                               "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def save_checkpoint(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    """Read ``checkpoint.pt``; a corrupt or foreign file raises CheckpointError naming it."""
    ckpt = safe_load(path, "checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an ssl_nav checkpoint (missing format '{CHECKPOINT_FORMAT}')")
    for key in ("model", "optimizer", "epoch", "step", "rng", "sampler", "config"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: missing key '{key}'")
    return ckpt


def load_init_checkpoint(model: FinetuneModel, spec: str) -> str:
    """Start from an official SimSiam checkpoint or our model.pt: backbone always, heads when their shapes fit."""
    path = Path(spec)
    obj = safe_load(path, "init checkpoint")
    if is_model_file(obj):
        obj = read_model(path)
        if obj["backbone"] != model.backbone.name:
            raise ConfigError(f"learning.init_checkpoint: {path} is a {obj['backbone']} model, "
                              f"but learning.backbone is {model.backbone.name}")
        bstate = backbone_state_from_model(obj)
        heads = {h: {k[len(h) + 1:]: v for k, v in obj["state_dict"].items() if k.startswith(h + ".")}
                 for h in ("projector", "predictor")}
        kind = "model.pt"
    else:
        bstate, proj, pred = official_simsiam_parts(read_official_simsiam(path), path)
        heads, kind = {"projector": proj, "predictor": pred}, "official SimSiam checkpoint"
    _load_into(model.backbone.net, bstate, path, "backbone")
    loaded = ["backbone"]
    for name, state in heads.items():
        mod = getattr(model, name)
        if mod is None or not state:
            continue
        own = mod.state_dict()
        if set(own) == set(state) and all(own[k].shape == v.shape for k, v in state.items()):
            mod.load_state_dict(state)
            loaded.append(name)
        else:
            warnings.warn(f"{path}: {name} weights do not fit learning.proj_dim / pred_hidden_dim; {name} starts fresh")
    return f"{kind} ({', '.join(loaded)})"


# ---------------------------------------------------------------------------------------------------------
# distributed


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def active(self) -> bool:
        return self.world > 1


def _init_distributed(device_kind: str) -> _Dist:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    backend = "nccl" if device_kind == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), True)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("learning.device: cuda requested but no CUDA device is available")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


# ---------------------------------------------------------------------------------------------------------
# the run


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns. ``model`` is the trained module (rank-local under DDP)."""

    run_dir: Path
    model_path: Path | None
    metrics: list[dict]
    energy: dict
    summary: dict
    model: nn.Module | None = field(default=None, repr=False)


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
    """
    from ssl_nav.energy.meter import EnergyMeter, append_ledger
    from ssl_nav.learning.data import EvalDataset, ImageCache, PairDataset, PairSampler, open_store, split_views
    from ssl_nav.learning.data import Augment
    from ssl_nav.learning.monitor import embed, epoch_metrics, z_std_torch

    lc = cfg.learning
    requested = "cuda" if lc.device == "cuda" or (lc.device == "auto" and torch.cuda.is_available()) else "cpu"
    dd = _init_distributed(requested)
    try:
        device = resolve_device(lc.device, dd.local_rank)
        on_cuda = device.type == "cuda"
        if on_cuda:
            torch.cuda.set_device(device)
        if lc.threads > 0:
            torch.set_num_threads(lc.threads)
        run_dir = Path(out)
        is_main = dd.rank == 0
        if is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
        ckpt_path, metrics_path = run_dir / "checkpoint.pt", run_dir / "metrics.jsonl"

        # ---- data
        st = open_store(store)
        sv = split_views(st.views(), lc.holdout_fraction, lc.seed, lc.crossia)
        cache = ImageCache(st, sv.views, lc.cache_images, lc.cache_max_mb)
        cache.fill(progress=progress and is_main)
        sampler = PairSampler(sv, lc.batch_size, lc.seed, lc.crossia, lc.hard_views, dd.rank, dd.world)
        loader = torch.utils.data.DataLoader(
            PairDataset(sv, cache, Augment(lc.augment, lc.image_size)), batch_size=sampler.batch_per_rank,
            sampler=sampler, num_workers=lc.num_workers, pin_memory=on_cuda, drop_last=False,
            persistent_workers=False)
        mon_rng = np.random.default_rng([lc.seed, 31])
        mon_idx = np.arange(len(sv.views))
        if len(mon_idx) > lc.monitor_max_views:
            keep = set(sv.holdout.tolist())
            rest = np.setdiff1d(mon_idx, sv.holdout)
            n_rest = max(0, lc.monitor_max_views - len(keep))
            keep |= set(mon_rng.choice(rest, size=min(n_rest, len(rest)), replace=False).tolist())
            mon_idx = np.array(sorted(keep), dtype=np.int64)
        mon_loader = torch.utils.data.DataLoader(EvalDataset(mon_idx, cache, lc.image_size),
                                                 batch_size=max(2, sampler.batch_per_rank), shuffle=False)
        mon_labels = sv.labels[mon_idx]
        mon_hold = np.isin(mon_idx, sv.holdout)

        # ---- model
        seed_everything(lc.seed)
        backbone, imagenet = build_backbone(lc.backbone, pretrained=lc.pretrained)
        model = FinetuneModel(backbone, lc, sv.n_classes)
        init_from = "imagenet" if imagenet else "random"
        if lc.init_checkpoint:
            init_from = load_init_checkpoint(model, lc.init_checkpoint)
        backbone.set_trainable(lc.trainable)
        model.to(device)
        channels_last = on_cuda and lc.channels_last
        if channels_last:
            model.to(memory_format=torch.channels_last)
        opt, init_lr = make_optimizer(model, lc)
        use_amp = on_cuda and lc.amp
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        steps_per_epoch = sampler.steps_per_epoch
        total_steps = steps_per_epoch * lc.epochs
        warmup_steps = steps_per_epoch * lc.warmup_epochs

        start_epoch, step, metrics = 0, 0, []
        if resume and ckpt_path.is_file():
            ckpt = load_checkpoint(ckpt_path)
            for key in RESUME_KEYS:
                if ckpt["config"].get(key) != getattr(lc, key):
                    raise ConfigError(f"{ckpt_path}: cannot resume with learning.{key} = {getattr(lc, key)!r}; "
                                      f"the checkpoint has {ckpt['config'].get(key)!r}")
            if ckpt.get("class_ids") != sv.class_ids:
                raise TrainingError(f"{ckpt_path}: the store's instances changed since the checkpoint; "
                                    f"start a new run instead of --resume")
            try:
                model.load_state_dict(ckpt["model"])
                opt.load_state_dict(ckpt["optimizer"])
                if ckpt.get("scaler"):
                    scaler.load_state_dict(ckpt["scaler"])
            except (RuntimeError, ValueError, KeyError) as e:
                raise CheckpointError(f"{ckpt_path}: does not fit this model ({str(e).splitlines()[0][:200]})") from None
            set_rng_state(ckpt["rng"])
            sampler.load_state_dict(ckpt["sampler"])
            start_epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
            metrics = _read_metrics(metrics_path, start_epoch)
            init_from = f"resumed from {ckpt_path.name} after epoch {start_epoch}"
        elif resume:
            init_from += f" (nothing to resume: no {ckpt_path})"
        if is_main:
            atomic_write_text(metrics_path, "".join(json.dumps(m) + "\n" for m in metrics))

        train_model: nn.Module = model
        if dd.active:
            train_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if on_cuda else None)

        # ---- loop
        ledger_path = Path(ledger) if ledger is not None else None
        run_id = f"{run_dir.name}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
        status = "completed"
        train_s, images = 0.0, 0
        bar = None
        if progress and is_main:
            from tqdm import tqdm

            bar = tqdm(total=total_steps, initial=step, desc="finetune", unit="step", dynamic_ncols=True)
        # rank 0 meters the whole node (NVML sees every GPU, RAPL every package); other ranks measure nothing
        meter = EnergyMeter(cfg.energy if is_main else dataclasses.replace(cfg.energy, backend="none"), run_id=run_id)
        t_start = time.monotonic()
        with meter:
            for epoch in range(start_epoch, lc.epochs):
                sampler.set_epoch(epoch)
                model.train()
                sums: dict[str, float] = {}
                zsum = 0.0
                n_steps = 0
                t_epoch = time.monotonic()
                lr = init_lr
                for batch in loader:
                    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                    x1, x2 = batch["x1"], batch["x2"]
                    if x1.shape[1] > 1:  # Hard View Selection: keep the highest-loss candidate pair per anchor
                        x1, x2, batch["dom2"] = _select_hard(model, x1, x2, batch["dom2"], use_amp, channels_last)
                    else:
                        x1, x2, batch["dom2"] = x1[:, 0], x2[:, 0], batch["dom2"][:, 0]
                    if channels_last:
                        x1 = x1.contiguous(memory_format=torch.channels_last)
                        x2 = x2.contiguous(memory_format=torch.channels_last)
                    lr = set_lr(opt, init_lr, lr_factor(step, total_steps, warmup_steps))
                    with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
                        out_ = train_model(x1, x2)
                        loss, parts = total_loss(out_, batch, lc)
                    stop_local = float(bool(should_stop and should_stop()))
                    red = torch.stack([loss.detach().float(), torch.tensor(stop_local, device=loss.device)])
                    if dd.active:
                        import torch.distributed as dist

                        dist.all_reduce(red)
                        red[0] /= dd.world
                    loss_v = float(red[0])
                    if not math.isfinite(loss_v):
                        raise TrainingError(f"non-finite loss ({loss_v}) at epoch {epoch + 1}, step {step + 1}: "
                                            f"lower learning.base_lr (now {lc.base_lr}) or check the views in {store}")
                    opt.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                    step += 1
                    n_steps += 1
                    n_img = 2 * x1.shape[0] * dd.world
                    images += n_img
                    meter.count(images=n_img, steps=1)
                    sums["loss"] = sums.get("loss", 0.0) + loss_v
                    zsum += z_std_torch(out_["z1"])
                    for k, v in parts.items():
                        sums[k] = sums.get(k, 0.0) + float(v)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(epoch=epoch + 1, loss=f"{loss_v:.4f}", lr=f"{lr:.4g}")
                    if float(red[1]) > 0:
                        status = "cancelled"
                        break
                epoch_s = time.monotonic() - t_epoch
                train_s += epoch_s
                if status == "cancelled":
                    break
                line = {"epoch": epoch + 1, "step": step, "lr": lr, "epoch_s": round(epoch_s, 3),
                        "images_per_s": (2 * n_steps * lc.batch_size / epoch_s) if epoch_s > 0 else None,
                        **{k: v / max(1, n_steps) for k, v in sums.items()}}
                last = epoch + 1 == lc.epochs
                if is_main and ((epoch + 1) % lc.monitor_every == 0 or last):
                    feats = embed(model.backbone, mon_loader, device, channels_last)
                    line.update(epoch_metrics(feats, mon_labels, mon_hold, zsum / max(1, n_steps), lc.proj_dim,
                                              lc.collapse_threshold, lc.seed))
                line = {k: _jsonable(v) for k, v in line.items()}
                if is_main:
                    _append_line(metrics_path, line)  # before the checkpoint: a resume cuts lines past it
                    if (epoch + 1) % lc.checkpoint_every == 0 or last:
                        save_checkpoint(ckpt_path, {
                            "format": CHECKPOINT_FORMAT, "epoch": epoch + 1, "step": step,
                            "model": model.state_dict(), "optimizer": opt.state_dict(),
                            "scaler": scaler.state_dict() if use_amp else {}, "rng": rng_state(),
                            "sampler": {"seed": sampler.seed, "epoch": epoch + 1}, "config": to_dict(lc),
                            "class_ids": sv.class_ids})
                metrics.append(line)
                if dd.active:
                    import torch.distributed as dist

                    dist.barrier()
                if on_epoch is not None and is_main:
                    on_epoch(line)
            meter.extra.update({"run_dir": str(run_dir), "world_size": dd.world, "device": str(device),
                                "backbone": lc.backbone, "objective": lc.objective, "trainable": lc.trainable,
                                "status": status})
        if bar is not None:
            bar.close()
        wall_s = time.monotonic() - t_start
        energy = meter.record or {}
        model_path = None
        model_hash = None
        if is_main:
            atomic_write_json(run_dir / "energy.json", energy)
            if ledger_path is not None:
                append_ledger(ledger_path, energy)
            if status == "completed":
                model_path = run_dir / "model.pt"
                model_hash = save_model(model_path, model.export_state(), backbone=lc.backbone,
                                        embedding_dim=backbone.dim, image_size=lc.image_size,
                                        config=to_dict(lc), extra={"init_from": init_from,
                                                                   "class_ids": sv.class_ids})
        last_m = metrics[-1] if metrics else {}
        j = (energy.get("joules") or {}).get("total")
        summary = {"status": status, "epochs": lc.epochs, "epochs_done": len(metrics), "wall_s": round(wall_s, 2),
                   "train_s": round(train_s, 2), "images": images,
                   "images_per_s": (images / train_s) if train_s > 0 else None,
                   "final_loss": last_m.get("loss"), "z_std": last_m.get("z_std"), "knn_top1": last_m.get("knn_top1"),
                   "kmeans_ari": last_m.get("kmeans_ari"), "energy_j": j, "avg_w": energy.get("avg_w"),
                   "energy_source": energy.get("source"), "model_hash": model_hash, "init_from": init_from,
                   "device": str(device), "world_size": dd.world, "n_views": len(sv.views),
                   "n_instances": sv.n_classes, "n_holdout": int(len(sv.holdout)),
                   "image_cache": cache.enabled}
        return FinetuneResult(run_dir, model_path, metrics, energy, summary, model)
    finally:
        if dd.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


@torch.no_grad()
def _select_hard(model: FinetuneModel, x1: torch.Tensor, x2: torch.Tensor, dom2: torch.Tensor, use_amp: bool,
                 channels_last: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hard View Selection (arXiv 2310.03940): score the N candidate pairs of each anchor, keep the hardest."""
    b, n = x1.shape[:2]
    was = model.training
    model.eval()
    try:
        a, c = x1.flatten(0, 1), x2.flatten(0, 1)
        if channels_last:
            a, c = a.contiguous(memory_format=torch.channels_last), c.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
            scores = hardness(model(a, c)).float().view(b, n)
    finally:
        model.train(was)
    pick = scores.argmax(dim=1)
    rows = torch.arange(b, device=x1.device)
    return x1[rows, pick], x2[rows, pick], dom2[rows, pick]
