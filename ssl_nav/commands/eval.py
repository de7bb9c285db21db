"""Evaluate an instance index on a queries file, next to the un-fine-tuned baseline.

  ssl-nav eval --index IDX --queries FRAMES/queries.jsonl [--out metrics.json]

Prints top-1, top-5, mAP, MRR, open-set AUROC and accuracy, and goal-distance error (definitions in
docs/retrieval.md and ssl_nav/retrieval/evaluate.py) and writes them as JSON, with the AUROC of every
open-set score. (:func:`ssl_nav.retrieval.evaluate.evaluate_index`). ``--baseline auto`` (default) also evaluates the same backbone before fine-tuning: it embeds
the views of the store recorded in IDX/meta.json that IDX indexes (by default the robot's views) with the
ImageNet backbone in memory; ``--baseline DIR`` uses a baseline index directory; ``--baseline none`` skips
it. Ground-truth centroids for the goal error come from the scene.json next to the queries file, when there
is one. A warning is printed when the queries are the file the open-set threshold was calibrated on.
"""

from __future__ import annotations

import argparse

from ssl_nav.commands import add_config_argument, add_progress_argument, config_from_args, progress_from_args

NAME = "eval"
HELP = "evaluate an index on queries.jsonl (top-1, mAP, open-set AUROC, goal error) vs the baseline"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, help="index directory")
    p.add_argument("--queries", required=True, help="queries.jsonl ({'image', 'instance_id'|null} per line)")
    p.add_argument("--out", default=None, help="write the metrics JSON here (default: print only)")
    p.add_argument("--baseline", default="auto", help="'auto', 'none', or a baseline index directory")
    p.add_argument("--model", default=None, help="override the model recorded in the index")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="override retrieval.device")
    add_progress_argument(p)
    add_config_argument(p)


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from ssl_nav.atomic import atomic_write_json
    from ssl_nav.retrieval.evaluate import evaluate_index, format_table, result_summary

    cfg = config_from_args(args, {"retrieval.device": args.device}).retrieval
    ev = evaluate_index(args.index, args.queries, cfg, baseline=args.baseline, model=args.model,
                        progress=progress_from_args(args))
    for w in ev.warnings:
        print(f"ssl-nav eval: warning: {w}", file=sys.stderr)
    print("protocol: " + ("robot views indexed (user photos are training data)" if ev.index_quality == "low"
                          else "robot views and user photos indexed"))
    print(format_table(ev.columns))
    report = {"index": str(Path(args.index).resolve()), "queries": str(Path(args.queries).resolve()),
              "model_spec": ev.retrievers[ev.model].index.model_spec, "index_quality": ev.index_quality,
              "metrics": ev.columns,
              "per_query": {name: [result_summary(r) for r in res] for name, res in ev.results.items()}}
    if args.out:
        atomic_write_json(args.out, report)
        print(f"wrote {args.out}")
    m = ev.columns[ev.model]
    print(f"{m['n_queries']} queries ({m['n_in_map']} in map, {m['n_open_set']} not): "
          f"{ev.model} top-1 {m['top1'] if m['top1'] is None else round(m['top1'], 3)}, "
          f"mAP {m['mAP'] if m['mAP'] is None else round(m['mAP'], 3)}")
    return 0
