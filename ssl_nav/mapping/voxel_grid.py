"""A sparse voxel grid fused from posed RGB-D frames, hashed in numpy (no dense volume, no learned weights).

Every frame is sampled on a regular pixel lattice (every ``stride``-th row and column), back-projected with its
intrinsics and posed into the world (:func:`depth_samples`). Each sample carries a surface normal estimated
from its lattice neighbours (the cross product of central differences, as in organised point-cloud
segmentation; of the depth averaged over 3x3 samples when the frame's depth is noisy; oriented towards the
camera that saw it) and its colour. :class:`VoxelGrid` accumulates, per
occupied voxel, the number of samples that fell into it, the sum of their positions, of their normals and of
their colours: the same running averages a voxel-fusion map (e.g. Voxblox's colour and weight channels) keeps,
without a signed distance. Voxels are addressed by one int64 key (21 bits per axis); the keys are kept sorted,
so a frame is merged with one ``searchsorted`` and one ``insert`` per array, O(voxels) and no Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ssl_nav.frames import Frame

#: keys hold ``floor(p / voxel) + KEY_OFFSET`` per axis in 21 bits: +-1M voxels (+-20 km at 2 cm)
KEY_OFFSET = 1 << 20
_MASK21 = (1 << 21) - 1
#: largest depth step between the two lattice neighbours of a sample (in lattice spacings at its depth)
#: for its normal to count; beyond it the neighbours lie on different surfaces (a depth discontinuity)
NORMAL_MAX_SLOPE = 4.0
#: depth is noisy when its median deviation from the 3x3 mean exceeds this fraction of the depth; then the
#: normals come from the smoothed depth (1 cm of per-pixel noise at 2 m would otherwise scramble them)
NOISY_DEPTH = 0.002


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
    z = frame.depth[::stride, ::stride].astype(np.float32)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(z) & (z >= min_depth) & (z <= max_depth)
    z = np.where(valid, z, np.float32(np.nan))
    h, w = z.shape
    u = ((np.arange(w, dtype=np.float32) * stride + 0.5 - K[0, 2]) / K[0, 0]).astype(np.float32)
    vv = ((np.arange(h, dtype=np.float32) * stride + 0.5 - K[1, 2]) / K[1, 1]).astype(np.float32)
    X, Y = z * u[None, :], z * vv[:, None]
    N = np.zeros((3, h, w), np.float32)
    if h >= 3 and w >= 3:
        c = (slice(1, -1), slice(1, -1))
        zs = _smoothed(z, valid)
        with np.errstate(invalid="ignore", divide="ignore"):
            noise = np.nanmedian(np.abs(z - zs) / z) if valid.any() else 0.0
        if not noise > NOISY_DEPTH:  # clean depth: the raw lattice keeps thin edges sharp
            zs = z
        Xs, Ys = zs * u[None, :], zs * vv[:, None]
        ax, ay, az = (A[1:-1, 2:] - A[1:-1, :-2] for A in (Xs, Ys, zs))  # along the row
        bx, by, bz = (A[2:, 1:-1] - A[:-2, 1:-1] for A in (Xs, Ys, zs))  # along the column
        n = np.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx])
        norm = np.sqrt((n * n).sum(0))
        step = z[c] * np.float32(2.0 * stride / K[0, 0] * NORMAL_MAX_SLOPE)
        with np.errstate(invalid="ignore", divide="ignore"):
            ok = (np.abs(az) <= step) & (np.abs(bz) <= step) & (norm > 0)
            n = np.where(ok, n / norm, 0.0)
        # face the camera, which sits at the origin of the camera frame
        flip = (n[0] * X[c] + n[1] * Y[c] + n[2] * z[c]) > 0
        n[:, flip] *= -1.0
        N[:, 1:-1, 1:-1] = n
    m = valid.reshape(-1)
    R = frame.T_world_cam[:3, :3].astype(np.float32)
    t = frame.T_world_cam[:3, 3]
    P = np.stack([X.reshape(-1)[m], Y.reshape(-1)[m], z.reshape(-1)[m]], 1)
    pts = (P @ R.T).astype(np.float64) + t
    nrm = N.reshape(3, -1)[:, m].T @ R.T
    rgb = frame.rgb[::stride, ::stride].reshape(-1, 3)[m]
    spacing = P[:, 2] * np.float32(stride / K[0, 0])
    return DepthSamples(pts, nrm, rgb, spacing)


def _smoothed(z: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The mean of the valid depths in each 3x3 neighbourhood (NaN where the sample itself is invalid)."""
    w = valid.astype(np.float32)
    total = cv2.blur(np.where(valid, z, 0.0).astype(np.float32), (3, 3), borderType=cv2.BORDER_CONSTANT)
    count = cv2.blur(w, (3, 3), borderType=cv2.BORDER_CONSTANT)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid, total / count, np.float32(np.nan)).astype(np.float32)


