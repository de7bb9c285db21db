"""``view_collector``: RGB-D + pose (+ instance mask) streams -> InstanceMap -> multi-view crops in the ViewStore.

SimView (Sakaguchi et al., IROS 2024, arXiv 2404.09647) collects multi-view crops of each instance by
ray-tracing the 3D instance map from every camera pose; this node does it online with the same
:class:`~ssl_nav.mapping.instance_map.InstanceMap` and :class:`~ssl_nav.views.collect.ViewCollector` as
``ssl-nav collect``.

Subscribes (relative names; remap them to your driver's topics):

- ``rgb`` (Image rgb8/bgr8/rgba8/mono8), ``depth`` (Image 32FC1 metres or 16UC1 with ``ros.depth_scale_16u``),
  ``camera_info`` (CameraInfo), ``camera_pose`` (PoseStamped of the camera *optical* frame in ``ros.map_frame``),
  all with sensor-data QoS;
- ``instance_mask`` (Image 32SC1/16UC1, ids stable over time or per frame: ``mapping.id_mode``);
- ``semantic_map`` (PointCloud2 with an ``instance`` field, optional): when it arrives, it replaces the map
  built from masks, and frames no longer need a mask.

rgb, depth, pose and mask are synchronised by stamp within ``ros.sync_tolerance_s``
(:class:`~ssl_nav.ros.sync.StampSynchronizer`). Complete sets go to a one-slot queue served by a worker thread
(the newest set wins when the worker is busy: counted as ``superseded``); keyframes (the ViewCollector's gate,
``views.keyframe_*``) are fused into the map and cropped.

Publishes ``~/status`` (String JSON, latched) and ``~/instances`` (MarkerArray) every ``ros.status_period_s``,
from a snapshot the worker takes after each keyframe (the timer never waits for the map).
Services ``~/save`` (write the map to DATA/map and instances.json) and ``~/clear`` (start a new map and store;
the old store is kept as ``store.cleared-<time>``).

A bad message (wrong encoding, size mismatch, NaN pose, stamp far from its arrival time) is logged with its topic
and reason and dropped; the node keeps running.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import String
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from ssl_nav.errors import SslNavError
from ssl_nav.ros import conversions as conv
from ssl_nav.ros.params import NODE_SECTIONS, declare_config
from ssl_nav.ros.runtime import SENSOR_QOS, STATUS_QOS, DataDir, json_msg, run_node
from ssl_nav.ros.sync import StampSynchronizer

NODE_NAME = "view_collector"
SYNC_TOPICS = ["rgb", "depth", "camera_pose", "instance_mask"]


class ViewCollectorNode(Node):
    """The ``view_collector`` node (see the module docstring)."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self.cfg = declare_config(self, NODE_SECTIONS[NODE_NAME])
        rc = self.cfg.ros
        self.data = DataDir(rc.data_dir)
        from ssl_nav.mapping.instance_map import InstanceMap
        from ssl_nav.views.collect import ViewCollector
        from ssl_nav.views.selection import KeyframeGate
        from ssl_nav.views.store import ViewStore

        self._InstanceMap, self._ViewCollector, self._KeyframeGate = InstanceMap, ViewCollector, KeyframeGate
        self._ViewStore = ViewStore
        self._lock = threading.RLock()  # map, collector, store
        self.store = ViewStore(self.data.store, create=True)
        self.imap = InstanceMap(self.cfg.mapping)
        self.collector = ViewCollector(self.cfg.views, self.store)
        self.map_gate = KeyframeGate(self.cfg.views.keyframe_translation, self.cfg.views.keyframe_rotation_deg)
        self.semantic_map = False
        self._take_snapshot()

        self._sim_time = bool(self.get_parameter("use_sim_time").value)
        import open3d  # noqa: F401  (imported now, not while the first frames wait)
        self.sync = StampSynchronizer(SYNC_TOPICS, rc.sync_tolerance_s, optional=())
        self._K: np.ndarray | None = None
        self._K_size: tuple[int, int] | None = None
        self.received: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.last_drops: deque[str] = deque(maxlen=10)
        self.keyframe_seconds: deque[float] = deque(maxlen=100)  # map fusion + view collection per keyframe

        self._slot: dict | None = None  # newest complete set waiting for the worker
        self._slot_cv = threading.Condition()
        self._busy = False
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="view_collector_worker", daemon=True)

        # Camera callbacks only convert and buffer; they get their own (reentrant) group so that a status timer or
        # a service waiting for the map lock never holds them up. They take (message, MessageInfo): the stamp
        # check uses the DDS receive time, not the time the callback runs.
        cam = ReentrantCallbackGroup()
        self.create_subscription(Image, "rgb", lambda m, i: self._on_image("rgb", m, i), SENSOR_QOS,
                                 callback_group=cam)
        self.create_subscription(Image, "depth", lambda m, i: self._on_image("depth", m, i), SENSOR_QOS,
                                 callback_group=cam)
        self.create_subscription(Image, "instance_mask", lambda m, i: self._on_image("instance_mask", m, i),
                                 SENSOR_QOS, callback_group=cam)
        self.create_subscription(PoseStamped, "camera_pose", self._on_pose, SENSOR_QOS, callback_group=cam)
        self.create_subscription(CameraInfo, "camera_info", self._on_info, SENSOR_QOS, callback_group=cam)
        self.create_subscription(PointCloud2, "semantic_map", self._on_semantic_map, STATUS_QOS)
        self.status_pub = self.create_publisher(String, "~/status", STATUS_QOS)
        self.markers_pub = self.create_publisher(MarkerArray, "~/instances", 1)
        self.create_service(Trigger, "~/save", self._on_save)
        self.create_service(Trigger, "~/clear", self._on_clear)
        self.create_timer(rc.status_period_s, self.publish_status)
        self._worker.start()
        self.get_logger().info(f"collecting views into {self.data.store} ({len(self.store)} views so far)")

    # ------------------------------------------------------------------ inputs
    def _drop(self, topic: str, reason: str) -> None:
        self.dropped[topic] += 1
        self.counts["dropped"] += 1
        self.last_drops.append(reason if reason.startswith(topic) else f"{topic}: {reason}")
        self.get_logger().warning(f"dropped a message on '{topic}': {reason}")

    def _check_stamp(self, topic: str, stamp: float, info: dict | None) -> bool:
        """Refuse stamps far from the time the message arrived (wall clock; the node clock under sim time)."""
        received = (info or {}).get("received_timestamp") or 0
        if received > 0 and not self._sim_time:
            now = received * 1e-9
        else:
            now = self.get_clock().now().nanoseconds * 1e-9
        skew = self.cfg.ros.max_stamp_skew_s
        if stamp <= 0.0:
            self._drop(topic, "header.stamp is zero")
            return False
        if now > 0.0 and abs(stamp - now) > skew:
            self._drop(topic, f"header.stamp {stamp:.3f} is {stamp - now:+.3f} s from its arrival time "
                              f"(more than ros.max_stamp_skew_s = {skew})")
            return False
        return True

    def _on_image(self, topic: str, msg: Image, info: dict | None = None) -> None:
        self.received[topic] += 1
        stamp = conv.stamp_to_sec(msg.header.stamp)
        try:
            if topic == "rgb":
                arr = conv.image_to_rgb(msg, topic)
            elif topic == "depth":
                arr = conv.image_to_depth(msg, topic, self.cfg.ros.depth_scale_16u)
            else:
                arr = conv.image_to_mask(msg, topic)
        except SslNavError as e:
            self._drop(topic, str(e))
            return
        if self._check_stamp(topic, stamp, info):
            self._feed(topic, stamp, arr)

    def _on_pose(self, msg: PoseStamped, info: dict) -> None:
        self.received["camera_pose"] += 1
        try:
            T = conv.pose_stamped_to_matrix(msg, "camera_pose", self.cfg.ros.map_frame)
        except SslNavError as e:
            self._drop("camera_pose", str(e))
            return
        stamp = conv.stamp_to_sec(msg.header.stamp)
        if self._check_stamp("camera_pose", stamp, info):
            self._feed("camera_pose", stamp, T)

    def _on_info(self, msg: CameraInfo) -> None:
        self.received["camera_info"] += 1
        try:
            K = conv.camera_info_to_K(msg, "camera_info")
        except SslNavError as e:
            self._drop("camera_info", str(e))
            return
        self._K, self._K_size = K, (int(msg.height), int(msg.width))

    def _on_semantic_map(self, msg: PointCloud2) -> None:
        self.received["semantic_map"] += 1
        try:
            xyz, labels = conv.cloud_to_arrays(msg, "semantic_map")
        except SslNavError as e:
            self._drop("semantic_map", str(e))
            return
        with self._lock:
            self.imap = self._InstanceMap.from_points(xyz, labels, self.cfg.mapping)
            self.semantic_map = True
            self._take_snapshot()
        self.sync.set_required("instance_mask", False)
        self.get_logger().info(f"semantic_map: {len(xyz)} points, {len(self.imap)} instances; masks now optional")

    def _feed(self, topic: str, stamp: float, item: Any) -> None:
        for s in self.sync.add(topic, stamp, item):
            self.counts["synced"] += 1
            with self._slot_cv:
                if self._slot is not None:
                    self.counts["superseded"] += 1
                self._slot = s
                self._slot_cv.notify()

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while not self._stop.is_set():
            with self._slot_cv:
                while self._slot is None and not self._stop.is_set():
                    self._slot_cv.wait(0.2)
                s, self._slot = self._slot, None
                self._busy = s is not None
            if s is None:
                continue
            try:
                self._process(s)
            except SslNavError as e:
                self._drop("rgb", f"frame unusable: {e}")
            except Exception as e:  # the node keeps running; the reason is logged
                self.counts["errors"] += 1
                self.get_logger().error(f"processing a frame failed: {type(e).__name__}: {e}")
            finally:
                with self._slot_cv:
                    self._busy = False

    def _process(self, s: dict) -> None:
        from ssl_nav.frames import Frame

        stamp, rgb = s["rgb"]
        depth = s["depth"][1]
        T = s["camera_pose"][1]
        mask = s["instance_mask"][1] if s.get("instance_mask") is not None else None
        h, w = rgb.shape[:2]
        if depth.shape != (h, w):
            self._drop("depth", f"size {depth.shape[1]}x{depth.shape[0]} does not match rgb {w}x{h}")
            return
        if mask is not None and mask.shape != (h, w):
            self._drop("instance_mask", f"size {mask.shape[1]}x{mask.shape[0]} does not match rgb {w}x{h}")
            return
        if self._K is None:  # not a bad message: the camera_info reader may match a little later
            self.counts["waiting_for_camera_info"] += 1
            return
        if self._K_size != (h, w):
            self._drop("camera_info", f"size {self._K_size[1]}x{self._K_size[0]} does not match rgb {w}x{h}")
            return
        frame = Frame(rgb=rgb, depth=depth, K=self._K, T_world_cam=T, instance_mask=mask, stamp=stamp,
                      frame_id=f"{stamp:.6f}", quality="low").validate()
        with self._lock:
            self.counts["frames"] += 1
            if not self.map_gate.accept(frame.T_world_cam):
                self.counts["not_keyframe"] += 1
                return
            t0 = time.perf_counter()
            if not self.semantic_map:
                self.imap.integrate(frame)
            t_integrate = time.perf_counter() - t0
            t0 = time.perf_counter()
            added = self.collector.process(frame, self.imap)
            self.keyframe_seconds.append(time.perf_counter() - t0 + t_integrate)
            self.counts["keyframes"] += 1
            self.counts["views_added"] += len(added)
            self._take_snapshot()  # (process() rewrites instances.json whenever it adds views)

    def idle(self) -> bool:
        """True when no complete set is waiting or being processed."""
        with self._slot_cv:
            return self._slot is None and not self._busy

    # ------------------------------------------------------------------ outputs
    def _take_snapshot(self) -> None:
        """Instances, view count and collector summary for ~/status (taken by the worker, under the lock)."""
        self._snapshot = (self.imap.to_store_instances(), len(self.store), self.collector.summary())

    def status(self) -> dict:
        instances, n_views, summary = self._snapshot
        n_inst = len(instances)
        return {"received": dict(self.received), "dropped": dict(self.dropped), "last_drops": list(self.last_drops),
                "counts": dict(self.counts), "pending": self.sync.pending(), "sync_dropped": dict(self.sync.dropped),
                "keyframe_ms_p50": round(1e3 * float(np.median(self.keyframe_seconds)), 1)
                if self.keyframe_seconds else None,
                "instances": n_inst, "views": n_views, "semantic_map": self.semantic_map,
                "store": str(self.data.store), "collector": summary}

    def publish_status(self) -> None:
        """~/status and ~/instances from the worker's last snapshot (never waits for the map lock)."""
        instances = self._snapshot[0]
        self.status_pub.publish(json_msg(self.status()))
        if self.cfg.ros.publish_markers:
            self.markers_pub.publish(conv.instance_markers(instances, self.cfg.ros.map_frame,
                                                           self.get_clock().now().to_msg()))

    def save(self) -> str:
        """Write the map (DATA/map) and the store's instances.json; returns a one-line summary."""
        with self._lock:
            instances = self.imap.to_store_instances()
            self.store.set_instances({**self.store.instances(), **instances})
            self.imap.save(self.data.map)
            self._take_snapshot()
            return f"saved {len(instances)} instances and {len(self.store)} views to {self.data.root}"

    def clear(self) -> str:
        with self._lock:
            old = None
            if len(self.store) or self.store.instances():
                old = self.data.root / f"store.cleared-{time.strftime('%Y%m%d-%H%M%S')}"
                Path(self.data.store).rename(old)
            self.store = self._ViewStore(self.data.store, create=True)
            self.imap = self._InstanceMap(self.cfg.mapping)
            self.collector = self._ViewCollector(self.cfg.views, self.store)
            self.map_gate.reset()
            self.semantic_map = False
            self._take_snapshot()
        self.sync.clear()
        self.sync.set_required("instance_mask", True)
        return "cleared the map and started a new store" + (f" (old store kept at {old})" if old else "")

    def _on_save(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        try:
            response.message, response.success = self.save(), True
        except (SslNavError, OSError) as e:
            response.message, response.success = f"save failed: {e}", False
        return response

    def _on_clear(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        try:
            response.message, response.success = self.clear(), True
        except (SslNavError, OSError) as e:
            response.message, response.success = f"clear failed: {e}", False
        return response

    def close(self) -> None:
        self._stop.set()
        with self._slot_cv:
            self._slot_cv.notify_all()
        self._worker.join(timeout=5)


def main(args: list[str] | None = None) -> int:
    return run_node(ViewCollectorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
