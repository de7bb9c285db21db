"""Build a FAISS instance index from a view store.

  ssl-nav index --store STORE --model RUN/model.pt --out IDX      the fine-tuned model
  ssl-nav index --store STORE --model mobilenet_v2 --out IDX      the ImageNet backbone (the baseline)

The store's robot views (``retrieval.index_quality: low``, the evaluation protocol: the user photos are
training data) are embedded (L2-normalised backbone features) and written to IDX (index.faiss, meta.json with
the model hash and spec, instances.json) with an atomic directory swap. ``--quality all`` indexes the user
photos too. The directory format is described in docs/retrieval.md.
"""

from __future__ import annotations

import argparse

from ssl_nav.commands import add_config_argument, add_progress_argument, config_from_args, progress_from_args

NAME = "index"
HELP = "embed a view store and write a FAISS instance index"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, help="view store directory")
    p.add_argument("--model", required=True, help="RUN/model.pt, or a backbone name (e.g. mobilenet_v2) for the baseline")
    p.add_argument("--out", required=True, help="index directory to write (replaced atomically)")
    p.add_argument("--quality", choices=("low", "all"), default=None,
                   help="views indexed: robot views only (low, the default protocol) or all, user photos too "
                        "(overrides retrieval.index_quality)")
    p.add_argument("--index-type", choices=("auto", "flat", "ivf_flat", "ivf_sq8", "ivf_pq", "hnsw"), default=None,
                   help="override retrieval.index_type (docs/retrieval.md, 'Index structures')")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="override retrieval.device")
    add_progress_argument(p)
    add_config_argument(p)


def run(args: argparse.Namespace) -> int:
    import time

    from ssl_nav.retrieval.build import build_index

    cfg = config_from_args(args, {"retrieval.index_type": args.index_type, "retrieval.device": args.device,
                                  "retrieval.index_quality": args.quality})
    t0 = time.monotonic()
    index = build_index(args.store, args.model, cfg.retrieval, args.out, progress=progress_from_args(args))
    views = "robot views" if cfg.retrieval.index_quality == "low" else "views (robot views and user photos)"
    print(f"{args.out}: {index.ntotal} {views} of {len(index.instance_ids())} instances, {index.index_type} index, "
          f"dim {index.dim}, model {index.model_name} ({index.model_hash[:12]}), {time.monotonic() - t0:.1f} s")
    return 0
