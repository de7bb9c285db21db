"""Build the 3D instance map from a recording and collect multi-view crops into a view store.

  ssl-nav collect --frames DIR --store STORE [--config YAML] [--id-mode stable|per_frame]
  ssl-nav collect --bag BAG --store STORE [--rgb-topic T] [--depth-topic T] [--world-frame map|odom]
  ssl-nav collect --tum DIR --store STORE [--tum-camera freiburg1|freiburg2|freiburg3|default]

A rosbag2 recording (``--bag``: a bag directory, or a lone .mcap/.db3 file; read without ROS by
:mod:`ssl_nav.recordings.bag`) or a TUM RGB-D sequence (``--tum``, :mod:`ssl_nav.recordings.tum`) is first
converted into a frames directory (a temporary one, or ``--keep-frames DIR``) and then collected like one; the
conversion prints how many colour images became frames and why the others were skipped. A recording that
cannot be converted (a missing topic, an unknown encoding, no transform chain, a corrupt bag, ...) is an error
before the store is touched (docs/formats.md, "Recordings").

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
HELP = "map a frames directory, rosbag2 bag or TUM RGB-D sequence and collect instance views into a view store"


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--frames", metavar="DIR", help="frames directory (frames.jsonl + images)")
    src.add_argument("--bag", metavar="PATH", help="rosbag2 recording: a bag directory (MCAP or sqlite3), or a "
                     ".mcap / .db3 file; no ROS installation needed")
    src.add_argument("--tum", metavar="DIR", help="TUM RGB-D sequence (rgb.txt, depth.txt, groundtruth.txt)")
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
    g = p.add_argument_group("recordings (--bag, --tum; the recordings section of the configuration)")
    g.add_argument("--rgb-topic", default=None, help="bag: colour topic, Image (rgb8/bgr8/rgba8/mono8) or "
                   "CompressedImage (recordings.rgb_topic; default /camera/camera/color/image_raw)")
    g.add_argument("--depth-topic", default=None, help="bag: depth topic registered to colour, Image 16UC1 mm / "
                   "32FC1 m or CompressedImage compressedDepth (recordings.depth_topic; default "
                   "/camera/camera/aligned_depth_to_color/image_raw)")
    g.add_argument("--camera-info-topic", default=None, help="bag: CameraInfo of the colour camera "
                   "(recordings.camera_info_topic; default /camera/camera/color/camera_info)")
    g.add_argument("--instance-topic", default=None, help="bag: optional instance-mask topic, used when present "
                   "(recordings.instance_topic)")
    g.add_argument("--pose-topic", default=None, metavar="TOPIC", help="bag: take the camera pose from this "
                   "PoseStamped / Odometry topic (+ /tf_static) instead of /tf (recordings.pose_source: topic, "
                   "recordings.pose_topic)")
    g.add_argument("--world-frame", choices=("map", "odom"), default=None,
                   help="bag: world frame of the poses (recordings.world_frame; default map)")
    g.add_argument("--camera-frame", default=None, help="bag: the camera's optical frame (recordings.camera_frame; "
                   "default: the colour images' header.frame_id)")
    g.add_argument("--tum-camera", choices=("auto", "freiburg1", "freiburg2", "freiburg3", "default"), default=None,
                   help="TUM: intrinsics (recordings.tum_camera; auto: from the directory name)")
    g.add_argument("--keep-frames", metavar="DIR", default=None,
                   help="--bag/--tum: write the converted frames directory here (new) and keep it; otherwise a "
                        "temporary one is removed after collecting")


def run(args: argparse.Namespace) -> int:
    import shutil
    import tempfile
    from pathlib import Path

    from ssl_nav.errors import ConfigError

    cfg = config_from_args(args, {"mapping.id_mode": args.id_mode, "mapping.segmenter": args.segmenter,
                                  "views.deblur": args.deblur, "recordings.rgb_topic": args.rgb_topic,
                                  "recordings.depth_topic": args.depth_topic,
                                  "recordings.camera_info_topic": args.camera_info_topic,
                                  "recordings.instance_topic": args.instance_topic,
                                  "recordings.pose_source": None if args.pose_topic is None else "topic",
                                  "recordings.pose_topic": args.pose_topic,
                                  "recordings.world_frame": args.world_frame,
                                  "recordings.camera_frame": args.camera_frame,
                                  "recordings.tum_camera": args.tum_camera})
    if args.frames is not None:
        if args.keep_frames is not None:
            raise ConfigError("--keep-frames goes with --bag or --tum, not --frames")
        return _collect(args, cfg, args.frames, args.frames)
    from ssl_nav.recordings import convert_recording

    kind, source = ("bag", args.bag) if args.bag is not None else ("tum", args.tum)
    out = Path(args.keep_frames) if args.keep_frames else Path(tempfile.mkdtemp(prefix=f"ssl_nav-{kind}-"))
    try:
        conv = convert_recording(kind, source, out, cfg, progress=progress_from_args(args))
        skipped = sum(conv["skipped"].values())
        print(f"{source}: {conv['images']} colour images, {conv['frames']} frames, {skipped} skipped"
              + (f" (TUM intrinsics: {conv['camera']})" if "camera" in conv else ""))
        for reason, n in sorted(conv["skipped"].items(), key=lambda t: -t[1]):
            print(f"  skipped {n:4d}  {reason}")
        return _collect(args, cfg, out, source)
    finally:
        if args.keep_frames is None:
            shutil.rmtree(out, ignore_errors=True)


def _collect(args: argparse.Namespace, cfg, frames_dir, source) -> int:
    import sys
    from pathlib import Path

    from ssl_nav.views.ingest import collect_recording

    res = collect_recording(frames_dir, args.store, cfg, append=args.append, photos=not args.no_photos,
                            progress=progress_from_args(args))
    if res.already is not None:
        done = res.already
        what = Path(source) / "frames.jsonl" if args.frames is not None else source
        print(f"{what}: already collected into {res.store.root} ({done.get('time')}: "
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
