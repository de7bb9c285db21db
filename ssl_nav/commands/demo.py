"""The end-to-end demo on the embedded pybullet simulator (``make demo``).

  ssl-nav demo [--out out/demo] [--quick] [--seed N] [--config YAML]

Simulate a room with fixed seeds, map it, collect multi-view crops, add user photos, fine-tune the backbone
(``learning.objective``; ``ssl-nav demo --help`` prints the default), index the store's robot views (the user photos are training data) with the ImageNet
baseline and with the fine-tuned backbone, and evaluate the episodes' goal images on both; the last rows give
top-1 and open-set AUROC with the user photos indexed too. Prints baseline vs fine-tuned top-1, mAP and
open-set AUROC, the energy record and the time per stage; writes OUT/report.json, OUT/report.png, the model
(OUT/run), the indexes (OUT/index-baseline, OUT/index-finetuned), the store, the map and the frames directory
with queries.jsonl. Each stage is the function its CLI command calls, so the README's CLI sequence (``ssl-nav config
dump --preset demo --seed N``, then simulate, collect, finetune, index, eval) gives the same metrics. Without --config the demo preset (ssl_nav/pipeline/presets.py: DEMO_OVERRIDES) sizes the scene and the
training for about 90 s on 2 idle CPU cores; --quick (QUICK_OVERRIDES) for about 20 s.
"""

from __future__ import annotations

import argparse

from ssl_nav.commands import add_config_argument, add_progress_argument, progress_from_args
from ssl_nav.learning.catalog import describe

NAME = "demo"
HELP = f"run the whole pipeline on the embedded simulator and print baseline vs fine-tuned ({describe()})"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="out/demo", help="output directory (default out/demo)")
    p.add_argument("--quick", action="store_true", help="smaller scene and shorter training (about 3 min)")
    p.add_argument("--seed", type=int, default=None, help="scene and training seed (sim.seed, learning.seed)")
    p.add_argument("--segmenter", choices=("auto", "masks", "geometric"), default=None,
                   help="mapping.segmenter: geometric builds the map from depth alone, as a robot without masks "
                        "does (default: the preset's auto, i.e. the simulator's masks)")
    add_progress_argument(p)
    add_config_argument(p)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ssl_nav.config import load_config
    from ssl_nav.energy.report import format_record
    from ssl_nav.pipeline import run_demo
    from ssl_nav.retrieval.evaluate import format_table

    report = run_demo(load_config(args.config) if args.config else None, Path(args.out), quick=args.quick,
                      progress=progress_from_args(args), seed=args.seed, segmenter=args.segmenter)
    s = report["summary"]
    print(f"scene {report['scene_id']} (seed {report['seed']}): {report['n_objects']} objects, "
          f"{report['n_frames']} frames, {report['store']['views_low']} robot views + "
          f"{report['store']['views_high']} user photos of {report['store']['instances']} instances, "
          f"{report['n_queries']} queries")
    print(f"map: {report['map']['instances']} instances by the {report['map']['segmenter']} segmenter "
          f"({report['map']['reason']})")
    up = report.get("metrics_user_photos") or {}
    extra = [(f"{label}, user photos indexed", {"baseline": (up.get("baseline") or {}).get(key),
                                                "fine-tuned": (up.get("finetuned") or {}).get(key)})
             for key, label in (("top1", "top-1"), ("auroc", "open-set AUROC"))] if up else []
    print(f"protocol: {report['protocol']['views_indexed']} indexed"
          + ("; user photos are training data" if report["protocol"]["index_quality"] == "low" else ""))
    print(format_table({"baseline": report["metrics"]["baseline"], "fine-tuned": report["metrics"]["finetuned"]},
                       extra))
    print(format_record(report.get("energy")))
    print("time per stage: " + ", ".join(f"{k} {v:.1f} s" for k, v in report["stage_seconds"].items())
          + f"; total {report['total_seconds']:.1f} s")
    verdict = s.get("finetuned_beats_baseline_mAP")
    print(f"fine-tuned {'beats' if verdict else 'does not beat'} the baseline on mAP "
          f"({s['baseline']['mAP']:.3f} -> {s['finetuned']['mAP']:.3f}); wrote {args.out}/report.json, "
          f"{args.out}/report.png")
    print(f"re-evaluate: ssl-nav eval --index {args.out}/index-finetuned --baseline {args.out}/index-baseline "
          f"--queries {args.out}/frames/queries.jsonl")
    return 0
