"""Match map instances to a scene's ground-truth objects (simulation), so that arbitrary instance ids can be scored.

A map that the geometric segmenter (or a 2D segmenter with per-frame ids, or an external semantic map) built
numbers its instances its own way; the simulator's queries, user photos and categories use the simulator's
object ids. :func:`match_instances_to_objects` gives each map instance the scene object it overlaps most in 3D:
the object whose box (``scene.json`` ``objects[].aabb``, inflated by ``margin``) holds the most of the
instance's points, when that is at least ``min_fraction`` of them; otherwise ``None``. ``ssl-nav collect``
stores the answer as ``gt_instance_id`` in the ViewStore's ``instances.json`` (the contract evaluation reads: an
instance is relevant to a query when its ``gt_instance_id`` equals the query's ``instance_id``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ssl_nav.errors import FormatError

#: share of an instance's points that must lie in an object's box for the instance to be that object
MIN_FRACTION = 0.5


def read_scene_objects(frames_dir: str | os.PathLike) -> list[dict]:
    """``objects`` of ``DIR/scene.json`` that have an ``aabb`` (empty when there is no scene.json); a malformed
    ``aabb`` or a missing ``instance_id`` is an error naming the file."""
    p = Path(frames_dir) / "scene.json"
    if not p.is_file():
        return []
    try:
        scene = json.loads(p.read_text())
        objects = scene.get("objects", []) if isinstance(scene, dict) else []
        out = []
        for o in objects:
            if o.get("aabb") is None:
                continue  # nothing to match against
            lo, hi = np.asarray(o["aabb"][0], dtype=np.float64), np.asarray(o["aabb"][1], dtype=np.float64)
            if lo.shape != (3,) or hi.shape != (3,):
                raise ValueError(f"object {o.get('instance_id')}: aabb must be [[x,y,z],[x,y,z]]")
            out.append({"instance_id": str(o["instance_id"]), "category": o.get("category"),
                        "aabb": [lo.tolist(), hi.tolist()]})
        return out
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as e:
        raise FormatError(f"{p}: cannot read objects[].instance_id/aabb ({e})") from None


def match_points_to_objects(points_by_instance: dict[int, np.ndarray], objects: list[dict], margin: float = 0.04,
                            min_fraction: float = MIN_FRACTION) -> dict[int, str | None]:
    """``instance id -> object instance_id`` (or ``None``) for (N, 3) point sets; see the module docstring.

    Ties (points inside two overlapping boxes) go to the object with the smaller box.
    """
    boxes = [(str(o["instance_id"]), np.asarray(o["aabb"][0], np.float64) - margin,
              np.asarray(o["aabb"][1], np.float64) + margin) for o in objects]
    volumes = [float(np.prod(hi - lo)) for _, lo, hi in boxes]
    out: dict[int, str | None] = {}
    for iid, pts in points_by_instance.items():
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 3)
        best, best_key = None, (0, 0.0)
        for (oid, lo, hi), vol in zip(boxes, volumes):
            n_in = int(np.all((pts >= lo) & (pts <= hi), axis=1).sum())
            key = (n_in, -vol)
            if n_in > 0 and key > best_key:
                best, best_key = oid, key
        out[int(iid)] = best if len(pts) and best_key[0] >= min_fraction * len(pts) else None
    return out


def match_instances_to_objects(imap, objects: list[dict], margin: float | None = None,
                               min_fraction: float = MIN_FRACTION) -> dict[int, str | None]:
    """:func:`match_points_to_objects` for every instance of an :class:`~ssl_nav.mapping.InstanceMap`
    (``margin`` defaults to two map voxels)."""
    margin = 2.0 * imap.cfg.voxel_size if margin is None else margin
    return match_points_to_objects({iid: imap.instance_points(iid) for iid in imap.instances()}, objects, margin,
                                   min_fraction)


def gt_to_map_ids(instances: dict[str, dict]) -> dict[str, str]:
    """``gt_instance_id -> map instance id`` from a store's ``instances.json``; when several map instances carry
    one ground-truth id (an over-segmented object), the one with the most points."""
    best: dict[str, tuple[int, str]] = {}
    for iid, info in instances.items():
        gt = info.get("gt_instance_id") if isinstance(info, dict) else None
        if gt is None:
            continue
        n = int(info.get("n_points") or 0)
        if str(gt) not in best or n > best[str(gt)][0]:
            best[str(gt)] = (n, str(iid))
    return {gt: iid for gt, (_, iid) in best.items()}


def has_gt_annotation(instances: dict[str, dict]) -> bool:
    """Whether a store's instances carry ``gt_instance_id`` (their ids are not the simulator's)."""
    return any(isinstance(v, dict) and "gt_instance_id" in v for v in instances.values())
