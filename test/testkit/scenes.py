"""A tiny numpy ray caster for test scenes with known geometry.

Axis-aligned boxes (each with an instance id and a colour) on a floor plane z = 0;
``render`` gives the exact z-depth, instance mask and a textured RGB for an OpenCV
pinhole camera, as a :class:`ssl_nav.frames.Frame`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssl_nav.frames import Frame
from ssl_nav.geometry import intrinsics_from_fov, look_at


@dataclass
class Box:
    instance_id: int
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    color: tuple[int, int, int]


def default_boxes() -> list[Box]:
    return [
        Box(1, (1.0, -0.9, 0.0), (1.4, -0.5, 0.5), (220, 40, 40)),
        Box(2, (1.2, 0.0, 0.0), (1.5, 0.3, 0.8), (40, 200, 40)),
        Box(3, (0.9, 0.6, 0.0), (1.2, 1.0, 0.35), (40, 60, 220)),
    ]


def render(boxes: list[Box], T_world_cam: np.ndarray, width: int = 160, height: int = 120, hfov_deg: float = 70.0,
           frame_id: str = "", floor: bool = True, max_depth: float = 20.0) -> Frame:
    """Ray-cast the scene; pixels hitting nothing get depth 0 (invalid) and black."""
    K = intrinsics_from_fov(width, height, hfov_deg)
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    d_cam = np.stack([(cols - K[0, 2]) / K[0, 0], (rows - K[1, 2]) / K[1, 1], np.ones_like(cols)], -1).reshape(-1, 3)
    R, o = T_world_cam[:3, :3], T_world_cam[:3, 3]
    d = d_cam @ R.T  # t along d equals the camera z-depth, since d_cam has z = 1
    n = len(d)
    best = np.full(n, np.inf)
    label = np.zeros(n, np.int32)
    color = np.zeros((n, 3))
    with np.errstate(divide="ignore", invalid="ignore"):
        dsafe = np.where(np.abs(d) < 1e-12, 1e-12, d)
        for b in boxes:
            t1 = (np.asarray(b.lo) - o) / dsafe
            t2 = (np.asarray(b.hi) - o) / dsafe
            tmin = np.minimum(t1, t2).max(1)
            tmax = np.maximum(t1, t2).min(1)
            hit = (tmax >= tmin) & (tmin > 1e-6) & (tmin < best)
            best[hit] = tmin[hit]
            label[hit] = b.instance_id
            color[hit] = b.color
        if floor:
            tf = -o[2] / dsafe[:, 2]
            hit = (tf > 1e-6) & (tf < best) & (d[:, 2] < 0)
            best[hit] = tf[hit]
            label[hit] = 0
            color[hit] = (150, 150, 150)
    valid = best < max_depth
    p = o + d * np.where(valid, best, 0)[:, None]
    checker = (np.floor(p / 0.05).astype(np.int64).sum(1) % 2).astype(np.float64)
    rgb = np.where(valid[:, None], color * (0.55 + 0.45 * checker[:, None]), 0).clip(0, 255).astype(np.uint8)
    depth = np.where(valid, best, 0).astype(np.float32)
    label[~valid] = 0
    return Frame(rgb=rgb.reshape(height, width, 3), depth=depth.reshape(height, width), K=K,
                 T_world_cam=T_world_cam, instance_mask=label.reshape(height, width), frame_id=frame_id,
                 stamp=0.0, quality="low")


def orbit_poses(n: int, center=(1.2, 0.0, 0.3), radius: float = 2.2, height: float = 1.2,
                arc_deg: float = 100.0) -> list[np.ndarray]:
    """``n`` cameras on an arc around ``center``, looking at it."""
    c = np.asarray(center, dtype=np.float64)
    out = []
    for a in np.radians(np.linspace(-arc_deg / 2, arc_deg / 2, n)) + np.pi:
        eye = c + np.array([radius * np.cos(a), radius * np.sin(a), height - c[2]])
        out.append(look_at(eye, c))
    return out
