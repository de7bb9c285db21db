"""The offline transform tree (ssl_nav.recordings.tf): chains through a common ancestor, slerp, no extrapolation."""

import numpy as np
import pytest

from ssl_nav.geometry import camera_pose, invert
from ssl_nav.recordings.tf import TransformTree, interpolate, slerp


def _rz(deg, t=(0, 0, 0)):
    a = np.radians(deg)
    T = np.eye(4)
    T[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    T[:3, 3] = t
    return T


def test_slerp_is_the_half_angle_and_takes_the_short_arc():
    q0 = np.array([0, 0, 0, 1.0])
    q1 = np.array([0, 0, np.sin(np.radians(45)), np.cos(np.radians(45))])  # 90 deg about z
    q = slerp(q0, q1, 0.5)
    assert np.allclose(q, [0, 0, np.sin(np.radians(22.5)), np.cos(np.radians(22.5))])
    assert np.allclose(slerp(q0, -q1, 0.5), q)  # -q1 is the same rotation
    assert np.allclose(interpolate(_rz(0, (0, 0, 0)), _rz(90, (2, 0, 0)), 0.5), _rz(45, (1, 0, 0)))


def test_lookup_chains_static_and_dynamic_edges_through_a_common_ancestor():
    tree = TransformTree()
    tree.add("map", "odom", 0.0, _rz(10, (1, 0, 0)), static=True)
    tree.add("odom", "base", 0.0, _rz(0))
    tree.add("odom", "base", 2.0, _rz(90, (2, 0, 0)))
    tree.add("base", "cam", 0.0, camera_pose(np.array([0.1, 0, 0.5]), 0.0), static=True)
    tree.add("map", "marker", 0.0, _rz(0, (5, 5, 0)), static=True)
    want = _rz(10, (1, 0, 0)) @ _rz(45, (1, 0, 0)) @ camera_pose(np.array([0.1, 0, 0.5]), 0.0)
    assert np.allclose(tree.lookup("map", "cam", 1.0), want)
    assert np.allclose(tree.lookup("marker", "cam", 1.0), invert(_rz(0, (5, 5, 0))) @ want)
    assert tree.frames == ["base", "cam", "map", "marker", "odom"]
    assert tree.can_connect("map", "cam") and not tree.can_connect("map", "elsewhere")


def test_no_extrapolation_beyond_the_samples_and_no_second_parent():
    tree = TransformTree(tolerance=0.01)
    tree.add("map", "base", 1.0, _rz(0))
    tree.add("map", "base", 2.0, _rz(0, (1, 0, 0)))
    assert np.allclose(tree.lookup("map", "base", 2.005)[:3, 3], [1, 0, 0])  # within the tolerance
    with pytest.raises(LookupError, match="after the last transform"):
        tree.lookup("map", "base", 2.5)
    with pytest.raises(LookupError, match="no chain"):
        tree.lookup("map", "cam", 1.5)
    with pytest.raises(ValueError, match="two parents"):
        tree.add("odom", "base", 1.0, _rz(0))
