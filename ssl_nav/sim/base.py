"""The Simulator protocol shared by the embedded pybullet backend and the Habitat backend.

A simulator loads a scene, lists its :class:`SceneObject`s, renders a
:class:`~ssl_nav.frames.Frame` at a camera pose, and samples navigable poses.
World frame: z up, metres. Camera poses are OpenCV ``T_world_cam``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from ssl_nav.frames import Frame


@dataclass
class SceneObject:
    """One object instance of a scene: its stable id (equal to the mask value), category and 3D box."""

    instance_id: int
    category: str
    aabb_min: np.ndarray  #: (3,) world
    aabb_max: np.ndarray  #: (3,) world
    extra: dict = field(default_factory=dict)

    @property
    def centroid(self) -> np.ndarray:
        return (np.asarray(self.aabb_min) + np.asarray(self.aabb_max)) / 2.0

    def to_json(self) -> dict:
        return {"instance_id": int(self.instance_id), "category": self.category,
                "aabb": [np.asarray(self.aabb_min).tolist(), np.asarray(self.aabb_max).tolist()],
                "centroid": self.centroid.tolist(), **self.extra}


@dataclass
class Episode:
    """An instance-image-goal episode: a goal instance (``None`` = not in the map) seen from a goal camera."""

    episode_id: str
    scene_id: str
    goal_instance_id: int | None
    goal_T_world_cam: np.ndarray  #: 4x4 OpenCV pose of the goal camera
    category: str | None = None
    hfov_deg: float | None = None
    width: int | None = None
    height: int | None = None
    start_T_world_cam: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


@runtime_checkable
class Simulator(Protocol):
    """What every simulator backend provides."""

    scene_id: str

    def load_scene(self, scene: str | int) -> None:
        """Load a scene (a seed for the embedded backend, a scene id/path for Habitat)."""

    def objects(self) -> list[SceneObject]:
        """Object instances of the loaded scene; ``instance_id`` equals the value in rendered instance masks."""

    def render(self, T_world_cam: np.ndarray, quality: str = "low", frame_id: str = "", stamp: float = 0.0) -> Frame:
        """Render RGB, metric depth and instance mask at an OpenCV camera pose; LQ frames carry blur and noise."""

    def render_goal(self, episode: Episode) -> Frame:
        """The episode's goal image: a sharp (HQ) frame at its goal camera, with its hfov and size when given."""

    def sample_navigable_poses(self, n: int, rng: np.random.Generator) -> list[np.ndarray]:
        """``n`` camera poses at navigable floor points, at the configured camera height."""

    def is_navigable(self, point: np.ndarray) -> bool:
        """Whether a robot can stand at this world point (z ignored)."""

    def close(self) -> None:
        """Release the backend."""
