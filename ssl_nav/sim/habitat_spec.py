"""Everything the Habitat backend needs that does not need ``habitat_sim``: the plain spec, frames, ids.

The Habitat backend (:mod:`ssl_nav.sim.habitat_backend`) is built in two steps. This module is the first:
plain dataclasses that describe the simulator, the agent and its sensors, built from our
:class:`~ssl_nav.config.SimConfig`, plus the pure conversions between Habitat's conventions and ours. The
second step, ``make_habitat_config(spec)``, turns the spec into ``habitat_sim`` objects; it is the only code
that imports ``habitat_sim``.

Defaults follow habitat-lab's InstanceImageNav HM3D v2 benchmark
(``habitat/config/benchmark/nav/instance_imagenav/instance_imagenav_hm3d_v2.yaml``; Krantz et al.,
"Navigating to Objects Specified by Images", ICCV 2023): RGB 360 wide x 640 tall at hfov 42 deg, depth at
hfov 58 deg over 0.5-5 m, sensors 1.31 m above the agent's floor point, agent height 1.41 m, radius 0.17 m.

Conventions
-----------
- Habitat world: y up (x, y, z); an agent with identity rotation faces -z. Ours: z up (docs/design.md,
  "Conventions"). A point maps as ``ours = (x, -z, y)``, a proper rotation (+90 deg about x), so handedness
  is kept and a Habitat agent facing -z faces our +y.
- Habitat camera: x right, y up, looking along -z. Ours: OpenCV, x right, y down, z forward. So
  ``p_habitat_cam = diag(1, -1, -1) @ p_opencv_cam``.
- Quaternions: habitat-lab episode files store rotations as ``[x, y, z, w]``
  (``habitat.utils.geometry_utils.quaternion_from_coeff``), as does :mod:`ssl_nav.geometry`.
- Sensor resolutions are ``[height, width]`` in Habitat (``CameraSensorSpec.resolution``), and so are the
  episode files' ``image_dimensions``.
- Semantic ids: Habitat's semantic sensor returns each pixel's ``semantic_id``; ``semantic_scene.objects``
  lists objects with an ``id`` (``"<category>_<n>"`` for HM3D, ``"<level>_<region>_<n>"`` for MP3D) and a
  ``semantic_id``. :class:`SemanticInstanceMap` maps them to our stable positive instance ids
  ``1..N`` (in ascending ``semantic_id`` order; 0 = none), keeping the originals in ``SceneObject.extra``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from ssl_nav.config import SimConfig
from ssl_nav.errors import ConfigError, FormatError
from ssl_nav.frames import Frame
from ssl_nav.geometry import camera_pose, intrinsics_from_fov, matrix_to_quaternion, quaternion_to_matrix
from ssl_nav.sim.base import SceneObject

#: How to get habitat_sim, printed by ``ssl-nav habitat`` when it is missing.
INSTALL_HINT = (
    "habitat_sim is not importable in this Python ({python}). Install habitat-sim, e.g. the headless conda "
    "build:\n"
    "    conda create -n habitat python=3.9 cmake=3.14.0 && conda activate habitat\n"
    "    conda install habitat-sim headless -c conda-forge -c aihabitat\n"
    "or a habitat-sim wheel built for this Python version (https://github.com/facebookresearch/habitat-sim),"
    " then install ssl_nav into that environment. `ssl-nav habitat --backend pybullet` runs the same "
    "pipeline on the embedded simulator without habitat_sim."
)

#: p_ours = R_WORLD_FROM_HABITAT @ p_habitat
R_WORLD_FROM_HABITAT = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
#: p_habitat_cam = R_HABITAT_CAM_FROM_OPENCV @ p_opencv_cam (its own inverse)
R_HABITAT_CAM_FROM_OPENCV = np.diag([1.0, -1.0, -1.0])

SENSOR_RGB = "rgb"
SENSOR_DEPTH = "depth"
SENSOR_SEMANTIC = "semantic"
SENSOR_GOAL = "goal_rgb"
SENSOR_KINDS = ("color", "depth", "semantic")


# ------------------------------------------------------------------------------------------ conversions

def habitat_to_world_points(p: np.ndarray | Sequence[float]) -> np.ndarray:
    """Habitat world points (y up), shape (3,) or (N, 3), to our world (z up)."""
    p = np.asarray(p, dtype=np.float64)
    return p @ R_WORLD_FROM_HABITAT.T


def world_to_habitat_points(p: np.ndarray | Sequence[float]) -> np.ndarray:
    """Our world points (z up), shape (3,) or (N, 3), to Habitat's world (y up)."""
    p = np.asarray(p, dtype=np.float64)
    return p @ R_WORLD_FROM_HABITAT


