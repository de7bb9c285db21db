"""Exploration trajectories: positions evenly spread over the free floor, each with a panoramic turn.

Works on any :class:`~ssl_nav.sim.base.Simulator`: it draws many navigable
poses (a uniform sample of the free floor), spreads ``n_explore_positions``
stops over them with k-means (Lloyd iterations from a farthest-point start, so
stops sit in the middle of their share of the floor rather than in corners),
snaps each stop to the nearest navigable sample, orders the stops as a
nearest-neighbour tour, and turns ``n_turn_steps`` times on the spot at each.
"""

from __future__ import annotations

import math

import numpy as np

from ssl_nav.config import SimConfig
from ssl_nav.geometry import camera_pose
from ssl_nav.sim.base import Simulator


def farthest_point_order(points: np.ndarray, n: int, start: int = 0) -> list[int]:
    """Indices of ``n`` points picked greedily, each the farthest from those already picked."""
    n = min(n, len(points))
    chosen = [start]
    d = np.linalg.norm(points - points[start], axis=1)
    while len(chosen) < n:
        i = int(np.argmax(d))
        chosen.append(i)
        d = np.minimum(d, np.linalg.norm(points - points[i], axis=1))
    return chosen


def kmeans_stops(points: np.ndarray, n: int, iterations: int = 20) -> list[int]:
    """Indices of ``n`` points (of a uniform floor sample) nearest to k-means centres: an even spread."""
    n = min(n, len(points))
    start = int(np.argmin(np.linalg.norm(points - points.mean(0), axis=1)))
    centres = points[farthest_point_order(points, n, start)].copy()
    for _ in range(iterations):
        label = np.argmin(np.linalg.norm(points[:, None] - centres[None], axis=-1), axis=1)
        new = np.array([points[label == k].mean(0) if np.any(label == k) else centres[k] for k in range(n)])
        if np.allclose(new, centres):
            break
        centres = new
    chosen: list[int] = []
    for c in centres:  # the nearest sample not taken yet (samples are navigable; centres may not be)
        order = np.argsort(np.linalg.norm(points - c, axis=1))
        chosen.append(int(next(i for i in order if i not in chosen)))
    return chosen


def nearest_neighbour_tour(points: np.ndarray) -> list[int]:
    """Visiting order of ``points`` starting at index 0, always going to the nearest unvisited one."""
    left = list(range(1, len(points)))
    order = [0]
    while left:
        last = points[order[-1]]
        j = min(left, key=lambda k: float(np.linalg.norm(points[k] - last)))
        order.append(j)
        left.remove(j)
    return order


def exploration_rng(seed: int) -> np.random.Generator:
    """The generator ``ssl-nav simulate`` walks its trajectory with: the same seed gives the same poses."""
    return np.random.default_rng([int(seed), 0xE4])


def exploration_poses(sim: Simulator, cfg: SimConfig, rng: np.random.Generator) -> list[np.ndarray]:
    """``n_explore_positions`` x ``n_turn_steps`` OpenCV camera poses (position-major, turning at each stop)."""
    n_pos = int(cfg.n_explore_positions)
    candidates = sim.sample_navigable_poses(max(200, 25 * n_pos), rng)
    pts = np.array([T[:3, 3] for T in candidates])
    stops = pts[kmeans_stops(pts[:, :2], n_pos)]
    stops = stops[nearest_neighbour_tour(stops[:, :2])]
    pitch = math.radians(cfg.camera_pitch_deg)
    poses = []
    for stop in stops:
        yaw0 = float(rng.uniform(-math.pi, math.pi))
        for k in range(int(cfg.n_turn_steps)):
            poses.append(camera_pose(stop, yaw0 + 2 * math.pi * k / cfg.n_turn_steps, pitch))
    return poses
