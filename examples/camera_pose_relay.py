#!/usr/bin/env python3
"""Relay TF into the ``camera_pose`` topic that ssl_nav's ``view_collector`` subscribes to.

``view_collector`` wants the pose of the camera *optical* frame (OpenCV: x right, y down, z forward) in the map
frame, stamped like each colour image. Any localiser that keeps ``map -> ... -> <camera optical frame>`` in TF
provides it: slam_toolbox or Cartographer for ``map -> odom``, wheel or visual odometry (robot_localization's
``/odometry/filtered``) for ``odom -> base_link``, and robot_state_publisher for the camera mount.

This node is not installed with ssl_nav because ``tf2_ros`` has no pip wheel; it needs a sourced ROS 2::

    source /opt/ros/$ROS_DISTRO/setup.bash
    python3 examples/camera_pose_relay.py --ros-args \\
        -r image:=/camera/camera/color/image_raw -r camera_pose:=/robot1/camera_pose -p map_frame:=map

Parameters: ``map_frame`` (default ``map``), ``timeout_s`` (TF wait per image, default 0.05).
"""

from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from geometry_msgs.msg import PoseStamped
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import Image
from tf2_ros import Buffer, TransformException, TransformListener


class CameraPoseRelay(Node):
    """Publish ``map_frame -> image.header.frame_id`` at each image's stamp as a PoseStamped."""

    def __init__(self) -> None:
        super().__init__("camera_pose_relay")
        self.map_frame = self.declare_parameter("map_frame", "map").value
        self.timeout = Duration(seconds=float(self.declare_parameter("timeout_s", 0.05).value))
        self.buffer = Buffer()
        self.listener = TransformListener(self.buffer, self)
        self.pub = self.create_publisher(PoseStamped, "camera_pose", qos_profile_sensor_data)
        self.create_subscription(Image, "image", self.on_image, qos_profile_sensor_data)

    def on_image(self, img: Image) -> None:
        try:
            t = self.buffer.lookup_transform(self.map_frame, img.header.frame_id, Time.from_msg(img.header.stamp),
                                             timeout=self.timeout)
        except TransformException as e:  # not localised yet, extrapolation into the future, ...
            self.get_logger().warning(f"no pose for image at {img.header.stamp.sec}.{img.header.stamp.nanosec:09d}: {e}",
                                      throttle_duration_sec=5.0)
            return
        pose = PoseStamped()
        pose.header.stamp = img.header.stamp
        pose.header.frame_id = self.map_frame
        tr = t.transform.translation
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = tr.x, tr.y, tr.z
        pose.pose.orientation = t.transform.rotation
        self.pub.publish(pose)


def main(argv: list[str] | None = None) -> int:
    rclpy.init(args=argv)
    node = CameraPoseRelay()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
