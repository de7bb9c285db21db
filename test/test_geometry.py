"""Projection / back-projection and pose helpers."""

import math

import numpy as np
import pytest

from ssl_nav import geometry as g
from ssl_nav.errors import FrameError


def test_backproject_project_round_trip():
    K = g.intrinsics_from_fov(64, 48, 70.0)
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 4.0, (48, 64)).astype(np.float32)
    pts, rc = g.backproject(K, depth)
    T = g.camera_pose([1.0, 2.0, 1.2], yaw=0.7, pitch=0.2)
    world = g.transform(T, pts)
    uv, z = g.project(K, g.transform(g.invert(T), world))
    np.testing.assert_allclose(z, depth[rc[:, 0], rc[:, 1]], rtol=1e-6)
    np.testing.assert_array_equal(np.floor(uv[:, ::-1]).astype(int), rc)


def test_look_at_is_opencv():
    T = g.camera_pose([0, 0, 1], yaw=0.0)
    np.testing.assert_allclose(T[:3, 2], [1, 0, 0], atol=1e-12)  # z forward = world +x
    np.testing.assert_allclose(T[:3, 1], [0, 0, -1], atol=1e-12)  # y down
    np.testing.assert_allclose(T[:3, 0], [0, -1, 0], atol=1e-12)  # x right (world -y when facing +x)
    g.check_pose(T)


def test_quaternion_round_trip():
    T = g.camera_pose([0, 0, 0], yaw=1.1, pitch=-0.3)
    q = g.matrix_to_quaternion(T[:3, :3])
    np.testing.assert_allclose(g.quaternion_to_matrix(q), T[:3, :3], atol=1e-12)
    assert g.rotation_angle(g.quaternion_to_matrix(g.yaw_to_quaternion(0.5)), np.eye(3)) == pytest.approx(0.5)


def test_bad_intrinsics_and_pose():
    with pytest.raises(FrameError, match="singular"):
        g.check_intrinsics(np.zeros((3, 3)))
    T = np.eye(4)
    T[0, 0] = math.nan
    with pytest.raises(FrameError, match="NaN"):
        g.check_pose(T)
    with pytest.raises(FrameError, match="rigid"):
        g.check_pose(np.diag([2.0, 1, 1, 1]))
