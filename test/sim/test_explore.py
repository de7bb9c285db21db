"""Exploration poses: evenly spread navigable stops, panoramic turns, robot camera height and pitch."""

from __future__ import annotations

import math

import numpy as np

from ssl_nav.sim.explore import exploration_poses, farthest_point_order, kmeans_stops


def test_poses_cover_the_free_floor_with_turns(sim, small_cfg):
    poses = exploration_poses(sim, small_cfg, np.random.default_rng(0))
    n_pos, n_turn = small_cfg.n_explore_positions, small_cfg.n_turn_steps
    assert len(poses) == n_pos * n_turn
    stops = np.array([poses[i * n_turn][:3, 3] for i in range(n_pos)])
    for i, T in enumerate(poses):
        assert np.allclose(T[:3, 3], stops[i // n_turn])  # turning on the spot
        assert sim.is_navigable(T[:3, 3])
        assert small_cfg.camera_height_min <= T[2, 3] <= small_cfg.camera_height_max
        fwd = T[:3, 2]  # OpenCV optical axis
        assert abs(math.degrees(math.asin(-fwd[2])) - small_cfg.camera_pitch_deg) < 1e-6
    # one full turn per stop: headings step by 360/n_turn degrees
    yaws = [math.atan2(T[1, 2], T[0, 2]) for T in poses[:n_turn]]
    steps = np.diff(np.unwrap(yaws))
    assert np.allclose(steps, 2 * math.pi / n_turn)
    # evenly spread: stops are farther apart than a typical pair of random navigable points
    d = np.linalg.norm(stops[:, None, :2] - stops[None, :, :2], axis=-1)
    assert d[np.triu_indices(n_pos, 1)].min() > 1.0


def test_same_rng_same_trajectory(sim, small_cfg):
    a = exploration_poses(sim, small_cfg, np.random.default_rng(4))
    b = exploration_poses(sim, small_cfg, np.random.default_rng(4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_farthest_point_order_spreads():
    pts = np.array([[0, 0], [0.1, 0], [5, 0], [0, 5], [0.2, 0.1]], dtype=float)
    assert sorted(farthest_point_order(pts, 3, 0)) == [0, 2, 3]


def test_kmeans_stops_sit_inside_their_share_of_the_floor():
    rng = np.random.default_rng(0)
    pts = rng.uniform([0, 0], [4, 1], size=(400, 2))  # a 4 m x 1 m corridor, two stops
    stops = pts[kmeans_stops(pts, 2)]
    assert np.allclose(np.sort(stops[:, 0]), [1.0, 3.0], atol=0.2)  # quarter points, not the ends
    assert np.allclose(stops[:, 1], 0.5, atol=0.2)
