"""Ingest a recording into a view store: the ``collect`` stage, all or nothing.

A recording is a frames directory (docs/formats.md): ``frames.jsonl`` and its images, optionally
``scene.json`` (categories, ground-truth objects), ``photos.jsonl`` (high-quality user photos, CrossIA
arXiv 2404.09645) and ``queries.jsonl``. :func:`collect_recording` is the stage that ``ssl-nav collect`` and
``ssl-nav demo`` (:mod:`ssl_nav.pipeline`) run:

1. check the recording before anything is written (``frames.jsonl`` present and not empty, ``photos.jsonl``
   readable line by line);
2. fuse the frames into the 3D instance map and cut up to K diverse views per instance
   (:func:`ssl_nav.views.collect.collect_frames`, SimView arXiv 2404.09647);
3. add the user photos of ``photos.jsonl`` as ``quality: high`` views (:func:`add_photos_from_dir`);
4. save the map that made the views to ``STORE/map`` and record the recording in ``STORE/sources.jsonl``.

All of it runs in one :meth:`ViewStore.transaction`: a failure (a bad line, no usable frame, a full disk,
Ctrl-C) leaves the store as it found it. With ``append`` the store's map is continued, so instance ids keep
counting; a recording already collected (same ``frames.jsonl`` bytes, or frames of the same content:
:func:`ssl_nav.frames.frame_fingerprint` in ``sources.jsonl`` ``frame_hashes``) is not collected twice, and
an overlapping recording adds only its new frames. The whole stage holds the store's writer lock
(:mod:`ssl_nav.locking`).
:func:`add_user_photos` is the ``ssl-nav add-photos`` stage: photo files of one instance, all or none.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ssl_nav.config import PipelineConfig
from ssl_nav.errors import FormatError, FrameError, StoreError
from ssl_nav.frames import (Frame, SkippedFrame, count_frames, frame_fingerprint, read_frames_dir, read_image_rgb,
                            read_jsonl)
from ssl_nav.mapping.gt_match import gt_to_map_ids, has_gt_annotation, read_scene_objects
from ssl_nav.mapping.instance_map import InstanceMap
from ssl_nav.paths import resolve_inside, store_map_dir
from ssl_nav.progress import tqdm
from ssl_nav.views.collect import collect_frames
from ssl_nav.views.store import ViewStore

#: CrossIA (arXiv 2404.09645) uses at most this many user photos per instance
MAX_USER_PHOTOS = 5


# ------------------------------------------------------------------------------------------------ reading

def read_scene_id(frames_dir: str | os.PathLike) -> str | None:
    """``scene_id`` of ``DIR/scene.json`` (None when absent or unreadable: categories report that)."""
    p = Path(frames_dir) / "scene.json"
    try:
        sid = json.loads(p.read_bytes()).get("scene_id")
    except (OSError, ValueError, AttributeError):
        return None
    return None if sid is None else str(sid)


def read_categories(frames_dir: str | os.PathLike) -> dict[int, str]:
    """``instance_id -> category`` from ``DIR/scene.json`` (empty when absent)."""
    p = Path(frames_dir) / "scene.json"
    if not p.is_file():
        return {}
    try:
        scene = json.loads(p.read_text())
        return {int(o["instance_id"]): o.get("category") for o in scene.get("objects", [])}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise FormatError(f"{p}: cannot read objects[].instance_id/category ({e})") from None


def read_photo_records(frames_dir: str | os.PathLike) -> list[tuple[int, dict]]:
    """``(line, record)`` of every ``DIR/photos.jsonl`` line (none when absent), read before anything is written:
    a malformed or non-UTF-8 line is a :class:`~ssl_nav.errors.FormatError` naming the file and line."""
    path = Path(frames_dir) / "photos.jsonl"
    return list(read_jsonl(path)) if path.is_file() else []


def read_sources(store_root: str | os.PathLike) -> list[dict]:
    """The recordings already collected into a store (``STORE/sources.jsonl``, one JSON object per line)."""
    path = Path(store_root) / "sources.jsonl"
    if not path.is_file():
        return []
    try:
        return [rec for _, rec in read_jsonl(path)]
    except FormatError as e:  # names the line
        raise StoreError(str(e)) from None


# ------------------------------------------------------------------------------------------------ photos

def add_photos_from_dir(frames_dir: str | os.PathLike, store: ViewStore, progress: bool = True,
                        records: list[tuple[int, dict]] | None = None) -> dict:
    """Add ``DIR/photos.jsonl`` photos (or the pre-read ``records``) as HQ views; returns counts (``photos``
    added, ``photos_skipped`` with reasons). A photo already in the store for its instance (the same image) is
    skipped; so is a photo of an instance that is not in the map. Photos name simulator ids: in a map whose
    ids are not the simulator's, they go to the instance annotated with that ``gt_instance_id``."""
    root = Path(frames_dir)
    path = root / "photos.jsonl"
    out: dict = {"photos": 0, "photos_skipped": []}
    if records is None:
        records = read_photo_records(root)
    known = store.instances()
    to_map = gt_to_map_ids(known) if has_gt_annotation(known) else None
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


