"""Query an instance index with photos; prints JSON.

  ssl-nav query --index IDX photo.jpg [more.jpg ...]

For each photo: the top-k instances with scores, categories, centroids and goal poses (the centroid plus a
facing yaw: no free-space map here), or "not in the map" with the reason. The model is the one recorded in
IDX/meta.json (``--model`` overrides it); its hash must match the index.
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
    p.add_argument("--reject-score", type=float, default=None, help="override the best-score threshold")
    p.add_argument("--reject-margin", type=float, default=None, help="override the margin threshold")
    p.add_argument("--robot-position", type=float, nargs=2, metavar=("X", "Y"), default=None,
                   help="robot position, for the goal's facing yaw")
    add_config_argument(p)


def run(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from ssl_nav.frames import read_image_rgb
    from ssl_nav.retrieval.query import Retriever

    overrides = {"retrieval.top_k": args.top_k, "retrieval.reject_score": args.reject_score,
                 "retrieval.reject_margin": args.reject_margin}
    cfg = config_from_args(args, overrides)
    explicit = args.reject_score is not None or args.reject_margin is not None
    retriever = Retriever.open(args.index, cfg.retrieval, model=args.model, use_index_thresholds=not explicit)
    robot = None if args.robot_position is None else np.asarray(args.robot_position)
    out = []
    for path in args.images:
        res = retriever.query(read_image_rgb(path), robot_position=robot)
        out.append({"image": path, **res})
    print(json.dumps(out if len(out) > 1 else out[0], indent=2))
    return 0