class VoxelGrid:
    """Occupied voxels with per-voxel sample count and sums of positions, normals and colours.

    ``data`` is one (N, 10) float32 array per voxel: sample count, the sum of the positions relative to the
    voxel's corner (small numbers, so float32 sums stay exact to well below a millimetre), the sum of the unit
    normals and the sum of the RGB colours.
    """

    def __init__(self, voxel: float):
        self.voxel = float(voxel)
        self.keys = np.zeros(0, np.int64)
        self.data = np.zeros((0, 10), np.float32)
        self.version = 0

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def hits(self) -> np.ndarray:
        """Samples per voxel."""
        return self.data[:, 0]

    def positions(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Mean sample position of voxels (all, or ``rows``), float64 (N, 3)."""
        corner = unpack_keys(self.keys[rows]).astype(np.float64) * self.voxel
        d = self.data[rows]
        return corner + d[:, 1:4] / d[:, :1]

    def normals(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Mean normal of voxels: its length says how much the samples agree (1: all the same)."""
        d = self.data[rows]
        return d[:, 4:7] / d[:, :1]

    def colors(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Mean RGB of voxels, float32 (N, 3)."""
        d = self.data[rows]
        return d[:, 7:10] / d[:, :1]

    def keys_of(self, points: np.ndarray) -> np.ndarray:
        """Keys of the voxels containing (N, 3) world points."""
        return pack_keys(np.floor(np.asarray(points, dtype=np.float64) / self.voxel))

    def add(self, samples: DepthSamples) -> int:
        """Fuse samples; returns the number of voxels they touched."""
        if len(samples.points) == 0:
            return 0
        ijk = np.floor(samples.points / self.voxel)
        k = pack_keys(ijk)
        feats = np.empty((len(k), 10), np.float32)
        feats[:, 0] = 1.0
        feats[:, 1:4] = samples.points - ijk * self.voxel
        feats[:, 4:7] = samples.normals
        feats[:, 7:10] = samples.colors
        order = np.argsort(k)
        k = k[order]
        start = np.flatnonzero(np.concatenate([[True], k[1:] != k[:-1]]))
        uk = k[start]
        sums = np.add.reduceat(feats[order], start, axis=0)
        idx = np.searchsorted(self.keys, uk)
        found = idx < len(self.keys)
        found[found] = self.keys[idx[found]] == uk[found]
        self.data[idx[found]] += sums[found]
        new = ~found
        if new.any():
            self.keys = np.insert(self.keys, idx[new], uk[new])
            self.data = np.insert(self.data, idx[new], sums[new], axis=0)
        self.version += 1
        return len(uk)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Index of each key in the grid, -1 where absent."""
        keys = np.asarray(keys, dtype=np.int64)
        idx = np.searchsorted(self.keys, keys)
        ok = idx < len(self.keys)
        ok[ok] = self.keys[idx[ok]] == keys[ok]
        return np.where(ok, idx, -1)
