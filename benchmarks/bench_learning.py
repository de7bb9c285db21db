"""Fine-tuning speed and memory (ssl_nav.learning.trainer), measured side by side in one run.

- Loop efficiency: our trainer's images/s (its own timing of an epoch: data loading, augmentation, forward,
  backward, step) over a bare forward/backward/step loop on pre-made tensors, same model (MobileNetV2 + SimSiam
  heads, all layers trainable), batch, image size and threads. Target >= 0.9 on CPU.
- Against lightly: our trainer over a plain PyTorch loop built from lightly's SimSiamProjectionHead,
  SimSiamPredictionHead and NegativeCosineSimilarity, with the same backbone, data pipeline (our DataLoader),
  batch, size, optimiser and threads. Target >= 1.0. lightly is benchmark-only (requirements-bench.txt).
- Partial over full fine-tuning: trainer images/s with ``trainable: last`` (CrossIA) over ``all``.
- Peak RSS of a fine-tune of MobileNetV2 at batch 64 and 224 px with the default ``trainable: last``, in a
  subprocess (ru_maxrss). Target <= 4 GB. The same run gives the images/s the demo default reaches.

Each measurement is a few steps after a warm-up epoch, so the area takes a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AREA = "Fine-tuning"
REPO = Path(__file__).resolve().parents[1]


def _write_store(root: Path, n_instances: int, views: int, size: int, n_hq: int = 0) -> Path:
    sys.path.insert(0, str(REPO / "test"))  # the tests' synthetic stores: test/testkit/stores.py
    from testkit.stores import write_store

    return write_store(root, n_instances, views, size=size, n_hq=n_hq)


def _cfg(size: int, batch: int, threads: int, **learning):
    from ssl_nav.config import PipelineConfig, apply_overrides

    base = {"backbone": "mobilenet_v2", "image_size": size, "batch_size": batch, "warmup_epochs": 0,
            "threads": threads, "holdout_fraction": 0.0, "crossia": False, "ce_weight": 0.0, "trainable": "all",
            "objective": "simsiam", "augment": "crossia",
            "monitor_max_views": 2, "monitor_every": 1000, "device": "cpu", "epochs": 2}
    base.update(learning)
    return apply_overrides(PipelineConfig(), {f"learning.{k}": v for k, v in base.items()} | {"energy.backend": "none"})


class _Bare:
    """A bare forward/backward/step loop on pre-made tensors, same model as the trainer builds."""

    def __init__(self, cfg) -> None:
        import torch

        from ssl_nav.learning.backbones import build_backbone
        from ssl_nav.learning.trainer import FinetuneModel, make_optimizer

        lc = cfg.learning
        torch.manual_seed(0)
        bb, _ = build_backbone(lc.backbone, pretrained=lc.pretrained)
        bb.set_trainable(lc.trainable)
        self.batch = lc.batch_size
        self.model = FinetuneModel(bb, lc, n_classes=1).train()
        self.opt, _ = make_optimizer(self.model, lc)
        self.x1 = torch.randn(lc.batch_size, 3, lc.image_size, lc.image_size)
        self.x2 = torch.randn(lc.batch_size, 3, lc.image_size, lc.image_size)
        self.ips(1)  # warm-up

    def ips(self, steps: int) -> float:
        from ssl_nav.learning.simsiam import simsiam_loss

        t = time.perf_counter()
        for _ in range(steps):
            out = self.model(self.x1, self.x2)
            loss = simsiam_loss(out["p1"], out["p2"], out["z1"], out["z2"])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        return 2 * self.batch * steps / (time.perf_counter() - t)


class _Lightly:
    """A plain PyTorch loop on lightly's heads and loss, fed by our DataLoader (same data, augmentation)."""

    def __init__(self, store: Path, cfg) -> None:
        import torch
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead
        from torch import nn

        from ssl_nav.learning.backbones import build_backbone
        from ssl_nav.learning.data import Augment, ImageCache, PairDataset, PairSampler, open_store, split_views

        lc = cfg.learning
        torch.manual_seed(0)
        self.backbone, _ = build_backbone(lc.backbone, pretrained=lc.pretrained)
        self.projector = SimSiamProjectionHead(self.backbone.dim, self.backbone.dim, lc.proj_dim)
        self.predictor = SimSiamPredictionHead(lc.proj_dim, lc.pred_hidden_dim, lc.proj_dim)
        model = nn.ModuleDict({"b": self.backbone, "proj": self.projector, "pred": self.predictor}).train()
        self.criterion = NegativeCosineSimilarity()
        self.opt = torch.optim.SGD(model.parameters(), lr=lc.base_lr * lc.batch_size / 256, momentum=lc.momentum,
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
        self.ips()  # warm-up epoch, as the trainer's first

    def ips(self) -> float:
        self.sampler.set_epoch(self.epoch)
        self.epoch += 1
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


def _paired(a: list[float], b: list[float]) -> float:
    """Median of the per-round ratios a[i] / b[i] (slow drifts of a shared machine cancel within a pair)."""
    import statistics

    return statistics.median(x / y for x, y in zip(a, b))


def _interleaved(store: Path, cfg, tmp: Path, tag: str, rounds: int, others: dict) -> dict[str, list[float]]:
    """Trainer epochs 2..rounds+1, with every other loop measured right after each epoch (shared machine:
    side-by-side samples, best of each kept by the caller)."""
    import dataclasses

    from ssl_nav.learning.trainer import finetune

    got: dict[str, list[float]] = {"trainer": [], **{k: [] for k in others}}

    def after_epoch(line: dict) -> None:
        if line["epoch"] == 1:
            return  # warm-up epoch
        got["trainer"].append(float(line["images_per_s"]))
        names = list(others)
        r = len(got["trainer"]) % len(names)
        for k in names[r:] + names[:r]:  # rotate the order each round: no loop always runs first
            got[k].append(others[k]())

    cfg = dataclasses.replace(cfg, learning=dataclasses.replace(cfg.learning, epochs=rounds + 1))
    finetune(store, tmp / tag, cfg, progress=False, on_epoch=after_epoch)
    return got


_RSS_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[3])
from ssl_nav.config import PipelineConfig, apply_overrides
from ssl_nav.learning.trainer import finetune
o = {"learning.backbone": "mobilenet_v2", "learning.image_size": 224, "learning.batch_size": 64,
     "learning.epochs": 2, "learning.warmup_epochs": 0, "learning.monitor_every": 1000, "learning.threads": int(sys.argv[4]),
     "learning.holdout_fraction": 0.0, "learning.device": "cpu", "energy.backend": "none"}
