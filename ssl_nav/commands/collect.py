"""Build the 3D instance map from a frames directory and collect multi-view crops into a view store.

  ssl-nav collect --frames DIR --store STORE [--config YAML] [--id-mode stable|per_frame]

Reads DIR/frames.jsonl (the format ``ssl-nav simulate`` writes), categories from
DIR/scene.json and high-quality user photos from DIR/photos.jsonl when present.
The map is saved as STORE/map/map.ply + STORE/map/instances.json. Bad frames are
skipped and counted with their reasons.
"""

from __future__ import annotations

import argparse

from ssl_nav.commands import add_config_argument, config_from_args

NAME = "collect"
HELP = "map a frames directory and collect instance views into a view store"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", required=True, metavar="DIR", help="frames directory (frames.jsonl + images)")
    p.add_argument("--store", required=True, metavar="STORE", help="view store directory (created when missing)")
    add_config_argument(p)
    p.add_argument("--id-mode", choices=("stable", "per_frame"), default=None,
                   help="instance ids in masks: stable (simulators) or per_frame (2D segmenter)")
    p.add_argument("--segmenter", choices=("auto", "masks", "semantic_map", "geometric"), default=None,
                   help="map instances from the frames' masks, an external semantic map (mapping.semantic_map), or "
                        "geometric 3D segmentation of the depth (no masks needed); auto (default): masks when the "
                        "frames carry them, else geometric")
    p.add_argument("--deblur", choices=("none", "unsharp", "wiener", "model"), default=None,
                   help="deblur robot frames before cutting views (views.deblur; model: views.deblur_model)")
    p.add_argument("--no-photos", action="store_true", help="ignore DIR/photos.jsonl")
    p.add_argument("--append", action="store_true",
                   help="add to a store that already holds views (otherwise that is an error)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def read_categories(frames_dir) -> dict[int, str]:
    """``instance_id -> category`` from ``DIR/scene.json`` (empty when absent)."""
    import json
    from pathlib import Path

    from ssl_nav.errors import FormatError

    p = Path(frames_dir) / "scene.json"
    if not p.is_file():
        return {}
    try:
        scene = json.loads(p.read_text())
        return {int(o["instance_id"]): o.get("category") for o in scene.get("objects", [])}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise FormatError(f"{p}: cannot read objects[].instance_id/category ({e})") from None


def add_photos_from_dir(frames_dir, store, progress: bool = True) -> dict:
    """Add ``DIR/photos.jsonl`` photos as HQ views; returns counts (added, skipped with reasons)."""
    from pathlib import Path

    from tqdm import tqdm

    from ssl_nav.errors import FrameError
    from ssl_nav.frames import read_image_rgb, read_jsonl

    root = Path(frames_dir)
    path = root / "photos.jsonl"
    out = {"photos": 0, "photos_skipped": []}
    if not path.is_file():
        return out
    known = store.instances()
    from ssl_nav.mapping.gt_match import gt_to_map_ids, has_gt_annotation

    to_map = gt_to_map_ids(known) if has_gt_annotation(known) else None  # photos name simulator ids
    for n, rec in tqdm(list(read_jsonl(path)), desc="collect: photos", unit="photo", disable=not progress):
        try:
            iid = str(int(rec["instance_id"]))
            iid = to_map.get(iid, f"{iid} (simulator id, unmatched)") if to_map is not None else iid
            img = read_image_rgb(root / rec["image"])
        except (KeyError, TypeError, ValueError) as e:
            out["photos_skipped"].append(f"{path}:{n}: bad record ({e})")
            continue
        except FrameError as e:
            out["photos_skipped"].append(f"{path}:{n}: {e}")
            continue
        if iid not in known:
            out["photos_skipped"].append(f"{path}:{n}: instance {iid} is not in the map")
            continue
        store.add_view(iid, img, "high", source=str(rec["image"]))
        out["photos"] += 1
    return out


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ssl_nav.frames import count_frames, read_frames_dir
    from ssl_nav.views.collect import collect_frames
    from ssl_nav.views.store import ViewStore

    cfg = config_from_args(args, {"mapping.id_mode": args.id_mode, "mapping.segmenter": args.segmenter,
                                  "views.deblur": args.deblur})
    from ssl_nav.errors import FormatError

    frames_dir = Path(args.frames)
    if not (frames_dir / "frames.jsonl").is_file():
        raise FormatError(f"{frames_dir / 'frames.jsonl'}: not a frames directory (frames.jsonl missing)")
    total = count_frames(frames_dir)
    frames = read_frames_dir(frames_dir)
    categories = read_categories(frames_dir) if cfg.mapping.id_mode == "stable" else {}
    store = ViewStore(args.store, create=True)
    if len(store) and not args.append:
        from ssl_nav.errors import StoreError

        raise StoreError(f"{store.root}: already holds {len(store)} views; use a new --store or pass --append")
    from ssl_nav.mapping.gt_match import read_scene_objects

    summary = collect_frames(frames, store, cfg, progress=not args.quiet, total=total, categories=categories,
                             map_dir=store.root / "map", gt_objects=read_scene_objects(frames_dir))
    photos = {"photos": 0, "photos_skipped": []}
    if not args.no_photos:
        photos = add_photos_from_dir(frames_dir, store, progress=not args.quiet)
    print(f"frames: {summary['frames_total']} read, {summary['frames_used']} used "
          f"({summary['keyframes']} keyframes), {summary['frames_skipped']} skipped")
    for reason, n in sorted(summary["skip_reasons"].items(), key=lambda t: -t[1]):
        print(f"  skipped {n:4d}  {reason}")
    for s in summary["skipped"][:10]:
        print(f"    {s['reason']}")
    print(f"map: {summary['instances']} instances, {summary['map_points']} points -> {store.root / 'map' / 'map.ply'}")
    print(f"segmenter: {summary['segmenter']} ({summary['segmenter_reason']})"
          + "".join(f"; {n} frames: {r}" for r, n in sorted(summary["frames_without_objects"].items())))
    rej = ", ".join(f"{k} {v}" for k, v in sorted(summary["rejected"].items(), key=lambda t: -t[1])) or "none"
    print(f"views: {summary['candidates']} candidates (rejected: {rej})")
    for s in photos["photos_skipped"][:10]:
        print(f"  photo skipped: {s}")
    print(f"store {store.root}: {summary['views_low']} low-quality views of {summary['instances_with_views']} "
          f"instances, {photos['photos']} high-quality photos added; {len(store)} views in total")
    return 0
