"""``sim_bridge``: the embedded pybullet simulator as an RGB-D camera driver plus a pose source.

Loads the scene ``sim.seed`` (:class:`ssl_nav.sim.pybullet_backend.PyBulletSimulator`), walks the exploration
trajectory of ``ssl-nav simulate`` (:func:`ssl_nav.sim.explore.exploration_poses`) and publishes, at
``ros.sim_rate_hz``, what a RealSense-style driver plus a localiser would publish (sensor-data QoS):

====================================================  ===============================================
topic                                                 message
====================================================  ===============================================
``camera/color/image_raw``                            Image rgb8 (low-quality robot frames: blur, noise)
``camera/aligned_depth_to_color/image_raw``           Image 32FC1, metres (0 = invalid)
``camera/color/camera_info``                          CameraInfo (pinhole, no distortion)
``camera/instance_mask``                              Image 32SC1, simulator instance ids (0 = none);
                                                      only with ``ros.sim_publish_masks`` (default true)
``camera/pose``                                       PoseStamped, optical frame in ``ros.map_frame``
====================================================  ===============================================

Images carry ``header.frame_id = camera_color_optical_frame`` and the same stamp (the node clock once
rendered, just before publishing). Remap them onto ``view_collector``'s ``rgb``, ``depth``, ``camera_info``,
``instance_mask`` and ``camera_pose`` (the launch files and ``ssl-nav ros-stack`` do). ``~/status`` (String JSON,
latched) reports ``published`` / ``total`` / ``done`` / ``masks``. With ``ros.sim_loop`` the trajectory repeats.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from ssl_nav.ros import conversions as conv
from ssl_nav.ros.params import NODE_SECTIONS, declare_config
from ssl_nav.ros.runtime import SENSOR_QOS, STATUS_QOS, json_msg, run_node

NODE_NAME = "sim_bridge"
OPTICAL_FRAME = "camera_color_optical_frame"

#: sim_bridge topic -> view_collector topic (the remaps of the launch files and the stack)
TOPICS: dict[str, str] = {
    "rgb": "camera/color/image_raw",
    "depth": "camera/aligned_depth_to_color/image_raw",
    "camera_info": "camera/color/camera_info",
    "instance_mask": "camera/instance_mask",
    "camera_pose": "camera/pose",
}


class SimBridgeNode(Node):
    """The ``sim_bridge`` node (see the module docstring)."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self.cfg = declare_config(self, NODE_SECTIONS[NODE_NAME])
        from ssl_nav.sim.explore import exploration_poses
        from ssl_nav.sim.pybullet_backend import PyBulletSimulator

        sc = self.cfg.sim
        self.sim = PyBulletSimulator(sc)
        self.sim.load_scene(sc.seed)
        self.poses: list[np.ndarray] = exploration_poses(self.sim, sc, np.random.default_rng(sc.seed))
        self.pubs = {
            "rgb": self.create_publisher(Image, TOPICS["rgb"], SENSOR_QOS),
            "depth": self.create_publisher(Image, TOPICS["depth"], SENSOR_QOS),
            "camera_info": self.create_publisher(CameraInfo, TOPICS["camera_info"], SENSOR_QOS),
            "camera_pose": self.create_publisher(PoseStamped, TOPICS["camera_pose"], SENSOR_QOS),
        }
        if self.cfg.ros.sim_publish_masks:
            self.pubs["instance_mask"] = self.create_publisher(Image, TOPICS["instance_mask"], SENSOR_QOS)
        self.status_pub = self.create_publisher(String, "~/status", STATUS_QOS)
        self.published = 0
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim_bridge_render", daemon=True)
        # start once the executor spins (a timer fires only then), so that receivers process frames on time
        self._start_timer = self.create_timer(0.05, self._start_once)
        self.get_logger().info(f"scene {self.sim.scene_id}: {len(self.sim.objects())} objects, "
                               f"{len(self.poses)} poses at {self.cfg.ros.sim_rate_hz} Hz")

    def objects(self) -> list:
        return self.sim.objects()

    def publish_frame(self, T_world_cam: np.ndarray) -> None:
        """Render at one pose and publish every stream with one stamp.

        The stamp is taken once the frame is rendered and its messages are built, just before they go out: a
        render can take most of a second under load (the first one builds pybullet's renderer), and a stamp
        taken before it would reach the receivers that much late (``ros.max_stamp_skew_s``).
        """
        frame = self.sim.render(T_world_cam, quality="low", frame_id=f"{self.published:06d}")
        h, w = frame.rgb.shape[:2]
        msgs = [("camera_info", conv.K_to_camera_info(frame.K, w, h, OPTICAL_FRAME)),
                ("camera_pose", conv.matrix_to_pose_stamped(frame.T_world_cam, self.cfg.ros.map_frame)),
                ("depth", conv.numpy_to_image(frame.depth.astype(np.float32), "32FC1", OPTICAL_FRAME))]
        if frame.instance_mask is not None and "instance_mask" in self.pubs:
            msgs.append(("instance_mask",
                         conv.numpy_to_image(frame.instance_mask.astype(np.int32), "32SC1", OPTICAL_FRAME)))
        msgs.append(("rgb", conv.numpy_to_image(frame.rgb, "rgb8", OPTICAL_FRAME)))  # last: completes the set
        stamp = self.get_clock().now().to_msg()
        for topic, msg in msgs:
            msg.header.stamp = stamp
            self.pubs[topic].publish(msg)
        self.published += 1

    def _status(self) -> None:
        self.status_pub.publish(json_msg({"published": self.published, "total": len(self.poses),
                                          "done": self.done.is_set(), "scene_id": self.sim.scene_id,
                                          "masks": "instance_mask" in self.pubs}))

    def _start_once(self) -> None:
        self._start_timer.cancel()
        if not self._thread.is_alive() and not self.done.is_set():
            self._thread.start()

    def _run(self) -> None:
        period = 1.0 / self.cfg.ros.sim_rate_hz
        # wait (up to 5 s) for a receiver of every stream, so that the first frames are not lost
        end = time.monotonic() + 5.0
        while time.monotonic() < end and not self._stop.is_set():
            if all(p.get_subscription_count() > 0 for p in self.pubs.values()):
                break
            self._stop.wait(0.05)
        self._stop.wait(0.2)
        self.sim.render(self.poses[0], quality="low")  # warm-up: the first render builds pybullet's renderer
        next_t = time.monotonic()
        while not self._stop.is_set():
            for T in self.poses:
                if self._stop.is_set():
                    return
                try:
                    self.publish_frame(T)
                except Exception as e:  # keep the node alive; say why
                    self.get_logger().error(f"rendering a frame failed: {type(e).__name__}: {e}")
                if self.published % 10 == 0:
                    self._status()
                next_t += period
                self._stop.wait(max(0.0, next_t - time.monotonic()))
            if not self.cfg.ros.sim_loop:
                break
        self.done.set()
        self._status()
        self.get_logger().info(f"trajectory done: {self.published} frames published")

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.sim.close()


def main(args: list[str] | None = None) -> int:
    return run_node(SimBridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
