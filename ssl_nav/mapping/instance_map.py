"""The 3D instance map: one voxel-downsampled, outlier-filtered point set per object instance.

Each RGB-D frame with an instance mask is back-projected
(:func:`ssl_nav.geometry.backproject`) into world points; the points of each
mask id are voxel-downsampled and cleaned with statistical outlier removal
(open3d), then fused into the map instance they belong to. This is the map that
SimView (Sakaguchi et al., IROS 2024, arXiv 2404.09647) ray-traces to find the
views of every instance.

Two kinds of instance ids are supported (``MappingConfig.id_mode``):

- ``stable``: mask values are the instance ids (the simulators, Habitat semantics).
- ``per_frame``: mask values come from a 2D segmenter and mean nothing across
  frames. Each per-frame segment is associated with the map instance whose
  *visible part* (map voxels that project into this frame and agree with its
  depth) has the highest voxel IoU with the segment, when that IoU exceeds
  ``association_iou``; otherwise it starts a new instance. Instances whose
  voxel sets overlap with IoU above ``merge_iou`` are merged.

Voxel sets for association and merging are computed on a grid of twice the
map voxel size, which tolerates one voxel of depth noise.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssl_nav.atomic import atomic_write_json
from ssl_nav.config import MappingConfig
from ssl_nav.errors import FormatError, FrameError
from ssl_nav.frames import Frame
from ssl_nav.geometry import backproject, invert, project, transform
from ssl_nav.mapping.ply import read_labeled_cloud, write_ply

#: association/merge grid, in map voxels
ASSOCIATION_GRID = 2.0
#: depth agreement (in association voxels) for a map voxel to count as seen by a frame
_SEEN_TOLERANCE_VOXELS = 1.5


@dataclass
class InstanceInfo:
    """Summary of one map instance."""

    instance_id: int
    category: str | None
    centroid: np.ndarray  #: (3,) world
    aabb_min: np.ndarray  #: (3,) world
    aabb_max: np.ndarray  #: (3,) world
    n_points: int

    def to_store_json(self) -> dict:
        """The ViewStore ``instances.json`` entry (docs/formats.md, "instances.json")."""
        return {"category": self.category, "centroid": [float(v) for v in self.centroid],
                "aabb": [[float(v) for v in self.aabb_min], [float(v) for v in self.aabb_max]],
                "n_points": int(self.n_points)}


def voxel_keys(points: np.ndarray, voxel: float) -> np.ndarray:
    """Sorted unique int64 keys of the voxels (edge ``voxel``) occupied by (N, 3) points."""
    if len(points) == 0:
        return np.zeros(0, dtype=np.int64)
    ijk = np.floor(np.asarray(points, dtype=np.float64) / voxel).astype(np.int64) + (1 << 20)
    ijk = np.clip(ijk, 0, (1 << 21) - 1)
    return np.unique((ijk[:, 0] << 42) | (ijk[:, 1] << 21) | ijk[:, 2])


def voxel_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two sorted unique voxel key arrays."""
    if len(a) == 0 or len(b) == 0:
        return 0.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / float(len(a) + len(b) - inter)


def _o3d_cloud(points: np.ndarray):
    import open3d as o3d

    return o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))


def voxel_downsample(points: np.ndarray, voxel: float) -> np.ndarray:
    """open3d voxel-grid downsampling (one averaged point per occupied voxel), float32."""
    if len(points) == 0:
        return np.zeros((0, 3), dtype=np.float32)
    return np.asarray(_o3d_cloud(points).voxel_down_sample(voxel).points, dtype=np.float32)


def remove_outliers(points: np.ndarray, nb_neighbors: int, std_ratio: float) -> np.ndarray:
    """open3d statistical outlier removal; sets too small for the neighbourhood are returned unchanged."""
    if len(points) <= nb_neighbors + 1:
        return np.asarray(points, dtype=np.float32)
    _, keep = _o3d_cloud(points).remove_statistical_outlier(nb_neighbors=nb_neighbors, std_ratio=std_ratio)
    return np.asarray(points, dtype=np.float32)[np.asarray(keep, dtype=np.int64)]


