"""Class-agnostic 3D instance segmentation of fused RGB-D frames: no masks, no learned weights.

A robot with only an RGB-D camera and a pose builds its own instance map with :class:`GeometricSegmenter`:

1. **fusion** (:mod:`ssl_nav.mapping.voxel_grid`): every frame's depth is sampled, posed into the world and
   fused into a sparse voxel grid that keeps, per voxel, the sample count and the averaged position, normal
   and colour;
2. **structure** (:mod:`ssl_nav.mapping.planes`): the support surfaces (floor, table tops, shelf boards: large
   up-facing horizontal planes), the ceilings and undersides (down-facing ones) and the walls (large vertical
   planes) are found from the averaged normals; the voxels within ``geometric_plane_tolerance`` of them are
   structure;
3. **objects**: what is left is cut into 26-connected voxel components. A component longer than
   ``geometric_min_support_extent`` first loses its long planar runs (legs, the edges of table tops and shelf
   boards, side panels) and is cut again. A piece is an object instance when it has at least ``min_points``
   voxels, fits in ``geometric_max_object_size``, is neither a rod (a leg) nor a sheet (a piece of a plane),
   does not touch a horizontal plane from below (furniture does) and rests on something: its base lies within
   ``geometric_max_support_gap`` above and ``geometric_support_reach`` beside the top of a support or a ledge;
4. **touching objects** are split by colour (two-means in CIELAB) or at concave creases (LCCP's convexity
   criterion) when the parts stand side by side (:meth:`GeometricSegmenter._split`); **flat objects** thinner
   than a support's band are found by their colour contrast with it, thicker ones (a book) by their top a few
   cm above it; every instance gets back the foot the band cut removed, and a **box** that reaches down to the
   support it rests on (:attr:`Segmentation.boxes`; ``InstanceMap`` takes them);
5. **stable ids**: each segmentation is matched with the previous one by voxel overlap. A component keeps the
   id of the previous instance it overlaps most; when it overlaps several (they turned out to be one object)
   they merge into the one with most overlap (:attr:`GeometricSegmenter.merged_into` records it); when an
   instance now falls into several components (it turned out to be two), the largest overlap keeps the id and
   the others get new ids. Ids are never reused.

This is the classic tabletop pipeline (remove the dominant planes, cluster what stands on them: e.g. Rusu et
al., "Close-range scene segmentation and reconstruction of 3D point cloud maps for mobile manipulation in
domestic environments", IROS 2009) run incrementally on a voxel map, with the id bookkeeping of incremental
object mapping (Grinvald et al., "Volumetric instance-aware semantic mapping and 3D object discovery", RA-L
2019). The result is an :class:`~ssl_nav.mapping.instance_map.InstanceMap`, so visibility, crops, the ViewStore,
fine-tuning and retrieval run on it unchanged.

Streaming use (e.g. a ROS node)::

    seg = GeometricSegmenter(cfg.mapping)
    for frame in frames:
        report = seg.integrate(frame)      # FrameReport: samples fused, reason when the frame shows no support
        imap = seg.instance_map()          # re-segmented every geometric_resegment_every frames, ids stable

Assumptions: the world frame is z-up (gravity along -z) and poses are accurate to about a voxel; the map is
static (nothing moves while it is built).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import ConvexHull, QhullError, cKDTree

from ssl_nav.config import MappingConfig
from ssl_nav.frames import Frame
from ssl_nav.mapping.instance_map import InstanceMap
from ssl_nav.mapping.planes import (HorizontalPlane, VerticalPlane, cell_keys, closing, fill_holes, horizontal_planes,
                                    sorted_member, vertical_planes)
from ssl_nav.mapping.voxel_grid import VoxelGrid, depth_samples, neighbour_deltas

#: a frame shows a support when its up-facing samples cover this fraction of ``geometric_min_support_area``
FRAME_SUPPORT_FRACTION = 0.25
#: voxels of a component that must touch a horizontal plane from below for it to be furniture
MIN_CONTACTS_FROM_BELOW = 3
#: a component longer than geometric_min_support_extent and at most this many voxels wide is a leg or a pole
ROD_WIDTH_VOXELS = 5
#: a component whose thinnest side is at most this many voxels is a sheet
SHEET_VOXELS = 3
#: ... and whose second side is at least this long (m); narrower ones are thin objects (a stick, a bottle)
SHEET_MIN_WIDTH = 0.2
#: the base of a component: its voxels this close above its lowest one (m)
FOOT_SLICE = 0.05
#: parts of a split are split again at most this many times (a segment gives at most 2**depth objects)
MAX_SPLIT_DEPTH = 2
#: a part of a split must show more than one face: the second eigenvalue of its normals' scatter at least this
MIN_FACE_SPREAD = 0.05
#: concave creases are widened by this many voxels before the pieces between them are taken
CREASE_GROW = 1
#: a concave split: the smaller part holds at least this fraction of the larger (a mug's handle does not) ...
CONCAVE_MIN_PART_FRACTION = 0.25
#: ... and the seam between the parts spans at least this fraction of the lower part's height
SEAM_MIN_HEIGHT = 0.6
#: ... and the median colours of the parts differ by at least this (CIELAB, lightness halved)
CONCAVE_MIN_COLOUR = 5.0
#: the smaller part of a split holds at least this fraction of the larger one's voxels
MIN_PART_FRACTION = 0.15
#: the parts of a split leave a notch in top view: their joint convex hull is at least this much larger than theirs
MIN_NOTCH = 1.08
#: the top of a flat object lying on a support is at most this high above it (m); higher sheets have sides seen
FLAT_MAX_HEIGHT = 0.07
#: a voxel of a support's surface layer is of another colour when it lies this many median absolute deviations
#: (and ``geometric_split_colour``) from the support's median colour
FLAT_COLOUR_MADS = 6.0
#: ... and is at least this wide (m; the side of the box with its second moments)
FLAT_MIN_WIDTH = 0.06
#: a flat object found by colour fills at least this fraction of its top-view bounding box (a texture's streak does not)
FLAT_MIN_FILL = 0.5
#: furniture under a support reaches within this many voxels of the band cut below the support's surface
SOLID_REACH_VOXELS = 2
#: ... and at least this fraction of its voxels lie over the band of that support (the rest beside it)
SOLID_MIN_UNDER = 0.25
#: a one-voxel-thin upright strip at most 3 voxels wide and at least this tall (m) is the edge of a panel
EDGE_MIN_HEIGHT = 0.3
#: a voxel of the support band this far above the support's surface (m) may be the foot of an object on it
BASE_CLEARANCE = 0.004

TOO_SMALL = "too small"
TOO_LARGE = "too large"
FURNITURE = "furniture (touches a plane from below)"
SOLID_FURNITURE = "furniture (stands on the floor under a support)"
NOT_SUPPORTED = "not on a support"
ROD = "rod (a leg or a pole)"
PLANE_FRAGMENT = "plane fragment"
NO_DEPTH = "no depth in range"
NO_SUPPORT = "no support surface in view"


@dataclass
class FrameReport:
    """What one frame gave the map: samples fused, and why it shows no object evidence (``None``: it may)."""

    frame_id: str
    samples: int
    reason: str | None = None


@dataclass
class Segmentation:
    """The last segmentation: structure, per-component decisions and the instances (ids -> voxel keys)."""

    supports: list[HorizontalPlane] = field(default_factory=list)
    ceilings: list[HorizontalPlane] = field(default_factory=list)
    walls: list[VerticalPlane] = field(default_factory=list)
    rejected: Counter = field(default_factory=Counter)
    voxels: int = 0
    structure_voxels: int = 0
    instances: dict[int, np.ndarray] = field(default_factory=dict)  #: id -> sorted voxel keys
    strip_voxels: int = 0  #: voxels removed as long planar strips
    #: id -> (min, max) corners of the instance's box, its base at the top of what it rests on
    boxes: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    base_voxels: int = 0  #: voxels given back to instances from the band cut below a support's surface
    #: segments split into objects side by side, by the cue on the cut boundary (colour, concave, both)
    splits: Counter = field(default_factory=Counter)
    flat_objects: int = 0  #: instances found in a support's surface layer by their colour
    #: rejected components as (reason, sorted voxel keys), kept when ``GeometricSegmenter.keep_rejected``
    rejected_components: list[tuple[str, np.ndarray]] = field(default_factory=list)


def _tops(keys: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Positions of the voxels among ``keys`` with no voxel of the set right above them (their upper surface),
    sorted by height."""
    if len(keys) == 0:
        return np.zeros((0, 3))
    order = np.argsort(keys)
    keys, pos = keys[order], pos[order]
    top = pos[~sorted_member(keys, keys + 1)]
    return top[np.argsort(top[:, 2], kind="stable")]


