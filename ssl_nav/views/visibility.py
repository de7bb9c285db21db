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
                       point_size: float = 0.0, min_depth: float = 1e-3) -> Visibility:
    """Project labelled map points into a frame and test occlusion (see the module docstring).

    ``points`` (N, 3) world, ``labels`` (N,) instance ids, ``depth`` HxW metres (0/NaN invalid; an all-NaN
    array relies on the z-buffer alone).
    ``point_size`` (m, e.g. the map voxel) widens each instance box by the footprint of one point.
    """
    h, w = depth.shape
    labels = np.asarray(labels)
    T = invert(np.asarray(T_world_cam, dtype=np.float64))
    R = T[:3, :3].astype(np.float32)
    t = T[:3, 3].astype(np.float32)
    pc = np.asarray(points, dtype=np.float32) @ R.T + t
    z = pc[:, 2]
    fx, fy, cx, cy = (np.float32(K[0, 0]), np.float32(K[1, 1]), np.float32(K[0, 2]), np.float32(K[1, 2]))
    front = z > min_depth
    pc, z, lab = pc[front], z[front], labels[front]
    u = fx * pc[:, 0] / z + cx
    v = fy * pc[:, 1] / z + cy
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    u, v, z, lab = u[inside], v[inside], z[inside], lab[inside]
    cols = u.astype(np.int32)
    rows = v.astype(np.int32)
    d = depth[rows, cols]
    dvalid = np.isfinite(d) & (d > 0)
    visible = dvalid & (np.abs(z - d) <= occlusion_tolerance)
    if not dvalid.all():
        # no depth measured at these pixels: the nearest map point wins (z-buffer over the map)
        nod = ~dvalid
        pix = rows[nod].astype(np.int64) * w + cols[nod]
        zbuf = np.full(h * w, np.inf, dtype=np.float32)
        np.minimum.at(zbuf, pix, z[nod])
        visible[nod] = z[nod] <= zbuf[pix] + occlusion_tolerance
    rows, cols, z, lab, u, v = rows[visible], cols[visible], z[visible], lab[visible], u[visible], v[visible]
    totals_ids, totals = np.unique(labels, return_counts=True)
    total_of = dict(zip(totals_ids.tolist(), totals.tolist()))
    out: dict[int, InstanceVisibility] = {}
    if len(lab):
        ids, inv, counts = np.unique(lab, return_inverse=True, return_counts=True)
        n = len(ids)
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


def instance_mask(vis: Visibility, K: np.ndarray, point_size: float) -> np.ndarray:
    """int32 HxW label image in map instance ids (0 = none) from the visible points.

    Each point is splatted over its footprint (``point_size`` metres at its depth), nearest point first.
    """
    h, w = vis.shape
    mask = np.zeros((h, w), np.int32)
    if len(vis.labels) == 0:
        return mask
    zbuf = np.full(h * w, np.inf, np.float32)
    radius = np.clip(np.ceil(0.5 * K[0, 0] * point_size / np.maximum(vis.z, 1e-3)), 0, 16).astype(np.int32)
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
