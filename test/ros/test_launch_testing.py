"""A real ``launch_testing`` run of launch/sim_demo.launch.py: the nodes start and views get collected.

launch, launch_ros and launch_testing come with a ROS 2 installation (``ros-<distro>-launch-testing-ros``); they
are not pip-installable, so this test skips where they are missing (for example in the pip-only venv) and runs
under colcon (``colcon test``) or ``pytest`` in a sourced ROS 2 workspace.
"""

import json
import os
import tempfile
import time
import unittest
from pathlib import Path

import pytest

launch = pytest.importorskip("launch", reason="launch is not installed (it comes with ROS 2, not pip)")
launch_ros = pytest.importorskip("launch_ros", reason="launch_ros is not installed (it comes with ROS 2, not pip)")
launch_testing = pytest.importorskip("launch_testing",
                                     reason="launch_testing is not installed (it comes with ROS 2, not pip)")

import launch_testing.actions  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

pytestmark = pytest.mark.slow  # the slow tier (launch files under launch_testing): `make test-fast` skips it

REPO = Path(__file__).resolve().parents[2]
TINY = """
/**:
  ros__parameters:
    ros: {{data_dir: "{data}", sim_rate_hz: 10.0, status_period_s: 0.5}}
sim_bridge:
  ros__parameters:
    sim: {{width: 64, height: 48, n_objects_min: 3, n_objects_max: 4, n_twins: 0, n_distractors: 0,
          n_explore_positions: 1, n_turn_steps: 6}}
view_collector:
  ros__parameters:
    views: {{crop_size: 32, min_box_px: 4, min_visible_points: 5, keyframe_translation: 0.0}}
    mapping: {{voxel_size: 0.05, min_points: 5}}
"""


@pytest.mark.launch_test
def generate_test_description():
    data = tempfile.mkdtemp(prefix="ssl_nav_launch_")
    params = Path(data) / "params.yaml"
    params.write_text(TINY.format(data=data))
    demo = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(REPO / "launch" / "sim_demo.launch.py")),
        launch_arguments={"params_file": str(params), "namespace": "lt", "sim_loop": "false"}.items())
    return launch.LaunchDescription([demo, launch_testing.actions.ReadyToTest()]), {"data": data}


class TestSimDemo(unittest.TestCase):
    def test_views_are_collected(self, proc_output, data):
        import rclpy
        from std_msgs.msg import String

        from ssl_nav.ros.runtime import STATUS_QOS

        rclpy.init()
        node = rclpy.create_node("launch_test_probe")
        got = []
        node.create_subscription(String, "/lt/view_collector/status", lambda m: got.append(json.loads(m.data)),
                                 STATUS_QOS)
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline and not (got and got[-1]["views"] > 0):
                rclpy.spin_once(node, timeout_sec=0.2)
        finally:
            node.destroy_node()
            rclpy.shutdown()
        self.assertTrue(got and got[-1]["views"] > 0, f"no views collected; status: {got[-1:] }")
        self.assertTrue(os.path.isdir(os.path.join(data, "store")))
