"""Add high-quality user photos of one instance to a view store (CrossIA, arXiv 2404.09645: at most 5 per instance).

  ssl-nav add-photos --store STORE --instance ID photo1.jpg photo2.png ...

Every photo is read before any is added, and a failure adds none; a photo already in the store for that
instance (the same image) is skipped (:func:`ssl_nav.views.ingest.add_user_photos`).
"""

from __future__ import annotations

import argparse

NAME = "add-photos"
HELP = "add high-quality user photos of an instance to a view store"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, help="view store directory")
    p.add_argument("--instance", required=True, help="instance id (an integer, as in instances.json)")
    p.add_argument("images", nargs="+", metavar="IMG", help="photo files")


def run(args: argparse.Namespace) -> int:
    from ssl_nav.views.ingest import MAX_USER_PHOTOS, add_user_photos
    from ssl_nav.views.store import ViewStore

    store = ViewStore(args.store)
    for p in add_user_photos(store, args.instance, args.images):
        if p.duplicate_of is not None:
            print(f"skipped {p.path}: already in the store as {p.duplicate_of['image']}")
        else:
            print(f"added {p.view['image']} ({p.shape[1]}x{p.shape[0]}) from {p.path}")
    iid = str(int(str(args.instance).strip()))
    n = len(store.views(iid, "high"))
    print(f"instance {iid}: {n} high-quality photo(s), {len(store.views(iid, 'low'))} low-quality view(s)"
          + (f"  (CrossIA uses at most {MAX_USER_PHOTOS} photos per instance)" if n > MAX_USER_PHOTOS else ""))
    return 0
