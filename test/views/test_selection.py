"""Keyframe gating and farthest-point sampling of viewpoints."""

import math

import numpy as np

from ssl_nav.geometry import camera_pose
from ssl_nav.views.selection import KeyframeGate, farthest_point_sampling, least_diverse, view_features


def test_keyframe_gate_on_translation_and_rotation():
    g = KeyframeGate(0.1, 10.0)
    assert g.accept(camera_pose([0, 0, 1], 0.0))
    assert not g.accept(camera_pose([0.05, 0, 1], math.radians(5)))
    assert g.accept(camera_pose([0.2, 0, 1], 0.0))
    assert g.accept(camera_pose([0.2, 0, 1], math.radians(15)))
    assert not g.accept(camera_pose([0.2, 0, 1], math.radians(16)))


def test_fps_spreads_viewpoints_around_the_object():
    # 40 cameras crowded on one side, 3 on other sides of an object at the origin
    rng = np.random.default_rng(0)
    angles = np.concatenate([rng.normal(0, 0.05, 40), [math.pi / 2, math.pi, -math.pi / 2]])
    cams = np.stack([2 * np.cos(angles), 2 * np.sin(angles), np.ones_like(angles)], 1)
    feats = view_features(cams, np.zeros(3))
    idx = farthest_point_sampling(feats, 4, start=0)
    assert idx[0] == 0 and len(set(idx)) == 4
    assert set(idx[1:]) == {40, 41, 42}
    assert farthest_point_sampling(feats, 100)[:1] == [0] and len(farthest_point_sampling(feats, 100)) == 43
    assert farthest_point_sampling(feats[:0], 3) == []


def test_least_diverse_finds_a_duplicate():
    f = np.array([[0.0, 0], [1, 0], [0, 1], [1.001, 0]])
    i, d = least_diverse(f)
    assert i in (1, 3) and d < 0.01
