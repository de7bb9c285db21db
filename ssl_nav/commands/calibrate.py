"""Fit the open-set ("not in the map") threshold on a calibration split.

  ssl-nav calibrate --index IDX --queries FRAMES/calibration.jsonl

The calibration queries (same format as queries.jsonl) must include in-map and not-in-map ones
(instance_id null), and must be apart from the queries you evaluate on: ``ssl-nav simulate`` writes
``calibration.jsonl`` (with ``calibration/*.png``) next to ``queries.jsonl`` for this. The threshold on the
open-set score in force (``retrieval.open_set_score``) that maximises the balanced accuracy of accept/reject
is written into IDX/meta.json (``thresholds``, with the path and sha256 of the calibration file; the index is
re-saved with an atomic directory swap), where ``ssl-nav query``, ``ssl-nav eval`` and the retrieval server use
it (:func:`ssl_nav.retrieval.evaluate.calibrate_index`); ``ssl-nav eval`` warns when it is given that same file. The equivalent YAML snippet for the
``retrieval:`` section is printed too (``--no-write`` only prints it).
"""

from __future__ import annotations

import argparse

from ssl_nav.commands import add_config_argument, add_progress_argument, config_from_args, progress_from_args

NAME = "calibrate"
HELP = "fit the not-in-map threshold on a calibration split and store it in the index"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, help="index directory")
    p.add_argument("--queries", required=True,
                   help="calibration queries (FRAMES/calibration.jsonl), with in-map and null instance ids")
    p.add_argument("--model", default=None, help="override the model recorded in the index")
    p.add_argument("--open-set-score", default=None, help="override retrieval.open_set_score")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="override retrieval.device")
    p.add_argument("--no-write", action="store_true", help="print the YAML snippet only; leave the index as it is")
    add_progress_argument(p)
    add_config_argument(p)


def run(args: argparse.Namespace) -> int:
    from ssl_nav.retrieval.evaluate import calibrate_index

    cfg = config_from_args(args, {"retrieval.device": args.device,
                                  "retrieval.open_set_score": args.open_set_score}).retrieval
    score, t = calibrate_index(args.index, args.queries, cfg, model=args.model, write=not args.no_write,
                               progress=progress_from_args(args))
    print("retrieval:")
    print(f"  open_set_score: {score}")
    print(f"  reject_threshold: {t['threshold']}")
    if not args.no_write:
        print(f"wrote the threshold into {args.index}/meta.json")
    print(f"calibrated {score} on {t['n_in_map']} in-map + {t['n_open_set']} not-in-map queries: "
          f"balanced accuracy {t['balanced_accuracy']:.3f}")
    import sys

    for w in t.get("warnings", []):
        print(f"ssl-nav calibrate: WARNING: {w}", file=sys.stderr)
    return 0