@dataclass
class PhotoAdded:
    """One photo file given to :func:`add_user_photos`: the view it became, or the view it duplicates."""

    path: str
    shape: tuple[int, ...]
    view: dict | None = None  #: the new view record
    duplicate_of: dict | None = None  #: the stored view holding the same image (then nothing was added)


def add_user_photos(store: ViewStore, instance_id: str | int, paths: list[str]) -> list[PhotoAdded]:
    """Add photo files of one instance as HQ views (``ssl-nav add-photos``). Every photo is read before any is
    added, and a failure adds none; a photo already in the store for that instance is skipped."""
    iid = str(instance_id).strip()
    try:
        iid = str(int(iid))
    except ValueError:
        raise StoreError(f"--instance: {instance_id!r} is not an integer instance id") from None
    if iid not in store.instances():
        known = ", ".join(sorted(store.instances(), key=int)) or "none"
        raise StoreError(f"{store.instances_path}: instance {iid} is not in the map (known: {known})")
    images: list[tuple[str, np.ndarray]] = []
    for path in paths:
        try:
            images.append((str(path), read_image_rgb(path)))
        except FrameError as e:
            raise StoreError(str(e)) from None
    added = []
    with store.transaction():  # all photos or none
        for path, img in images:
            same = store.identical_view(iid, img, "high")
            if same is not None:
                added.append(PhotoAdded(path, img.shape, duplicate_of=same))
            else:
                added.append(PhotoAdded(path, img.shape, view=store.add_view(iid, img, "high",
                                                                             source=Path(path).name)))
    return added


# ------------------------------------------------------------------------------------------------ collect

@dataclass
class CollectResult:
    """What :func:`collect_recording` did: the summary of :func:`~ssl_nav.views.collect.collect_frames`, the
    photos added, where the map went; ``already`` is the ``sources.jsonl`` record when the recording had been
    collected before (then nothing was done and ``summary`` is empty)."""

    store: ViewStore
    map_dir: Path
    summary: dict = field(default_factory=dict)
    photos: dict = field(default_factory=lambda: {"photos": 0, "photos_skipped": []})
    already: dict | None = None


def _check_same_scene(store_root: Path, sources: list[dict], scene_id: str | None, id_mode: str) -> None:
    """Stable ids are the simulator's object ids: they only mean the same object within one scene."""
    if id_mode != "stable" or scene_id is None:
        return
    other = next((s for s in sources if s.get("scene_id") not in (None, scene_id) and s.get("id_mode") == "stable"),
                 None)
    if other is not None:
        raise StoreError(f"{store_root}: holds stable ids of scene {other['scene_id']!r} (from {other.get('frames')}); "
                         f"this recording is of scene {scene_id!r}, whose ids name other objects. Collect it with "
                         f"--id-mode per_frame, or into a new --store")


def _check_append_ids(store: ViewStore, imap: InstanceMap, cfg: PipelineConfig) -> None:
    """Refuse an append that would restart instance ids: in per_frame mode the map must hold the store's ids."""
    if cfg.mapping.id_mode != "per_frame" or not store.instances():
        return
    top_store = max(int(k) for k in store.instances())
    top_map = max(imap.instances(), default=0)
    if top_store > top_map:
        raise StoreError(f"{store.root / 'map'}: holds instance ids up to {top_map}, but {store.instances_path} "
                         f"has {top_store}; new per_frame ids would reuse ids of other objects. Collect into a new "
                         f"--store instead")


def _map_to_continue(store: ViewStore, map_dir: Path, cfg: PipelineConfig) -> InstanceMap:
    """An empty map for a new store; the store's saved map when appending (ids keep counting)."""
    if not store.instances():
        return InstanceMap(cfg.mapping)
    if not map_dir.is_dir():
        raise StoreError(f"{map_dir}: missing; --append continues the store's map, so it needs the map that "
                         f"`ssl-nav collect` saved there. Collect into a new --store instead")
    imap = InstanceMap.load(map_dir, cfg.mapping)
    _check_append_ids(store, imap, cfg)
    return imap


def _commit_map_and_source(store: ViewStore, new_map: Path, map_dir: Path, record: dict) -> None:
    """Append the ``sources.jsonl`` record and move the map written to ``new_map`` into place, last of all;
    both are undone with the store's transaction (:meth:`ViewStore.replace_file`, :meth:`ViewStore.replace_dir`)."""
    sources = store.root / "sources.jsonl"
    old_sources = sources.read_bytes() if sources.is_file() else b""
    store.replace_file("sources.jsonl", old_sources + (json.dumps(record) + "\n").encode())
    store.replace_dir(map_dir.name, new_map)


