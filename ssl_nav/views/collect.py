"""Collect multi-view crops of every map instance into a ViewStore (SimView, arXiv 2404.09647).

For a frame, the instance map is z-buffered into the camera
(:mod:`ssl_nav.views.visibility`); every visible instance gives a candidate
view: its square crop (:mod:`ssl_nav.crops`) and quality figures
(:mod:`ssl_nav.views.quality`). Candidates that pass the thresholds are kept,
at most K per instance, chosen for viewpoint diversity
(:mod:`ssl_nav.views.selection`); with ``views.deblur`` the robot frames are
deblurred (:mod:`ssl_nav.views.deblur`) before the kept views are cut.

- :func:`collect_frames` (offline, ``ssl-nav collect``): pass 1 fuses every usable
  frame into the map; pass 2 evaluates each keyframe against the finished map
  and selects up to K views per instance by farthest-point sampling; only the
  selected views are written.
- :class:`ViewCollector` (streaming, the ROS node): the same per frame against
  the growing map; once an instance holds K views, a new view replaces the
  least diverse one when that makes the set more diverse.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ssl_nav.config import PipelineConfig, ViewsConfig
from ssl_nav.crops import crop_square, square_box, truncation
from ssl_nav.errors import FrameError
from ssl_nav.frames import Frame, SkippedFrame
from ssl_nav.mapping.builder import MapBuilder, choose_segmenter
from ssl_nav.mapping.gt_match import match_instances_to_objects
from ssl_nav.mapping.instance_map import InstanceMap
from ssl_nav.progress import tqdm
from ssl_nav.views.deblur import make_deblur
from ssl_nav.views.quality import ViewQuality, sharpness_in_square
from ssl_nav.views.selection import KeyframeGate, farthest_point_sampling, least_diverse, view_features
from ssl_nav.views.store import ViewStore
from ssl_nav.views.visibility import compute_visibility, square_purity


@dataclass
class Candidate:
    """A view of one instance in one frame that passed the quality thresholds."""

    instance_id: int
    frame_index: int
    square: tuple[int, int, int, int]
    quality: ViewQuality
    cam_position: np.ndarray = field(repr=False)


def skip_category(reason: str) -> str:
    """Short class of a skip reason, for summaries."""
    r = reason.lower()
    if "already collected" in r:
        return "already collected"
    if "implausible depth" in r:
        return "implausible depth"
    if "malformed" in r or "expected a json object" in r:
        return "malformed line"
    if "missing key" in r:
        return "missing key"
    if "file not found" in r:
        return "missing file"
    if "cannot decode" in r or "cannot read" in r or "must be single-channel" in r:
        return "unreadable file"
    if "no valid pixel" in r:
        return "no valid depth"
    if "does not match" in r or "shape" in r:
        return "shape mismatch"
    if "intrinsics" in r:
        return "bad intrinsics"
    if "pose" in r:
        return "bad pose"
    return "other"


def evaluate_frame(frame: Frame, points: np.ndarray, labels: np.ndarray, cfg: ViewsConfig,
                   point_size: float, rejected: Counter | None = None,
                   n_points: dict[int, int] | None = None) -> list[tuple[int, tuple, ViewQuality]]:
    """Visible instances of ``frame`` that pass the quality thresholds: (instance id, square, quality).

    ``n_points`` (points per instance) saves counting ``labels`` for every frame.
    """
    h, w = frame.shape
    vis = compute_visibility(points, labels, frame.K, frame.T_world_cam, frame.depth,
                             cfg.occlusion_tolerance, point_size=point_size, n_points=n_points)
    squares = {iid: square_box(iv.bbox, cfg.margin) for iid, iv in vis.instances.items()}
    purity = square_purity(vis, squares, float(frame.K[0, 0]), point_size) if cfg.min_purity > 0 else {}
    out = []
    for iid, iv in sorted(vis.instances.items()):
        x0, y0, x1, y1 = iv.bbox
        square = squares[iid]
        q = ViewQuality(sharpness=float("inf"), box_px=max(x1 - x0, y1 - y0), visible_fraction=iv.visible_fraction,
                        truncation=truncation(square, (h, w)), n_visible=iv.n_visible, purity=purity.get(iid, 1.0))
        reason = q.failure(cfg)
        if reason is None:
            q.sharpness = sharpness_in_square(frame.rgb, square)
            reason = q.failure(cfg)
        if reason is not None:
            if rejected is not None:
                rejected[reason] += 1
            continue
        out.append((iid, square, q))
    return out


def _add(store: ViewStore, frame: Frame, iid: int, square: tuple, q: ViewQuality, cfg: ViewsConfig,
         rgb: np.ndarray | None = None) -> dict:
    """Crop ``square`` out of ``rgb`` (the frame's image, or its deblurred copy) and add it as a view."""
    crop = crop_square(frame.rgb if rgb is None else rgb, square, cfg.crop_size)
    extra = {} if rgb is None else {"deblur": cfg.deblur}
    return store.add_view(str(iid), crop, frame.quality, frame_id=frame.frame_id, T_world_cam=frame.T_world_cam,
                          bbox=list(square), visible_fraction=q.visible_fraction, sharpness=q.sharpness,
                          box_px=round(float(q.box_px), 2), truncation=round(float(q.truncation), 4),
                          n_visible=int(q.n_visible), purity=round(float(q.purity), 4), **extra)


class _FrameDeblur:
    """``views.deblur`` applied to robot (low-quality) frames, once per frame (the last one is cached)."""

    def __init__(self, cfg: ViewsConfig):
        self.method = make_deblur(cfg)
        self.frames = 0
        self._last: tuple[Frame, np.ndarray] | None = None

    def __call__(self, frame: Frame) -> np.ndarray | None:
        """The deblurred image of ``frame``, or ``None`` when it stays as it is."""
        if self.method is None or frame.quality != "low":
            return None
        if self._last is None or self._last[0] is not frame:
            self._last = (frame, self.method(frame.rgb))
            self.frames += 1
        return self._last[1]


def label_from_ground_truth(imap, gt_objects: list[dict], categories: dict | None, earlier: dict) -> None:
    """Annotate the map's instances with the ground-truth object each one is (``gt_instance_id``) and its
    category. Instances an earlier recording labelled (in ``earlier``, the store's instances) keep their labels:
    a per-frame append of another room, whose objects they are not, must not relabel them."""
    names = {str(k): v for k, v in (categories or {}).items()}
    names.update({str(o["instance_id"]): o.get("category") for o in gt_objects if o.get("category")})
    for iid, gt in match_instances_to_objects(imap, gt_objects).items():
        prev = earlier.get(str(iid))
        if prev is not None and "gt_instance_id" in prev:
            imap.set_gt_instance_id(iid, prev["gt_instance_id"])
            imap.set_category(iid, prev.get("category"))
            continue
        imap.set_gt_instance_id(iid, gt)
        if gt is not None and names.get(gt) is not None:
            imap.set_category(iid, names[gt])


def _name_instances(imap: InstanceMap, ids_are_ground_truth: bool, categories: dict[int, str] | None,
                    gt_objects: list[dict] | None, earlier: dict) -> None:
    """Categories by ground-truth id; for a map whose ids are not the simulator's, each instance's matched
    ground-truth object and its category (:func:`label_from_ground_truth`; ``earlier``: the store's instances)."""
    if ids_are_ground_truth:
        for iid, cat in (categories or {}).items():
            if iid in imap.instances():
                imap.set_category(iid, cat)
    elif gt_objects:
        label_from_ground_truth(imap, gt_objects, categories, earlier)


def _choose_views(cands: dict[int, list[Candidate]], infos: dict, k: int) -> list[Candidate]:
    """Up to ``k`` diverse views per instance (farthest-point sampling from the best-quality one, SimView), in
    frame order."""
    chosen: list[Candidate] = []
    for iid, cs in sorted(cands.items()):
        feats = view_features(np.array([c.cam_position for c in cs]), infos[iid].centroid)
        start = int(np.argmax([c.quality.score() for c in cs]))
        chosen.extend(cs[i] for i in farthest_point_sampling(feats, k, start))
    chosen.sort(key=lambda c: (c.frame_index, c.instance_id))
    return chosen


def _write_views(store: ViewStore, keyframes: list[Frame], chosen: list[Candidate], vcfg: ViewsConfig,
                 progress: bool) -> tuple[Counter, Counter, int]:
    """Cut and store the chosen views; returns the views per instance, per quality, and the deblurred frames."""
    per_instance: Counter = Counter()
    views_by_quality: Counter = Counter()
    deblur = _FrameDeblur(vcfg)
    with store.batch():  # PNGs written in parallel, lines appended in groups (ViewStore.batch)
        for c in tqdm(chosen, desc="collect: write", unit="view", disable=not progress):
            frame = keyframes[c.frame_index]
            _add(store, frame, c.instance_id, c.square, c.quality, vcfg, deblur(frame))
            per_instance[str(c.instance_id)] += 1
            views_by_quality[frame.quality] += 1
    return per_instance, views_by_quality, deblur.frames


def collect_frames(frames: Iterable[Frame | SkippedFrame], store: ViewStore, cfg: PipelineConfig,
                   progress: bool = True, total: int | None = None, *,
                   categories: dict[int, str] | None = None, imap: InstanceMap | None = None,
                   map_dir: str | Path | None = None, gt_objects: list[dict] | None = None) -> dict:
    """Offline collection: map pass, then view pass with up to K diverse views per instance.

    ``frames`` may contain :class:`SkippedFrame` items (from :func:`ssl_nav.frames.read_frames_dir`); they and
    frames failing validation are counted by reason. The map comes from ``mapping.segmenter``
    (:mod:`ssl_nav.mapping.builder`; ``auto`` decides on the first usable frame: masks when it has one, else
    geometric). ``categories`` names instances by ground-truth id; ``imap`` is the map to fuse masks into, or
    the ready map of the ``semantic_map`` segmenter; ``map_dir`` saves the map there. ``gt_objects``
    (``scene.json`` objects with ``instance_id`` and ``aabb``) annotates each instance of a map whose ids are
    not the simulator's with ``gt_instance_id`` (:mod:`ssl_nav.mapping.gt_match`), and names it.
    Returns a summary with counts, skip reasons and which segmenter made the map.
    """
    vcfg = cfg.views
    builder: MapBuilder | None = None
    gate = KeyframeGate(vcfg.keyframe_translation, vcfg.keyframe_rotation_deg)
    skip_reasons: Counter = Counter()
    skipped: list[dict] = []
    keyframes: list[Frame] = []
    n_total = n_used = n_not_key = 0
    for item in tqdm(frames, total=total, desc="collect: map", unit="frame", disable=not progress):
        n_total += 1
        if isinstance(item, SkippedFrame):
            skip_reasons[skip_category(item.reason)] += 1
            skipped.append({"frame_id": item.frame_id, "line": item.line, "reason": item.reason})
            continue
        if builder is None:
            name, why = choose_segmenter(cfg.mapping.segmenter, item.instance_mask is not None)
            builder = MapBuilder(cfg.mapping, name, imap, why)
        try:
            builder.integrate(item)
        except FrameError as e:
            skip_reasons[skip_category(str(e))] += 1
            skipped.append({"frame_id": item.frame_id, "line": None, "reason": str(e)})
            continue
        n_used += 1
        if gate.accept(item.T_world_cam):
            keyframes.append(Frame(rgb=item.rgb, depth=item.depth, K=item.K, T_world_cam=item.T_world_cam,
                                   stamp=item.stamp, frame_id=item.frame_id, quality=item.quality))
        else:
            n_not_key += 1
    if builder is None:  # no usable frame
        name, why = choose_segmenter(cfg.mapping.segmenter, False)
        builder = MapBuilder(cfg.mapping, name, imap, why)
    imap = builder.finish()
    old = store.instances()
    _name_instances(imap, builder.ids_are_ground_truth, categories, gt_objects, old)
    infos = imap.instances()
    store.set_instances({**old, **imap.to_store_instances()})
    if map_dir is not None:
        imap.save(map_dir)

    points, labels = imap.points_and_labels()
    n_points = {iid: info.n_points for iid, info in infos.items()}
    rejected: Counter = Counter()
    cands: dict[int, list[Candidate]] = {}
    for fi, frame in enumerate(tqdm(keyframes, desc="collect: views", unit="frame", disable=not progress)):
        for iid, square, q in evaluate_frame(frame, points, labels, vcfg, imap.cfg.voxel_size, rejected, n_points):
            cands.setdefault(iid, []).append(Candidate(iid, fi, square, q, frame.T_world_cam[:3, 3].copy()))

    chosen = _choose_views(cands, infos, vcfg.max_views_per_instance)
    per_instance, views_by_quality, deblurred = _write_views(store, keyframes, chosen, vcfg, progress)
    return {
        "frames_total": n_total, "frames_used": n_used, "frames_skipped": sum(skip_reasons.values()),
        "skip_reasons": dict(skip_reasons), "skipped": skipped[:50], "keyframes": len(keyframes),
        "not_keyframes": n_not_key, "instances": len(infos), "map_points": int(len(points)),
        "instances_with_views": len(per_instance), "candidates": sum(len(c) for c in cands.values()),
        "rejected": dict(rejected), "views_low": views_by_quality["low"], "views_high": views_by_quality["high"],
        "views_per_instance": {k: per_instance[k] for k in sorted(per_instance, key=int)},
        "merges": imap.merges, **builder.summary(), "deblur": vcfg.deblur, "deblurred_frames": deblurred,
        "gt_matched": sum(gt is not None for gt in imap.gt_instance_ids().values()),
    }


class ViewCollector:
    """Streaming view collection against a growing :class:`InstanceMap` (used by the ROS node)."""

    def __init__(self, cfg: ViewsConfig, store: ViewStore):
        self.cfg = cfg
        self.store = store
        self.gate = KeyframeGate(cfg.keyframe_translation, cfg.keyframe_rotation_deg)
        self.counts: Counter = Counter()
        self.rejected: Counter = Counter()
        self.deblur = _FrameDeblur(cfg)
        # instance id -> [(view_id, camera position)], seeded from the store's LQ views (reopen-and-continue)
        self._kept: dict[int, list[tuple[str, np.ndarray]]] = {}
        for v in store.views(quality="low"):
            try:  # ViewStore checks T_world_cam when it reads a line; a view without a usable pose is not seeded
                T = np.asarray(v.get("T_world_cam"), dtype=np.float64)
            except (TypeError, ValueError):
                continue
            if T.shape == (4, 4) and np.isfinite(T).all():
                self._kept.setdefault(int(v["instance_id"]), []).append((v["view_id"], T[:3, 3]))

    def process(self, frame: Frame, imap: InstanceMap) -> list[dict]:
        """Gate, find visible instances, crop, check quality and add (or swap in) views; returns the new records.

        Raises :class:`FrameError` for an invalid frame (the caller logs and drops it).
        """
        frame.validate()
        self.counts["frames"] += 1
        if not self.gate.accept(frame.T_world_cam):
            self.counts["not_keyframe"] += 1
            return []
        self.counts["keyframes"] += 1
        points, labels = imap.points_and_labels()
        if len(points) == 0:
            return []
        infos = imap.instances()
        added = []
        K = self.cfg.max_views_per_instance
        n_points = {iid: info.n_points for iid, info in infos.items()}
        for iid, square, q in evaluate_frame(frame, points, labels, self.cfg, imap.cfg.voxel_size, self.rejected,
                                             n_points):
            kept = self._kept.setdefault(iid, [])
            pos = frame.T_world_cam[:3, 3].copy()
            if len(kept) >= K:
                feats = view_features(np.array([p for _, p in kept] + [pos]), infos[iid].centroid)
                worst, _ = least_diverse(feats)
                if worst == len(kept):  # the new view is the most redundant one
                    self.rejected["not diverse"] += 1
                    continue
                self.store.remove_views([kept[worst][0]])
                kept.pop(worst)
                self.counts["replaced"] += 1
            rec = _add(self.store, frame, iid, square, q, self.cfg, self.deblur(frame))
            kept.append((rec["view_id"], pos))
            added.append(rec)
        if added:
            self.store.set_instances({**self.store.instances(), **imap.to_store_instances()})
        self.counts["views"] += len(added)
        return added

    def summary(self) -> dict:
        """Counts so far: frames, keyframes, views added/replaced, rejections by reason, views per instance."""
        return {**{k: int(v) for k, v in self.counts.items()}, "rejected": dict(self.rejected),
                "views_per_instance": {str(k): len(v) for k, v in sorted(self._kept.items())}}
