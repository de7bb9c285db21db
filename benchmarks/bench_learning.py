"""Fine-tuning speed and memory (ssl_nav.learning.trainer), measured side by side in one run.

- **Against lightly's plain loop** (target >= 1.1x): images/s of our trainer's epoch (:func:`train_epoch`: the
  DataLoader with cache reads and augmentation in the main process, forward, loss, backward, SGD step) over
  the plain PyTorch loop a lightly user writes, on the same work: MobileNetV2 with the same ImageNet weights,
  the same ``trainable`` setting, the same images in the same order (our PairSampler, PairDataset, Augment and
  image cache, ``num_workers`` 0), the same batch, size, SGD and threads, and SimSiam on both sides. The plain
  loop is ``torchvision.models.mobilenet_v2().features`` + average pooling, lightly's
  ``SimSiamProjectionHead(1280, 1280, 2048)``, ``SimSiamPredictionHead(2048, 512, 2048)`` and
  ``NegativeCosineSimilarity`` (symmetrised, stop-gradient), float32, default (NCHW) memory format; with
  ``trainable: last`` it sets ``requires_grad=False`` on the frozen stem and keeps those modules in eval mode
  (the same function as ours, and autograd then stores nothing for them). Our trainer runs its defaults:
  channels_last on CPU and, for a frozen stem, the BatchNorm-folded inference copy
  (:class:`ssl_nav.learning.backbones.FrozenStem`). Grid: batch 16 and 64 x 128 and 224 px, ``trainable:
  last`` (the default), and ``all`` at batch 16.
- **Levers** (evidence for the defaults): the trainer with ``channels_last: false`` and with
  ``fuse_frozen_stem: false``, each over the default trainer, measured in the same rounds.
- **Loop efficiency**: the trainer over a bare loop on pre-made tensors through the same model and settings
  (what data loading, augmentation and the loop cost). Target >= 0.9.
- Partial over full fine-tuning: trainer images/s with ``trainable: last`` (CrossIA) over ``all``.
- Peak RSS of a fine-tune of MobileNetV2 at batch 64 and 224 px with the default ``trainable: last``, in a
  subprocess (its own high-water mark, ``benchmarks/memory.py``). Target <= 4 GB. The same run gives the
  images/s the demo default reaches.

Every ratio is the median of per-round ratios: each round runs one epoch of every loop, in a rotating order,
after a warm-up epoch each, so the slow drifts of a shared machine cancel within a round.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

AREA = "Fine-tuning"
REPO = Path(__file__).resolve().parents[1]


def _write_store(root: Path, n_instances: int, views: int, size: int, n_hq: int = 0) -> Path:
    sys.path.insert(0, str(REPO / "test"))  # the tests' synthetic stores: test/testkit/stores.py
    from testkit.stores import write_store

    return write_store(root, n_instances, views, size=size, n_hq=n_hq)


def _cfg(size: int, batch: int, threads: int, **learning):
    from ssl_nav.config import PipelineConfig, apply_overrides

    base = {"backbone": "mobilenet_v2", "image_size": size, "batch_size": batch, "warmup_epochs": 0,
            "threads": threads, "holdout_fraction": 0.0, "crossia": False, "ce_weight": 0.0, "trainable": "last",
            "objective": "simsiam", "monitor_max_views": 2, "monitor_every": 1000, "device": "cpu",
            "epochs": 1000}
    base.update(learning)
    return apply_overrides(PipelineConfig(), {f"learning.{k}": v for k, v in base.items()} | {"energy.backend": "none"})


class _Trainer:
    """Our trainer's epochs (:func:`ssl_nav.learning.trainer.train_epoch`) on a run set up as ``finetune`` does."""

    def __init__(self, store: Path, out: Path, cfg) -> None:
        import torch

        from ssl_nav.energy.meter import EnergyMeter
        from ssl_nav.learning.distributed import DistInfo
        from ssl_nav.learning.trainer import setup_run

        self.meter = EnergyMeter(cfg.energy).__enter__()
        self.run = setup_run(store, out, cfg, DistInfo(), torch.device("cpu"), False, self.meter)
        if cfg.learning.fuse_frozen_stem:
            self.run.model.fuse_frozen_stem(torch.channels_last if self.run.channels_last else torch.contiguous_format)
        self.epoch = 0

    def ips(self) -> float:
        from ssl_nav.learning.trainer import train_epoch

        line, _ = train_epoch(self.run, self.epoch, self.meter)
        self.epoch += 1
        return float(line["images_per_s"])


