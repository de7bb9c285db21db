"""A sparse voxel grid fused from posed RGB-D frames, hashed in numpy (no dense volume, no learned weights).

Every frame is sampled on a regular pixel lattice (every ``stride``-th row and column), back-projected with its
intrinsics and posed into the world (:func:`depth_samples`). Each sample carries a surface normal estimated
from its lattice neighbours (the cross product of central differences, as in organised point-cloud
segmentation; oriented towards the camera that saw it) and its colour. :class:`VoxelGrid` accumulates, per
occupied voxel, the number of samples that fell into it, the sum of their positions, of their normals and of
their colours: the same running averages a voxel-fusion map (e.g. Voxblox's colour and weight channels) keeps,
without a signed distance. Voxels are addressed by one int64 key (21 bits per axis); the keys are kept sorted,
so a frame is merged with one ``searchsorted`` and one ``insert`` per array, O(voxels) and no Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssl_nav.frames import Frame

#: keys hold ``floor(p / voxel) + KEY_OFFSET`` per axis in 21 bits: +-1M voxels (+-20 km at 2 cm)
KEY_OFFSET = 1 << 20
_MASK21 = (1 << 21) - 1
#: largest depth step between the two lattice neighbours of a sample (in lattice spacings at its depth)
#: for its normal to count; beyond it the neighbours lie on different surfaces (a depth discontinuity)
NORMAL_MAX_SLOPE = 4.0


def pack_keys(ijk: np.ndarray) -> np.ndarray:
    """int64 keys of (N, 3) integer voxel coordinates."""
    ijk = np.clip(np.asarray(ijk, dtype=np.int64) + KEY_OFFSET, 0, _MASK21)
    return (ijk[:, 0] << 42) | (ijk[:, 1] << 21) | ijk[:, 2]


def unpack_keys(keys: np.ndarray) -> np.ndarray:
    """(N, 3) int64 voxel coordinates of keys."""
    keys = np.asarray(keys, dtype=np.int64)
    return np.stack([(keys >> 42) & _MASK21, (keys >> 21) & _MASK21, keys & _MASK21], axis=1) - KEY_OFFSET


def neighbour_deltas() -> np.ndarray:
    """Key differences to 13 of the 26 neighbours (one of each opposite pair), for connected components."""
    out = []
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            for dk in (-1, 0, 1):
                if (di, dj, dk) > (0, 0, 0):
                    out.append((di << 42) + (dj << 21) + dk)
    return np.asarray(out, dtype=np.int64)


@dataclass
class DepthSamples:
    """World-frame samples of one frame: positions, unit normals (zero where unknown), colours."""

    points: np.ndarray  #: (N, 3) float64 world
    normals: np.ndarray  #: (N, 3) float32 world, oriented towards the camera; zero rows = no normal
    colors: np.ndarray  #: (N, 3) uint8 RGB
    spacing: np.ndarray  #: (N,) float32 lattice spacing at the sample's depth (m): its footprint is about spacing²


def depth_samples(frame: Frame, stride: int, min_depth: float, max_depth: float) -> DepthSamples:
    """Sample ``frame`` every ``stride`` pixels within [min_depth, max_depth]; normals from lattice neighbours."""
    K = frame.K
    d = frame.depth[::stride, ::stride].astype(np.float64)
    valid = np.isfinite(d) & (d >= min_depth) & (d <= max_depth)
    h, w = d.shape
    rows = np.arange(h, dtype=np.float64)[:, None] * stride
    cols = np.arange(w, dtype=np.float64)[None, :] * stride
    z = np.where(valid, d, np.nan)
    P = np.stack([(cols + 0.5 - K[0, 2]) * z / K[0, 0], (rows + 0.5 - K[1, 2]) * z / K[1, 1], z], axis=-1)
    normals = np.zeros_like(P)
    if h >= 3 and w >= 3:
        dx = P[1:-1, 2:] - P[1:-1, :-2]
        dy = P[2:, 1:-1] - P[:-2, 1:-1]
        zc = z[1:-1, 1:-1]
        step = zc * (2.0 * stride / K[0, 0]) * NORMAL_MAX_SLOPE
        with np.errstate(invalid="ignore"):
            smooth = (np.abs(dx[..., 2]) <= step) & (np.abs(dy[..., 2]) <= step)
        n = np.cross(dx, dy)
        norm = np.linalg.norm(n, axis=-1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            n = n / norm
        ok = smooth & np.isfinite(n).all(-1) & (norm[..., 0] > 0)
        n[~ok] = 0.0
        flip = (n * P[1:-1, 1:-1]).sum(-1) > 0  # face the camera (at the origin of the camera frame)
        n[flip] *= -1.0
        normals[1:-1, 1:-1] = n
    m = valid.reshape(-1)
    R, t = frame.T_world_cam[:3, :3], frame.T_world_cam[:3, 3]
    pts = P.reshape(-1, 3)[m] @ R.T + t
    nrm = (normals.reshape(-1, 3)[m] @ R.T).astype(np.float32)
    rgb = frame.rgb[::stride, ::stride].reshape(-1, 3)[m]
    spacing = (d.reshape(-1)[m] * stride / K[0, 0]).astype(np.float32)
    return DepthSamples(pts, nrm, rgb, spacing)


class VoxelGrid:
    """Occupied voxels with per-voxel sample count and sums of positions, normals and colours."""

    def __init__(self, voxel: float):
        self.voxel = float(voxel)
        self.keys = np.zeros(0, np.int64)
        self.hits = np.zeros(0, np.int32)
        self.pos_sum = np.zeros((0, 3), np.float64)
        self.nrm_sum = np.zeros((0, 3), np.float32)
        self.rgb_sum = np.zeros((0, 3), np.float32)
        self.version = 0

    def __len__(self) -> int:
        return len(self.keys)

    def keys_of(self, points: np.ndarray) -> np.ndarray:
        """Keys of the voxels containing (N, 3) world points."""
        return pack_keys(np.floor(np.asarray(points, dtype=np.float64) / self.voxel))

    def add(self, samples: DepthSamples) -> int:
        """Fuse samples; returns the number of voxels they touched."""
        if len(samples.points) == 0:
            return 0
        k = self.keys_of(samples.points)
        order = np.argsort(k, kind="stable")
        k = k[order]
        uk, start, counts = np.unique(k, return_index=True, return_counts=True)
        pos = np.add.reduceat(samples.points[order], start, axis=0)
        nrm = np.add.reduceat(samples.normals[order], start, axis=0)
        rgb = np.add.reduceat(samples.colors[order].astype(np.float32), start, axis=0)
        idx = np.searchsorted(self.keys, uk)
        found = idx < len(self.keys)
        found[found] = self.keys[idx[found]] == uk[found]
        i = idx[found]
        self.hits[i] += counts[found].astype(np.int32)
        self.pos_sum[i] += pos[found]
        self.nrm_sum[i] += nrm[found]
        self.rgb_sum[i] += rgb[found]
        new = ~found
        if new.any():
            at = idx[new]
            self.keys = np.insert(self.keys, at, uk[new])
            self.hits = np.insert(self.hits, at, counts[new].astype(np.int32))
            self.pos_sum = np.insert(self.pos_sum, at, pos[new], axis=0)
            self.nrm_sum = np.insert(self.nrm_sum, at, nrm[new], axis=0)
            self.rgb_sum = np.insert(self.rgb_sum, at, rgb[new], axis=0)
        self.version += 1
        return len(uk)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Index of each key in the grid, -1 where absent."""
        keys = np.asarray(keys, dtype=np.int64)
        idx = np.searchsorted(self.keys, keys)
        ok = idx < len(self.keys)
        ok[ok] = self.keys[idx[ok]] == keys[ok]
        return np.where(ok, idx, -1)
