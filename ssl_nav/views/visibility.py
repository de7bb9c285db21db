"""Which map instances a frame sees, and where: z-buffer projection of the instance map.

SimView (Sakaguchi et al., IROS 2024, arXiv 2404.09647) finds the views of
each instance by ray-tracing the 3D instance map from every camera pose. We do
the equivalent in image space, vectorised in numpy:

1. Every map point is transformed into the camera and projected; points behind
   the camera or outside the image are dropped.
2. Occlusion: where the frame has a valid depth, a point is visible when its
   depth agrees with the frame's own depth within ``occlusion_tolerance``
   (a nearer surface, mapped or not, hides it; a point in front of the measured
   surface is stale). Where the frame's depth is invalid, a z-buffer of the map
   points (``np.minimum.at``) decides: only the nearest map surface is visible.
3. Per instance: number of visible points, the pixel box of the visible
   points, and the visible fraction (visible points / all points of the
   instance, so occlusion and truncation both lower it).

:func:`instance_mask` turns the visible points into a label image in map ids,
so frames without a mask get an instance mask that is consistent across frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssl_nav.geometry import invert


@dataclass
class InstanceVisibility:
    """One instance as seen in one frame."""

    instance_id: int
    n_visible: int
    n_points: int
    bbox: tuple[float, float, float, float]  #: [x0, y0, x1, y1) pixel box of the visible points (x1, y1 exclusive)
    depth: float  #: median depth of the visible points (m)

    @property
    def visible_fraction(self) -> float:
        return self.n_visible / max(1, self.n_points)


@dataclass
class Visibility:
    """Visible map points of one frame and the per-instance summary."""

    instances: dict[int, InstanceVisibility]
    rows: np.ndarray  #: (M,) int pixel rows of visible points
    cols: np.ndarray  #: (M,) int pixel cols of visible points
    z: np.ndarray  #: (M,) depth of visible points
    labels: np.ndarray  #: (M,) instance ids of visible points
    shape: tuple[int, int]


def compute_visibility(points: np.ndarray, labels: np.ndarray, K: np.ndarray, T_world_cam: np.ndarray,
                       depth: np.ndarray, occlusion_tolerance: float = 0.05,
                       point_size: float = 0.0, min_depth: float = 1e-3,
                       n_points: dict[int, int] | None = None) -> Visibility:
    """Project labelled map points into a frame and test occlusion (see the module docstring).

    ``points`` (N, 3) world, ``labels`` (N,) instance ids, ``depth`` HxW metres (0/NaN invalid; an all-NaN
    array relies on the z-buffer alone).
    ``point_size`` (m, e.g. the map voxel) widens each instance box by the footprint of one point.
    ``n_points`` (points per instance, e.g. from ``InstanceMap.instances()``) saves counting ``labels``.
    """
    h, w = depth.shape
    labels = np.asarray(labels)
    T = invert(np.asarray(T_world_cam, dtype=np.float64))
    R = T[:3, :3].astype(np.float32)
    t = T[:3, 3].astype(np.float32)
    pts = np.asarray(points, dtype=np.float32)
    fx, fy, cx, cy = (np.float32(K[0, 0]), np.float32(K[1, 1]), np.float32(K[0, 2]), np.float32(K[1, 2]))
    z = pts @ R[2] + t[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_z = np.float32(1.0) / z
        u = (pts @ R[0] + t[0]) * inv_z * fx + cx
        v = (pts @ R[1] + t[1]) * inv_z * fy + cy
        keep = np.flatnonzero((z > min_depth) & (u >= 0) & (u < w) & (v >= 0) & (v < h))
    u, v, z, lab = u[keep], v[keep], z[keep], labels[keep]
    cols = u.astype(np.int32)
    rows = v.astype(np.int32)
    d = depth.reshape(-1)[rows.astype(np.int64) * w + cols]
    dvalid = np.isfinite(d) & (d > 0)
    visible = dvalid & (np.abs(z - d) <= occlusion_tolerance)
    if not dvalid.all():
        # no depth measured at these pixels: the nearest map point wins (z-buffer over the map)
        # (each point covers its footprint, so farther points cannot leak through gaps between near ones)
        nod = ~dvalid
        zbuf = np.full(h * w, np.inf, dtype=np.float32)
        splat_min(zbuf, rows[nod], cols[nod], z[nod], splat_footprint(float(fx), point_size, z[nod]), (h, w))
        pix = rows[nod].astype(np.int64) * w + cols[nod]
        visible[nod] = z[nod] <= zbuf[pix] + occlusion_tolerance
    rows, cols, z, lab, u, v = rows[visible], cols[visible], z[visible], lab[visible], u[visible], v[visible]
    out: dict[int, InstanceVisibility] = {}
    if len(lab):
        ids, inv, counts = _dense_labels(lab)
        n = len(ids)
        total_of = n_points if n_points is not None else dict(zip(ids.tolist(), _counts_of(labels, ids).tolist()))
        umin = np.full(n, np.inf, np.float32)
        vmin = np.full(n, np.inf, np.float32)
        umax = np.full(n, -np.inf, np.float32)
        vmax = np.full(n, -np.inf, np.float32)
        np.minimum.at(umin, inv, u)
        np.minimum.at(vmin, inv, v)
        np.maximum.at(umax, inv, u)
        np.maximum.at(vmax, inv, v)
        zsum = np.bincount(inv, weights=z, minlength=n)
        zmean = zsum / counts
        for i, iid in enumerate(ids.tolist()):
            pad = 0.5 * float(fx) * point_size / max(float(zmean[i]), 1e-3)
            out[int(iid)] = InstanceVisibility(
                instance_id=int(iid), n_visible=int(counts[i]), n_points=int(total_of.get(iid, counts[i])),
                bbox=(max(0.0, float(umin[i]) - pad), max(0.0, float(vmin[i]) - pad),
                      min(float(w), float(umax[i]) + pad), min(float(h), float(vmax[i]) + pad)),
                depth=float(zmean[i]))
    return Visibility(instances=out, rows=rows, cols=cols, z=z, labels=lab, shape=(h, w))


def _dense_labels(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted unique ids, index of each label in them, counts) by counting instead of sorting when ids are small."""
    lo, hi = int(lab.min()), int(lab.max())
    if lo >= 0 and hi < 1 << 22:
        bins = np.bincount(lab, minlength=hi + 1)
        ids = np.flatnonzero(bins)
        lut = np.zeros(hi + 1, np.int64)
        lut[ids] = np.arange(len(ids))
        return ids, lut[lab], bins[ids]
    ids, inv, counts = np.unique(lab, return_inverse=True, return_counts=True)
    return ids, inv, counts


