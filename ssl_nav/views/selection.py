"""View selection: keyframe gating on camera motion, and diverse views by farthest-point sampling.

SimView (arXiv 2404.09647) gathers many views per instance; to keep the
dataset small and varied we keep at most K views per instance, chosen by
farthest-point sampling over the viewing direction (unit vector from the
instance centroid to the camera) and the camera position (scaled by the median
viewing distance), starting from the best-quality view.
"""

from __future__ import annotations

import math

import numpy as np

from ssl_nav.geometry import rotation_angle


class KeyframeGate:
    """Accept a pose when it moved at least ``translation`` metres or turned ``rotation_deg`` from the last keyframe."""

    def __init__(self, translation: float, rotation_deg: float):
        self.translation = translation
        self.rotation = math.radians(rotation_deg)
        self._last: np.ndarray | None = None

    def accept(self, T_world_cam: np.ndarray) -> bool:
        T = np.asarray(T_world_cam, dtype=np.float64)
        if self._last is not None:
            moved = float(np.linalg.norm(T[:3, 3] - self._last[:3, 3]))
            turned = rotation_angle(self._last[:3, :3], T[:3, :3])
            if moved < self.translation and turned < self.rotation:
                return False
        self._last = T.copy()
        return True

    def reset(self) -> None:
        self._last = None


def view_features(cam_positions: np.ndarray, centroid: np.ndarray) -> np.ndarray:
    """(N, 6) features: viewing direction (unit) and camera position / median viewing distance."""
    cam = np.asarray(cam_positions, dtype=np.float64).reshape(-1, 3)
    rel = cam - np.asarray(centroid, dtype=np.float64)
    dist = np.linalg.norm(rel, axis=1)
    direction = rel / np.maximum(dist, 1e-9)[:, None]
    scale = max(float(np.median(dist)) if len(dist) else 1.0, 1e-3)
    return np.concatenate([direction, cam / scale], axis=1)


def farthest_point_sampling(features: np.ndarray, k: int, start: int = 0) -> list[int]:
    """Indices of up to ``k`` rows chosen greedily, each farthest from those already chosen (deterministic)."""
    n = len(features)
    if n == 0 or k <= 0:
        return []
    f = np.asarray(features, dtype=np.float64)
    chosen = [int(start)]
    dmin = np.linalg.norm(f - f[start], axis=1)
    while len(chosen) < min(k, n):
        dmin[chosen] = -1.0
        nxt = int(np.argmax(dmin))
        if dmin[nxt] < 0:
            break
        chosen.append(nxt)
        dmin = np.minimum(dmin, np.linalg.norm(f - f[nxt], axis=1))
    return chosen


def least_diverse(features: np.ndarray) -> tuple[int, float]:
    """Index of the row nearest to its nearest neighbour, and that distance (for streaming replacement)."""
    f = np.asarray(features, dtype=np.float64)
    d = np.linalg.norm(f[:, None, :] - f[None, :, :], axis=2)
    np.fill_diagonal(d, np.inf)
    nn = d.min(axis=1)
    i = int(np.argmin(nn))
    return i, float(nn[i])