def _check_quaternion(q: Sequence[float], where: str) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    if q.shape != (4,) or not np.all(np.isfinite(q)) or np.linalg.norm(q) < 1e-9:
        raise FormatError(f"{where}: rotation must be a non-zero quaternion [x, y, z, w], got {q.tolist()}")
    return q / np.linalg.norm(q)


def habitat_camera_to_T_world_cam(position: Sequence[float], rotation_xyzw: Sequence[float],
                                  where: str = "camera") -> np.ndarray:
    """Our OpenCV ``T_world_cam`` (z-up world) of a Habitat camera at ``position`` with world ``rotation``.

    ``position`` and ``rotation_xyzw`` are the camera's (sensor's) world pose in Habitat, as in the
    ``image_goals`` of InstanceImageNav episodes or a sensor state.
    """
    pos = np.asarray(position, dtype=np.float64)
    if pos.shape != (3,) or not np.all(np.isfinite(pos)):
        raise FormatError(f"{where}: position must be 3 finite numbers, got {np.asarray(position).tolist()}")
    R_hw_hc = quaternion_to_matrix(_check_quaternion(rotation_xyzw, where))
    T = np.eye(4)
    T[:3, :3] = R_WORLD_FROM_HABITAT @ R_hw_hc @ R_HABITAT_CAM_FROM_OPENCV
    T[:3, 3] = R_WORLD_FROM_HABITAT @ pos
    return T