class _Lightly:
    """The plain loop on lightly's heads and loss (see the module docstring), fed by the same DataLoader."""

    def __init__(self, store: Path, cfg) -> None:
        import torch
        import torchvision
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead
        from torch import nn

        from ssl_nav.learning.backbones import _last_stride2_index, build_backbone
        from ssl_nav.learning.data import Augment, ImageCache, PairDataset, PairSampler, open_store, split_views

        lc = cfg.learning
        torch.manual_seed(0)
        ours, _ = build_backbone(lc.backbone, pretrained=lc.pretrained)  # for the same ImageNet weights
        net = torchvision.models.mobilenet_v2(weights=None)
        net.classifier = nn.Identity()
        net.load_state_dict(ours.net.state_dict())
        self.backbone = nn.Sequential(net.features, nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.frozen: list[nn.Module] = []
        if lc.trainable == "last":
            self.frozen = list(net.features[:_last_stride2_index(net.features)])
            for m in self.frozen:
                m.requires_grad_(False)
        self.projector = SimSiamProjectionHead(1280, 1280, lc.proj_dim)
        self.predictor = SimSiamPredictionHead(lc.proj_dim, lc.pred_hidden_dim, lc.proj_dim)
        self.model = nn.ModuleList([self.backbone, self.projector, self.predictor])
        self.criterion = NegativeCosineSimilarity()
        self.opt = torch.optim.SGD([p for p in self.model.parameters() if p.requires_grad],
                                   lr=lc.base_lr * lc.batch_size / 256, momentum=lc.momentum,
                                   weight_decay=lc.weight_decay)
        st = open_store(store)
        sv = split_views(st.views(), lc.holdout_fraction, lc.seed, lc.crossia)
        cache = ImageCache(st, sv.views, lc.cache_images, lc.cache_max_mb)
        cache.fill()
        self.sampler = PairSampler(sv, lc.batch_size, lc.seed, lc.crossia)
        self.loader = torch.utils.data.DataLoader(PairDataset(sv, cache, Augment(lc.augment, lc.image_size)),
                                                  batch_size=lc.batch_size, sampler=self.sampler,
                                                  num_workers=lc.num_workers)
        self.batch = lc.batch_size
        self.epoch = 0

    def ips(self) -> float:
        self.sampler.set_epoch(self.epoch)
        self.epoch += 1
        self.model.train()
        for m in self.frozen:
            m.eval()
        t, n = time.perf_counter(), 0
        for batch in self.loader:
            x1, x2 = batch["x1"][:, 0], batch["x2"][:, 0]
            z1, z2 = self.projector(self.backbone(x1)), self.projector(self.backbone(x2))
            p1, p2 = self.predictor(z1), self.predictor(z2)
            loss = 0.5 * (self.criterion(p1, z2.detach()) + self.criterion(p2, z1.detach()))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            n += 1
        return 2 * self.batch * n / (time.perf_counter() - t)


class _Bare:
    """A bare forward/backward/step loop on pre-made tensors through the trainer's own model and settings."""

    def __init__(self, trainer: _Trainer, steps: int) -> None:
        import torch

        run = trainer.run
        self.run, self.steps, lc = run, steps, run.lc
        fmt = torch.channels_last if run.channels_last else torch.contiguous_format
        self.x1 = torch.randn(lc.batch_size, 3, lc.image_size, lc.image_size).contiguous(memory_format=fmt)
        self.x2 = torch.randn(lc.batch_size, 3, lc.image_size, lc.image_size).contiguous(memory_format=fmt)
        self.batch = {"label": torch.zeros(lc.batch_size, dtype=torch.long)}

    def ips(self) -> float:
        from ssl_nav.learning.trainer import total_loss

        run = self.run
        t = time.perf_counter()
        for _ in range(self.steps):
            out = run.train_model(self.x1, self.x2)
            loss, _ = total_loss(run.model, out, self.batch, run.lc)
            run.opt.zero_grad(set_to_none=True)
            loss.backward()
            run.opt.step()
        return 2 * self.run.lc.batch_size * self.steps / (time.perf_counter() - t)


def _rounds(loops: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """A warm-up epoch of each loop, then ``rounds`` rounds of one epoch each, the order rotated per round."""
    for f in loops.values():
        f()
    got: dict[str, list[float]] = {k: [] for k in loops}
    names = list(loops)
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            got[k].append(loops[k]())
    return got


def _ratio(a: list[float], b: list[float]) -> float:
    """Median of the per-round ratios a[i] / b[i]."""
    return statistics.median(x / y for x, y in zip(a, b))


_RSS_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[3]); sys.path.insert(0, sys.argv[3] + "/benchmarks")
from memory import peak_rss_kb
from ssl_nav.config import PipelineConfig, apply_overrides
from ssl_nav.learning.trainer import finetune
o = {"learning.backbone": "mobilenet_v2", "learning.image_size": 224, "learning.batch_size": 64,
     "learning.epochs": 2, "learning.warmup_epochs": 0, "learning.monitor_every": 1000, "learning.threads": int(sys.argv[4]),
     "learning.holdout_fraction": 0.0, "learning.device": "cpu", "energy.backend": "none"}
cfg = apply_overrides(PipelineConfig(), o)
t = time.perf_counter()
res = finetune(sys.argv[1], sys.argv[2], cfg, progress=False)
print(json.dumps({"maxrss_kb": peak_rss_kb(),
                  "ips": res.metrics[-1]["images_per_s"], "trainable": cfg.learning.trainable,
                  "steps": res.metrics[-1]["step"], "wall_s": time.perf_counter() - t}))
"""


def _compare(tmp: Path, batch: int, size: int, trainable: str, threads: int, steps: int, rounds: int,
             levers: bool) -> tuple[dict, dict]:
    """One grid point: trainer vs the lightly loop (and, with ``levers``, the trainer without each lever and the
    bare loop). Returns (rows' figures, raw samples)."""
    import dataclasses

    store = tmp / f"store{size}-{batch}"
    if not store.exists():
        _write_store(store, n_instances=8, views=max(2, batch * steps // 8), size=size)
    cfg = _cfg(size, batch, threads, trainable=trainable)
    lc = cfg.learning
    trainer = _Trainer(store, tmp / f"run-{batch}-{size}-{trainable}", cfg)
    loops: dict[str, Callable[[], float]] = {"trainer": trainer.ips, "lightly": _Lightly(store, cfg).ips}
    if levers:
        no_cl = dataclasses.replace(cfg, learning=dataclasses.replace(lc, channels_last=False))
        loops["no channels_last"] = _Trainer(store, tmp / f"nocl-{batch}-{size}-{trainable}", no_cl).ips
        if trainable != "all":
            no_fuse = dataclasses.replace(cfg, learning=dataclasses.replace(lc, fuse_frozen_stem=False))
            loops["no stem fusion"] = _Trainer(store, tmp / f"nofuse-{batch}-{size}-{trainable}", no_fuse).ips
        loops["bare"] = _Bare(trainer, steps).ips
    got = _rounds(loops, rounds)
    return {k: _ratio(got["trainer"], v) for k, v in got.items()}, got


def run(quick: bool = False) -> list[dict]:
    import torch

    # one thread by default: on a shared machine a 2-thread OpenMP team waits on its slowest thread, which makes
    # every figure noise; SSL_NAV_BENCH_THREADS=2 on a quiet machine
    threads = int(os.environ.get("SSL_NAV_BENCH_THREADS", "1"))
    torch.set_num_threads(threads)
    steps = 2
    rounds = 2 if quick else 3
    grid = [(16, 64, "last", True)] if quick else [
        (16, 128, "last", True), (64, 128, "last", False), (16, 224, "last", False), (64, 224, "last", True),
        (16, 128, "all", True), (16, 224, "all", False)]
    try:
        import lightly  # noqa: F401
    except ImportError:
        return [{"benchmark": "trainer ÷ plain loop on lightly heads", "figure": "not run", "target": "≥ 1.1",
                 "ok": None, "note": "lightly not installed: pip install -r requirements-bench.txt"}]
    rows: list[dict] = []
    best: dict[tuple[int, int, str], float] = {}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench_learning_") as td:
        tmp = Path(td)
        for batch, size, trainable, levers in grid:
            ratio, got = _compare(tmp, batch, size, trainable, threads, steps, rounds, levers)
            ours, lt = max(got["trainer"]), max(got["lightly"])
            best[(batch, size, trainable)] = ours
            where = f"batch {batch}, {size} px, trainable {trainable}"
            rows.append({"benchmark": f"trainer ÷ plain loop on lightly heads, {where}",
                         "figure": f"{ratio['lightly']:.2f} ({ours:.1f} vs {lt:.1f} img/s)", "target": "≥ 1.1",
                         "ok": ratio["lightly"] >= 1.1,
                         "note": f"MobileNetV2 + SimSiam, {threads} threads, {steps} steps per epoch; median of "
                                 f"{rounds} per-round ratios, best img/s in brackets"})
            if levers:
                lever_txt = "; ".join(f"without {k[3:]}: {1 / ratio[k]:.2f}× the trainer's img/s"
                                      for k in ("no channels_last", "no stem fusion") if k in ratio)
                rows.append({"benchmark": f"levers, {where}: trainer ÷ trainer without the lever",
                             "figure": ", ".join(f"{k[3:]} {ratio[k]:.2f}×" for k in ("no channels_last",
                                                                                      "no stem fusion")
                                                 if k in ratio),
                             "target": "> 1 (else the default goes)",
                             "ok": all(ratio[k] > 1.0 for k in ("no channels_last", "no stem fusion") if k in ratio),
                             "note": lever_txt + "; same rounds as the row above"})
                rows.append({"benchmark": f"loop efficiency, {where}: trainer ÷ bare loop on pre-made tensors",
                             "figure": f"{ratio['bare']:.2f} ({ours:.1f} vs {max(got['bare']):.1f} img/s)",
                             "target": "≥ 0.9", "ok": ratio["bare"] >= 0.9,
                             "note": "the same model and settings; the trainer's time adds cache reads, the "
                                     "augmentation in the main process and the loop"})
        for batch, size in ((16, 128), (16, 224)):
            if (batch, size, "all") in best and (batch, size, "last") in best:
                last, full = best[(batch, size, "last")], best[(batch, size, "all")]
                rows.append({"benchmark": f"partial (last stage) ÷ full fine-tuning, batch {batch}, {size} px",
                             "figure": f"{last / full:.2f}× ({last:.1f} vs {full:.1f} img/s)", "target": "> 1",
                             "ok": last > full, "note": "trainer images/s, best epoch of each (separate rounds)"})

        # peak RSS of the demo default (trainable last) at batch 64, 224 px, in fresh processes, twice (the
        # child's own VmHWM: ru_maxrss carried this benchmark process's size into the child, benchmarks/memory.py)
        if not quick:
            store224 = _write_store(tmp / "store224", n_instances=8, views=10, size=224, n_hq=2)
            env = dict(os.environ, OMP_NUM_THREADS=str(threads))
            got_rss: list[dict] = []
            for i in range(2):
                proc = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(store224), str(tmp / f"rss{i}"),
                                       str(REPO), str(threads)], capture_output=True, text=True, env=env,
                                      timeout=900)
                if proc.returncode != 0:
                    rows.append({"benchmark": "peak RSS, MobileNetV2 batch 64, 224 px", "figure": "failed",
                                 "target": "≤ 4 GB", "ok": False,
                                 "note": proc.stderr.strip().splitlines()[-1][:200]})
                    break
                got_rss.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            if len(got_rss) == 2:
                gbs = [r["maxrss_kb"] / 2**20 for r in got_rss]
                rows.append({"benchmark": "peak RSS, MobileNetV2 batch 64, 224 px (trainable last)",
                             "figure": f"{max(gbs):.2f} GB", "target": "≤ 4 GB", "ok": max(gbs) <= 4.0,
                             "note": f"peak RSS (VmHWM) of a fresh `finetune` process (the larger of 2: "
                                     f"{' and '.join(f'{g:.2f}' for g in gbs)} GB), 2 epochs of 1 step of 64 pairs "
                                     f"each, CrossIA on, default objective (MoCo v2)"})
                ips = max(r["ips"] for r in got_rss)
                rows.append({"benchmark": "default-config speed: MobileNetV2, trainable last, 224 px",
                             "figure": f"{ips:.1f} img/s ≈ {2 * 500 / ips:.0f} s per epoch of 500 views",
                             "target": "", "ok": None,
                             "note": f"{threads} thread(s), second epoch (the first warms up), better of the 2 "
                                     f"processes; an epoch pairs each LQ view once (2 images per pair); the "
                                     f"per-epoch monitor adds one forward per monitored view (≤ 256); area took "
                                     f"{(time.monotonic() - t0) / 60:.0f} min"})
    return rows
