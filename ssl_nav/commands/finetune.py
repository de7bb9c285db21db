"""Fine-tune the instance encoder on a ViewStore with a self-supervised objective and CrossIA's instance
classifier and pairing, metered for energy. The objective is ``learning.objective`` (``--objective``), each
with its own recipe (lr, weight decay, warm-up: ``-1`` in the configuration takes it; docs/finetuning.md).

  ssl-nav finetune --store STORE --out RUN [--config YAML] [--resume] [--device auto|cpu|cuda]
                   [--backbone NAME] [--epochs N] [--batch-size N] [--image-size PX] [--objective NAME]
                   [--ledger PATH]

Writes RUN/model.pt, RUN/metrics.jsonl (one line per epoch), RUN/energy.json and RUN/checkpoint.pt, appends
the energy record to the ledger (default: energy.jsonl, i.e. ``energy.ledger``, next to RUN), and prints a
summary (:func:`ssl_nav.learning.run_dir.finetune_run`). ``--resume`` continues a killed run from RUN/checkpoint.pt. A RUN that already holds a run is refused
(indexes built from its model.pt would stop matching): pass ``--resume`` to continue it or ``--overwrite`` to
start it again from scratch. Multi-process (DDP) on CPU:

  torchrun --nproc-per-node 2 -m ssl_nav finetune --store STORE --out RUN --device cpu
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ssl_nav.commands import add_config_argument, add_progress_argument, config_from_args, progress_from_args
from ssl_nav.config import LearningConfig
from ssl_nav.learning.catalog import TITLES, describe

NAME = "finetune"
HELP = f"fine-tune the encoder on a view store (default: {describe()}; writes model.pt, metrics, energy)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, help="view store directory (instances.json, views.jsonl, views/)")
    p.add_argument("--out", required=True, help="run directory to write")
    add_config_argument(p)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the run already in OUT (model.pt, checkpoint.pt, metrics) and train from scratch")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="overrides learning.device")
    p.add_argument("--backbone", default=None, help="overrides learning.backbone")
    p.add_argument("--epochs", type=int, default=None, help="overrides learning.epochs")
    p.add_argument("--batch-size", type=int, default=None, help="overrides learning.batch_size (global, all ranks)")
    p.add_argument("--image-size", type=int, default=None, help="overrides learning.image_size")
    p.add_argument("--objective", default=None, choices=tuple(TITLES),
                   help=f"overrides learning.objective (default {LearningConfig().objective}), with that "
                        "objective's recipe unless the configuration sets base_lr, weight_decay or the warm-ups")
    p.add_argument("--ledger", default=None,
                   help="energy ledger to append to (default: energy.ledger next to OUT); 'none' to skip")
    add_progress_argument(p)


def _fmt(v, spec: str = ".4f") -> str:
    if v is None:
        return "n/a"
    return format(v, spec) if isinstance(v, float) else str(v)


def summary_table(s: dict) -> str:
    rows = [
        ("status", s["status"]),
        ("objective", f"{s['objective']}: lr {_fmt(s['lr'], 'g')}, weight decay {_fmt(s['weight_decay'], 'g')}, "
                      f"warm-up {s['warmup_epochs']} epoch(s), heads-only warm-up {s['head_warmup_epochs']}"),
        ("epochs", f"{s['epochs_done']}/{s['epochs']}"),
        ("time", f"{s['wall_s']:.1f} s (training {s['train_s']:.1f} s)"),
        ("images/s", _fmt(s["images_per_s"], ".1f")),
        ("final loss", _fmt(s["final_loss"])),
        ("collapse", f"eff. rank {_fmt(s['eff_rank'], '.1f')}, emb std*sqrt(d) {_fmt(s['emb_std_sqrt_d'], '.3f')}"
                     f"{' (COLLAPSE WARNING)' if s.get('collapse_warning') else ''}"),
        ("kNN top-1", _fmt(s["knn_top1"], ".3f")),
        ("k-means ARI", _fmt(s["kmeans_ari"], ".3f")),
        ("energy", f"{_fmt(s['energy_j'], '.1f')} J, {_fmt(s['avg_w'], '.1f')} W, source {s['energy_source']}"),
        ("device", f"{s['device']} x {s['world_size']}"),
        ("model", f"{s.get('model_path') or 'not written'} ({(s['model_hash'] or '')[:12]})"),
    ]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


def run(args: argparse.Namespace) -> int:
    import sys

    from ssl_nav.energy.report import format_record
    from ssl_nav.learning.run_dir import finetune_run

    cfg = config_from_args(args, {
        "learning.device": args.device, "learning.backbone": args.backbone, "learning.epochs": args.epochs,
        "learning.batch_size": args.batch_size, "learning.image_size": args.image_size,
        "learning.objective": args.objective})
    ledger = ... if args.ledger is None else None if args.ledger.lower() == "none" else Path(args.ledger)
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        print(f"ssl-nav finetune: warning: {message}", file=sys.stderr)

    res = finetune_run(args.store, args.out, cfg, resume=args.resume, overwrite=args.overwrite, ledger=ledger,
                       progress=progress_from_args(args), warn=warn)
    if int(os.environ.get("RANK", "0")) == 0:
        s = dict(res.summary, model_path=str(res.model_path) if res.model_path else None)
        print(f"ssl-nav finetune: {s['n_views']} views of {s['n_instances']} instances "
              f"({s['n_holdout']} held out), {s['init_from']}")
        print(summary_table(s))
        print(format_record(res.energy))
        for w in warnings:  # again under the table, where it is read
            print(f"ssl-nav finetune: warning: {w}", file=sys.stderr)
    return 0 if res.summary["status"] == "completed" else 1
