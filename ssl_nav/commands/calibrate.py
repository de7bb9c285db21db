"""Fit the open-set ("not in the map") thresholds on held-out queries.

  ssl-nav calibrate --index IDX --queries held-out.jsonl

The held-out queries must include in-map and not-in-map ones (instance_id null). The thresholds
(reject_score, reject_margin) that maximise the balanced accuracy of accept/reject are written into
IDX/meta.json ("thresholds", the index is re-saved with an atomic directory swap), where ``ssl-nav query``,
``ssl-nav eval`` and the retrieval server use them; the equivalent YAML snippet for the ``retrieval:`` section
is printed too (``--no-write`` only prints it).
"""

from __future__ import annotations

import argparse

from ssl_nav.commands import add_config_argument, config_from_args

NAME = "calibrate"
HELP = "fit the not-in-map thresholds on held-out queries and store them in the index"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, help="index directory")
    p.add_argument("--queries", required=True, help="held-out queries.jsonl with in-map and null instance ids")
    p.add_argument("--model", default=None, help="override the model recorded in the index")
    p.add_argument("--no-write", action="store_true", help="print the YAML snippet only; leave the index as it is")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_argument(p)


def run(args: argparse.Namespace) -> int:
    from ssl_nav.errors import SslNavError
    from ssl_nav.retrieval.evaluate import calibrate, evaluate_queries_file
    from ssl_nav.retrieval.query import Retriever

    cfg = config_from_args(args).retrieval
    retriever = Retriever.open(args.index, cfg, model=args.model, use_index_thresholds=False)
    _, results = evaluate_queries_file(retriever, args.queries, progress=not args.no_progress)
    try:
        t = calibrate([r.best_score for r in results], [r.margin for r in results],
                      [r.gt_instance_id is not None for r in results])
    except ValueError as e:
        raise SslNavError(f"{args.queries}: {e}") from None
    print("retrieval:")
    print(f"  reject_score: {t['reject_score']}")
    print(f"  reject_margin: {t['reject_margin']}")
    if not args.no_write:
        index = retriever.index
        index.thresholds = {"reject_score": t["reject_score"], "reject_margin": t["reject_margin"],
                            "balanced_accuracy": t["balanced_accuracy"], "queries": str(args.queries)}
        index.save(args.index)
        print(f"wrote thresholds into {args.index}/meta.json")
    print(f"calibrated on {t['n_in_map']} in-map + {t['n_open_set']} not-in-map queries: "
          f"balanced accuracy {t['balanced_accuracy']:.3f}")
    return 0
