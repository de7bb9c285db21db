"""Add high-quality user photos of one instance to a view store (CrossIA, arXiv 2404.09645: at most 5 per instance).

  ssl-nav add-photos --store STORE --instance ID photo1.jpg photo2.png ...

Every photo is read before any is added, and a failure adds none; a photo already in the store for that
instance (the same image) is skipped.
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
    from pathlib import Path

    from ssl_nav.errors import FrameError, StoreError
    from ssl_nav.frames import read_image_rgb
    from ssl_nav.views.store import ViewStore

    store = ViewStore(args.store)
    iid = str(args.instance).strip()
    try:
        iid = str(int(iid))
    except ValueError:
        raise StoreError(f"--instance: {args.instance!r} is not an integer instance id") from None
    if iid not in store.instances():
        known = ", ".join(sorted(store.instances(), key=int)) or "none"
        raise StoreError(f"{store.instances_path}: instance {iid} is not in the map (known: {known})")
    images = []
    for path in args.images:
        try:
            images.append((path, read_image_rgb(path)))
        except FrameError as e:
            raise StoreError(str(e)) from None
    with store.transaction():  # all photos or none
        for path, img in images:
            same = store.identical_view(iid, img, "high")
            if same is not None:
                print(f"skipped {path}: already in the store as {same['image']}")
                continue
            rec = store.add_view(iid, img, "high", source=Path(path).name)
            print(f"added {rec['image']} ({img.shape[1]}x{img.shape[0]}) from {path}")
    n = len(store.views(iid, "high"))
    print(f"instance {iid}: {n} high-quality photo(s), {len(store.views(iid, 'low'))} low-quality view(s)"
          + ("  (CrossIA uses at most 5 photos per instance)" if n > 5 else ""))
    return 0
