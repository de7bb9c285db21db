"""VoxelGrid fusion: running sums per voxel, keys round trip, normals from the depth lattice face the camera."""

import numpy as np

from ssl_nav.frames import Frame
from ssl_nav.geometry import intrinsics_from_fov, look_at
from ssl_nav.mapping.voxel_grid import DepthSamples, VoxelGrid, depth_samples, pack_keys, unpack_keys


def test_keys_round_trip_including_negative_coordinates():
    ijk = np.array([[0, 0, 0], [-5, 7, -1], [1000, -1000, 3]])
    assert np.array_equal(unpack_keys(pack_keys(ijk)), ijk)


def test_add_accumulates_counts_means_and_stays_sorted():
    g = VoxelGrid(0.1)
    pts = np.array([[0.01, 0.01, 0.01], [0.03, 0.05, 0.07], [-0.05, 0.2, 0.0]])
    nrm = np.array([[0, 0, 1], [0, 0, 1], [1, 0, 0]], np.float32)
    rgb = np.array([[10, 20, 30], [30, 40, 50], [255, 0, 0]], np.uint8)
    assert g.add(DepthSamples(pts, nrm, rgb, np.ones(3, np.float32))) == 2
    assert g.add(DepthSamples(pts[:1], nrm[:1], rgb[:1], np.ones(1, np.float32))) == 1
    assert len(g) == 2 and np.all(np.diff(g.keys) > 0)
    i = g.lookup(g.keys_of(pts[:1]))[0]
    assert g.hits[i] == 3
    assert np.allclose(g.positions([i])[0], (2 * pts[0] + pts[1]) / 3, atol=1e-6)
    assert np.allclose(g.normals([i])[0], [0, 0, 1]) and np.allclose(g.colors([i])[0], [50 / 3, 80 / 3, 110 / 3])
    assert g.lookup(np.array([pack_keys(np.array([[9, 9, 9]]))[0]]))[0] == -1


def _floor_frame(w, h, target=(2.0, 0.0, 0.0)):
    """A camera 1.5 m up looking at ``target`` on the plane z = 0: its exact depth."""
    K = intrinsics_from_fov(w, h, 70.0)
    T = look_at(np.array([0.0, 0.0, 1.5]), np.array(target))
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    d_cam = np.stack([(cols - K[0, 2]) / K[0, 0], (rows - K[1, 2]) / K[1, 1], np.ones_like(cols)], -1)
    d_w = d_cam @ T[:3, :3].T
    t = -T[2, 3] / d_w[..., 2]
    depth = np.where(t > 0, t, 0).astype(np.float32)
    return Frame(rgb=np.zeros((h, w, 3), np.uint8), depth=depth, K=K, T_world_cam=T)


def test_normals_of_a_floor_point_up_and_face_the_camera():
    f = _floor_frame(80, 60)
    K, depth = f.K, f.depth
    s = depth_samples(f, 1, 0.1, 10.0)
    assert np.allclose(s.points[:, 2], 0.0, atol=1e-4)
    has = np.abs(s.normals).sum(1) > 0
    assert has.mean() > 0.8
    assert np.allclose(s.normals[has], [0, 0, 1], atol=1e-3)
    assert np.allclose(s.spacing, depth[depth > 0] / K[0, 0], rtol=1e-4)


def test_normals_survive_per_pixel_depth_noise():
    f = _floor_frame(160, 120, (3.0, 0.0, 0.0))
    rng = np.random.default_rng(0)
    f.depth = np.where(f.depth > 0, f.depth + rng.normal(0, 0.01, f.depth.shape), 0).astype(np.float32)
    s = depth_samples(f, 1, 0.1, 10.0)
    has = np.abs(s.normals).sum(1) > 0
    assert has.mean() > 0.8 and (s.normals[has][:, 2] > np.cos(np.radians(20))).mean() > 0.95
