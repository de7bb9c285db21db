"""The Habitat backend: :class:`HabitatSimulator` implements :class:`ssl_nav.sim.base.Simulator` with habitat_sim.

Built in two steps (see :mod:`ssl_nav.sim.habitat_spec`): our config becomes a plain
:class:`~ssl_nav.sim.habitat_spec.HabitatSpec`, and :func:`make_habitat_config` turns that into
``habitat_sim`` objects. That function and the thin methods below are the only code that touches
``habitat_sim``, which is imported lazily (:func:`import_habitat_sim`), so ``import ssl_nav`` and every
other command work without it. Everything these methods compute (poses, depth resampling, instance ids,
objects, episodes) is done by the tested pure functions of :mod:`ssl_nav.sim.habitat_spec` and
:mod:`ssl_nav.sim.episodes`.

Sensors follow habitat-lab's InstanceImageNav HM3D v2 benchmark (RGB 360x640 at hfov 42, depth at hfov 58
over 0.5-5 m, sensors at 1.31 m, agent radius 0.17 m). Goal images are rendered like habitat-lab's
``InstanceImageGoalSensor``: a temporary camera with the episode's ``hfov`` and ``image_dimensions`` placed
at its goal-camera pose.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from ssl_nav.config import SimConfig
from ssl_nav.errors import DependencyError, SslNavError
from ssl_nav.frames import Frame
from ssl_nav.sim.base import Episode, SceneObject
from ssl_nav.sim.degrade import degrade
from ssl_nav.sim.episodes import bind_goal_instances, resolve_scene_path, user_photo_cameras
from ssl_nav.sim.habitat_spec import (
    INSTALL_HINT, SENSOR_DEPTH, SENSOR_GOAL, SENSOR_RGB, SENSOR_SEMANTIC, CameraSpec, HabitatAgentPose, HabitatSpec,
    SemanticInstanceMap, agent_pose_for_camera, camera_poses_at_navigable_points, frame_from_observations,
    goal_camera_spec, habitat_spec_from_config, records_from_semantic_objects, world_to_habitat_points,
)


def habitat_available() -> bool:
    """Whether ``habitat_sim`` can be imported (without importing it twice)."""
    if "habitat_sim" in sys.modules:
        return True
    import importlib.util

    try:
        return importlib.util.find_spec("habitat_sim") is not None
    except (ImportError, ValueError):
        return False


def import_habitat_sim() -> Any:
    """``import habitat_sim``, or a :class:`DependencyError` with install instructions."""
    try:
        import habitat_sim  # noqa: PLC0415  (lazy on purpose: optional dependency)
    except ImportError as e:
        raise DependencyError(INSTALL_HINT.format(python=sys.version.split()[0]) + f"\n(import error: {e})") from None
    return habitat_sim


def make_camera_sensor_spec(cam: CameraSpec) -> Any:
    """A ``habitat_sim.CameraSensorSpec`` from a :class:`CameraSpec`."""
    habitat_sim = import_habitat_sim()
    kinds = {"color": habitat_sim.SensorType.COLOR, "depth": habitat_sim.SensorType.DEPTH,
             "semantic": habitat_sim.SensorType.SEMANTIC}
    spec = habitat_sim.CameraSensorSpec()
    spec.uuid = cam.uuid
    spec.sensor_type = kinds[cam.kind]
    spec.sensor_subtype = habitat_sim.SensorSubType.PINHOLE
    spec.resolution = cam.resolution
    spec.hfov = float(cam.hfov_deg)
    spec.position = list(cam.position)
    if cam.kind != "color":
        spec.channels = 1
    return spec


def make_habitat_config(spec: HabitatSpec) -> Any:
    """The ``habitat_sim.Configuration`` of a :class:`HabitatSpec` (the only step that needs habitat_sim)."""
    habitat_sim = import_habitat_sim()
    sim_cfg = habitat_sim.SimulatorConfiguration()
    sim_cfg.scene_dataset_config_file = spec.simulator.scene_dataset_config
    sim_cfg.scene_id = spec.simulator.scene_id
    sim_cfg.gpu_device_id = spec.simulator.gpu_device_id
    sim_cfg.random_seed = spec.simulator.random_seed
    sim_cfg.enable_physics = spec.simulator.enable_physics
    sim_cfg.load_semantic_mesh = spec.simulator.load_semantic_mesh
    agent_cfg = habitat_sim.agent.AgentConfiguration()
    agent_cfg.height = spec.agent.height
    agent_cfg.radius = spec.agent.radius
    agent_cfg.sensor_specifications = [make_camera_sensor_spec(c) for c in spec.agent.sensors]
    # a navmesh for this agent's cylinder (habitat_sim.utils.settings.make_cfg does the same)
    nav = habitat_sim.nav.NavMeshSettings()
    nav.set_defaults()
    nav.agent_radius = spec.agent.radius
    nav.agent_height = spec.agent.height
    sim_cfg.navmesh_settings = nav
    return habitat_sim.Configuration(sim_cfg, [agent_cfg])


class HabitatSimulator:
    """:class:`~ssl_nav.sim.base.Simulator` on habitat_sim (HM3D scenes through a scene dataset config)."""

    backend_name = "habitat"

    def __init__(self, cfg: SimConfig, scene_dataset_config: str = "default"):
        self.cfg = cfg
        self.scene_dataset_config = scene_dataset_config
        self.scene_id = ""
        self.spec: HabitatSpec | None = None
        self.instances: SemanticInstanceMap | None = None
        self._sim: Any = None
        self._floor_heights: list[float] = []
        self._lq_rng = np.random.default_rng(cfg.seed)
        import_habitat_sim()  # fail early, with the install hint

    # ---------------------------------------------------------------- scenes
    def load_scene(self, scene: str | int) -> None:
        """Load a scene: an episode ``scene_id`` (resolved against ``sim.habitat_scenes_dir``), a path, or a name
        known to the scene dataset config."""
        habitat_sim = import_habitat_sim()
        scene = str(scene)
        path = resolve_scene_path(scene, self.cfg.habitat_scenes_dir)
        spec = habitat_spec_from_config(self.cfg, path if os.path.exists(path) else scene, self.scene_dataset_config)
        conf = make_habitat_config(spec)
        if self._sim is None:
            self._sim = habitat_sim.Simulator(conf)
        else:
            self._sim.reconfigure(conf)
        self.spec, self.scene_id = spec, scene
        self.instances = SemanticInstanceMap(records_from_semantic_objects(self._sim.semantic_scene.objects),
                                            spec.ignore_categories)
        if not self._sim.pathfinder.is_loaded:
            raise SslNavError(f"habitat scene {scene}: no navmesh loaded or built")
        self._sim.pathfinder.seed(int(self.cfg.seed))
        self._floor_heights = []

    def _need_scene(self) -> tuple[Any, HabitatSpec, SemanticInstanceMap]:
        if self._sim is None or self.spec is None or self.instances is None:
            raise SslNavError("habitat: no scene loaded (call load_scene first)")
        return self._sim, self.spec, self.instances

    def objects(self) -> list[SceneObject]:
        return list(self._need_scene()[2].objects)

    def bind_episodes(self, episodes: list[Episode]) -> list[Episode]:
        """The loaded scene's episodes with ``goal_instance_id`` resolved from their ``goal_object_id``."""
        return bind_goal_instances(episodes, self._need_scene()[2].instance_for_goal_object)

    # ---------------------------------------------------------------- rendering
    def _set_sensor_poses(self, pose: HabitatAgentPose, uuids: list[str]) -> None:
        habitat_sim = import_habitat_sim()
        from habitat_sim.utils.common import quat_from_coeffs

        q = quat_from_coeffs(pose.sensor_rotation)
        states = {u: habitat_sim.SixDOFPose(position=pose.sensor_position.astype(np.float32), rotation=q)
                  for u in uuids}
        state = habitat_sim.AgentState(position=pose.position.astype(np.float32),
                                       rotation=quat_from_coeffs(pose.rotation), sensor_states=states)
        self._sim.get_agent(0).set_state(state, infer_sensor_states=False)

    def _frame(self, obs: dict, rgb_spec: CameraSpec, depth_spec: CameraSpec, T_world_cam: np.ndarray,
               quality: str, frame_id: str, stamp: float, uuids: tuple[str, str, str]) -> Frame:
        _, _, inst = self._need_scene()
        frame = frame_from_observations(obs, uuids, rgb_spec, depth_spec, inst, T_world_cam,
                                        min_depth=self.cfg.habitat_min_depth, max_depth=self.cfg.habitat_max_depth,
                                        frame_id=frame_id, stamp=stamp,
                                        extra={"scene_id": self.scene_id, "backend": "habitat"})
        if quality == "low":  # the same LQ model as the embedded simulator (CrossIA robot frames)
            frame.rgb, d = degrade(frame.rgb, self.cfg, self._lq_rng)
            frame.quality = "low"
            frame.extra["degradation"] = d.to_json()
        return frame

    def render(self, T_world_cam: np.ndarray, quality: str = "low", frame_id: str = "", stamp: float = 0.0) -> Frame:
        sim, spec, _ = self._need_scene()
        uuids = (SENSOR_RGB, SENSOR_DEPTH, SENSOR_SEMANTIC)
        self._set_sensor_poses(agent_pose_for_camera(T_world_cam, spec.agent.sensor_height), list(uuids))
        obs = sim.get_sensor_observations()
        return self._frame(obs, spec.agent.sensor(SENSOR_RGB), spec.agent.sensor(SENSOR_DEPTH), T_world_cam,
                           quality, frame_id, stamp, uuids)

    def render_goal(self, episode: Episode) -> Frame:
        """The episode's goal image, like habitat-lab's ``InstanceImageGoalSensor``: temporary sensors with the
        goal's hfov and image dimensions at the goal-camera pose (plus aligned depth and semantic ones)."""
        return self.render_camera(episode.goal_T_world_cam, episode.width, episode.height, episode.hfov_deg,
                                  frame_id=f"goal_{episode.episode_id}")

    def render_camera(self, T_world_cam: np.ndarray, width: int | None, height: int | None,
                      hfov_deg: float | None, frame_id: str = "") -> Frame:
        """A sharp (HQ) frame from a temporary camera of its own size and hfov (defaults: the RGB sensor's)."""
        sim, spec, _ = self._need_scene()
        rgb = goal_camera_spec(width, height, hfov_deg, spec.agent.sensor(SENSOR_RGB))
        cams = [rgb,
                CameraSpec(SENSOR_GOAL + "_depth", "depth", rgb.width, rgb.height, rgb.hfov_deg, rgb.position),
                CameraSpec(SENSOR_GOAL + "_semantic", "semantic", rgb.width, rgb.height, rgb.hfov_deg, rgb.position)]
        uuids = tuple(c.uuid for c in cams)
        added = []
        try:
            for c in cams:
                sim.add_sensor(make_camera_sensor_spec(c))
                added.append(c.uuid)
            self._set_sensor_poses(agent_pose_for_camera(T_world_cam, spec.agent.sensor_height), list(uuids))
            obs = {u: _draw_sensor(sim, u) for u in uuids}
        finally:
            for u in added:
                _remove_sensor(sim, u)
        return self._frame(obs, rgb, cams[1], T_world_cam, "high", frame_id, 0.0, uuids)

    def user_photos_from_image_goals(self, episodes: list[Episode], n_per_instance: int) -> dict[int, list[Frame]]:
        """HQ "user photos" (CrossIA) of the goal instances: their other goal-image cameras, never a query's."""
        photos: dict[int, list[Frame]] = {}
        for iid, cams in user_photo_cameras(episodes, n_per_instance).items():
            photos[iid] = [self.render_camera(c["T_world_cam"], c["width"], c["height"], c["hfov_deg"],
                                              frame_id=f"photo_{iid}_{k}") for k, c in enumerate(cams)]
        return photos

    # ---------------------------------------------------------------- navigation
    def sample_navigable_poses(self, n: int, rng: np.random.Generator) -> list[np.ndarray]:
        sim, spec, _ = self._need_scene()
        sim.pathfinder.seed(int(rng.integers(0, 2**31 - 1)))
        points = np.array([np.asarray(sim.pathfinder.get_random_navigable_point(), dtype=np.float64)
                           for _ in range(n)]).reshape(-1, 3)
        for p in points[np.all(np.isfinite(points), axis=1)]:
            self._note_floor(float(p[1]))
        return camera_poses_at_navigable_points(points, rng.uniform(-np.pi, np.pi, size=len(points)),
                                                spec.agent.sensor_height)

    def _note_floor(self, y: float) -> None:
        if all(abs(y - f) > 0.5 for f in self._floor_heights):
            self._floor_heights.append(y)

    def is_navigable(self, point: np.ndarray) -> bool:
        """Whether the navmesh has the point's (x, y) on a floor seen so far (z is ignored)."""
        sim, _, _ = self._need_scene()
        floors = self._floor_heights or [float(sim.pathfinder.get_bounds()[0][1])]
        for fy in floors:
            h = world_to_habitat_points(np.array([point[0], point[1], 0.0]))
            h[1] = fy
            if sim.pathfinder.is_navigable(h.astype(np.float32)):
                return True
        return False

    def close(self) -> None:
        if self._sim is not None:
            self._sim.close()
            self._sim = None


def _draw_sensor(sim: Any, uuid: str) -> np.ndarray:
    """Render one sensor (current habitat_sim: ``get_sensor``; 0.3.x: the ``_sensors`` registry)."""
    sensor = sim.get_sensor(uuid) if hasattr(sim, "get_sensor") else sim._sensors[uuid]
    sensor.draw_observation()
    return np.asarray(sensor.get_observation())


def _remove_sensor(sim: Any, uuid: str) -> None:
    """Remove a temporary sensor (current habitat_sim: ``remove_sensor``; 0.3.x: as habitat-lab 0.3 did)."""
    if hasattr(sim, "remove_sensor"):
        sim.remove_sensor(uuid)
        return
    import habitat_sim

    agent = sim.get_agent(0)
    del sim._sensors[uuid]
    habitat_sim.SensorFactory.delete_subtree_sensor(agent.scene_node, uuid)
    del agent._sensors[uuid]
    agent.agent_config.sensor_specifications = [s for s in agent.agent_config.sensor_specifications
                                                if s.uuid != uuid]
