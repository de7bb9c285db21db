"""Build the 3D instance map from a frames directory and collect multi-view crops into a view store.

  ssl-nav collect --frames DIR --store STORE [--config YAML] [--id-mode stable|per_frame]

Reads DIR/frames.jsonl (the format ``ssl-nav simulate`` writes), categories from
DIR/scene.json and high-quality user photos from DIR/photos.jsonl when present.
The map is saved as STORE/map/map.ply + STORE/map/instances.json. Bad frames are
skipped and counted with their reasons (``frames.jsonl:LINE``).

All or nothing: a command that fails (a malformed photos.jsonl, no usable frame, a
full disk, Ctrl-C) leaves the store as it found it. ``--append`` continues the
store's map (STORE/map), so instance ids keep counting and the map holds both
recordings; a recording already collected into the store (same frames.jsonl
bytes, listed in STORE/sources.jsonl) is not collected twice.
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


def read_scene_id(frames_dir) -> str | None:
    """``scene_id`` of ``DIR/scene.json`` (None when absent or unreadable: categories report that)."""
    import json
    from pathlib import Path

    p = Path(frames_dir) / "scene.json"
    try:
        sid = json.loads(p.read_bytes()).get("scene_id")
    except (OSError, ValueError, AttributeError):
        return None
    return None if sid is None else str(sid)


def _check_same_scene(store_root, sources: list[dict], scene_id: str | None, id_mode: str) -> None:
    """Stable ids are the simulator's object ids: they only mean the same object within one scene."""
    from ssl_nav.errors import StoreError

    if id_mode != "stable" or scene_id is None:
        return
    other = next((s for s in sources if s.get("scene_id") not in (None, scene_id) and s.get("id_mode") == "stable"),
                 None)
    if other is not None:
        raise StoreError(f"{store_root}: holds stable ids of scene {other['scene_id']!r} (from {other.get('frames')}); "
                         f"this recording is of scene {scene_id!r}, whose ids name other objects. Collect it with "
                         f"--id-mode per_frame, or into a new --store")


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


def read_photo_records(frames_dir) -> list[tuple[int, dict]]:
    """``(line, record)`` of every ``DIR/photos.jsonl`` line (none when absent), read before anything is written:
    a malformed or non-UTF-8 line is a :class:`~ssl_nav.errors.FormatError` naming the file and line."""
    from pathlib import Path

    from ssl_nav.frames import read_jsonl

    path = Path(frames_dir) / "photos.jsonl"
    return list(read_jsonl(path)) if path.is_file() else []


def add_photos_from_dir(frames_dir, store, progress: bool = True,
                        records: list[tuple[int, dict]] | None = None) -> dict:
    """Add ``DIR/photos.jsonl`` photos (or the pre-read ``records``) as HQ views; returns counts (added, skipped
    with reasons). A photo already in the store for its instance (the same image) is skipped."""
    from pathlib import Path

    from tqdm import tqdm

    from ssl_nav.errors import FrameError
    from ssl_nav.frames import read_image_rgb
    from ssl_nav.paths import resolve_inside

    root = Path(frames_dir)
    path = root / "photos.jsonl"
    out = {"photos": 0, "photos_skipped": []}
    if records is None:
        records = read_photo_records(root)
    known = store.instances()
    from ssl_nav.mapping.gt_match import gt_to_map_ids, has_gt_annotation

    to_map = gt_to_map_ids(known) if has_gt_annotation(known) else None  # photos name simulator ids
    for n, rec in tqdm(records, desc="collect: photos", unit="photo", disable=not progress):
        try:
            iid = rec.get("instance_id")
            if isinstance(iid, bool) or not isinstance(iid, (str, int)):
                raise ValueError(f"key 'instance_id' must be an integer id, got {iid!r}")
            iid = str(int(iid))
            iid = to_map.get(iid, f"{iid} (simulator id, unmatched)") if to_map is not None else iid
            img = read_image_rgb(resolve_inside(root, rec.get("image"), f"{path}:{n}: key 'image'",
                                                error=FrameError))
        except (TypeError, ValueError) as e:
            out["photos_skipped"].append(f"{path}:{n}: bad record ({e})")
            continue
        except FrameError as e:
            msg = str(e)
            out["photos_skipped"].append(msg if msg.startswith(f"{path}:{n}") else f"{path}:{n}: {msg}")
            continue
        if iid not in known:
            out["photos_skipped"].append(f"{path}:{n}: instance {iid} is not in the map")
            continue
        same = store.identical_view(iid, img, "high")
        if same is not None:
            out["photos_skipped"].append(f"{path}:{n}: already in the store as view {same['view_id']}")
            continue
        store.add_view(iid, img, "high", source=str(rec["image"]))
        out["photos"] += 1
    return out


def read_sources(store_root) -> list[dict]:
    """The recordings already collected into a store (``STORE/sources.jsonl``, one JSON object per line)."""
    from pathlib import Path

    from ssl_nav.errors import StoreError
    from ssl_nav.frames import read_jsonl

    path = Path(store_root) / "sources.jsonl"
    if not path.is_file():
        return []
    try:
        return [rec for _, rec in read_jsonl(path)]
    except Exception as e:  # FormatError naming the line
        raise StoreError(str(e)) from None


def _append_map(store, imap, cfg) -> None:
    """Refuse an --append that would restart instance ids: in per_frame mode the map must hold the store's ids."""
    from ssl_nav.errors import StoreError

    if cfg.mapping.id_mode != "per_frame" or not store.instances():
        return
    top_store = max(int(k) for k in store.instances())
    top_map = max(imap.instances(), default=0)
    if top_store > top_map:
        raise StoreError(f"{store.root / 'map'}: holds instance ids up to {top_map}, but {store.instances_path} "
                         f"has {top_store}; new per_frame ids would reuse ids of other objects. Collect into a new "
                         f"--store instead")


