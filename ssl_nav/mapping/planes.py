"""Large planes of a voxel map: support surfaces (floor, table tops, shelf boards), ceilings and walls.

The world is z-up (the simulators; REP 103 ``map`` frames on a robot), so the structure of a room is made of
horizontal and vertical planes. Both are found the way a Hough transform finds lines, on the voxels whose
averaged normal is consistent:

- **horizontal planes**: a histogram of the heights of the voxels that face up (or down); each peak is cut
  into connected 2D regions on the voxel raster (a morphological closing bridges the gaps that the objects
  standing on it leave). A region is a plane when its area reaches ``min_area`` and its longest side (from
  the second moments of its cells) reaches ``min_extent``: a table top or a shelf board, never the top of an
  object that fits within ``min_extent``. Up-facing planes are *supports*; down-facing ones (ceiling, the
  underside of a board) are only structure.
- **vertical planes**: a 2D histogram over the horizontal normal direction and the plane offset ``n·p`` of
  the voxels that face sideways; each peak holding ``min_area`` of surface is a wall (or a large panel).

Planes are returned with their footprint so that "what stands on a support" can be decided per voxel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

#: bits of a packed 2D cell key (i << CELL_BITS | j)
CELL_BITS = 21
_CELL_OFF = 1 << 20


def cell_keys(ij: np.ndarray) -> np.ndarray:
    """int64 keys of (N, 2) integer cells."""
    ij = np.asarray(ij, dtype=np.int64) + _CELL_OFF
    return (ij[:, 0] << CELL_BITS) | ij[:, 1]


@dataclass
class HorizontalPlane:
    """A horizontal plane region: height, facing, and its footprint (hole-filled, on the voxel raster)."""

    z: float
    up: bool
    area_m2: float
    extent_m: float
    cells: np.ndarray = field(repr=False)  #: sorted int64 cell keys of the footprint (holes filled, dilated)
    band: np.ndarray = field(repr=False)  #: the convex hull of the footprint: where the plane's voxels are removed
    n_voxels: int = 0

    def contains(self, cells: np.ndarray) -> np.ndarray:
        """Whether each cell key lies in the footprint."""
        return sorted_member(self.cells, cells)

    def in_band(self, cells: np.ndarray) -> np.ndarray:
        """Whether each cell key lies in the band footprint."""
        return sorted_member(self.band, cells)


def sorted_member(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Whether each of ``keys`` is in the sorted array ``sorted_keys``."""
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), bool)
    idx = np.clip(np.searchsorted(sorted_keys, keys), 0, len(sorted_keys) - 1)
    return sorted_keys[idx] == keys


@dataclass
class VerticalPlane:
    """A vertical plane ``n·p_xy = d`` with unit horizontal normal ``n``, and the surface it holds."""

    normal: np.ndarray  #: (2,)
    d: float
    area_m2: float
    t_range: tuple[float, float]  #: extent along the plane (coordinate along (-n_y, n_x))
    z_range: tuple[float, float]
    members: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)  #: input indices


def closing(mask: np.ndarray, radius: int) -> np.ndarray:
    """Morphological closing of a uint8 raster mask with a disc of ``radius`` cells."""
    if radius <= 0:
        return mask
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, k)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """A raster mask with its holes (background not 4-connected to the border) filled, uint8."""
    h, w = mask.shape
    pad = np.zeros((h + 2, w + 2), np.uint8)
    pad[1:-1, 1:-1] = mask > 0
    outside = pad.copy()
    cv2.floodFill(outside, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 1)
    return (pad | (outside == 0))[1:-1, 1:-1].astype(np.uint8)


def _convex_hull(mask: np.ndarray) -> np.ndarray:
    """The convex hull of a raster mask, filled (uint8)."""
    r, c = np.nonzero(mask)
    hull = cv2.convexHull(np.stack([c, r], 1).astype(np.int32))
    out = np.zeros(mask.shape, np.uint8)
    cv2.fillConvexPoly(out, hull, 1)
    out[r, c] = 1
    return out


