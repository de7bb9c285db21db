"""Goal poses: navigable standoff point facing the centroid, or the centroid with a facing yaw."""

import math

import numpy as np
import pytest

from ssl_nav.retrieval.goals import goal_pose


def test_goal_is_free_at_standoff_and_faces_the_centroid():
    centroid = np.array([2.0, 0.0, 0.8])
    wall_x = 2.5  # free space is x < 2.5, and not inside the object's 0.4 m disk

    def nav(p):
        return p[0] < wall_x and np.hypot(p[0] - 2.0, p[1]) > 0.4

    g = goal_pose(centroid, standoff=1.0, is_navigable=nav, robot_position=np.array([0.0, 0.0, 0.0]))
    p = np.array(g["position"])
    assert g["navigable"] is True and nav(p)
    assert np.hypot(*(p[:2] - centroid[:2])) == pytest.approx(1.0)
    assert p[0] == pytest.approx(1.0) and p[1] == pytest.approx(0.0)  # the bearing towards the robot
    assert g["yaw"] == pytest.approx(math.atan2(centroid[1] - p[1], centroid[0] - p[0]))
    # robot behind the wall: the closest free bearing is chosen, still facing the centroid
    g = goal_pose(centroid, standoff=1.0, is_navigable=nav, robot_position=np.array([5.0, 0.1, 0.0]))
    p = np.array(g["position"])
    assert nav(p) and np.hypot(*(p[:2] - centroid[:2])) == pytest.approx(1.0)
    d = centroid[:2] - p[:2]
    assert math.cos(g["yaw"]) * d[0] + math.sin(g["yaw"]) * d[1] == pytest.approx(np.linalg.norm(d))


def test_no_free_point_falls_back_to_centroid():
    g = goal_pose(np.array([1.0, 1.0, 0.5]), standoff=1.0, is_navigable=lambda p: False)
    assert g["navigable"] is False and g["position"] == [1.0, 1.0, 0.5]


def test_robot_goal_is_centroid_with_facing_yaw():
    g = goal_pose(np.array([1.0, 1.0, 0.5]), robot_position=np.array([0.0, 0.0]))
    assert g["position"] == [1.0, 1.0, 0.5] and g["navigable"] is None
    assert g["yaw"] == pytest.approx(math.pi / 4)
    assert goal_pose(np.array([1.0, 1.0, 0.5]))["yaw"] == 0.0