class InstanceMap:
    """Per-instance 3D point sets fused from RGB-D frames with instance masks."""

    def __init__(self, cfg: MappingConfig | None = None):
        self.cfg = cfg or MappingConfig()
        self._points: dict[int, np.ndarray] = {}
        self._voxel: dict[int, float] = {}
        self._category: dict[int, str | None] = {}
        self._gt: dict[int, str | None] = {}  # ground-truth object per instance, when matched (simulation)
        #: instance boxes estimated by the segmenter (its base at the support it rests on), when not the points'
        self._box: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._next_id = 1
        self._version = 0
        self._cache: tuple[int, np.ndarray, np.ndarray] | None = None
        self.frames_integrated = 0
        self.merges = 0

    # ------------------------------------------------------------ fusion

    def integrate(self, frame: Frame) -> None:
        """Fuse one frame. Frames without an instance mask add nothing. Raises :class:`FrameError` for a bad frame."""
        frame.validate()
        if frame.instance_mask is None:
            return
        cfg = self.cfg
        depth = frame.depth
        valid = np.isfinite(depth) & (depth >= cfg.min_depth) & (depth <= cfg.max_depth) & (frame.instance_mask > 0)
        if not valid.any():
            self.frames_integrated += 1
            return
        pts_cam, rc = backproject(frame.K, depth, valid)
        labels = frame.instance_mask[rc[:, 0], rc[:, 1]].astype(np.int64)
        pts = transform(frame.T_world_cam, pts_cam)
        order = np.argsort(labels, kind="stable")
        labels, pts = labels[order], pts[order]
        ids, starts = np.unique(labels, return_index=True)
        ends = np.append(starts[1:], len(labels))
        observations: dict[int, np.ndarray] = {}
        for lab, s, e in zip(ids.tolist(), starts.tolist(), ends.tolist()):
            obs = voxel_downsample(pts[s:e], cfg.voxel_size)
            obs = remove_outliers(obs, cfg.outlier_nb_neighbors, cfg.outlier_std_ratio)
            if len(obs) >= 3:
                observations[int(lab)] = obs
        if cfg.id_mode == "stable":
            for lab, obs in observations.items():
                self._add(lab, obs)
                self._next_id = max(self._next_id, lab + 1)
        else:
            touched = self._associate(frame, observations)
            self._merge_overlapping(touched)
        self.frames_integrated += 1

    def _associate(self, frame: Frame, observations: dict[int, np.ndarray]) -> list[int]:
        """Per-frame ids: join each segment to the best-overlapping visible map instance, else create one."""
        grid = self.cfg.voxel_size * ASSOCIATION_GRID
        seen = self._seen_keys(frame, grid)
        obs_keys = {lab: voxel_keys(obs, grid) for lab, obs in observations.items()}
        pairs = []
        for lab, ok in obs_keys.items():
            for iid, mk in seen.items():
                iou = voxel_iou(ok, mk)
                if iou >= self.cfg.association_iou and iou > 0:
                    pairs.append((iou, lab, iid))
        pairs.sort(key=lambda t: (-t[0], t[1], t[2]))
        assigned: dict[int, int] = {}
        used: set[int] = set()
        for _, lab, iid in pairs:
            if lab in assigned or iid in used:
                continue
            assigned[lab] = iid
            used.add(iid)
        touched = []
        for lab in sorted(observations, key=lambda k: -len(observations[k])):
            iid = assigned.get(lab)
            if iid is None:
                iid = self._next_id
                self._next_id += 1
            self._add(iid, observations[lab])
            touched.append(iid)
        return touched

    def _seen_keys(self, frame: Frame, grid: float) -> dict[int, np.ndarray]:
        """Voxel keys of each map instance's points that this frame sees (in view and matching its depth)."""
        out: dict[int, np.ndarray] = {}
        if not self._points:
            return out
        T_cam_world = invert(frame.T_world_cam)
        h, w = frame.shape
        tol = grid * _SEEN_TOLERANCE_VOXELS
        for iid, pts in self._points.items():
            uv, z = project(frame.K, transform(T_cam_world, pts.astype(np.float64)))
            with np.errstate(invalid="ignore"):
                inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
            if not inside.any():
                continue
            cols = uv[inside, 0].astype(np.int64)
            rows = uv[inside, 1].astype(np.int64)
            d = frame.depth[rows, cols]
            ok = np.isfinite(d) & (np.abs(z[inside] - d) <= tol)
            if ok.any():
                out[iid] = voxel_keys(pts[inside][ok], grid)
        return out

    def _merge_overlapping(self, candidates: list[int]) -> None:
        """Merge instances whose voxel sets overlap with IoU above ``merge_iou`` into the lower id."""
        grid = self.cfg.voxel_size * ASSOCIATION_GRID
        queue = list(dict.fromkeys(candidates))
        while queue:
            a = queue.pop(0)
            if a not in self._points:
                continue
            pa = self._points[a]
            lo_a, hi_a = pa.min(0), pa.max(0)
            ka = voxel_keys(pa, grid)
            for b in sorted(self._points):
                if b == a:
                    continue
                pb = self._points[b]
                if np.any(pb.max(0) < lo_a - grid) or np.any(pb.min(0) > hi_a + grid):
                    continue
                if voxel_iou(ka, voxel_keys(pb, grid)) >= self.cfg.merge_iou:
                    keep, drop = min(a, b), max(a, b)
                    self._add(keep, self._points.pop(drop))
                    if self._category.get(keep) is None and self._category.get(drop) is not None:
                        self._category[keep] = self._category[drop]
                    self._category.pop(drop, None)
                    self._voxel.pop(drop, None)
                    self._gt.pop(drop, None)
                    self._box.pop(drop, None)
                    self.merges += 1
                    queue.append(keep)
                    break

    def add_points(self, instance_id: int, points: np.ndarray) -> None:
        """Fuse world points of a known instance (voxel-downsampled with the instance's voxel size)."""
        self._add(int(instance_id), np.asarray(points, dtype=np.float32).reshape(-1, 3))
        self._next_id = max(self._next_id, int(instance_id) + 1)

    def _add(self, iid: int, pts: np.ndarray) -> None:
        voxel = self._voxel.get(iid, self.cfg.voxel_size)
        old = self._points.get(iid)
        merged = pts if old is None else np.concatenate([old, pts])
        down = voxel_downsample(merged, voxel)
        while len(down) > self.cfg.max_points_per_instance:
            # surface point sets scale with the square of the voxel size
            voxel *= max(1.1, float(np.sqrt(len(down) / self.cfg.max_points_per_instance)))
            down = voxel_downsample(merged, voxel)
        self._points[iid] = down
        self._voxel[iid] = voxel
        self._box.pop(iid, None)  # the box was estimated for the old points
        self._category.setdefault(iid, None)
        self._version += 1

    # ------------------------------------------------------------ queries

    def set_category(self, instance_id: int, category: str | None) -> None:
        """Set the category of an instance (e.g. from ``scene.json``)."""
        self._category[int(instance_id)] = category

    def set_gt_instance_id(self, instance_id: int, gt_instance_id: str | None) -> None:
        """Record the ground-truth object an instance is (``None``: none); saved as ``gt_instance_id``."""
        self._gt[int(instance_id)] = None if gt_instance_id is None else str(gt_instance_id)

    def gt_instance_ids(self) -> dict[int, str | None]:
        """Recorded ground-truth objects of the instances (empty when never matched)."""
        return {iid: gt for iid, gt in self._gt.items() if iid in self._points}

    def instances(self) -> dict[int, InstanceInfo]:
        """Instances with at least ``min_points`` points, by id."""
        out = {}
        for iid in sorted(self._points):
            pts = self._points[iid]
            if len(pts) < self.cfg.min_points:
                continue
            if iid in self._box:  # an estimated box: the object's centre is the box's, not its seen surface's
                lo, hi = (np.asarray(b, dtype=np.float64) for b in self._box[iid])
                centroid = (lo + hi) / 2.0
            else:
                lo, hi, centroid = (pts.min(0).astype(np.float64), pts.max(0).astype(np.float64),
                                    pts.mean(0).astype(np.float64))
            out[iid] = InstanceInfo(instance_id=iid, category=self._category.get(iid), centroid=centroid,
                                    aabb_min=lo, aabb_max=hi, n_points=int(len(pts)))
        return out

    def points_and_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """All points of instances with at least ``min_points`` points: ((N, 3) float32, (N,) int32 ids)."""
        if self._cache is not None and self._cache[0] == self._version:
            return self._cache[1], self._cache[2]
        keep = [iid for iid in sorted(self._points) if len(self._points[iid]) >= self.cfg.min_points]
        if keep:
            pts = np.concatenate([self._points[i] for i in keep]).astype(np.float32, copy=False)
            labels = np.concatenate([np.full(len(self._points[i]), i, dtype=np.int32) for i in keep])
        else:
            pts, labels = np.zeros((0, 3), np.float32), np.zeros(0, np.int32)
        self._cache = (self._version, pts, labels)
        return pts, labels

    def instance_points(self, instance_id: int) -> np.ndarray:
        """(N, 3) float32 points of one instance (empty when unknown)."""
        return self._points.get(int(instance_id), np.zeros((0, 3), np.float32))

    def __len__(self) -> int:
        return len(self.instances())

    def to_store_instances(self) -> dict[str, dict]:
        """``instances.json`` of a ViewStore: ``{"<id>": {category, centroid, aabb, n_points}}``, plus
        ``gt_instance_id`` when the instances were matched to ground-truth objects."""
        out = {}
        for iid, info in self.instances().items():
            out[str(iid)] = info.to_store_json()
            if iid in self._gt:
                out[str(iid)]["gt_instance_id"] = self._gt[iid]
        return out

    # ------------------------------------------------------------ persistence

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``map.ply`` (points with an ``instance`` vertex property) and ``instances.json``; returns the dir."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        pts, labels = self.points_and_labels()
        write_ply(d / "map.ply", pts, labels)
        inst = self.to_store_instances()
        for key in inst:
            inst[key]["voxel_size"] = float(self._voxel.get(int(key), self.cfg.voxel_size))
            if int(key) in self._box:
                inst[key]["box_estimated"] = True
        atomic_write_json(d / "instances.json", inst)
        return d

    @classmethod
    def load(cls, path: str | os.PathLike, cfg: MappingConfig | None = None) -> "InstanceMap":
        """Load a saved map directory, or an external PLY/PCD semantic map with instance labels.

        Label 0 and negative labels mean "no instance" (as in masks) and are dropped.
        Categories come from ``instances.json`` next to the cloud when it exists.
        """
        p = Path(path)
        if p.is_dir():
            cloud = next((p / n for n in ("map.ply", "map.pcd") if (p / n).is_file()), None)
            if cloud is None:
                raise FormatError(f"{p}: no map.ply or map.pcd in this directory")
        else:
            cloud = p
        pts, labels = read_labeled_cloud(cloud)
        m = cls(cfg)
        keep = labels > 0
        pts, labels = pts[keep], labels[keep]
        if not np.all(np.isfinite(pts)):
            raise FormatError(f"{cloud}: points contain NaN or inf")
        order = np.argsort(labels, kind="stable")
        pts, labels = pts[order], labels[order]
        ids, starts = np.unique(labels, return_index=True)
        ends = np.append(starts[1:], len(labels))
        for iid, s, e in zip(ids.tolist(), starts.tolist(), ends.tolist()):
            m._points[int(iid)] = np.ascontiguousarray(pts[s:e], dtype=np.float32)
            m._category[int(iid)] = None
        m._next_id = int(ids.max()) + 1 if len(ids) else 1
        meta_path = next((q for q in (cloud.with_suffix(".instances.json"), cloud.parent / "instances.json")
                          if q.is_file()), None)
        if meta_path is not None:
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise FormatError(f"{meta_path}: cannot read instances ({e})") from None
            if not isinstance(meta, dict):
                raise FormatError(f"{meta_path}: expected an object of instances")
            for key, entry in meta.items():
                try:
                    iid = int(key)
                except ValueError:
                    raise FormatError(f"{meta_path}: instance key {key!r} is not an integer id") from None
                if iid in m._points and isinstance(entry, dict):
                    m._category[iid] = entry.get("category")
                    if "gt_instance_id" in entry:
                        gt = entry["gt_instance_id"]
                        m._gt[iid] = None if gt is None else str(gt)
                    if entry.get("voxel_size"):
                        m._voxel[iid] = float(entry["voxel_size"])
                    if entry.get("box_estimated") and isinstance(entry.get("aabb"), list):
                        try:
                            box = np.asarray(entry["aabb"], dtype=np.float64)
                        except (TypeError, ValueError):
                            raise FormatError(f"{meta_path}: instance {key}: aabb is not two 3D points") from None
                        if box.shape != (2, 3) or not np.all(np.isfinite(box)):
                            raise FormatError(f"{meta_path}: instance {key}: aabb is not two finite 3D points")
                        m._box[iid] = (box[0], box[1])
        m._version += 1
        return m

    @classmethod
    def from_points(cls, points: np.ndarray, labels: np.ndarray, cfg: MappingConfig | None = None,
                    categories: dict[int, str] | None = None,
                    boxes: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> "InstanceMap":
        """A map holding these labelled points as they are (no downsampling); label <= 0 is dropped.

        ``boxes`` (id -> (min, max) corners) replaces the points' box of those instances (and their centroid
        becomes the box's centre): the geometric segmenter's boxes reach down to the support an object rests on,
        which no depth sample sees."""
        m = cls(cfg)
        points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
        labels = np.asarray(labels).reshape(-1)
        if len(points) != len(labels):
            raise FrameError(f"from_points: {len(points)} points but {len(labels)} labels")
        for iid in np.unique(labels[labels > 0]).tolist():
            m._points[int(iid)] = np.ascontiguousarray(points[labels == iid])
            m._category[int(iid)] = (categories or {}).get(int(iid))
            m._next_id = max(m._next_id, int(iid) + 1)
            if boxes and int(iid) in boxes:
                lo, hi = boxes[int(iid)]
                m._box[int(iid)] = (np.asarray(lo, dtype=np.float64).copy(), np.asarray(hi, dtype=np.float64).copy())
        m._version += 1
        return m
