"""Build the 3D instance map from a frames directory and collect multi-view crops into a view store.

  ssl-nav collect --frames DIR --store STORE [--config YAML] [--id-mode stable|per_frame]

Reads DIR/frames.jsonl (the format ``ssl-nav simulate`` writes), categories from
DIR/scene.json and high-quality user photos from DIR/photos.jsonl when present.
The map is saved as STORE/map/map.ply + STORE/map/instances.json. Bad frames are
skipped and counted with their reasons (``frames.jsonl:LINE``).

All or nothing (:func:`ssl_nav.views.ingest.collect_recording`, the stage ``ssl-nav demo``
runs too): a command that fails (a malformed photos.jsonl, no usable frame, a
full disk, Ctrl-C) leaves the store as it found it. ``--append`` continues the
store's map (STORE/map), so instance ids keep counting and the map holds both
recordings; a recording already collected into the store (same frames.jsonl
bytes, listed in STORE/sources.jsonl) is not collected twice.
"""

from __future__ import annotations

import argparse

from ssl_nav.commands import add_config_argument, add_progress_argument, config_from_args, progress_from_args

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
    add_progress_argument(p, "--quiet")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from ssl_nav.views.ingest import collect_recording

    cfg = config_from_args(args, {"mapping.id_mode": args.id_mode, "mapping.segmenter": args.segmenter,
                                  "views.deblur": args.deblur})
    res = collect_recording(args.frames, args.store, cfg, append=args.append, photos=not args.no_photos,
                            progress=progress_from_args(args))
    if res.already is not None:
        done = res.already
        print(f"{Path(args.frames) / 'frames.jsonl'}: already collected into {res.store.root} ({done.get('time')}: "
              f"{done.get('views')} views, {done.get('photos')} photos); nothing to do")
        return 0
    summary, photos, store = res.summary, res.photos, res.store
    print(f"frames: {summary['frames_total']} read, {summary['frames_used']} used "
          f"({summary['keyframes']} keyframes), {summary['frames_skipped']} skipped")
    for reason, n in sorted(summary["skip_reasons"].items(), key=lambda t: -t[1]):
        print(f"  skipped {n:4d}  {reason}")
    for s in summary["skipped"][:10]:
        print(f"    {s['reason']}")
    print(f"map: {summary['instances']} instances, {summary['map_points']} points -> {res.map_dir / 'map.ply'}")
    print(f"segmenter: {summary['segmenter']} ({summary['segmenter_reason']})"
          + "".join(f"; {n} frames: {r}" for r, n in sorted(summary["frames_without_objects"].items())))
    rej = ", ".join(f"{k} {v}" for k, v in sorted(summary["rejected"].items(), key=lambda t: -t[1])) or "none"
    print(f"views: {summary['candidates']} candidates (rejected: {rej})")
    for s in photos["photos_skipped"][:10]:
        print(f"  photo skipped: {s}")
    print(f"store {store.root}: {summary['views_low']} low-quality views of {summary['instances_with_views']} "
          f"instances, {photos['photos']} high-quality photos added; {len(store)} views in total")
    if summary["views_low"] + summary["views_high"] == 0:
        print(f"ssl-nav collect: warning: no robot view passed the quality thresholds (rejected: {rej}); check the "
              f"views section of the configuration", file=sys.stderr)
    return 0