def _counts_of(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """How many of ``labels`` equal each of ``ids``."""
    lo, hi = int(labels.min()), int(labels.max())
    if lo >= 0 and hi < 1 << 22:
        bins = np.bincount(labels, minlength=hi + 1)
        return bins[np.clip(ids, 0, hi)] * (ids <= hi)
    uniq, counts = np.unique(labels, return_counts=True)
    pos = np.clip(np.searchsorted(uniq, ids), 0, len(uniq) - 1)
    return np.where(uniq[pos] == ids, counts[pos], 0)


def splat_footprint(fx: float, point_size: float, z: np.ndarray, max_radius: int = 8) -> np.ndarray:
    """Half side (px) of the square a point of size ``point_size`` (m) covers at depth ``z``."""
    return np.clip(np.rint(0.5 * fx * point_size / np.maximum(z, 1e-3)), 0, max_radius).astype(np.int32)


def splat_min(zbuf: np.ndarray, rows: np.ndarray, cols: np.ndarray, z: np.ndarray, radius: np.ndarray,
               shape: tuple[int, int]) -> None:
    """z-buffer (flat, HxW) the points over their square footprints with ``np.minimum.at``."""
    h, w = shape
    rmax = int(radius.max()) if len(radius) else 0
    for dr in range(-rmax, rmax + 1):
        for dc in range(-rmax, rmax + 1):
            sel = (abs(dr) <= radius) & (abs(dc) <= radius)
            rr, cc = rows[sel] + dr, cols[sel] + dc
            ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
            np.minimum.at(zbuf, rr[ok].astype(np.int64) * w + cc[ok], z[sel][ok])


def instance_mask(vis: Visibility, K: np.ndarray, point_size: float) -> np.ndarray:
    """int32 HxW label image in map instance ids (0 = none) from the visible points.

    Each point is splatted over its footprint (``point_size`` metres at its depth), nearest point first.
    """
    h, w = vis.shape
    mask = np.zeros((h, w), np.int32)
    if len(vis.labels) == 0:
        return mask
    zbuf = np.full(h * w, np.inf, np.float32)
    radius = splat_footprint(float(K[0, 0]), point_size, vis.z, 16)
    order = np.argsort(-vis.z, kind="stable")  # far to near: nearer points are written last
    rows, cols, z, lab, rad = vis.rows[order], vis.cols[order], vis.z[order], vis.labels[order], radius[order]
    rmax = int(rad.max())
    for dr in range(-rmax, rmax + 1):
        for dc in range(-rmax, rmax + 1):
            sel = (np.abs(dr) <= rad) & (np.abs(dc) <= rad)
            rr, cc = rows[sel] + dr, cols[sel] + dc
            ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
            pix = rr[ok].astype(np.int64) * w + cc[ok]
            zz, ll = z[sel][ok], lab[sel][ok]
            np.minimum.at(zbuf, pix, zz)
            win = zz <= zbuf[pix]
            mask.reshape(-1)[pix[win]] = ll[win]
    return mask


def square_purity(vis: Visibility, squares: dict[int, tuple[int, int, int, int]], fx: float, point_size: float,
                  cell: int = 4) -> dict[int, float]:
    """Share of the instance pixels inside each instance's square that belong to that instance.

    Estimated from the visible map points, each weighted by its pixel footprint ``(fx * point_size / z)^2``,
    with per-instance integral images over ``cell`` x ``cell`` pixel cells (no per-point loops).
    """
    h, w = vis.shape
    if not squares or len(vis.labels) == 0:
        return {iid: 0.0 for iid in squares}
    ids, li, _ = _dense_labels(vis.labels)
    gh, gw = -(-h // cell), -(-w // cell)
    size = max(point_size, 1e-3)
    weight = (fx * size / np.maximum(vis.z, 1e-3)) ** 2
    flat = li.astype(np.int64) * (gh * gw) + (vis.rows // cell).astype(np.int64) * gw + vis.cols // cell
    grid = np.bincount(flat, weights=weight, minlength=len(ids) * gh * gw).reshape(len(ids), gh, gw)
    integral = np.zeros((len(ids), gh + 1, gw + 1))
    integral[:, 1:, 1:] = grid.cumsum(1).cumsum(2)
    index = {int(i): k for k, i in enumerate(ids.tolist())}
    out = {}
    for iid, (x0, y0, x1, y1) in squares.items():
        cx0, cy0 = min(max(x0, 0) // cell, gw), min(max(y0, 0) // cell, gh)
        cx1, cy1 = min(-(-min(x1, w) // cell), gw), min(-(-min(y1, h) // cell), gh)
        if cx1 <= cx0 or cy1 <= cy0 or iid not in index:
            out[iid] = 0.0
            continue
        s = integral[:, cy1, cx1] - integral[:, cy0, cx1] - integral[:, cy1, cx0] + integral[:, cy0, cx0]
        total = float(s.sum())
        out[iid] = float(s[index[iid]] / total) if total > 0 else 0.0
    return out
