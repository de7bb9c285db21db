"""Query an instance index with photos; prints JSON.

  ssl-nav query --index IDX photo.jpg [more.jpg ...]

For each photo: the top-k instances with scores, categories, centroids and goal poses (the centroid plus a
facing yaw: no free-space map here), the open-set score and threshold in force, and whether the object is in
the map (with the reason when not). The model is the one recorded in IDX/meta.json (``--model`` overrides it);
its hash must match the index. A photo that cannot be used (missing, undecodable, smaller than
``retrieval.min_query_px``) gets ``{"image", "error"}`` and an error line on stderr; the other photos are still
answered, and the command exits 2.
"""

from __future__ import annotations

import argparse

from ssl_nav.commands import add_config_argument, config_from_args

NAME = "query"
HELP = "answer query photos with ranked map instances and goal poses (JSON)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, help="index directory (from ssl-nav index)")
    p.add_argument("images", nargs="+", help="query photos")
    p.add_argument("--model", default=None, help="override the model recorded in the index (hash must match)")
    p.add_argument("--top-k", type=int, default=None, help="instances returned (retrieval.top_k)")
    p.add_argument("--open-set-score", default=None, help="override retrieval.open_set_score")
    p.add_argument("--reject-threshold", type=float, default=None,
                   help="override the open-set threshold (the index's calibrated one is then ignored)")
    p.add_argument("--reject-margin", type=float, default=None, help="override retrieval.reject_margin")
    p.add_argument("--robot-position", type=float, nargs=2, metavar=("X", "Y"), default=None,
                   help="robot position, for the goal's facing yaw")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="override retrieval.device")
    add_config_argument(p)


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    import numpy as np

    from ssl_nav.errors import SslNavError
    from ssl_nav.frames import read_image_rgb
    from ssl_nav.retrieval.query import Retriever

    overrides = {"retrieval.top_k": args.top_k, "retrieval.reject_threshold": args.reject_threshold,
                 "retrieval.reject_margin": args.reject_margin, "retrieval.device": args.device,
                 "retrieval.open_set_score": args.open_set_score}
    cfg = config_from_args(args, overrides)
    explicit = args.reject_threshold is not None or args.reject_margin is not None
    retriever = Retriever.open(args.index, cfg.retrieval, model=args.model, use_index_thresholds=not explicit)
    for w in retriever.warnings:
        print(f"ssl-nav query: warning: {w}", file=sys.stderr)
    robot = None if args.robot_position is None else np.asarray(args.robot_position)
    out, failed = [], 0
    for path in args.images:
        try:
            res = retriever.query(read_image_rgb(path), robot_position=robot, what=str(path))
        except (SslNavError, ValueError) as e:
            msg = str(e) if str(e).startswith(str(path)) else f"{path}: {e}"
            print(f"ssl-nav query: error: {msg}", file=sys.stderr)
            out.append({"image": path, "error": msg})
            failed += 1
            continue
        res.pop("warnings", None)  # printed once on stderr
        out.append({"image": path, **res})
    print(json.dumps(out if len(out) > 1 else out[0], indent=2))
    if failed:
        print(f"ssl-nav query: {failed} of {len(args.images)} photos could not be answered", file=sys.stderr)
        return 2
    return 0