def _footprint(mask: np.ndarray, dilate: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Sorted cell keys of a raster mask after dilation, cells offset by ``offset``."""
    r, c = np.nonzero(cv2.dilate(mask, dilate))
    return np.sort(cell_keys(np.stack([r + offset[0], c + offset[1]], 1)))


def _major_extent(ij: np.ndarray) -> float:
    """Longest side (in cells) of a region, from its second moments (a rectangle of side L has variance L²/12)."""
    if len(ij) < 2:
        return float(len(ij))
    c = np.cov(ij.astype(np.float64).T)
    return float(math.sqrt(12.0 * max(np.linalg.eigvalsh(c)[-1], 0.0)))


def horizontal_planes(pos: np.ndarray, voxel: float, tolerance: float, min_area: float, min_extent: float,
                      up: bool, close_radius_m: float = 0.03, dilate_cells: int = 2) -> list[HorizontalPlane]:
    """Horizontal plane regions among voxels facing up (or down) at ``pos`` (N, 3); largest first.

    Footprints are hole-filled and dilated by ``dilate_cells`` so that the bottom of an object standing on the
    plane, or at its edge, lies within. The ``band`` footprint, where the plane's voxels are removed, is the
    convex hull of the region: it also covers the parts of a table top or a shelf board that the objects on it
    hide from every view (between an object and a shelf's side, behind an object at the back of a table).
    """
    if len(pos) == 0:
        return []
    z = pos[:, 2]
    ij = np.floor(pos[:, :2] / voxel).astype(np.int64)
    bin_w = max(tolerance / 2.0, 1e-3)
    zb = np.floor(z / bin_w).astype(np.int64)
    lo = zb.min()
    hist = np.bincount(zb - lo).astype(np.float64)
    smooth = np.convolve(hist, [1.0, 2.0, 1.0], mode="same") / 4.0
    min_count = 0.5 * min_area / voxel ** 2
    peaks = [b for b in range(len(smooth)) if smooth[b] >= min_count
             and smooth[b] >= (smooth[b - 1] if b > 0 else 0) and smooth[b] >= (smooth[b + 1] if b + 1 < len(smooth) else 0)]
    peaks.sort(key=lambda b: -smooth[b])
    taken = np.zeros(len(z), bool)
    radius = max(1, int(round(close_radius_m / voxel)))
    out: list[HorizontalPlane] = []
    for b in peaks:
        level = (b + lo + 0.5) * bin_w
        sel = ~taken & (np.abs(z - level) <= tolerance)
        if sel.sum() < min_count:
            continue
        level = float(np.median(z[sel]))
        sel = ~taken & (np.abs(z - level) <= tolerance)
        cells = ij[sel]
        margin = radius + 1 + dilate_cells
        cmin = cells.min(0) - margin
        shape = tuple((cells.max(0) - cmin + margin + 1).tolist())
        raster = np.zeros(shape, np.uint8)
        raster[cells[:, 0] - cmin[0], cells[:, 1] - cmin[1]] = 1
        closed = closing(raster, radius)
        n_lab, lab = cv2.connectedComponents(closed, connectivity=8)
        member_lab = lab[cells[:, 0] - cmin[0], cells[:, 1] - cmin[1]]
        sel_idx = np.nonzero(sel)[0]
        for c in range(1, n_lab):
            members = member_lab == c
            n_cells = len(np.unique(cell_keys(cells[members]))) if members.any() else 0
            area = n_cells * voxel ** 2
            if area < min_area:
                continue
            region = lab == c
            rr, cc = np.nonzero(region)
            extent = _major_extent(np.stack([rr, cc], 1)) * voxel
            if extent < min_extent:
                continue
            square = np.ones((2 * dilate_cells + 1,) * 2, np.uint8)
            foot = _footprint(fill_holes(region.astype(np.uint8)), square, cmin)
            band = _footprint(_convex_hull(region), square, cmin)
            zz = float(np.median(z[sel_idx[members]]))
            taken[sel_idx[members]] = True
            out.append(HorizontalPlane(z=zz, up=up, area_m2=area, extent_m=extent, cells=foot, band=band,
                                       n_voxels=int(members.sum())))
    out.sort(key=lambda p: -p.area_m2)
    return out


def vertical_planes(pos: np.ndarray, normals: np.ndarray, voxel: float, tolerance: float, min_area: float,
                    angle_bin_deg: float = 3.0, angle_tolerance_deg: float = 10.0,
                    min_count: int | None = None) -> list[VerticalPlane]:
    """Vertical planes among voxels facing sideways (``pos``, unit ``normals``, (N, 3)); largest first.

    A plane needs ``min_area`` of surface (or ``min_count`` voxels when given).
    """
    if len(pos) == 0:
        return []
    nxy = normals[:, :2].astype(np.float64)
    nxy /= np.maximum(np.linalg.norm(nxy, axis=1, keepdims=True), 1e-9)
    theta = np.arctan2(nxy[:, 1], nxy[:, 0]) % (2 * math.pi)
    n_ang = int(round(360.0 / angle_bin_deg))
    ab = np.floor(theta / (2 * math.pi) * n_ang).astype(np.int64) % n_ang
    d = (nxy * pos[:, :2]).sum(1)
    db = np.floor(d / tolerance).astype(np.int64)
    dlo = db.min()
    n_d = int(db.max() - dlo + 1)
    code = ab * n_d + (db - dlo)
    hist = np.bincount(code, minlength=n_ang * n_d).reshape(n_ang, n_d).astype(np.float64)
    # a plane's votes straddle neighbouring bins: sum each 3x3 neighbourhood (angles wrap around)
    pad = np.pad(hist, ((1, 1), (1, 1)))
    pad[0], pad[-1] = pad[-2], pad[1]
    agg = sum(pad[1 + da: 1 + da + n_ang, 1 + dd: 1 + dd + n_d] for da in (-1, 0, 1) for dd in (-1, 0, 1))
    min_count = min_area / voxel ** 2 if min_count is None else min_count
    taken = np.zeros(len(pos), bool)
    out: list[VerticalPlane] = []
    cos_tol = math.cos(math.radians(angle_tolerance_deg))
    for flat in np.argsort(-agg, axis=None):
        if agg.flat[flat] < min_count:
            break
        a, di = divmod(int(flat), n_d)
        ang = (a + 0.5) / n_ang * 2 * math.pi
        n0 = np.array([math.cos(ang), math.sin(ang)])
        d0 = (di + dlo + 0.5) * tolerance
        sel = ~taken & (nxy @ n0 >= cos_tol) & (np.abs(d - d0) <= 2 * tolerance)
        if sel.sum() < min_count:
            continue
        n0 = nxy[sel].mean(0)
        n0 /= np.linalg.norm(n0)
        d0 = float(np.median(pos[sel, :2] @ n0))
        sel = ~taken & (nxy @ n0 >= cos_tol) & (np.abs(pos[:, :2] @ n0 - d0) <= tolerance)
        if sel.sum() < min_count:
            continue
        taken |= sel
        t = pos[sel, :2] @ np.array([-n0[1], n0[0]])
        out.append(VerticalPlane(normal=n0, d=d0, area_m2=float(sel.sum() * voxel ** 2),
                                 t_range=(float(t.min()), float(t.max())),
                                 z_range=(float(pos[sel, 2].min()), float(pos[sel, 2].max())),
                                 members=np.nonzero(sel)[0]))
    return out
