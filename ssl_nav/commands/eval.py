"""Evaluate an instance index on a queries file (DESIGN.md format), next to the un-fine-tuned baseline.

  ssl-nav eval --index IDX --queries queries.jsonl [--out metrics.json]

Prints top-1, top-5, mAP, MRR, open-set AUROC and goal-distance error (definitions in
ssl_nav/retrieval/evaluate.py) and writes them as JSON. ``--baseline auto`` (default) also evaluates the same
backbone before fine-tuning: it embeds the store recorded in IDX/meta.json with the ImageNet backbone in
memory; ``--baseline DIR`` uses a baseline index directory; ``--baseline none`` skips it. Ground-truth
centroids for the goal error come from the scene.json next to the queries file, when there is one.
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
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_argument(p)


def baseline_retriever(index_dir: str, cfg, spec: str):
    """The ImageNet backbone over the same store as ``index_dir`` (None when the index is itself the baseline)."""
    import sys
    from pathlib import Path

    from ssl_nav.learning.backbones import BACKBONES, load_encoder
    from ssl_nav.retrieval.embedder import Embedder, resolve_device
    from ssl_nav.retrieval.index import InstanceIndex, read_meta
    from ssl_nav.retrieval.query import Retriever, embedding_config, index_from_store

    meta = read_meta(index_dir)
    if spec == "none" or meta.get("model_spec") in BACKBONES:
        return None
    if spec != "auto":
        return Retriever.open(spec, cfg)
    store_dir = (meta.get("extra") or {}).get("store")
    if not store_dir or not Path(store_dir).is_dir():
        print(f"ssl-nav eval: no baseline: the store of {index_dir} ({store_dir}) is not available", file=sys.stderr)
        return None
    from ssl_nav.views.store import ViewStore

    cfg = embedding_config(cfg, meta)  # embed like the evaluated index: same image size, TTA and views
    enc = load_encoder(meta["model_name"], device=resolve_device(cfg.device))
    emb = Embedder(enc, cfg)
    quality = ((meta.get("extra") or {}).get("embedding") or {}).get("quality")
    idx: InstanceIndex = index_from_store(ViewStore(store_dir), enc, cfg, meta["model_name"], progress=False,
                                          quality=quality, embedder=emb)
    return Retriever(idx, emb, cfg)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ssl_nav.atomic import atomic_write_json
    from ssl_nav.retrieval.evaluate import evaluate_queries_file, format_table, result_summary
    from ssl_nav.retrieval.query import Retriever

    cfg = config_from_args(args).retrieval
    retriever = Retriever.open(args.index, cfg, model=args.model)
    columns, per_query = {}, {}
    base = baseline_retriever(args.index, cfg, args.baseline)
    if base is not None:
        m, res = evaluate_queries_file(base, args.queries, progress=not args.no_progress)
        columns["baseline"], per_query["baseline"] = m, [result_summary(r) for r in res]
    m, res = evaluate_queries_file(retriever, args.queries, progress=not args.no_progress)
    name = "fine-tuned" if base is not None else "model"
    columns[name], per_query[name] = m, [result_summary(r) for r in res]
    print(format_table(columns))
    report = {"index": str(Path(args.index).resolve()), "queries": str(Path(args.queries).resolve()),
              "model_spec": retriever.index.model_spec, "metrics": columns, "per_query": per_query}
    if args.out:
        atomic_write_json(args.out, report)
        print(f"wrote {args.out}")
    m = columns[name]
    print(f"{m['n_queries']} queries ({m['n_in_map']} in map, {m['n_open_set']} not): "
          f"{name} top-1 {m['top1'] if m['top1'] is None else round(m['top1'], 3)}, "
          f"mAP {m['mAP'] if m['mAP'] is None else round(m['mAP'], 3)}")
    return 0
