"""Habitat spec, coordinate conversions, depth resampling and semantic-id mapping (no habitat_sim needed)."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest

from ssl_nav.config import SimConfig
from ssl_nav.errors import ConfigError, FormatError
from ssl_nav.geometry import camera_pose, intrinsics_from_fov
from ssl_nav.sim.habitat_spec import (
    SemanticInstanceMap, SemanticObjectRecord, T_world_cam_to_habitat_camera, aabb_bounds, agent_pose_for_camera,
    camera_poses_at_navigable_points, depth_from_habitat, frame_from_observations, goal_camera_spec,
    habitat_aabb_to_world, habitat_agent_to_T_world_cam, habitat_camera_to_T_world_cam, habitat_heading,
    habitat_heading_quaternion, habitat_spec_from_config, habitat_to_world_points, parse_category_list,
    records_from_semantic_objects, resample_to_intrinsics, rgb_from_habitat, world_to_habitat_points,
)

S45 = math.sqrt(0.5)


# ------------------------------------------------------------------------------------------ points

def test_points_map_habitat_y_up_to_our_z_up_and_back():
    # Habitat (x, y up, z) = (1, 2, 3) is 2 m up and 3 m along +z, which is our -y
    assert np.allclose(habitat_to_world_points([1.0, 2.0, 3.0]), [1.0, -3.0, 2.0])
    assert np.allclose(world_to_habitat_points([1.0, -3.0, 2.0]), [1.0, 2.0, 3.0])
    pts = np.random.default_rng(0).normal(size=(20, 3))
    assert np.allclose(world_to_habitat_points(habitat_to_world_points(pts)), pts)
    # lengths and handedness are kept: x cross y_up = z in Habitat, and the images obey the same rule
    ex, ey, ez = habitat_to_world_points(np.eye(3))
    assert np.allclose(np.cross(ex, ey), ez)


# ------------------------------------------------------------------------------------------ cameras

def test_identity_habitat_camera_looks_along_our_plus_y():
    T = habitat_camera_to_T_world_cam([1.0, 1.31, 2.0], [0, 0, 0, 1])
    # OpenCV x (right) = world +x; y (down) = world -z; z (forward) = Habitat -z = world +y
    assert np.allclose(T[:3, 0], [1, 0, 0])
    assert np.allclose(T[:3, 1], [0, 0, -1])
    assert np.allclose(T[:3, 2], [0, 1, 0])
    assert np.allclose(T[:3, 3], [1.0, -2.0, 1.31])
    # our own helper builds the same pose: facing +y (yaw 90 deg), level
    assert np.allclose(T, camera_pose(np.array([1.0, -2.0, 1.31]), math.pi / 2))


def test_habitat_camera_turned_left_90_deg_looks_along_minus_x():
    # +90 deg about Habitat's up axis turns the view from -z to -x
    T = habitat_camera_to_T_world_cam([0.0, 1.0, 0.0], [0.0, S45, 0.0, S45])
    assert np.allclose(T[:3, 2], [-1, 0, 0])  # forward: west
    assert np.allclose(T[:3, 0], [0, 1, 0])  # right of a camera facing west is north
    assert np.allclose(T[:3, 1], [0, 0, -1])
    assert np.allclose(T, camera_pose(np.array([0.0, 0.0, 1.0]), math.pi))


def test_pitched_camera_round_trips_both_ways():
    rng = np.random.default_rng(1)
    for _ in range(25):
        pos = rng.normal(size=3)
        T = camera_pose(pos, yaw=rng.uniform(-math.pi, math.pi), pitch=rng.uniform(-1.0, 1.0))
        hpos, hq = T_world_cam_to_habitat_camera(T)
        assert np.allclose(hpos, world_to_habitat_points(pos))
        assert np.isclose(np.linalg.norm(hq), 1.0)
        assert np.allclose(habitat_camera_to_T_world_cam(hpos, hq), T, atol=1e-9)
    # a camera tilted 30 deg down, facing Habitat -z: Habitat rotation = -30 deg about x
    T = camera_pose(np.zeros(3), yaw=math.pi / 2, pitch=math.radians(30))
    _, q = T_world_cam_to_habitat_camera(T)
    assert np.allclose(q, [-math.sin(math.radians(15)), 0, 0, math.cos(math.radians(15))])


def test_heading_and_agent_pose_for_camera():
    for theta in (-2.5, -0.3, 0.0, 1.0, 3.0):
        assert math.isclose(habitat_heading(habitat_heading_quaternion(theta)), theta, abs_tol=1e-9)
    T = camera_pose(np.array([2.0, -1.0, 1.31]), yaw=math.pi, pitch=math.radians(20))
    pose = agent_pose_for_camera(T, sensor_height=1.31)
    assert np.allclose(pose.sensor_position, [2.0, 1.31, 1.0])
    assert np.allclose(pose.position, [2.0, 0.0, 1.0])  # the floor point under the camera
    # camera faces our -x = Habitat -x: heading +90 deg about y, no pitch in the agent
    assert np.allclose(pose.rotation, [0.0, S45, 0.0, S45])
    assert np.allclose(habitat_camera_to_T_world_cam(pose.sensor_position, pose.sensor_rotation), T)


def test_agent_start_state_becomes_level_camera_at_sensor_height():
    T = habitat_agent_to_T_world_cam([3.0, 0.1, -4.0], [0, 0, 0, 1], sensor_height=1.31)
    assert np.allclose(T[:3, 3], [3.0, 4.0, 1.41])
    assert np.allclose(T[:3, 2], [0, 1, 0])


def test_bad_quaternion_is_a_format_error_naming_the_place():
    with pytest.raises(FormatError, match="goal camera.*rotation"):
        habitat_camera_to_T_world_cam([0, 0, 0], [0, 0, 0, 0], where="goal camera")
    with pytest.raises(FormatError, match="position"):
        habitat_camera_to_T_world_cam([0, float("nan"), 0], [0, 0, 0, 1])


# ------------------------------------------------------------------------------------------ boxes

def test_aabb_conversion_and_binding_variants():
    lo, hi = habitat_aabb_to_world([0.0, 0.5, -2.0], [1.0, 1.5, -1.0])
    assert np.allclose(lo, [0.0, 1.0, 0.5]) and np.allclose(hi, [1.0, 2.0, 1.5])
    # Magnum Range3D: min / max properties
    r = SimpleNamespace(min=[0, 1, 2], max=[1, 2, 4])
    assert np.allclose(aabb_bounds(r)[0], [0, 1, 2]) and np.allclose(aabb_bounds(r)[1], [1, 2, 4])
    # older habitat_sim box: center and sizes
    b = SimpleNamespace(center=[0.5, 1.5, 3.0], sizes=[1, 1, 2])
    assert np.allclose(aabb_bounds(b)[0], [0, 1, 2]) and np.allclose(aabb_bounds(b)[1], [1, 2, 4])


# ------------------------------------------------------------------------------------------ spec

def test_spec_from_default_config_matches_instance_imagenav_hm3d_v2():
    spec = habitat_spec_from_config(SimConfig(), "hm3d/val/00800-TEEsavR23oF/TEEsavR23oF.basis.glb",
                                    "hm3d_annotated_basis.scene_dataset_config.json")
    assert spec.simulator.scene_id.endswith("TEEsavR23oF.basis.glb")
    assert spec.simulator.scene_dataset_config == "hm3d_annotated_basis.scene_dataset_config.json"
    assert spec.simulator.gpu_device_id == 0
    assert spec.agent.height == pytest.approx(1.41) and spec.agent.radius == pytest.approx(0.17)
    rgb, depth, sem = (spec.agent.sensor(u) for u in ("rgb", "depth", "semantic"))
    assert (rgb.width, rgb.height, rgb.hfov_deg) == (360, 640, 42.0)
    assert rgb.resolution == [640, 360]  # Habitat's [height, width]
    assert (depth.hfov_deg, depth.min_depth, depth.max_depth) == (58.0, 0.5, 5.0)
    assert (sem.width, sem.height, sem.hfov_deg) == (360, 640, 42.0)
    assert all(s.position == (0.0, 1.31, 0.0) for s in spec.agent.sensors)
    assert np.isclose(rgb.K()[0, 0], 180.0 / math.tan(math.radians(21.0)))
    assert "wall" in spec.ignore_categories and "unknown" in spec.ignore_categories


def test_spec_follows_config_and_rejects_inconsistent_values():
    cfg = dataclasses.replace(SimConfig(), habitat_width=64, habitat_height=48, habitat_hfov_deg=90.0,
                              habitat_gpu_id=2, habitat_sensor_height=0.9, seed=7,
                              habitat_ignore_categories=" Wall , FLOOR,")
    spec = habitat_spec_from_config(cfg, "scene.glb")
    assert spec.agent.sensor("rgb").resolution == [48, 64]
    assert spec.agent.sensor("semantic").hfov_deg == 90.0
    assert spec.agent.sensor("depth").position == (0.0, 0.9, 0.0)
    assert spec.simulator.gpu_device_id == 2 and spec.simulator.random_seed == 7
    assert spec.simulator.scene_dataset_config == "default"
    assert spec.ignore_categories == frozenset({"wall", "floor"})
    with pytest.raises(ConfigError, match="habitat_min_depth"):
        habitat_spec_from_config(dataclasses.replace(cfg, habitat_min_depth=5.0, habitat_max_depth=5.0), "s.glb")
    with pytest.raises(ConfigError, match="habitat_sensor_height"):
        habitat_spec_from_config(dataclasses.replace(cfg, habitat_sensor_height=2.0), "s.glb")


def test_goal_camera_spec_uses_episode_parameters_or_defaults():
    rgb = habitat_spec_from_config(SimConfig(), "s.glb").agent.sensor("rgb")
    g = goal_camera_spec(512, 256, 79.5, rgb)
    assert (g.width, g.height, g.hfov_deg, g.kind, g.resolution) == (512, 256, 79.5, "color", [256, 512])
    g = goal_camera_spec(None, None, None, rgb)
    assert (g.width, g.height, g.hfov_deg) == (rgb.width, rgb.height, rgb.hfov_deg)


def test_parse_category_list():
    assert parse_category_list("a, B ,,c") == frozenset({"a", "b", "c"})
    assert parse_category_list("") == frozenset()


# ------------------------------------------------------------------------------------------ images

def _plane_depth(K: np.ndarray, shape: tuple[int, int], z0: float, k: float) -> np.ndarray:
    """Planar depth of the plane z = z0 + k x seen by a camera at the origin (analytic)."""
    h, w = shape
    a = (np.arange(w) + 0.5 - K[0, 2]) / K[0, 0]
    z = z0 / (1.0 - k * a)
    return np.repeat(z[None, :], h, axis=0).astype(np.float32)


def test_depth_resampled_from_wide_to_narrow_hfov_matches_analytic_depth():
    shape = (48, 64)
    K_depth, K_rgb = intrinsics_from_fov(64, 48, 58.0), intrinsics_from_fov(64, 48, 42.0)
    src = _plane_depth(K_depth, shape, z0=2.0, k=0.8)
    out = resample_to_intrinsics(src, K_depth, K_rgb, shape, 0.0)
    truth = _plane_depth(K_rgb, shape, z0=2.0, k=0.8)
    assert out.dtype == np.float32 and out.shape == shape
    assert np.all(out > 0)  # the narrower RGB view lies inside the depth view
    # nearest neighbour: within one source pixel's depth change
    step = np.abs(np.diff(src[0])).max()
    assert np.abs(out - truth).max() <= step + 1e-6
    # identity when both cameras are equal
    assert np.array_equal(resample_to_intrinsics(src, K_depth, K_depth, shape), src)


def test_resample_fills_outside_and_keeps_channels():
    K_narrow, K_wide = intrinsics_from_fov(32, 32, 40.0), intrinsics_from_fov(32, 32, 80.0)
    img = np.full((32, 32, 3), 200, np.uint8)
    out = resample_to_intrinsics(img, K_narrow, K_wide, (32, 32), fill=0)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert out[16, 16].tolist() == [200, 200, 200] and out[0, 0].tolist() == [0, 0, 0]


def test_depth_outside_sensor_range_is_invalid_and_rgba_drops_alpha():
    raw = np.array([[0.2, 0.5, 3.0], [5.0, 7.5, np.nan]], np.float32)[..., None]
    d = depth_from_habitat(raw, 0.5, 5.0)
    assert d.dtype == np.float32 and d.shape == (2, 3)
    assert d.tolist()[0] == [0.0, 0.5, 3.0] and d.tolist()[1] == [5.0, 0.0, 0.0]
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 10, 255
    rgb = rgb_from_habitat(rgba)
    assert rgb.shape == (2, 2, 3) and rgb[0, 0].tolist() == [10, 0, 0]
    with pytest.raises(FormatError):
        rgb_from_habitat(np.zeros((2, 2), np.uint8))


# ------------------------------------------------------------------------------------------ semantic ids

def _records() -> list[SemanticObjectRecord]:
    box = ((0.0, 0.0, -1.0), (0.5, 0.8, -0.5))
    return [
        SemanticObjectRecord("Unknown_0", 0, "Unknown", *box),
        SemanticObjectRecord("chair_12", 12, "chair", *box),
        SemanticObjectRecord("wall_3", 3, "wall", *box),
        SemanticObjectRecord("bed_7", 7, "bed", (1.0, 0.0, 1.0), (3.0, 0.6, 3.0)),
        SemanticObjectRecord("plant_40", 40, "plant", *box),
        SemanticObjectRecord("0_1_2", 41, "tv", *box),
        SemanticObjectRecord("lamp_9", 9, "lamp", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),  # no box: not annotated
        SemanticObjectRecord("bed_7b", 7, "bed", (2.0, 0.0, 2.0), (4.0, 1.0, 4.0)),  # shares semantic id 7
    ]


def test_semantic_ids_map_to_stable_positive_instance_ids():
    m = SemanticInstanceMap(_records(), ignore_categories={"unknown", "wall"})
    # kept in ascending semantic id: 7 -> 1, 9 -> 2, 12 -> 3, 40 -> 4, 41 -> 5
    assert [(o.instance_id, o.extra["semantic_id"], o.category) for o in m.objects] == [
        (1, 7, "bed"), (2, 9, "lamp"), (3, 12, "chair"), (4, 40, "plant"), (5, 41, "tv")]
    assert m.n_ignored == 2
    assert m.objects[2].extra["habitat_id"] == "chair_12" and m.objects[2].extra["aabb_valid"]
    # a lamp without a box (not computed for every scene format) is still an instance, flagged
    assert m.objects[1].extra["aabb_valid"] is False and np.allclose(m.objects[1].centroid, 0.0)
    # same records in another order give the same ids
    again = SemanticInstanceMap(list(reversed(_records())), ignore_categories={"unknown", "wall"})
    assert [(o.instance_id, o.extra["semantic_id"]) for o in again.objects] == [(1, 7), (2, 9), (3, 12), (4, 40),
                                                                                 (5, 41)]
    # the two bed_7 parts share one instance whose box is the union, converted to z-up
    bed = m.objects[0]
    assert bed.extra["habitat_ids"] == ["bed_7", "bed_7b"]
    assert np.allclose(bed.aabb_min, [1.0, -4.0, 0.0]) and np.allclose(bed.aabb_max, [4.0, -1.0, 1.0])


def test_semantic_observation_becomes_int32_instance_mask():
    m = SemanticInstanceMap(_records(), ignore_categories={"unknown", "wall"})
    sem = np.array([[0, 12, 3], [7, 41, 999], [40, 9, 12]], dtype=np.uint32)[..., None]
    mask = m.instance_mask(sem)
    assert mask.dtype == np.int32 and mask.shape == (3, 3)
    assert mask.tolist() == [[0, 3, 0], [1, 5, 0], [4, 2, 3]]
    assert m.instance_for_semantic_id(40) == 4 and m.instance_for_semantic_id(3) == 0


def test_goal_object_id_maps_to_the_same_instance_as_the_mask():
    m = SemanticInstanceMap(_records(), ignore_categories={"unknown", "wall"})
    sem = np.full((2, 2), 12, dtype=np.uint32)
    assert m.instance_for_goal_object("12") == m.instance_mask(sem)[0, 0] == 3
    assert m.instance_for_goal_object(40) == 4
    assert m.instance_for_goal_object("chair_12") == 3  # an object id string
    assert m.instance_for_goal_object("0_1_2") == 5
    assert m.instance_for_goal_object("3") is None  # a wall is no instance
    assert m.instance_for_goal_object("12345") is None


def test_empty_semantic_scene():
    m = SemanticInstanceMap([], ignore_categories=())
    assert len(m) == 0 and m.instance_mask(np.array([[0, 5]])).tolist() == [[0, 0]]


# ------------------------------------------------------------------------------------------ binding records, frames

def test_records_from_semantic_objects_reads_the_binding_attributes():
    class Category:
        def __init__(self, name):
            self._name = name

        def name(self, mapping=""):
            return self._name

    objs = [SimpleNamespace(id="chair_5", semantic_id=5, category=Category("chair"),
                            aabb=SimpleNamespace(min=[0.0, 0.0, -1.0], max=[0.5, 0.9, -0.5])),
            None,
            SimpleNamespace(id="1_2_3", semantic_id=8, category=None,
                            aabb=SimpleNamespace(center=[1.0, 1.0, 1.0], sizes=[2.0, 2.0, 2.0]))]
    recs = records_from_semantic_objects(objs)
    assert recs == [SemanticObjectRecord("chair_5", 5, "chair", (0.0, 0.0, -1.0), (0.5, 0.9, -0.5)),
                    SemanticObjectRecord("1_2_3", 8, "unknown", (0.0, 0.0, 0.0), (2.0, 2.0, 2.0))]


def test_frame_from_observations_aligns_depth_and_maps_ids():
    cfg = dataclasses.replace(SimConfig(), habitat_width=64, habitat_height=48)
    spec = habitat_spec_from_config(cfg, "s.glb")
    rgb_s, depth_s = spec.agent.sensor("rgb"), spec.agent.sensor("depth")
    inst = SemanticInstanceMap(_records(), ignore_categories={"unknown", "wall"})
    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[..., 1] = 77
    depth = _plane_depth(depth_s.K(), (48, 64), z0=2.0, k=0.0)  # a wall 2 m ahead
    depth[:, :3] = 9.0  # beyond 5 m, outside the RGB view anyway
    sem = np.full((48, 64, 1), 12, np.uint32)
    sem[:, 32:] = 3  # a wall: no instance
    T = camera_pose(np.array([1.0, 2.0, 1.31]), 0.3, 0.2)
    f = frame_from_observations({"rgb": rgba, "depth": depth[..., None], "semantic": sem}, ("rgb", "depth", "semantic"),
                                rgb_s, depth_s, inst, T, min_depth=0.5, max_depth=5.0, frame_id="f1", stamp=2.5,
                                extra={"backend": "habitat"})
    f.validate()
    assert f.rgb.shape == (48, 64, 3) and f.rgb[0, 0].tolist() == [0, 77, 0]
    assert np.allclose(f.depth, 2.0)  # resampled from hfov 58 onto the hfov 42 pixels: all valid
    assert np.allclose(f.K, rgb_s.K()) and np.allclose(f.T_world_cam, T)
    assert set(np.unique(f.instance_mask[:, :32])) == {3} and set(np.unique(f.instance_mask[:, 32:])) == {0}
    assert (f.frame_id, f.stamp, f.quality, f.extra) == ("f1", 2.5, "high", {"backend": "habitat"})
    with pytest.raises(FormatError, match="semantic"):
        frame_from_observations({"rgb": rgba, "depth": depth, "semantic": sem[:10]}, ("rgb", "depth", "semantic"),
                                rgb_s, depth_s, inst, T, min_depth=0.5, max_depth=5.0)


def test_camera_poses_at_navigable_points():
    pts = np.array([[1.0, 0.2, -3.0], [np.nan, np.nan, np.nan], [0.0, 3.0, 0.0]])
    poses = camera_poses_at_navigable_points(pts, [0.0, 1.0, math.pi / 2], sensor_height=1.31)
    assert len(poses) == 2  # the NaN point (no point found) is skipped
    assert np.allclose(poses[0][:3, 3], [1.0, 3.0, 1.51]) and np.allclose(poses[0][:3, 2], [1, 0, 0])
    assert np.allclose(poses[1][:3, 3], [0.0, 0.0, 4.31]) and np.allclose(poses[1][:3, 2], [0, 1, 0])
