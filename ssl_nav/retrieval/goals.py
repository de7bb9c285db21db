"""Navigation goal for a retrieved instance.

SimView (arXiv 2404.09647) sends the robot to the winning instance's map centroid. A robot cannot stand
inside the object, so with a simulator (anything with ``is_navigable(point) -> bool``) the goal is a free,
navigable floor point at ``standoff`` metres from the centroid, facing it: candidate bearings around the
centroid are tried in order of closeness to the robot's position (or from bearing 0 when it is unknown), at
the standoff distance and then at 1.5x, 0.5x and 2x of it; the first navigable one wins. When none is
navigable the centroid itself is returned with ``navigable: false``.

On a robot (no free-space oracle) the goal is the centroid plus a facing yaw: the bearing from the robot's
position to the centroid when it is known, else 0; the robot's local planner stops short of it.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

STANDOFF_FACTORS: tuple[float, ...] = (1.0, 1.5, 0.5, 2.0)


def goal_pose(centroid: np.ndarray, *, standoff: float = 1.0,
              is_navigable: Callable[[np.ndarray], bool] | None = None,
              robot_position: np.ndarray | None = None, n_bearings: int = 16,
              frame_id: str = "map", floor_z: float = 0.0) -> dict:
    """``{"position": [x,y,z], "yaw": rad, "frame_id", "navigable": bool|None}`` facing ``centroid``.

    With ``is_navigable`` the position lies on the floor (``floor_z``); without it the position is the
    centroid (``navigable`` is then ``None``: unknown).
    """
    c = np.asarray(centroid, dtype=np.float64).reshape(3)
    robot = None if robot_position is None else np.asarray(robot_position, dtype=np.float64).reshape(-1)[:2]
    if is_navigable is None:
        yaw = 0.0
        if robot is not None and np.linalg.norm(c[:2] - robot) > 1e-9:
            d = c[:2] - robot
            yaw = math.atan2(d[1], d[0])
        return {"position": c.tolist(), "yaw": float(yaw), "frame_id": frame_id, "navigable": None}

    start = 0.0
    if robot is not None and np.linalg.norm(robot - c[:2]) > 1e-9:
        d = robot - c[:2]
        start = math.atan2(d[1], d[0])
    steps = np.arange(n_bearings)
    # 0, +1, -1, +2, -2, ... steps away from the bearing towards the robot
    order = [0] + [s for k in range(1, n_bearings // 2 + 1) for s in (k, -k)]
    bearings = [start + 2 * math.pi * s / n_bearings for s in order[:len(steps)]]
    for factor in STANDOFF_FACTORS:
        r = standoff * factor
        for b in bearings:
            p = np.array([c[0] + r * math.cos(b), c[1] + r * math.sin(b), floor_z])
            if is_navigable(p):
                yaw = math.atan2(c[1] - p[1], c[0] - p[0])
                return {"position": p.tolist(), "yaw": float(yaw), "frame_id": frame_id, "navigable": True}
    return {"position": c.tolist(), "yaw": float(start + math.pi), "frame_id": frame_id, "navigable": False}