cfg = apply_overrides(PipelineConfig(), o)
t = time.perf_counter()
res = finetune(sys.argv[1], sys.argv[2], cfg, progress=False)
print(json.dumps({"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "ips": res.metrics[-1]["images_per_s"], "trainable": cfg.learning.trainable,
                  "steps": res.metrics[-1]["step"], "wall_s": time.perf_counter() - t}))
"""


def run(quick: bool = False) -> list[dict]:
    import torch

    threads = max(1, min(os.cpu_count() or 1, 2 if quick else os.cpu_count() or 1))
    torch.set_num_threads(threads)
    size, batch = (64, 8) if quick else (128, 16)
    steps = 2 if quick else 4
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_learning_") as td:
        tmp = Path(td)
        store = _write_store(tmp / "store", n_instances=8, views=batch * steps // 8, size=size)
        cfg_all = _cfg(size, batch, threads)
        cfg_last = _cfg(size, batch, threads, trainable="last")
        rounds = 2 if quick else 5
        bare = _Bare(cfg_all)
        others = {"bare": lambda: bare.ips(steps)}
        try:
            light = _Lightly(store, cfg_all)
            others["lightly"] = light.ips
        except ImportError:
            light = None
        full = _interleaved(store, cfg_all, tmp, "all", rounds, others)
        bare_last = _Bare(cfg_last)
        part = _interleaved(store, cfg_last, tmp, "last", rounds, {"bare_last": lambda: bare_last.ips(steps),
                                                                   "bare": lambda: bare.ips(steps)})
        ours, b_all = max(full["trainer"]), max(full["bare"] + part["bare"])
        last = max(part["trainer"])
        eff = _paired(full["trainer"], full["bare"])
        setting = (f"MobileNetV2 + SimSiam heads, batch {batch}, {size} px, {threads} threads, {steps} steps per "
                   f"sample; median of {rounds} paired ratios (each loop measured right after a trainer epoch), "
                   f"best img/s in brackets")
        rows.append({"benchmark": "loop efficiency: trainer images/s ÷ bare loop on pre-made tensors",
                     "figure": f"{eff:.2f} ({ours:.1f} vs {b_all:.1f} img/s)", "target": "≥ 0.9",
                     "ok": eff >= 0.9,
                     "note": f"{setting}, trainable all; the trainer's time includes cache reads and CrossIA-recipe "
                             f"augmentation in the main process"})
        if light is None:
            rows.append({"benchmark": "trainer ÷ plain loop on lightly heads", "figure": "not run",
                         "target": "≥ 1.0", "ok": None,
                         "note": "lightly not installed: pip install -r requirements-bench.txt"})
        else:
            lt = max(full["lightly"])
            vs = _paired(full["trainer"], full["lightly"])
            rows.append({"benchmark": "trainer ÷ plain loop on lightly heads", "figure":
                         f"{vs:.2f} ({ours:.1f} vs {lt:.1f} img/s)", "target": "≥ 1.0",
                         "ok": vs >= 1.0,
                         "note": f"{setting}; same backbone, DataLoader, SGD; lightly SimSiamProjectionHead, "
                                 f"SimSiamPredictionHead, NegativeCosineSimilarity"})
        bl = _paired(part["bare_last"], part["bare"])
        rows.append({"benchmark": "partial (last stage) ÷ full fine-tuning, trainer images/s",
                     "figure": f"{last / ours:.2f}× (best {last:.1f} vs {ours:.1f} img/s; bare loops {bl:.2f}×)",
                     "target": "> 1", "ok": last > ours, "note": setting})

        # peak RSS of the demo default (trainable last) at batch 64, 224 px, in a fresh process
        if not quick:
            store224 = _write_store(tmp / "store224", n_instances=8, views=10, size=224, n_hq=2)
            env = dict(os.environ, OMP_NUM_THREADS=str(threads))
            proc = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(store224), str(tmp / "rss"), str(REPO),
                                   str(threads)], capture_output=True, text=True, env=env, timeout=600)
            if proc.returncode != 0:
                rows.append({"benchmark": "peak RSS, MobileNetV2 batch 64, 224 px", "figure": "failed",
                             "target": "≤ 4 GB", "ok": False, "note": proc.stderr.strip().splitlines()[-1][:200]})
            else:
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                gb = r["maxrss_kb"] / 2**20
                rows.append({"benchmark": "peak RSS, MobileNetV2 batch 64, 224 px (trainable last)",
                             "figure": f"{gb:.2f} GB", "target": "≤ 4 GB", "ok": gb <= 4.0,
                             "note": f"ru_maxrss of a fresh `finetune` process, 2 epochs of 1 step of 64 pairs "
                                     f"each, CrossIA on"})
                ips = r["ips"]
                rows.append({"benchmark": "default-config speed: MobileNetV2, trainable last, 224 px",
                             "figure": f"{ips:.1f} img/s ≈ {2 * 500 / ips:.0f} s per epoch of 500 views",
                             "target": "", "ok": None,
                             "note": f"{threads} threads, second epoch (the first warms up); an epoch pairs each LQ "
                                     f"view once (2 images per pair); the per-epoch monitor adds one forward per "
                                     f"monitored view (≤ 256)"})
    return rows