def _encloses(cells: np.ndarray) -> bool:
    """Whether 2D cells (N, 2) form a closed loop around an empty area at least as large as the loop."""
    lo = cells.min(0) - 2
    raster = np.zeros(tuple((cells.max(0) - lo + 3).tolist()), np.uint8)
    raster[cells[:, 0] - lo[0], cells[:, 1] - lo[1]] = 1
    raster = closing(raster, 1)
    return bool(fill_holes(raster).sum() >= 2 * raster.sum())


def voxel_edges(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges (i, j) between sorted unique voxel keys that are neighbours by :func:`neighbour_deltas`."""
    n = len(keys)
    rows, cols = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for delta in neighbour_deltas():
        nb = keys + delta
        idx = np.searchsorted(keys, nb)
        ok = idx < n
        ok[ok] = keys[idx[ok]] == nb[ok]
        rows.append(np.nonzero(ok)[0])
        cols.append(idx[ok])
    return np.concatenate(rows), np.concatenate(cols)


def voxel_components(keys: np.ndarray) -> tuple[int, np.ndarray]:
    """26-connected components of sorted unique voxel keys: (count, label per key)."""
    n = len(keys)
    if n == 0:
        return 0, np.zeros(0, np.int64)
    i, j = voxel_edges(keys)
    r, c = np.concatenate([np.arange(n), i]), np.concatenate([np.arange(n), j])
    graph = coo_matrix((np.ones(len(r), np.int8), (r, c)), shape=(n, n)).tocsr()
    count, labels = connected_components(graph, directed=False)
    return int(count), labels.astype(np.int64)


class GeometricSegmenter:
    """Incremental voxel fusion + support-plane removal + clustering, with stable instance ids."""

    def __init__(self, cfg: MappingConfig | None = None):
        self.cfg = cfg or MappingConfig()
        self.grid = VoxelGrid(self.cfg.voxel_size)
        self.reasons: Counter = Counter()
        self.frames_integrated = 0
        self.merged_into: dict[int, int] = {}
        self.last = Segmentation()
        self._next_id = 1
        self._prev_keys = np.zeros(0, np.int64)  # sorted voxel keys of the last instances
        self._prev_ids = np.zeros(0, np.int64)
        self._map: InstanceMap | None = None
        self._map_version = -1
        self._since_segment = 0
        self.keep_rejected = False  # keep rejected components' voxels in ``last`` (inspection, tests)

    # ------------------------------------------------------------------------------------------ fusion

    def integrate(self, frame: Frame) -> FrameReport:
        """Fuse one frame (its instance mask, if any, is ignored). Raises :class:`FrameError` for a bad frame."""
        frame.validate()
        cfg = self.cfg
        s = depth_samples(frame, cfg.geometric_stride, cfg.min_depth, cfg.max_depth)
        report = FrameReport(frame.frame_id, len(s.points))
        self.frames_integrated += 1
        if len(s.points) == 0:
            report.reason = NO_DEPTH
        else:
            self.grid.add(s)
            self._since_segment += 1
            cos_tol = math.cos(math.radians(cfg.geometric_normal_tolerance_deg))
            up = s.normals[:, 2] > cos_tol
            if up.any():
                ray = s.points[up] - frame.T_world_cam[:3, 3]
                ray /= np.linalg.norm(ray, axis=1, keepdims=True)
                cos_inc = np.abs((ray * s.normals[up]).sum(1))
                area = float((s.spacing[up].astype(np.float64) ** 2 / np.maximum(cos_inc, 0.1)).sum())
            else:
                area = 0.0
            if area < FRAME_SUPPORT_FRACTION * cfg.geometric_min_support_area:
                report.reason = NO_SUPPORT
        if report.reason is not None:
            self.reasons[report.reason] += 1
        return report

    # ------------------------------------------------------------------------------------------ queries

    def instance_map(self) -> InstanceMap:
        """The current :class:`InstanceMap`; re-segments when ``geometric_resegment_every`` frames came in since."""
        if self._map is None or (self._since_segment >= self.cfg.geometric_resegment_every
                                 and self._map_version != self.grid.version):
            return self.segment()
        return self._map

    def segment(self) -> InstanceMap:
        """Segment the fused map now; returns the :class:`InstanceMap` with stable ids."""
        cfg = self.cfg
        g = self.grid
        seg = Segmentation()
        ok = np.flatnonzero(g.hits >= cfg.geometric_min_hits)
        keys = g.keys[ok]
        pos = g.positions(ok)
        nrm = g.normals(ok).astype(np.float64)
        seg.voxels = len(keys)
        comp_keys: list[np.ndarray] = []
        comp_pos: list[np.ndarray] = []
        bases: list[float | None] = []
        if len(keys):
            length = np.linalg.norm(nrm, axis=1)
            n_hat = nrm / np.maximum(length, 1e-9)[:, None]
            n_hat[length <= 0.5] = 0.0  # the samples of this voxel disagree on a normal: none
            structure, wall, band_z = self._structure(keys, pos, n_hat, seg)
            seg.structure_voxels = int(structure.sum())
            comp_keys, comp_pos, bases = self._objects(keys, pos, n_hat, structure, wall, seg)
            rgb = g.colors(ok)
            if cfg.geometric_split != "none" and comp_keys:
                comp_keys, comp_pos, bases = self._split(keys, rgb, n_hat, comp_keys, comp_pos, bases, seg)
            if cfg.geometric_flat_objects:
                fk, fp, fb = self._flat_on_supports(keys, pos, rgb, band_z, comp_keys, seg)
                comp_keys, comp_pos, bases = comp_keys + fk, comp_pos + fp, bases + fb
            if cfg.geometric_tight_boxes:
                comp_keys, comp_pos = self._recover_bases(keys, pos, n_hat, band_z, comp_keys, comp_pos, bases,
                                                          seg)
            else:
                bases = [None] * len(comp_keys)
        ids = self._assign_ids(comp_keys)
        seg.instances = {i: k for i, k in zip(ids, comp_keys)}
        for i, p, base in zip(ids, comp_pos, bases):
            lo, hi = p.min(0).astype(np.float64), p.max(0).astype(np.float64)
            if base is not None:
                lo[2] = min(lo[2], base)
            seg.boxes[i] = (lo, hi)
        self.last = seg
        if comp_keys:
            points = np.concatenate(comp_pos).astype(np.float32)
            labels = np.concatenate([np.full(len(k), i, np.int32) for i, k in zip(ids, comp_keys)])
        else:
            points, labels = np.zeros((0, 3), np.float32), np.zeros(0, np.int32)
        self._map = InstanceMap.from_points(points, labels, cfg, boxes=seg.boxes)
        self._map_version = g.version
        self._since_segment = 0
        return self._map

    # ------------------------------------------------------------------------------------------ steps

    def _facing(self, n_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Voxels facing up, down and sideways (unit normals; zero rows face nowhere)."""
        tol = math.radians(self.cfg.geometric_normal_tolerance_deg)
        has = np.abs(n_hat).sum(1) > 0
        return (n_hat[:, 2] > math.cos(tol), n_hat[:, 2] < -math.cos(tol),
                has & (np.abs(n_hat[:, 2]) < math.sin(tol)))

    def _structure(self, keys: np.ndarray, pos: np.ndarray, n_hat: np.ndarray,
                   seg: Segmentation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Find supports, ceilings and walls; return which voxels belong to them (or lie below the floor), which
        of those to walls, and per voxel the height of the support whose band removed it (NaN: none)."""
        cfg = self.cfg
        v, tol = cfg.voxel_size, cfg.geometric_plane_tolerance
        up, down, side = self._facing(n_hat)
        seg.supports = horizontal_planes(pos[up], v, tol, cfg.geometric_min_support_area,
                                         cfg.geometric_min_support_extent, up=True)
        seg.ceilings = horizontal_planes(pos[down], v, tol, cfg.geometric_min_support_area,
                                         cfg.geometric_min_support_extent, up=False)
        seg.walls = vertical_planes(pos[side], n_hat[side], v, tol, cfg.geometric_min_wall_area)
        cells = cell_keys(np.floor(pos[:, :2] / v).astype(np.int64))
        structure = np.zeros(len(keys), bool)
        band_z = np.full(len(keys), np.nan)
        thick = cfg.geometric_support_thickness
        for p in seg.supports + seg.ceilings:  # the plane and the board or top below (above) its surface
            dz = (pos[:, 2] - p.z) * (1.0 if p.up else -1.0)
            near = (dz >= -tol - thick) & (dz <= tol)
            inside = p.in_band(cells[near])
            structure[near] |= inside
            if p.up:
                sel = np.flatnonzero(near)[inside]
                band_z[sel[np.isnan(band_z[sel])]] = p.z
        wall = np.zeros(len(keys), bool)
        for w in seg.walls:
            near = np.abs(pos[:, :2] @ w.normal - w.d) <= tol
            t = pos[:, :2] @ np.array([-w.normal[1], w.normal[0]])
            wall |= near & (t >= w.t_range[0] - tol) & (t <= w.t_range[1] + tol)
        structure |= wall
        if seg.supports:
            floor = min(seg.supports, key=lambda p: p.z)
            below = pos[:, 2] < floor.z - tol
            structure[below] |= floor.contains(cells[below])
        band_z[wall] = np.nan
        return structure, wall, band_z

    def _objects(self, keys: np.ndarray, pos: np.ndarray, n_hat: np.ndarray, structure: np.ndarray,
                 wall: np.ndarray, seg: Segmentation
                 ) -> tuple[list[np.ndarray], list[np.ndarray], list[float | None]]:
        """Cluster the non-structure voxels and keep the components that are objects standing on something.

        Planar runs longer than ``geometric_min_support_extent`` are structure too (table legs, the edges of
        table tops and shelf boards, shelf side panels), and an object often touches them: a component that
        long loses its long planar runs (and the voxels next to them) and what is left is clustered again.
        """
        cand = ~structure
        ck, cp, cn = keys[cand], pos[cand], n_hat[cand]
        n, lab = voxel_components(ck)
        if n == 0:
            return [], [], []
        below = self._contacts_from_below(keys, pos, cand, seg)
        order = np.argsort(lab, kind="stable")
        bounds = np.searchsorted(lab[order], np.arange(n + 1))
        extent = self.cfg.geometric_min_support_extent
        pieces: list[np.ndarray] = []
        strips: list[np.ndarray] = []
        for c in range(n):
            idx = np.sort(order[bounds[c]:bounds[c + 1]])
            if len(idx) >= self.cfg.min_points and np.max(cp[idx].max(0) - cp[idx].min(0)) >= extent:
                strip = self._long_planar_strips(ck[idx], cp[idx], cn[idx])
                if strip.any():
                    seg.strip_voxels += int(strip.sum())
                    strips.append(idx[strip])
                    rest = idx[~strip]
                    m, sub = voxel_components(ck[rest])
                    pieces.extend(rest[sub == j] for j in range(m))
                    continue
            pieces.append(idx)
        ledge = structure & ~wall  # what objects can rest on: supports, strips; not walls
        top_pos = _tops(np.concatenate([keys[ledge]] + [ck[i] for i in strips]),
                        np.concatenate([pos[ledge]] + [cp[i] for i in strips]))
        out_k, out_p, out_b = [], [], []
        for part in pieces:
            base: list[float] = []
            reason = self._rejection(cp[part], cn[part], below[part], seg, top_pos, base)
            if reason is not None:
                seg.rejected[reason] += 1
                if self.keep_rejected:
                    seg.rejected_components.append((reason, ck[part]))
                continue
            out_k.append(ck[part])  # sorted: ck is sorted and part ascending
            out_p.append(cp[part])
            out_b.append(base[0] if base else None)
        return out_k, out_p, out_b

    def _split(self, keys: np.ndarray, rgb: np.ndarray, n_hat: np.ndarray, comp_keys: list[np.ndarray],
               comp_pos: list[np.ndarray], bases: list[float | None], seg: Segmentation
               ) -> tuple[list[np.ndarray], list[np.ndarray], list[float | None]]:
        """Split segments made of objects that touch, by colour and at concave creases (no learned weights).

        Local edge cuts leak: at a boundary the voxels that hold samples of both objects have an in-between
        colour, so a segment is split by its colour distribution as a whole instead (:meth:`_split_colour`,
        two-means in CIELAB, as colour-based segmentation of point clouds, Zhan et al. 2009), and by its concave
        creases (:meth:`_split_concave`, the convexity criterion of LCCP, Stein et al., CVPR 2014). A split is
        kept only when its parts look like objects standing side by side: each holds at least ``min_points``
        voxels, shows more than one face (its normals are not all alike: a logo or a printed panel is one face)
        and their top-view footprints overlap by at most ``geometric_split_overlap`` of the smaller one (a
        colour band, a label or a head lies over the rest of its own object). Parts are split again, twice at
        most. ``seg.splits`` counts the splits by cue."""
        cfg = self.cfg
        lab_all = cv2.cvtColor((np.clip(rgb, 0, 255) / 255.0).astype(np.float32)[None], cv2.COLOR_RGB2Lab)[0]
        lab_all[:, 0] *= 0.5  # the faces of one object are shaded differently: lightness counts half
        out_k, out_p, out_b = [], [], []
        for k, p, base in zip(comp_keys, comp_pos, bases):
            rows = np.searchsorted(keys, k)
            stack = [(np.arange(len(k)), 0)]
            while stack:
                idx, depth = stack.pop()
                parts, cue = None, None
                if depth < MAX_SPLIT_DEPTH and len(idx) >= 2 * cfg.min_points:
                    if "colour" in cfg.geometric_split:
                        parts, cue = self._split_colour(k[idx], p[idx], lab_all[rows[idx]], n_hat[rows[idx]]), "colour"
                    if parts is None and "concave" in cfg.geometric_split:
                        parts, cue = self._split_concave(k[idx], p[idx], n_hat[rows[idx]],
                                                         lab_all[rows[idx]]), "concave"
                if parts is None:
                    out_k.append(k[idx])
                    out_p.append(p[idx])
                    out_b.append(base)
                    continue
                seg.splits[cue] += 1
                stack.extend((idx[part], depth + 1) for part in parts)
        return out_k, out_p, out_b

    def _side_by_side(self, p: np.ndarray, nrm: np.ndarray, parts: list[np.ndarray]) -> bool:
        """Whether two parts of a segment look like two objects next to each other (see :meth:`_split`): neither
        lies over the other, i.e. at most ``geometric_split_overlap`` of either's voxels fall (in top view)
        within half a voxel of the convex hull of the other."""
        cfg = self.cfg
        hulls = []
        for part in parts:
            if len(part) < cfg.min_points:
                return False
            nn = nrm[part][np.abs(nrm[part]).sum(1) > 0]
            if len(nn) < 3 or np.linalg.eigvalsh(nn.T @ nn / len(nn))[1] < MIN_FACE_SPREAD:
                return False  # one face only: a printed panel, a label
            try:
                h = ConvexHull(p[part, :2])
                hulls.append((h.equations, h.volume))
            except QhullError:  # all on a line: a sliver, not an object
                return False
        for a, b in ((0, 1), (1, 0)):
            eq = hulls[b][0]
            inside = np.all(p[parts[a], :2] @ eq[:, :2].T + eq[:, 2] <= cfg.voxel_size / 2, axis=1)
            if inside.mean() > cfg.geometric_split_overlap:
                return False
        if min(len(parts[0]), len(parts[1])) < MIN_PART_FRACTION * max(len(parts[0]), len(parts[1])):
            return False  # a handle, a spout, a cap: a small appendage of a large object
        union = ConvexHull(p[np.concatenate(parts), :2]).volume  # the area of a 2D hull
        return bool(union >= MIN_NOTCH * (hulls[0][1] + hulls[1][1]))

    def _clean_labels(self, k: np.ndarray, label: np.ndarray) -> np.ndarray:
        """Binary voxel labels smoothed over the 26-neighbour graph (majority of each voxel and its neighbours,
        three rounds), then pieces of one label smaller than ``min_points`` handed to the other."""
        i, j = voxel_edges(k)
        n = len(k)
        label = label.astype(np.int64)
        for _ in range(3):
            ones = label + np.bincount(i, weights=label[j], minlength=n) + np.bincount(j, weights=label[i], minlength=n)
            total = 1 + np.bincount(i, minlength=n) + np.bincount(j, minlength=n)
            label = (2 * ones > total).astype(np.int64)
        same = label[i] == label[j]
        graph = coo_matrix((np.ones(int(same.sum()), np.int8), (i[same], j[same])), shape=(n, n)).tocsr()
        m, comp = connected_components(graph, directed=False)
        sizes = np.bincount(comp, minlength=m)
        small = sizes[comp] < self.cfg.min_points
        label[small] = 1 - label[small]
        return label

    def _split_colour(self, k: np.ndarray, p: np.ndarray, lab: np.ndarray, nrm: np.ndarray
                      ) -> list[np.ndarray] | None:
        """Two-means of the voxel colours; the two parts when their mean colours are at least
        ``geometric_split_colour`` apart and they stand side by side, else ``None``."""
        x = lab.astype(np.float64)
        d = x - x.mean(0)
        _, vec = np.linalg.eigh(d.T @ d)
        label = (d @ vec[:, -1] > 0).astype(np.int64)  # start from the split along the main colour axis
        for _ in range(10):
            if label.min() == label.max():
                return None
            c0, c1 = x[label == 0].mean(0), x[label == 1].mean(0)
            new = (np.linalg.norm(x - c1, axis=1) < np.linalg.norm(x - c0, axis=1)).astype(np.int64)
            if np.array_equal(new, label):
                break
            label = new
        if np.linalg.norm(c0 - c1) < self.cfg.geometric_split_colour:
            return None
        label = self._clean_labels(k, label)
        parts = [np.flatnonzero(label == 0), np.flatnonzero(label == 1)]
        return parts if self._side_by_side(p, nrm, parts) else None

    def _split_concave(self, k: np.ndarray, p: np.ndarray, nrm: np.ndarray, lab: np.ndarray
                       ) -> list[np.ndarray] | None:
        """The two largest pieces left when the voxels on concave creases are taken out (each crease voxel then
        joins the piece it touches most), when they stand side by side, else ``None``. A crease: two
        neighbouring voxels whose normals are more than ``geometric_split_concave_deg`` apart and face each
        other, ``(n_i - n_j) . (p_i - p_j) < 0`` (LCCP's convexity criterion)."""
        i, j = voxel_edges(k)
        n = len(k)
        has = (np.abs(nrm[i]).sum(1) > 0) & (np.abs(nrm[j]).sum(1) > 0)
        cos_c = math.cos(math.radians(self.cfg.geometric_split_concave_deg))
        concave = has & ((nrm[i] * nrm[j]).sum(1) < cos_c) & (((nrm[i] - nrm[j]) * (p[i] - p[j])).sum(1) < 0)
        if not concave.any():
            return None
        crease = np.zeros(n, bool)
        crease[i[concave]] = True
        crease[j[concave]] = True
        for _ in range(CREASE_GROW):  # a crease one voxel wide leaks through its gaps: widen it
            grow = crease.copy()
            grow[i[crease[j]]] = True
            grow[j[crease[i]]] = True
            crease = grow
        keep = ~crease[i] & ~crease[j]
        graph = coo_matrix((np.ones(int(keep.sum()), np.int8), (i[keep], j[keep])), shape=(n, n)).tocsr()
        m, comp = connected_components(graph, directed=False)
        comp[crease] = -1
        sizes = np.bincount(comp[~crease], minlength=m)
        if m < 2 or np.sort(sizes)[-2] < self.cfg.min_points // 2:
            return None
        big = np.argsort(-sizes)[:2]
        label = np.full(n, -1, np.int64)
        label[comp == big[0]] = 0
        label[comp == big[1]] = 1
        for _ in range(n):  # grow both pieces over the rest of the segment, one ring at a time
            todo = label < 0
            if not todo.any():
                break
            votes = np.zeros((n, 2))
            for a, b in ((i, j), (j, i)):
                ok = (label[b] >= 0) & todo[a]
                np.add.at(votes, (a[ok], label[b[ok]]), 1.0)
            grow = todo & (votes.sum(1) > 0)
            if not grow.any():
                label[todo] = 0
                break
            label[grow] = np.argmax(votes[grow], axis=1)
        parts = [np.flatnonzero(label == 0), np.flatnonzero(label == 1)]
        if min(len(parts[0]), len(parts[1])) < CONCAVE_MIN_PART_FRACTION * max(len(parts[0]), len(parts[1])):
            return None
        # objects that touch meet along a seam as tall as the lower one; the lobes of one bumpy object do not
        seam = np.concatenate([i[label[i] != label[j]], j[label[i] != label[j]]])
        low = min(np.ptp(p[parts[0], 2]), np.ptp(p[parts[1], 2]))
        if len(seam) == 0 or np.ptp(p[seam, 2]) < SEAM_MIN_HEIGHT * low:
            return None
        if np.linalg.norm(np.median(lab[parts[0]], 0) - np.median(lab[parts[1]], 0)) < CONCAVE_MIN_COLOUR:
            return None  # one colour on both sides: the lobes of one bumpy object, more often than two objects
        return parts if self._side_by_side(p, nrm, parts) else None

    def _flat_on_supports(self, keys: np.ndarray, pos: np.ndarray, rgb: np.ndarray, band_z: np.ndarray,
                          comp_keys: list[np.ndarray], seg: Segmentation
                          ) -> tuple[list[np.ndarray], list[np.ndarray], list[float | None]]:
        """Objects thinner than the support band (a plate, a placemat, a card) found by their colour contrast
        with the support they lie on. The surface layer of each support (the voxels of its band within
        ``geometric_plane_tolerance`` of its height) has the support's colour, up to texture: the voxels whose
        CIELAB colour (lightness halved, as for splits: shading and soft shadows change lightness) lies more than
        ``geometric_split_colour`` and ``FLAT_COLOUR_MADS`` median absolute deviations from the support's median
        colour are cut into 26-connected components; one with at least ``min_points`` voxels, that fits in
        ``geometric_max_object_size``, is at least ``FLAT_MIN_WIDTH`` wide, fills at least ``FLAT_MIN_FILL`` of its top-view bounding box and touches
        no instance (the foot of an object, its shadow) is a flat object resting on that support."""
        cfg = self.cfg
        tol, v = cfg.geometric_plane_tolerance, cfg.voxel_size
        lab = cv2.cvtColor((np.clip(rgb, 0, 255) / 255.0).astype(np.float32)[None], cv2.COLOR_RGB2Lab)[0]
        lab[:, 0] *= 0.5
        taken = np.sort(np.concatenate(comp_keys)) if comp_keys else np.zeros(0, np.int64)
        grown = np.unique((taken[:, None] + np.concatenate([[0], neighbour_deltas(), -neighbour_deltas()])[None]).ravel()) \
            if len(taken) else taken
        out_k, out_p, out_b = [], [], []
        for q in seg.supports:
            layer = np.flatnonzero((band_z == q.z) & (np.abs(pos[:, 2] - q.z) <= tol))
            if len(layer) < cfg.min_points:
                continue
            ref = np.median(lab[layer], axis=0)
            dist = np.linalg.norm(lab[layer] - ref, axis=1)
            mad = float(np.median(np.abs(dist - np.median(dist))))
            odd = layer[dist > max(cfg.geometric_split_colour, np.median(dist) + FLAT_COLOUR_MADS * mad)]
            odd = odd[~sorted_member(grown, keys[odd])]
            if len(odd) < cfg.min_points:
                continue
            m, lab_c = voxel_components(keys[odd])
            for c in range(m):
                idx = odd[lab_c == c]
                if len(idx) < cfg.min_points:
                    continue
                ext = pos[idx, :2].max(0) - pos[idx, :2].min(0)
                if np.any(ext > cfg.geometric_max_object_size):
                    continue
                if math.sqrt(12.0 * max(np.linalg.eigvalsh(np.cov(pos[idx, :2].T))[0], 0.0)) < FLAT_MIN_WIDTH:
                    continue  # a strip: the foot of a wall or a panel, the edge of a board
                cells = np.unique(np.floor(pos[idx, :2] / v).astype(np.int64), axis=0)
                if len(cells) < FLAT_MIN_FILL * np.prod(cells.max(0) - cells.min(0) + 1):
                    continue
                seg.flat_objects += 1
                out_k.append(keys[idx])
                out_p.append(pos[idx])
                out_b.append(float(q.z))
        return out_k, out_p, out_b

    def _recover_bases(self, keys: np.ndarray, pos: np.ndarray, n_hat: np.ndarray, band_z: np.ndarray,
                       comp_keys: list[np.ndarray], comp_pos: list[np.ndarray], bases: list[float | None],
                       seg: Segmentation) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Give each instance back the voxels of its lowest ``geometric_plane_tolerance`` that the support's band
        cut removed: those above the surface of the support it rests on (by more than ``BASE_CLEARANCE``), not
        facing up (the support's own surface does), and under or beside its voxels (its footprint grown by one
        cell). Without them the box of a 4 cm object loses half its height."""
        tol, v = self.cfg.geometric_plane_tolerance, self.cfg.voxel_size
        up, _, _ = self._facing(n_hat)
        dz = pos[:, 2] - band_z
        with np.errstate(invalid="ignore"):
            cand = np.flatnonzero((dz > BASE_CLEARANCE) & (dz <= tol + BASE_CLEARANCE) & ~up)
        if len(cand) == 0 or not comp_keys:
            return comp_keys, comp_pos
        cand_cells = cell_keys(np.floor(pos[cand, :2] / v).astype(np.int64))
        taken = np.zeros(len(cand), bool)
        ring = np.array([(di << 21) + dj for di in (-1, 0, 1) for dj in (-1, 0, 1)], np.int64)
        out_k, out_p = [], []
        for k, p, base in zip(comp_keys, comp_pos, bases):
            if base is None:
                out_k.append(k)
                out_p.append(p)
                continue
            cells = np.unique((cell_keys(np.floor(p[:, :2] / v).astype(np.int64))[:, None] + ring[None]).ravel())
            mine = ~taken & sorted_member(cells, cand_cells) & (np.abs(band_z[cand] - base) <= tol / 2)
            if not mine.any():
                out_k.append(k)
                out_p.append(p)
                continue
            taken |= mine
            seg.base_voxels += int(mine.sum())
            kk = np.concatenate([k, keys[cand[mine]]])
            pp = np.concatenate([p, pos[cand[mine]]])
            order = np.argsort(kk, kind="stable")
            out_k.append(kk[order])
            out_p.append(pp[order])
        return out_k, out_p

    def _long_planar_strips(self, keys: np.ndarray, pos: np.ndarray, n_hat: np.ndarray) -> np.ndarray:
        """Voxels of planar runs longer than ``geometric_min_support_extent``: on vertical planes, and at one
        height (ledges: the edges of boards and table tops seen from the front; not closed rims, as a tray's)."""
        cfg = self.cfg
        v, tol, extent = cfg.voxel_size, cfg.geometric_plane_tolerance, cfg.geometric_min_support_extent
        min_count = max(8, int(extent / v))  # a one-voxel-wide strip of the minimum length
        up, down, side = self._facing(n_hat)
        runs: list[tuple[np.ndarray, bool]] = []  # (voxels, horizontal)
        side_idx = np.nonzero(side)[0]
        for plane in vertical_planes(pos[side_idx], n_hat[side_idx], v, tol, 0.0, min_count=min_count):
            runs.append((side_idx[plane.members], False))  # voxels on the plane that face its way
        # horizontal runs: voxels facing up or down, or with mixed normals (thin edges seen from the front)
        flat = np.nonzero(up | down | (np.abs(n_hat).sum(1) == 0))[0]
        if len(flat):
            zb = np.floor(pos[flat, 2] / tol).astype(np.int64)
            levels, counts = np.unique(zb, return_counts=True)
            for lev in levels[counts >= min_count]:
                z0 = float(np.median(pos[flat[zb == lev], 2]))
                runs.append((flat[np.abs(pos[flat, 2] - z0) <= tol / 2], True))
        out = np.zeros(len(keys), bool)
        for members, horizontal in runs:
            if len(members) < min_count:
                continue
            m, lab = voxel_components(keys[members])
            for j in range(m):
                run = members[lab == j]
                if len(run) < min_count or np.max(pos[run].max(0) - pos[run].min(0)) < extent:
                    continue
                if horizontal and _encloses(np.floor(pos[run, :2] / v).astype(np.int64)):
                    continue  # a closed rim (a tray, a basket): an object
                out[run] = True
        if out.any():  # and their neighbours (the corners of legs and edges, whose normals are mixed)
            nb = (keys[out][:, None] + np.concatenate([neighbour_deltas(), -neighbour_deltas()])[None, :]).ravel()
            nb = np.unique(nb)
            idx = np.clip(np.searchsorted(nb, keys), 0, len(nb) - 1)
            out |= nb[idx] == keys
        return out

    def _rejection(self, p: np.ndarray, n_hat: np.ndarray, below: np.ndarray, seg: Segmentation,
                   top_pos: np.ndarray | None, base: list[float] | None = None) -> str | None:
        """Why a component (voxel positions ``p``, unit normals, contacts from below) is not an object; ``None``
        if it is. Without ``top_pos`` (tops of what objects rest on) whether it rests on something is not tested;
        with it, the height of what it rests on is appended to ``base`` (when given)."""
        cfg = self.cfg
        v, tol = cfg.voxel_size, cfg.geometric_plane_tolerance
        if len(p) < cfg.min_points:
            return TOO_SMALL
        lo, hi = p.min(0), p.max(0)
        if np.any(hi - lo > cfg.geometric_max_object_size):
            return TOO_LARGE
        lam, axes = np.linalg.eigh(np.cov(p.T))
        ext = np.sqrt(12.0 * np.maximum(lam, 0.0))  # side lengths of the equivalent box, shortest first
        if hi[2] - lo[2] >= cfg.geometric_min_support_extent and ext[1] <= ROD_WIDTH_VOXELS * v:
            return ROD
        if cfg.geometric_solid_furniture and hi[2] - lo[2] >= EDGE_MIN_HEIGHT and ext[0] < v and ext[1] <= 3 * v:
            return ROD  # a one-voxel-thin upright strip: the edge of a panel or a board seen end-on  # a vertical rod: few voxels stray from its axis, so its width is its second side
        if ext[0] <= SHEET_VOXELS * v and ext[1] >= SHEET_MIN_WIDTH and abs(axes[2, 0]) < 0.5:
            return PLANE_FRAGMENT  # a vertical sheet: a piece of a wall or a panel
        if hi[2] - lo[2] <= 2 * v:  # a horizontal sheet: part of a plane, unless it is a flat object on one
            up, down, _ = self._facing(n_hat)
            z = float(np.median(p[:, 2]))
            cells = cell_keys(np.floor(p[:, :2] / v).astype(np.int64))
            if down.sum() > up.sum() or any(abs(z - q.z) <= tol and q.contains(cells).any()
                                            for q in seg.supports + seg.ceilings):
                return PLANE_FRAGMENT  # an underside, or a plane (at its height and over its footprint)
            if hi[2] - lo[2] < v / 2 and not self._lies_flat_on_support(p, z, seg):
                return PLANE_FRAGMENT  # one level only (a flat object shows its sides)
        if below.sum() >= MIN_CONTACTS_FROM_BELOW:
            return FURNITURE
        if cfg.geometric_solid_furniture and self._under_a_support(p, lo, hi, seg):
            return SOLID_FURNITURE
        sheet = hi[2] - lo[2] <= 2 * v
        if top_pos is not None:
            z = self._rests_on(p, lo, top_pos, above=v / 2 if sheet else -tol)
            if z is None:
                return NOT_SUPPORTED
            if base is not None:
                base.append(self._snap_to_support(z, p, seg))
        return None

    def _under_a_support(self, p: np.ndarray, lo: np.ndarray, hi: np.ndarray, seg: Segmentation) -> bool:
        """Whether a component is the body of furniture under a support (a solid cabinet or crate without legs,
        the side panels and back of a shelf): it stands on the floor (its lowest voxel within
        ``geometric_max_support_gap`` of the lowest support) and reaches up to the band cut below a higher
        support (within ``SOLID_REACH_VOXELS`` voxels of it), with at least ``SOLID_MIN_UNDER`` of it over that
        support's band. An object standing
        on the floor is not under a support's top, so nothing of it lies in that band's footprint."""
        cfg = self.cfg
        tol, v = cfg.geometric_plane_tolerance, cfg.voxel_size
        if not seg.supports:
            return False
        floor = min(q.z for q in seg.supports)
        if lo[2] - floor > cfg.geometric_max_support_gap:
            return False
        cells = cell_keys(np.floor(p[:, :2] / v).astype(np.int64))
        reach = tol + cfg.geometric_support_thickness + SOLID_REACH_VOXELS * v
        return any(q.up and q.z > floor + tol and q.z - reach <= hi[2] < q.z + tol
                   and q.in_band(cells).mean() > SOLID_MIN_UNDER
                   for q in seg.supports)

    def _lies_flat_on_support(self, p: np.ndarray, z: float, seg: Segmentation) -> bool:
        """Whether a one-level horizontal sheet at height ``z`` is the top of a flat object (a book, a board, a
        box on its side) lying on a support: at least ``geometric_plane_tolerance`` and at most
        ``FLAT_MAX_HEIGHT`` above a support plane whose footprint holds most of it. Its sides lie within the
        support's band and were removed with it (:meth:`_recover_bases` gives them back)."""
        if not self.cfg.geometric_flat_objects:
            return False
        tol, v = self.cfg.geometric_plane_tolerance, self.cfg.voxel_size
        cells = cell_keys(np.floor(p[:, :2] / v).astype(np.int64))
        return any(q.up and tol < z - q.z <= FLAT_MAX_HEIGHT and q.contains(cells).mean() > 0.5 for q in seg.supports)

    def _snap_to_support(self, z: float, p: np.ndarray, seg: Segmentation) -> float:
        """The height of the support plane under ``p`` within ``geometric_plane_tolerance`` of ``z`` (a plane's
        height is the median of many voxels, steadier than a few tops), else ``z``."""
        tol, v = self.cfg.geometric_plane_tolerance, self.cfg.voxel_size
        cells = cell_keys(np.floor(p[:, :2] / v).astype(np.int64))
        for q in seg.supports:
            if abs(q.z - z) <= tol and q.contains(cells).any():
                return float(q.z)
        return z

    def _rests_on(self, p: np.ndarray, lo: np.ndarray, top_pos: np.ndarray, above: float) -> float | None:
        """Whether the base of a component (its lowest ``FOOT_SLICE``) lies within ``geometric_support_reach``
        of the top of structure it can rest on: at least ``above`` and at most ``geometric_max_support_gap``
        below its lowest voxel. (A flat sheet must lie above what it rests on, or it is part of it.) Returns the
        height of that top (the median of the highest tops within reach), ``None`` when there is none."""
        cfg = self.cfg
        tol, reach = cfg.geometric_plane_tolerance, cfg.geometric_support_reach
        z = top_pos[:, 2]  # sorted
        a, b = np.searchsorted(z, [lo[2] - cfg.geometric_max_support_gap - tol, lo[2] - above], side="right")
        cand = top_pos[a:b, :2]
        foot = p[p[:, 2] <= lo[2] + FOOT_SLICE, :2]
        fmin, fmax = foot.min(0) - reach, foot.max(0) + reach
        inside = np.all((cand >= fmin) & (cand <= fmax), axis=1)
        cand, cz = cand[inside], z[a:b][inside]
        if len(cand) == 0:
            return None
        d, _ = cKDTree(foot).query(cand, k=1, distance_upper_bound=reach)
        hit = np.isfinite(d)
        if not hit.any():
            return None
        zs = cz[hit]
        return float(np.median(zs[zs >= zs.max() - tol / 2]))

    def _contacts_from_below(self, keys: np.ndarray, pos: np.ndarray, cand: np.ndarray,
                             seg: Segmentation) -> np.ndarray:
        """Candidate voxels that touch a horizontal-plane voxel lying above them (per candidate, bool)."""
        tol = self.cfg.geometric_plane_tolerance
        v = self.cfg.voxel_size
        cells = cell_keys(np.floor(pos[:, :2] / v).astype(np.int64))
        plane_z = np.full(len(keys), np.nan)
        for p in seg.supports + seg.ceilings:
            near = (np.abs(pos[:, 2] - p.z) <= tol) & np.isnan(plane_z)
            near[near] = p.contains(cells[near])
            plane_z[near] = p.z
        on_plane = ~np.isnan(plane_z)
        ck, cz = keys[cand], pos[cand, 2]
        out = np.zeros(len(ck), bool)
        if not on_plane.any():
            return out
        pk, pz = keys[on_plane], plane_z[on_plane]
        for delta in neighbour_deltas():
            for d in (delta, -delta):
                nb = ck + d
                idx = np.searchsorted(pk, nb)
                ok = idx < len(pk)
                ok[ok] = pk[idx[ok]] == nb[ok]
                hit = np.nonzero(ok)[0]
                out[hit] |= cz[hit] < pz[idx[hit]] - tol
        return out

    def _assign_ids(self, comp_keys: list[np.ndarray]) -> list[int]:
        """Stable ids by voxel overlap with the previous instances (see the module docstring)."""
        n = len(comp_keys)
        ids: list[int | None] = [None] * n
        if n and len(self._prev_keys):
            allk = np.concatenate(comp_keys)
            comp = np.concatenate([np.full(len(k), c, np.int64) for c, k in enumerate(comp_keys)])
            idx = np.clip(np.searchsorted(self._prev_keys, allk), 0, len(self._prev_keys) - 1)
            hit = self._prev_keys[idx] == allk
            pairs, counts = np.unique(np.stack([comp[hit], self._prev_ids[idx[hit]]], 1), axis=0,
                                      return_counts=True)
            used: set[int] = set()
            for k in np.argsort(-counts, kind="stable"):
                c, old = int(pairs[k, 0]), int(pairs[k, 1])
                if ids[c] is None and old not in used:
                    ids[c] = old
                    used.add(old)
            for k in np.argsort(-counts, kind="stable"):  # previous instances absorbed by another component
                c, old = int(pairs[k, 0]), int(pairs[k, 1])
                if old not in used and ids[c] is not None:
                    self.merged_into[old] = int(ids[c])
                    used.add(old)
        out = []
        for c in range(n):
            if ids[c] is None:
                ids[c] = self._next_id
                self._next_id += 1
            out.append(int(ids[c]))
        if n:
            allk = np.concatenate(comp_keys)
            alli = np.concatenate([np.full(len(k), i, np.int64) for i, k in zip(out, comp_keys)])
            order = np.argsort(allk, kind="stable")
            self._prev_keys, self._prev_ids = allk[order], alli[order]
        else:
            self._prev_keys, self._prev_ids = np.zeros(0, np.int64), np.zeros(0, np.int64)
        return out

    def summary(self) -> dict:
        """Counts of the last segmentation and of the frames: for logs and the collect summary."""
        s = self.last
        return {"segmenter": "geometric", "frames": self.frames_integrated, "voxels": s.voxels,
                "structure_voxels": s.structure_voxels, "supports": len(s.supports),
                "support_heights_m": [round(p.z, 3) for p in s.supports], "ceilings": len(s.ceilings),
                "walls": len(s.walls), "instances": len(s.instances), "strip_voxels": s.strip_voxels,
                "base_voxels": s.base_voxels, "splits": dict(s.splits),
                "flat_objects": s.flat_objects,
                "rejected_segments": dict(s.rejected), "frames_without_objects": dict(self.reasons),
                "merges": len(self.merged_into)}
