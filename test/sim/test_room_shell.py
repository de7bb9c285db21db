"""The ray-cast room shell: exact depth, faces and textures, and the same image geometry as TinyRenderer."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from ssl_nav.geometry import camera_pose, intrinsics_from_fov, look_at
from ssl_nav.sim.room_shell import FACES, TEXTURE_SIDE, RoomShell, ShellFace
from ssl_nav.sim.scenes import Lighting

LIGHT = Lighting((0.3, -0.2, 0.9), (1.0, 0.95, 0.9), 0.6, 0.4, 0.1)


def _shell(textures: dict | None = None) -> RoomShell:
    faces = {f: ShellFace((1.0, 1.0, 1.0, 1.0), (textures or {}).get(f), 1.0) for f in FACES}
    return RoomShell(np.array([-2.0, -1.5]), np.array([2.0, 1.5]), 2.6, faces)


def test_depth_is_z_along_the_optical_axis_and_faces_are_the_walls_hit():
    shell, K = _shell(), intrinsics_from_fov(64, 48, 70.0)
    # facing the +x wall squarely from 1.5 m: every pixel reads 1.5 m (not the ray length) on wall_xmax
    depth, face, (hx, hy, hz) = shell.cast(K, camera_pose(np.array([0.5, 0.0, 1.3]), 0.0, 0.0), 64, 48)
    assert np.allclose(depth, 1.5, atol=1e-5) and np.all(face == FACES.index("wall_xmax"))
    assert np.allclose(hx, 4.0, atol=1e-5)  # room coordinates: metres from the lower corner (x = -2)
    # straight down from 1.2 m: the floor
    depth, face, _ = shell.cast(K, look_at(np.array([0.0, 0.0, 1.2]), np.array([0.0, 0.01, 0.0])), 64, 48)
    assert np.all(face == FACES.index("floor")) and abs(depth[24, 32] - 1.2) < 1e-3


def test_textures_repeat_every_tile_and_shading_follows_the_light():
    n = TEXTURE_SIDE
    tex = np.zeros((n, n, 3), np.uint8)
    tex[:, : n // 2] = 200  # left half bright, right half dark: a stripe every tile (1 m) along the wall
    shell, K = _shell({"wall_xmax": tex}), intrinsics_from_fov(200, 20, 90.0)
    rgb, _ = shell.render(K, camera_pose(np.array([1.0, 0.0, 1.3]), 0.0, 0.0), 200, 20, LIGHT)
    row = rgb[10, :, 0].astype(int)
    changes = np.count_nonzero(np.diff((row > 50).astype(int)))
    assert 3 <= changes <= 5  # 2 m of wall visible at 1 m with a 90 degree lens: ~2 periods
    factors = shell.shading(LIGHT)
    lit_floor, ceiling = factors[FACES.index("floor")], factors[FACES.index("ceiling")]
    assert np.all(lit_floor > ceiling)  # the light comes from above


def test_raycast_room_equals_tinyrenderer_room(make_cfg):
    """Both renderers of the same scene: identical masks, depth within a millimetre (pixel centres agree)."""
    from ssl_nav.sim.explore import exploration_poses
    from ssl_nav.sim.pybullet_backend import PyBulletSimulator

    out = {}
    for mode in ("raycast", "tinyrenderer"):
        cfg = make_cfg(room_shell=mode, width=96, height=72)
        with PyBulletSimulator(cfg) as sim:
            sim.load_scene(7)
            poses = exploration_poses(sim, cfg, np.random.default_rng(0))[::3]
            out[mode] = [sim.render(T, "high") for T in poses]
    for a, b in zip(out["raycast"], out["tinyrenderer"]):
        assert np.array_equal(a.instance_mask, b.instance_mask)
        assert np.array_equal(a.depth > 0, b.depth > 0)
        both = (a.depth > 0) & (b.depth > 0)
        assert np.abs(a.depth - b.depth)[both].max() < 1e-3