def T_world_cam_to_habitat_camera(T_world_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`habitat_camera_to_T_world_cam`: (Habitat position (3,), rotation [x, y, z, w])."""
    T = np.asarray(T_world_cam, dtype=np.float64)
    R_hw_hc = R_WORLD_FROM_HABITAT.T @ T[:3, :3] @ R_HABITAT_CAM_FROM_OPENCV
    return R_WORLD_FROM_HABITAT.T @ T[:3, 3], matrix_to_quaternion(R_hw_hc)


def habitat_heading(rotation_xyzw: Sequence[float]) -> float:
    """Heading (rad) about Habitat's y axis of a rotation: the angle that turns -z onto the rotated -z."""
    R = quaternion_to_matrix(_check_quaternion(rotation_xyzw, "rotation"))
    f = R @ np.array([0.0, 0.0, -1.0])
    return math.atan2(-f[0], -f[2])


def habitat_heading_quaternion(theta: float) -> np.ndarray:
    """[x, y, z, w] of a rotation by ``theta`` about Habitat's y (up) axis."""
    return np.array([0.0, math.sin(theta / 2.0), 0.0, math.cos(theta / 2.0)])


def habitat_agent_to_T_world_cam(position: Sequence[float], rotation_xyzw: Sequence[float],
                                 sensor_height: float, where: str = "agent") -> np.ndarray:
    """Our ``T_world_cam`` of the level camera ``sensor_height`` above a Habitat agent state (floor point)."""
    pos = np.asarray(position, dtype=np.float64) + np.array([0.0, sensor_height, 0.0])
    return habitat_camera_to_T_world_cam(pos, rotation_xyzw, where)


@dataclass(frozen=True)
class HabitatAgentPose:
    """Where to put a Habitat agent so that its sensors sit at a given camera pose (all in Habitat's world)."""

    position: np.ndarray  #: agent floor point (camera position minus the sensor height)
    rotation: np.ndarray  #: agent heading quaternion [x, y, z, w] (rotation about y only)
    sensor_position: np.ndarray  #: camera position
    sensor_rotation: np.ndarray  #: camera rotation [x, y, z, w] (with pitch and roll)


def agent_pose_for_camera(T_world_cam: np.ndarray, sensor_height: float) -> HabitatAgentPose:
    """The agent state that places every sensor at our OpenCV camera pose ``T_world_cam``.

    The agent stands ``sensor_height`` below the camera and faces the camera's heading; the sensors get the
    full camera pose as world sensor states (``AgentState.sensor_states`` with ``infer_sensor_states=False``,
    the way habitat-lab's ``InstanceImageGoalSensor`` places its goal camera).
    """
    pos, q = T_world_cam_to_habitat_camera(T_world_cam)
    theta = habitat_heading(q)
    return HabitatAgentPose(position=pos - np.array([0.0, sensor_height, 0.0]),
                            rotation=habitat_heading_quaternion(theta), sensor_position=pos, sensor_rotation=q)


def habitat_aabb_to_world(aabb_min: Sequence[float], aabb_max: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """An axis-aligned Habitat box (min, max corners) as our world box (min, max corners)."""
    corners = habitat_to_world_points(np.stack([np.asarray(aabb_min, float), np.asarray(aabb_max, float)]))
    return corners.min(axis=0), corners.max(axis=0)


def aabb_bounds(aabb: Any) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) of a habitat_sim box, whichever binding it comes from.

    Newer habitat_sim returns a Magnum ``Range3D`` (``min``/``max``; ``center()``/``size()``), older versions a
    box with ``center`` and ``sizes``.
    """
    if hasattr(aabb, "min") and hasattr(aabb, "max"):
        lo, hi = aabb.min, aabb.max
        lo = lo() if callable(lo) else lo
        hi = hi() if callable(hi) else hi
        return np.asarray(list(lo), dtype=np.float64), np.asarray(list(hi), dtype=np.float64)
    center = aabb.center() if callable(aabb.center) else aabb.center
    size_attr = aabb.sizes if hasattr(aabb, "sizes") else aabb.size
    sizes = size_attr() if callable(size_attr) else size_attr
    c, s = np.asarray(list(center), dtype=np.float64), np.asarray(list(sizes), dtype=np.float64)
    return c - s / 2.0, c + s / 2.0


# ------------------------------------------------------------------------------------------ the spec

@dataclass(frozen=True)
class CameraSpec:
    """One pinhole camera sensor of the agent (a ``habitat_sim.CameraSensorSpec`` in plain values)."""

    uuid: str
    kind: str  #: "color" | "depth" | "semantic"
    width: int
    height: int
    hfov_deg: float
    position: tuple[float, float, float] = (0.0, 1.31, 0.0)  #: in the agent frame (Habitat, y up)
    min_depth: float | None = None  #: depth sensors: nearer reads invalid
    max_depth: float | None = None  #: depth sensors: farther reads invalid

    @property
    def resolution(self) -> list[int]:
        """Habitat's order: [height, width]."""
        return [int(self.height), int(self.width)]

    def K(self) -> np.ndarray:
        """Pinhole intrinsics (square pixels, centred principal point), as habitat_sim renders."""
        return intrinsics_from_fov(self.width, self.height, self.hfov_deg)


@dataclass(frozen=True)
class AgentSpec:
    """The agent (navmesh cylinder) and its sensors."""

    height: float
    radius: float
    sensor_height: float
    sensors: tuple[CameraSpec, ...]

    def sensor(self, uuid: str) -> CameraSpec:
        for s in self.sensors:
            if s.uuid == uuid:
                return s
        raise KeyError(uuid)


@dataclass(frozen=True)
class SimulatorSpec:
    """A ``habitat_sim.SimulatorConfiguration`` in plain values."""

    scene_id: str
    scene_dataset_config: str
    gpu_device_id: int = 0
    random_seed: int = 0
    enable_physics: bool = False
    load_semantic_mesh: bool = True


@dataclass(frozen=True)
class HabitatSpec:
    """Everything ``make_habitat_config`` needs."""

    simulator: SimulatorSpec
    agent: AgentSpec
    ignore_categories: frozenset[str] = field(default_factory=frozenset)


def parse_category_list(text: str) -> frozenset[str]:
    """``"wall, Floor,ceiling"`` -> ``{"wall", "floor", "ceiling"}`` (lower-case, stripped, no empties)."""
    return frozenset(t.strip().lower() for t in text.split(",") if t.strip())


def habitat_spec_from_config(cfg: SimConfig, scene_id: str, scene_dataset_config: str = "default") -> HabitatSpec:
    """The Habitat spec for one scene from our config (InstanceImageNav HM3D v2 defaults).

    Sensors: ``rgb`` and ``semantic`` share the RGB resolution and hfov so that instance masks align with
    the image pixel for pixel; ``depth`` keeps the benchmark's wider hfov and the same resolution, and the
    backend resamples it onto the RGB pixels (:func:`resample_to_intrinsics`).
    """
    if cfg.habitat_min_depth >= cfg.habitat_max_depth:
        raise ConfigError("config: key 'sim.habitat_min_depth' must be below 'sim.habitat_max_depth'")
    if cfg.habitat_sensor_height > cfg.habitat_agent_height:
        raise ConfigError("config: key 'sim.habitat_sensor_height' exceeds 'sim.habitat_agent_height'")
    if not scene_id:
        raise ConfigError("habitat: empty scene id")
    pos = (0.0, float(cfg.habitat_sensor_height), 0.0)
    w, h = int(cfg.habitat_width), int(cfg.habitat_height)
    sensors = (
        CameraSpec(SENSOR_RGB, "color", w, h, float(cfg.habitat_hfov_deg), pos),
        CameraSpec(SENSOR_DEPTH, "depth", w, h, float(cfg.habitat_depth_hfov_deg), pos,
                   min_depth=float(cfg.habitat_min_depth), max_depth=float(cfg.habitat_max_depth)),
        CameraSpec(SENSOR_SEMANTIC, "semantic", w, h, float(cfg.habitat_hfov_deg), pos),
    )
    agent = AgentSpec(height=float(cfg.habitat_agent_height), radius=float(cfg.habitat_agent_radius),
                      sensor_height=float(cfg.habitat_sensor_height), sensors=sensors)
    sim = SimulatorSpec(scene_id=str(scene_id), scene_dataset_config=str(scene_dataset_config or "default"),
                        gpu_device_id=int(cfg.habitat_gpu_id), random_seed=int(cfg.seed))
    return HabitatSpec(simulator=sim, agent=agent, ignore_categories=parse_category_list(cfg.habitat_ignore_categories))


def goal_camera_spec(width: int | None, height: int | None, hfov_deg: float | None,
                     default: CameraSpec) -> CameraSpec:
    """The colour camera of an episode's goal image (its ``image_dimensions`` and ``hfov``), else ``default``'s."""
    return CameraSpec(SENSOR_GOAL, "color", int(width or default.width), int(height or default.height),
                      float(hfov_deg or default.hfov_deg), default.position)


# ------------------------------------------------------------------------------------------ images

def depth_from_habitat(raw: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """Habitat's planar depth (m) as our float32 depth: outside ``[min_depth, max_depth]`` or non-finite -> 0."""
    d = np.asarray(raw, dtype=np.float32)
    if d.ndim == 3:
        d = d[..., 0]
    valid = np.isfinite(d) & (d >= min_depth) & (d <= max_depth)
    return np.where(valid, d, np.float32(0.0)).astype(np.float32)


def resample_to_intrinsics(img: np.ndarray, K_src: np.ndarray, K_dst: np.ndarray, dst_shape: tuple[int, int],
                           fill: float | int = 0) -> np.ndarray:
    """Nearest-neighbour resampling of an image between two pinhole cameras with the same centre and axes.

    For each destination pixel centre, the ray through it is looked up in the source image (pixel index =
    floor of the coordinate, as in :mod:`ssl_nav.geometry`). Planar depth is unchanged by this mapping
    because both cameras share the optical axis. Pixels whose ray leaves the source image get ``fill``.
    """
    h, w = dst_shape
    sh, sw = img.shape[:2]
    u = np.arange(w) + 0.5
    v = np.arange(h) + 0.5
    us = (u - K_dst[0, 2]) / K_dst[0, 0] * K_src[0, 0] + K_src[0, 2]
    vs = (v - K_dst[1, 2]) / K_dst[1, 1] * K_src[1, 1] + K_src[1, 2]
    cols, rows = np.floor(us).astype(np.int64), np.floor(vs).astype(np.int64)
    col_ok, row_ok = (cols >= 0) & (cols < sw), (rows >= 0) & (rows < sh)
    out = img[np.clip(rows, 0, sh - 1)][:, np.clip(cols, 0, sw - 1)]
    inside = row_ok[:, None] & col_ok[None, :]
    if out.ndim == 3:
        inside = inside[..., None]
    return np.where(inside, out, np.asarray(fill, dtype=img.dtype)).astype(img.dtype)


def rgb_from_habitat(raw: np.ndarray) -> np.ndarray:
    """Habitat's RGBA uint8 colour observation as our uint8 RGB."""
    a = np.asarray(raw)
    if a.ndim != 3 or a.shape[2] < 3:
        raise FormatError(f"habitat colour observation must be HxWx3 or HxWx4, got shape {a.shape}")
    return np.ascontiguousarray(a[..., :3]).astype(np.uint8)


# ------------------------------------------------------------------------------------------ semantic ids

@dataclass(frozen=True)
class SemanticObjectRecord:
    """One entry of ``semantic_scene.objects`` in plain values (Habitat world, y up)."""

    habitat_id: str  #: ``obj.id``
    semantic_id: int  #: ``obj.semantic_id`` (the semantic sensor's pixel value)
    category: str  #: ``obj.category.name()``
    aabb_min: tuple[float, float, float]
    aabb_max: tuple[float, float, float]


class SemanticInstanceMap:
    """Habitat semantic objects -> our :class:`SceneObject`s with stable positive instance ids.

    Objects whose category is in ``ignore_categories`` (walls, floors, "Unknown", ...) are no instances:
    their pixels read 0. The others get ids ``1..N`` in ascending ``semantic_id`` order, so a scene always
    maps the same way. Objects sharing a ``semantic_id`` (possible in some scene formats) share one instance
    whose box is the union of theirs. An object whose box habitat_sim left empty or non-finite (not every
    scene format computes object boxes) stays an instance -- its pixels and goals still count -- with
    ``extra["aabb_valid"] = False`` and its box collapsed to its finite corner (or the origin).
    """

    def __init__(self, records: Iterable[SemanticObjectRecord], ignore_categories: Iterable[str] = ()):
        ignore = {c.strip().lower() for c in ignore_categories}
        by_sid: dict[int, list[SemanticObjectRecord]] = {}
        self.n_ignored = 0
        for r in records:
            sid = int(r.semantic_id)
            if sid < 0 or (r.category or "").strip().lower() in ignore:
                self.n_ignored += 1
                continue
            by_sid.setdefault(sid, []).append(r)
        self.objects: list[SceneObject] = []
        self._sid_to_instance: dict[int, int] = {}
        self._habitat_id_to_instance: dict[str, int] = {}
        for n, sid in enumerate(sorted(by_sid), start=1):
            group = by_sid[sid]
            boxes = [habitat_aabb_to_world(r.aabb_min, r.aabb_max) for r in group]
            valid = [b for b in boxes if np.all(np.isfinite(b[0])) and np.all(np.isfinite(b[1]))
                     and bool(np.any(b[1] - b[0] > 0))]
            extra: dict[str, Any] = {"habitat_id": group[0].habitat_id, "semantic_id": sid, "aabb_valid": bool(valid)}
            if valid:
                lo = np.min([b[0] for b in valid], axis=0)
                hi = np.max([b[1] for b in valid], axis=0)
            else:
                corner = next((b[0] for b in boxes if np.all(np.isfinite(b[0]))), np.zeros(3))
                lo, hi = corner.copy(), corner.copy()
            if len(group) > 1:
                extra["habitat_ids"] = [r.habitat_id for r in group]
            self.objects.append(SceneObject(instance_id=n, category=group[0].category, aabb_min=lo, aabb_max=hi,
                                            extra=extra))
            self._sid_to_instance[sid] = n
            for r in group:
                self._habitat_id_to_instance[str(r.habitat_id)] = n
        size = (max(self._sid_to_instance) + 1) if self._sid_to_instance else 1
        self._lut = np.zeros(size, dtype=np.int32)
        for sid, iid in self._sid_to_instance.items():
            self._lut[sid] = iid

    def __len__(self) -> int:
        return len(self.objects)

    def instance_for_semantic_id(self, semantic_id: int) -> int:
        """Our instance id of a semantic id (0 when it is no instance)."""
        return self._sid_to_instance.get(int(semantic_id), 0)

    def instance_mask(self, semantic: np.ndarray) -> np.ndarray:
        """The semantic sensor's HxW(x1) ids as our int32 instance mask (unknown ids -> 0)."""
        s = np.asarray(semantic)
        if s.ndim == 3:
            s = s[..., 0]
        s = s.astype(np.int64)
        inside = (s >= 0) & (s < len(self._lut))
        return np.where(inside, self._lut[np.clip(s, 0, len(self._lut) - 1)], 0).astype(np.int32)

    def instance_for_goal_object(self, goal_object_id: str | int) -> int | None:
        """Our instance id of an episode's ``goal_object_id``, or ``None`` when no instance matches.

        habitat-lab's InstanceImageNav HM3D episodes give the goal object's ``semantic_id`` (as a string,
        e.g. ``"54"``); an object ``id`` string (``"chair_54"``, ``"0_3_12"``) is accepted too.
        """
        key = str(goal_object_id).strip()
        # not int() alone: it reads "0_1_2" as 12
        iid = self._sid_to_instance.get(int(key)) if key.isascii() and key.isdigit() else None
        if iid is None:
            iid = self._habitat_id_to_instance.get(key)
        return iid


def records_from_semantic_objects(objects: Iterable[Any]) -> list[SemanticObjectRecord]:
    """``semantic_scene.objects`` (habitat_sim ``SemanticObject``s: ``id``, ``semantic_id``, ``category.name()``,
    ``aabb``) as plain records; ``None`` entries (possible in some scenes) are skipped."""
    out = []
    for obj in objects:
        if obj is None:
            continue
        lo, hi = aabb_bounds(obj.aabb)
        category = obj.category.name() if obj.category is not None else "unknown"
        out.append(SemanticObjectRecord(str(obj.id), int(obj.semantic_id), str(category),
                                        tuple(float(x) for x in lo), tuple(float(x) for x in hi)))
    return out


# ------------------------------------------------------------------------------------------ frames and poses

def frame_from_observations(obs: dict, uuids: tuple[str, str, str], rgb_spec: CameraSpec, depth_spec: CameraSpec,
                            instances: SemanticInstanceMap, T_world_cam: np.ndarray, *, min_depth: float,
                            max_depth: float, frame_id: str = "", stamp: float = 0.0, extra: dict | None = None
                            ) -> Frame:
    """Our sharp (HQ) :class:`Frame` from one set of Habitat observations (colour, depth, semantic ``uuids``).

    Depth outside ``[min_depth, max_depth]`` reads invalid and is resampled onto the colour camera's pixels
    when its camera differs (the benchmark's depth hfov is wider than the RGB's); semantic ids become our
    instance ids. The pose is the OpenCV ``T_world_cam`` the sensors were placed at.
    """
    rgb = rgb_from_habitat(obs[uuids[0]])
    depth = depth_from_habitat(obs[uuids[1]], min_depth, max_depth)
    K = rgb_spec.K()
    if depth_spec.hfov_deg != rgb_spec.hfov_deg or depth.shape != rgb.shape[:2]:
        depth = resample_to_intrinsics(depth, depth_spec.K(), K, rgb.shape[:2], 0.0)
    mask = instances.instance_mask(obs[uuids[2]])
    if mask.shape != rgb.shape[:2]:
        raise FormatError(f"habitat observation {uuids[2]}: shape {mask.shape} does not match {uuids[0]} "
                          f"{rgb.shape[:2]}")
    return Frame(rgb=rgb, depth=depth, K=K, T_world_cam=np.asarray(T_world_cam, dtype=np.float64),
                 instance_mask=mask, stamp=float(stamp), frame_id=frame_id, quality="high", extra=dict(extra or {}))


def camera_poses_at_navigable_points(points: np.ndarray, yaws: Sequence[float], sensor_height: float,
                                     pitch: float = 0.0) -> list[np.ndarray]:
    """OpenCV camera poses ``sensor_height`` above Habitat navmesh points (N, 3), facing our ``yaws`` (rad).

    Points that are not finite (the pathfinder's way of saying "none found") are skipped.
    """
    poses = []
    for p, yaw in zip(np.asarray(points, dtype=np.float64).reshape(-1, 3), yaws):
        if not np.all(np.isfinite(p)):
            continue
        cam = habitat_to_world_points(p + np.array([0.0, sensor_height, 0.0]))
        poses.append(camera_pose(cam, float(yaw), pitch))
    return poses
