"""Build a FAISS instance index from a view store.

  ssl-nav index --store STORE --model RUN/model.pt --out IDX      the fine-tuned model
  ssl-nav index --store STORE --model mobilenet_v2 --out IDX      the ImageNet backbone (the baseline)

Every view of the store is embedded (L2-normalised backbone features) and written to IDX (index.faiss,
meta.json with the model hash and spec, instances.json) with an atomic directory swap.
"""

from __future__ import annotations

import argparse

from ssl_nav.commands import add_config_argument, config_from_args

NAME = "index"
HELP = "embed a view store and write a FAISS instance index"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, help="view store directory")
    p.add_argument("--model", required=True, help="RUN/model.pt, or a backbone name (e.g. mobilenet_v2) for the baseline")
    p.add_argument("--out", required=True, help="index directory to write (replaced atomically)")
    p.add_argument("--quality", choices=("low", "high"), default=None, help="index only robot (low) or user (high) views")
    p.add_argument("--index-type", choices=("auto", "flat", "hnsw"), default=None, help="override retrieval.index_type")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="override retrieval.device")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_argument(p)


def run(args: argparse.Namespace) -> int:
    import time

    from ssl_nav.retrieval.index import read_meta
    from ssl_nav.retrieval.query import build_index_from_store

    cfg = config_from_args(args, {"retrieval.index_type": args.index_type, "retrieval.device": args.device})
    t0 = time.monotonic()
    out = build_index_from_store(args.store, args.model, cfg.retrieval, args.out, progress=not args.no_progress,
                                 quality=args.quality)
    meta = read_meta(out)
    n_inst = len({v[2] for v in meta["vectors"]})
    print(f"{out}: {meta['ntotal']} views of {n_inst} instances, {meta['index_type']} index, dim {meta['dim']}, "
          f"model {meta['model_name']} ({meta['model_hash'][:12]}), {time.monotonic() - t0:.1f} s")
    return 0