def run(args: argparse.Namespace) -> int:
    import hashlib
    import json
    import secrets
    import time
    from pathlib import Path

    from ssl_nav.atomic import atomic_write_bytes, replace_dir
    from ssl_nav.errors import FormatError, StoreError
    from ssl_nav.frames import count_frames, read_frames_dir
    from ssl_nav.mapping.gt_match import read_scene_objects
    from ssl_nav.mapping.instance_map import InstanceMap
    from ssl_nav.views.collect import collect_frames
    from ssl_nav.views.store import ViewStore

    cfg = config_from_args(args, {"mapping.id_mode": args.id_mode, "mapping.segmenter": args.segmenter,
                                  "views.deblur": args.deblur})
    frames_dir = Path(args.frames)
    frames_file = frames_dir / "frames.jsonl"
    if not frames_file.is_file():
        raise FormatError(f"{frames_file}: not a frames directory (frames.jsonl missing)")
    digest = hashlib.sha256(frames_file.read_bytes()).hexdigest()
    total = count_frames(frames_dir)
    if total == 0:
        raise FormatError(f"{frames_file}: holds no frames; nothing to collect")
    photo_records = [] if args.no_photos else read_photo_records(frames_dir)  # before anything is written
    categories = read_categories(frames_dir) if cfg.mapping.id_mode == "stable" else {}
    store = ViewStore(args.store, create=True)
    if (len(store) or store.instances()) and not args.append:
        raise StoreError(f"{store.root}: already holds {len(store)} views of {len(store.instances())} instances; "
                         f"use a new --store or pass --append")
    sources = read_sources(store.root)
    done = next((s for s in sources if s.get("frames_sha256") == digest), None)
    if done is not None:
        print(f"{frames_file}: already collected into {store.root} ({done.get('time')}: {done.get('views')} views, "
              f"{done.get('photos')} photos); nothing to do")
        return 0
    scene_id = read_scene_id(frames_dir)
    _check_same_scene(store.root, sources, scene_id, cfg.mapping.id_mode)
    map_dir = store.root / "map"
    imap = InstanceMap(cfg.mapping)
    if store.instances() and map_dir.is_dir():
        imap = InstanceMap.load(map_dir, cfg.mapping)  # continue the map: ids keep counting, both maps are kept
        _append_map(store, imap, cfg)
    elif store.instances():
        raise StoreError(f"{map_dir}: missing; --append continues the store's map, so it needs the map that "
                         f"`ssl-nav collect` saved there. Collect into a new --store instead")
    n_before = len(store)
    with store.transaction():
        summary = collect_frames(read_frames_dir(frames_dir), store, cfg, progress=not args.quiet, total=total,
                                 categories=categories, imap=imap, map_dir=None,
                                 gt_objects=read_scene_objects(frames_dir))
        if summary["frames_used"] == 0:
            reasons = "; ".join(s["reason"] for s in summary["skipped"][:3])
            raise FormatError(f"{frames_file}: none of its {summary['frames_total']} frames is usable ({reasons})")
        photos = add_photos_from_dir(frames_dir, store, progress=not args.quiet, records=photo_records)
        # the map and the sources record come last; undo them too if a later step fails
        new_map = store.root / f".map.new-{secrets.token_hex(4)}"
        sources = store.root / "sources.jsonl"
        old_sources = sources.read_bytes() if sources.is_file() else None
        record = {"frames": str(frames_dir.resolve()), "frames_sha256": digest, "frames_total": total,
                  "frames_used": summary["frames_used"], "views": len(store) - n_before - photos["photos"],
                  "photos": photos["photos"], "id_mode": cfg.mapping.id_mode, "scene_id": scene_id,
                  "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        try:
            imap.save(new_map)
            atomic_write_bytes(sources, (old_sources or b"") + (json.dumps(record) + "\n").encode())
            replace_dir(new_map, map_dir)
        except BaseException:
            import shutil

            shutil.rmtree(new_map, ignore_errors=True)
            if old_sources is None:
                sources.unlink(missing_ok=True)
            else:
                atomic_write_bytes(sources, old_sources)
            raise
    print(f"frames: {summary['frames_total']} read, {summary['frames_used']} used "
          f"({summary['keyframes']} keyframes), {summary['frames_skipped']} skipped")
    for reason, n in sorted(summary["skip_reasons"].items(), key=lambda t: -t[1]):
        print(f"  skipped {n:4d}  {reason}")
    for s in summary["skipped"][:10]:
        print(f"    {s['reason']}")
    print(f"map: {summary['instances']} instances, {summary['map_points']} points -> {map_dir / 'map.ply'}")
    print(f"segmenter: {summary['segmenter']} ({summary['segmenter_reason']})"
          + "".join(f"; {n} frames: {r}" for r, n in sorted(summary["frames_without_objects"].items())))
    rej = ", ".join(f"{k} {v}" for k, v in sorted(summary["rejected"].items(), key=lambda t: -t[1])) or "none"
    print(f"views: {summary['candidates']} candidates (rejected: {rej})")
    for s in photos["photos_skipped"][:10]:
        print(f"  photo skipped: {s}")
    print(f"store {store.root}: {summary['views_low']} low-quality views of {summary['instances_with_views']} "
          f"instances, {photos['photos']} high-quality photos added; {len(store)} views in total")
    if summary["views_low"] + summary["views_high"] == 0:
        import sys

        print(f"ssl-nav collect: warning: no robot view passed the quality thresholds (rejected: {rej}); check the "
              f"views section of the configuration", file=sys.stderr)
    return 0
