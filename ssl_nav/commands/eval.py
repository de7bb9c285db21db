"""Evaluate an instance index on a queries file, next to the un-fine-tuned baseline.

  ssl-nav eval --index IDX --queries FRAMES/queries.jsonl [--out metrics.json]

Prints top-1, top-5, mAP, MRR, open-set AUROC and accuracy, and goal-distance error (definitions in
docs/retrieval.md and ssl_nav/retrieval/evaluate.py) and writes them as JSON, with the AUROC of every
open-set score. ``--baseline auto`` (default) also evaluates the same backbone before fine-tuning: it embeds
the views of the store recorded in IDX/meta.json that IDX indexes (by default the robot's views) with the
ImageNet backbone in memory; ``--baseline DIR`` uses a baseline index directory; ``--baseline none`` skips
it. Ground-truth centroids for the goal error come from the scene.json next to the queries file, when there
is one. A warning is printed when the queries are the file the open-set threshold was calibrated on.
"""

from __future__ import annotations

import argparse

from ssl_nav.commands import add_config_argument, config_from_args

NAME = "eval"
HELP = "evaluate an index on queries.jsonl (top-1, mAP, open-set AUROC, goal error) vs the baseline"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, help="index directory")
    p.add_argument("--queries", required=True, help="queries.jsonl ({'image', 'instance_id'|null} per line)")
    p.add_argument("--out", default=None, help="write the metrics JSON here (default: print only)")
    p.add_argument("--baseline", default="auto", help="'auto', 'none', or a baseline index directory")
    p.add_argument("--model", default=None, help="override the model recorded in the index")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="override retrieval.device")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_argument(p)


def baseline_retriever(index_dir: str, cfg, spec: str):
    """The ImageNet backbone over the same views of the same store as ``index_dir`` (None when the index is
    itself the baseline, or its store is gone)."""
    import sys
    from pathlib import Path

    from ssl_nav.learning.backbones import BACKBONES
    from ssl_nav.retrieval.build import build_index
    from ssl_nav.retrieval.embedder import Embedder
    from ssl_nav.retrieval.index import read_meta
    from ssl_nav.retrieval.query import Retriever, embedding_config

    meta = read_meta(index_dir)
    if spec == "none" or meta.get("model_spec") in BACKBONES:
        return None
    if spec != "auto":
        return Retriever.open(spec, cfg)
    extra = meta.get("extra") or {}
    store_dir = extra.get("store")
    if not store_dir or not Path(store_dir).is_dir():
        print(f"ssl-nav eval: no baseline: the store of {index_dir} ({store_dir}) is not available", file=sys.stderr)
        return None
    name = meta.get("model_name")
    if name not in BACKBONES:
        print(f"ssl-nav eval: no baseline: {index_dir}/meta.json names no known backbone ('model_name': {name!r})",
              file=sys.stderr)
        return None
    cfg = embedding_config(cfg, meta)  # embed like the evaluated index: same image size, TTA and views
    embedder = Embedder.load(name, cfg)
    quality = (extra.get("embedding") or {}).get("quality") or "all"  # indexes from before the protocol: all
    index = build_index(store_dir, embedder, cfg, quality="low" if quality == "low" else "all", progress=False)
    return Retriever(index, embedder, cfg)


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from ssl_nav.atomic import atomic_write_json
    from ssl_nav.retrieval.evaluate import evaluate_queries_file, fitted_on, format_table, result_summary
    from ssl_nav.retrieval.query import Retriever

    cfg = config_from_args(args, {"retrieval.device": args.device}).retrieval
    retriever = Retriever.open(args.index, cfg, model=args.model)
    for w in retriever.warnings:
        print(f"ssl-nav eval: warning: {w}", file=sys.stderr)
    if retriever.thresholds.calibrated and fitted_on(retriever.index, args.queries):
        print(f"ssl-nav eval: warning: {args.queries} is the file the open-set threshold of {args.index} was "
              f"calibrated on: open-set accuracy is optimistic; evaluate on queries apart from the calibration "
              f"split (calibrate on FRAMES/calibration.jsonl, evaluate on FRAMES/queries.jsonl)", file=sys.stderr)
    columns, per_query = {}, {}
    base = baseline_retriever(args.index, cfg, args.baseline)
    if base is not None:
        m, res = evaluate_queries_file(base, args.queries, progress=not args.no_progress)
        columns["baseline"], per_query["baseline"] = m, [result_summary(r) for r in res]
    m, res = evaluate_queries_file(retriever, args.queries, progress=not args.no_progress)
    name = "fine-tuned" if base is not None else "model"
    columns[name], per_query[name] = m, [result_summary(r) for r in res]
    quality = ((retriever.index.extra.get("embedding") or {}).get("quality")) or "all"
    print("protocol: " + ("robot views indexed (user photos are training data)" if quality == "low"
                          else "robot views and user photos indexed"))
    print(format_table(columns))
    report = {"index": str(Path(args.index).resolve()), "queries": str(Path(args.queries).resolve()),
              "model_spec": retriever.index.model_spec, "index_quality": quality, "metrics": columns,
              "per_query": per_query}
    if args.out:
        atomic_write_json(args.out, report)
        print(f"wrote {args.out}")
    m = columns[name]
    print(f"{m['n_queries']} queries ({m['n_in_map']} in map, {m['n_open_set']} not): "
          f"{name} top-1 {m['top1'] if m['top1'] is None else round(m['top1'], 3)}, "
          f"mAP {m['mAP'] if m['mAP'] is None else round(m['mAP'], 3)}")
    return 0