def collect_recording(frames_dir: str | os.PathLike, store_dir: str | os.PathLike, cfg: PipelineConfig, *,
                      append: bool = False, photos: bool = True, progress: bool = True) -> CollectResult:
    """Map a frames directory and collect its views (and, with ``photos``, its user photos) into a store.

    The store is created when missing; one that already holds views is an error unless ``append``. Errors
    name the file and line (:class:`~ssl_nav.errors.FormatError`) or the store (:class:`StoreError`), and
    leave the store as it was.
    """
    frames_dir = Path(frames_dir)
    frames_file = frames_dir / "frames.jsonl"
    if not frames_file.is_file():
        raise FormatError(f"{frames_file}: not a frames directory (frames.jsonl missing)")
    digest = hashlib.sha256(frames_file.read_bytes()).hexdigest()
    total = count_frames(frames_dir)
    if total == 0:
        raise FormatError(f"{frames_file}: holds no frames; nothing to collect")
    photo_records = read_photo_records(frames_dir) if photos else []  # before anything is written
    categories = read_categories(frames_dir) if cfg.mapping.id_mode == "stable" else {}
    store = ViewStore(store_dir, create=True)
    try:
        with store.writing():  # one writer at a time (ssl_nav.locking), from the first read to the last write
            return _collect_locked(store, frames_dir, digest, total, photo_records, categories, cfg, append=append,
                                   progress=progress)
    except BaseException:
        store.remove_if_created()
        raise


def _collect_locked(store: ViewStore, frames_dir: Path, digest: str, total: int, photo_records: list,
                    categories: dict, cfg: PipelineConfig, *, append: bool, progress: bool) -> CollectResult:
    """:func:`collect_recording` under the store's lock: refuse or skip what was collected, then the transaction."""
    map_dir = store_map_dir(store.root)
    if (len(store) or store.instances()) and not append:
        raise StoreError(f"{store.root}: already holds {len(store)} views of {len(store.instances())} instances; "
                         f"use a new --store or pass --append")
    sources = read_sources(store.root)
    done = next((s for s in sources if s.get("frames_sha256") == digest), None)
    if done is not None:
        return CollectResult(store, map_dir, already=done)
    scene_id = read_scene_id(frames_dir)
    _check_same_scene(store.root, sources, scene_id, cfg.mapping.id_mode)
    imap = _map_to_continue(store, map_dir, cfg)
    n_before = len(store)
    new_map = store.root / f".map.new-{secrets.token_hex(4)}"  # the final map, moved into place last
    known = {h: src for src in sources for h in (src.get("frame_hashes") or []) if isinstance(h, str)}
    fresh: list[str] = []
    dups: list[str] = []
    try:
        with store.transaction():
            try:
                return _collect_frames_and_photos(store, frames_dir, digest, total, photo_records, categories, cfg,
                                                  imap, new_map, n_before, scene_id, known, fresh, dups, progress)
            finally:  # before the transaction's rollback, which removes a new store only when it is empty
                shutil.rmtree(new_map, ignore_errors=True)
    except _AlreadyCollected:
        return CollectResult(store, map_dir, already=known[next(h for h in dups if h in known)])


class _AlreadyCollected(Exception):
    """Every usable frame of the recording is in the store already (raised inside the transaction: it undoes)."""


def _unseen(frames, known: dict, fresh: list[str], dups: list[str]):
    """The frames whose content (:func:`ssl_nav.frames.frame_fingerprint`) is not in the store yet nor earlier in
    this recording; the others become skipped frames (``already collected``)."""
    seen = set()
    for f in frames:
        if isinstance(f, Frame):
            h = frame_fingerprint(f)
            if h in known or h in seen:
                dups.append(h)
                src = known.get(h, {}).get("frames", "this recording")
                yield SkippedFrame(frame_id=f.frame_id, line=0, reason=f"frame {f.frame_id}: already collected "
                                   f"(the same images and stamp, from {src})")
                continue
            seen.add(h)
            fresh.append(h)
        yield f


def _collect_frames_and_photos(store, frames_dir, digest, total, photo_records, categories, cfg, imap, new_map,
                               n_before, scene_id, known, fresh, dups, progress) -> CollectResult:
    """The body of the collect transaction: frames not collected before, then the photos, then the map and the
    ``sources.jsonl`` record (with the frames' fingerprints)."""
    frames_file = frames_dir / "frames.jsonl"
    map_dir = store.root / "map"
    summary = collect_frames(_unseen(read_frames_dir(frames_dir), known, fresh, dups), store, cfg,
                             progress=progress, total=total, categories=categories, imap=imap,
                             map_dir=new_map, gt_objects=read_scene_objects(frames_dir))
    if summary["frames_used"] == 0 and any(h in known for h in dups):
        raise _AlreadyCollected()
    if summary["frames_used"] == 0:
        reasons = "; ".join(s["reason"] for s in summary["skipped"][:3])
        raise FormatError(f"{frames_file}: none of its {summary['frames_total']} frames is usable "
                          f"({reasons})")
    added = add_photos_from_dir(frames_dir, store, progress=progress, records=photo_records)
    record = {"frames": str(frames_dir.resolve()), "frames_sha256": digest, "frames_total": total,
              "frames_used": summary["frames_used"], "views": len(store) - n_before - added["photos"],
              "photos": added["photos"], "id_mode": cfg.mapping.id_mode, "scene_id": scene_id,
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "frame_hashes": fresh,
              "frames_already_collected": len(dups)}
    _commit_map_and_source(store, new_map, map_dir, record)
    return CollectResult(store, map_dir, summary, added)
