"""``view_collector``: RGB-D + pose (+ instance mask) streams -> InstanceMap -> multi-view crops in the ViewStore.

SimView (Sakaguchi et al., IROS 2024, arXiv 2404.09647) collects multi-view crops of each instance by
ray-tracing the 3D instance map from every camera pose; this node does it online with the same
:class:`~ssl_nav.mapping.builder.MapBuilder` and :class:`~ssl_nav.views.collect.ViewCollector` as
``ssl-nav collect``.

Subscribes (relative names; remap them to your driver's topics):

- ``rgb`` (Image rgb8/bgr8/rgba8/mono8), ``depth`` (Image 32FC1 metres or 16UC1 with ``ros.depth_scale_16u``),
  ``camera_info`` (CameraInfo), ``camera_pose`` (PoseStamped of the camera *optical* frame in ``ros.map_frame``),
  all with sensor-data QoS;
- ``instance_mask`` (Image 32SC1/16UC1, optional; ids stable over time or per frame: ``mapping.id_mode``);
- ``semantic_map`` (PointCloud2 with an ``instance`` field, optional, latched QoS): it becomes the map.

Where the map instances come from (``mapping.segmenter``, :mod:`ssl_nav.mapping.builder`):

- ``masks``: the ``instance_mask`` stream (every frame needs one);
- ``geometric``: 3D segmentation of the fused depth (:class:`~ssl_nav.mapping.segment.GeometricSegmenter`),
  no masks, no weights: what a robot with only an RGB-D camera and a pose uses;
- ``semantic_map``: the ``semantic_map`` topic (or the file ``mapping.semantic_map``); frames only give views;
- ``auto`` (default): ``masks`` as soon as an ``instance_mask`` message arrives; ``geometric`` when none has
  arrived ``ros.mask_wait_s`` after the first rgb frame; ``semantic_map`` whenever that topic delivers a map.
  The choice holds until ``~/clear``. ``~/status`` names the segmenter and why.

The path of a frame, cheapest work first:

1. the callbacks convert each message (a bad one is logged with its topic and reason, counted, dropped) and
   buffer it in :class:`~ssl_nav.ros.sync.StampSynchronizer`, which matches rgb, depth, pose (and mask) by
   stamp within ``ros.sync_tolerance_s``; an rgb frame unmatched after ``ros.sync_window_s`` is a ``sync`` drop;
2. the keyframe gate (``views.keyframe_translation`` / ``views.keyframe_rotation_deg``) looks at the set's pose:
   a frame too close to the last keyframe is dropped there (``not_keyframe``: by design), before any heavy work;
3. keyframes wait in a bounded queue (``ros.keyframe_queue``; when full the oldest goes: ``queue_overflow``)
   for the fusion worker, which fuses them into the map; a views worker then cuts their crops and writes the
   store (PNG encoding and fsync release the GIL, so it runs next to the fusion of the following keyframes);
   a keyframe's writes are one :meth:`~ssl_nav.views.store.ViewStore.batch` (its PNGs in parallel, then its
   ``views.jsonl`` lines with one fsync and ``instances.json`` once).
   The views worker's own queue is bounded too; when it is full the fusion worker waits, so that every loss
   is counted at the first queue.

Every rgb frame that arrives ends in exactly one place: a keyframe, or a drop by cause (``not_keyframe``,
``queue_overflow``, ``sync``, ``bad_message``, ``no_camera_info``, ``no_map_yet``), reported in ``~/status``.

Publishes ``~/status`` (String JSON, latched) and ``~/instances`` (MarkerArray) every ``ros.status_period_s``,
from a snapshot the worker takes after each keyframe (the timer never waits for the map).
Services ``~/save`` (write the map to DATA/store/map and instances.json) and ``~/clear`` (start a new map and store;
the old store is kept as ``store.cleared-<time>``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any, Callable

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import String
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from ssl_nav.errors import SslNavError, StoreError
from ssl_nav.ros import conversions as conv
from ssl_nav.ros.params import NODE_SECTIONS, declare_config
from ssl_nav.ros.runtime import SENSOR_QOS, STATUS_QOS, DataDir, json_msg, run_node
from ssl_nav.ros.sync import StampSynchronizer

NODE_NAME = "view_collector"
SYNC_TOPICS = ["rgb", "depth", "camera_pose", "instance_mask"]
#: why an rgb frame did not become a keyframe (``~/status`` "drops"); only ``not_keyframe`` is by design
DROP_CAUSES = ("not_keyframe", "queue_overflow", "sync", "bad_message", "no_camera_info", "no_map_yet")
UNDECIDED = "undecided"


class ViewCollectorNode(Node):
    """The ``view_collector`` node (see the module docstring)."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self.cfg = declare_config(self, NODE_SECTIONS[NODE_NAME])
        rc = self.cfg.ros
        self.data = DataDir(rc.data_dir)
        from ssl_nav.mapping.builder import MapBuilder, choose_segmenter
        from ssl_nav.mapping.instance_map import InstanceMap
        from ssl_nav.views.collect import ViewCollector
        from ssl_nav.views.selection import KeyframeGate
        from ssl_nav.views.store import ViewStore

        self._MapBuilder, self._InstanceMap, self._ViewCollector = MapBuilder, InstanceMap, ViewCollector
        self._ViewStore, self._KeyframeGate = ViewStore, KeyframeGate
        choose_segmenter(self.cfg.mapping.segmenter, False)  # an unknown name is a ConfigError now
        # lock order: _gate_lock (gate, segmenter choice) -> _lock (builder: the map) -> _views_lock (collector, store)
        self._lock = threading.RLock()
        self._views_lock = threading.RLock()
        self.store = ViewStore(self.data.store, create=True)
        self.store.acquire_lock()  # the store's one writer while the node runs (ssl_nav.locking)
        self.store_problem: str | None = None  #: why the last keyframe's views were not written (for ~/status)
        self.collector = self._new_collector()
        self.gate = KeyframeGate(self.cfg.views.keyframe_translation, self.cfg.views.keyframe_rotation_deg)
        self._gate_lock = threading.Lock()
        self.sync = StampSynchronizer(SYNC_TOPICS, rc.sync_tolerance_s, window=max(rc.sync_window_s,
                                                                                   rc.mask_wait_s + 0.5))
        self.builder: Any = None
        self.segmenter, self.segmenter_reason = UNDECIDED, ""
        self._first_rgb_t: float | None = None
        self._snap_map: tuple[dict, dict | None] = ({}, None)  # (instances, map summary): for ~/status
        self._snap_views: tuple[int, dict] = (len(self.store), self.collector.summary())
        self._start_segmenter()

        self._sim_time = bool(self.get_parameter("use_sim_time").value)
        import open3d  # noqa: F401  (imported now, not while the first frames wait)
        self._K: np.ndarray | None = None
        self._K_size: tuple[int, int] | None = None
        self.received: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()  # bad messages per topic
        self.drops: Counter[str] = Counter()  # rgb frames per cause (sync: from self.sync.unmatched)
        self.counts: Counter[str] = Counter()
        self.last_drops: deque[str] = deque(maxlen=10)
        self.keyframe_seconds: deque[float] = deque(maxlen=100)  # fusion of one keyframe
        self.views_seconds: deque[float] = deque(maxlen=100)  # crops + store writes of one keyframe

        self._queue: deque[dict] = deque()  # keyframes waiting for fusion
        self._lagging: deque[Any] = deque()  # fused keyframes whose crops are not cut yet (_view_lag)
        self._views_queue: deque[tuple[Any, Any]] = deque()  # (keyframe, map) waiting for crops
        self._queue_cv = threading.Condition()  # both queues and the busy set
        self._busy: set[str] = set()  # the workers running a job
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._serve, args=(self._queue, "fusion", self._process),
                                        name="view_collector_fusion", daemon=True)
        self._views_worker = threading.Thread(target=self._serve, args=(self._views_queue, "views", self._views_job),
                                              name="view_collector_views", daemon=True)

        # Camera callbacks only convert, match and gate; they get their own (reentrant) group so that a status
        # timer or a service waiting for the map lock never holds them up. They take (message, MessageInfo):
        # the stamp check uses the DDS receive time, not the time the callback runs.
        cam = ReentrantCallbackGroup()
        for topic in ("rgb", "depth", "instance_mask"):
            self.create_subscription(Image, topic, lambda m, i, t=topic: self._on_image(t, m, i), SENSOR_QOS,
                                     callback_group=cam)
        self.create_subscription(PoseStamped, "camera_pose", self._on_pose, SENSOR_QOS, callback_group=cam)
        self.create_subscription(CameraInfo, "camera_info", self._on_info, SENSOR_QOS, callback_group=cam)
        self.create_subscription(PointCloud2, "semantic_map", self._on_semantic_map, STATUS_QOS)
        self.status_pub = self.create_publisher(String, "~/status", STATUS_QOS)
        self.markers_pub = self.create_publisher(MarkerArray, "~/instances", 1)
        self.create_service(Trigger, "~/save", self._on_save)
        self.create_service(Trigger, "~/clear", self._on_clear)
        self.create_timer(rc.status_period_s, self.publish_status)
        if self.cfg.mapping.segmenter == "auto":  # decides even when the rgb stream stops before ros.mask_wait_s
            self.create_timer(0.1, lambda: self.segmenter == UNDECIDED and self._decide_auto("rgb", first=False))
        self._worker.start()
        self._views_worker.start()
        self.get_logger().info(f"collecting views into {self.data.store} ({len(self.store)} views so far); "
                               f"segmenter: {self.segmenter} ({self.segmenter_reason})")

    # ------------------------------------------------------------------ segmenter
    def _new_collector(self) -> Any:
        c = self._ViewCollector(self.cfg.views, self.store)
        c.gate = self._KeyframeGate(0.0, 0.0)  # the node gates on the pose before queueing; no second gate
        return c

    def _start_segmenter(self) -> None:
        """The segmenter of ``mapping.segmenter``; ``auto`` stays undecided until the streams say."""
        setting = self.cfg.mapping.segmenter
        self.builder, self.segmenter, self._first_rgb_t = None, UNDECIDED, None
        if setting == "auto":
            self.segmenter_reason = (f"auto: waiting up to ros.mask_wait_s = {self.cfg.ros.mask_wait_s} s after "
                                     "the first rgb frame for instance_mask")
            self.sync.set_required("instance_mask", True)
        elif setting == "semantic_map" and not self.cfg.mapping.semantic_map:
            self.segmenter_reason = "mapping.segmenter: waiting for the semantic_map topic"
            self.sync.set_required("instance_mask", False)
        else:
            self._use(setting, "mapping.segmenter")

    def _use(self, name: str, why: str, imap: Any = None) -> None:
        with self._lock:
            self.builder = self._MapBuilder(self.cfg.mapping, name, imap, why)
            self.segmenter, self.segmenter_reason = name, why
            self._snapshot_map()
        self.sync.set_required("instance_mask", name == "masks")
        self.get_logger().info(f"segmenter: {name} ({why})")

    def _decide_auto(self, topic: str, first: bool = True) -> None:
        """``auto``: masks when an instance_mask arrives; geometric when none did within ros.mask_wait_s of the
        first rgb frame (checked when an rgb frame arrives, ``first``, and by a timer)."""
        with self._gate_lock:
            if self.segmenter != UNDECIDED or self.cfg.mapping.segmenter != "auto":
                return
            if topic == "instance_mask":
                self._use("masks", "auto: instance_mask messages arrive")
            elif topic == "rgb":
                now = time.monotonic()
                if self._first_rgb_t is None:
                    if not first:
                        return
                    self._first_rgb_t = now
                if now - self._first_rgb_t < self.cfg.ros.mask_wait_s:
                    return
                self._use("geometric", f"auto: no instance_mask within ros.mask_wait_s = "
                                       f"{self.cfg.ros.mask_wait_s} s of the first rgb frame")
            else:
                return
        for s in self.sync.match():  # the frames that waited for a mask
            self._on_set(s)

    # ------------------------------------------------------------------ inputs
    def _drop(self, topic: str, reason: str) -> None:
        """A bad message (or a set that cannot make a frame): logged with its topic and reason, counted."""
        self.dropped[topic] += 1
        self.counts["dropped"] += 1
        if topic == "rgb":
            self.drops["bad_message"] += 1
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
        setting = self.cfg.mapping.segmenter
        if setting not in ("auto", "semantic_map"):
            self.get_logger().warning(f"semantic_map: ignored (mapping.segmenter is {setting!r})")
            return
        try:
            xyz, labels = conv.cloud_to_arrays(msg, "semantic_map")
        except SslNavError as e:
            self._drop("semantic_map", str(e))
            return
        self._use("semantic_map", "the semantic_map topic", self._InstanceMap.from_points(xyz, labels,
                                                                                           self.cfg.mapping))
        self.get_logger().info(f"semantic_map: {len(xyz)} points, {len(self._snap_map[0])} instances; "
                               "masks now optional")
        for s in self.sync.match():
            self._on_set(s)

    def _feed(self, topic: str, stamp: float, item: Any) -> None:
        if self.segmenter == UNDECIDED and topic in ("rgb", "instance_mask"):
            self._decide_auto(topic)
        for s in self.sync.add(topic, stamp, item):
            self._on_set(s)

    def _on_set(self, s: dict) -> None:
        """A synchronised set: camera_info known? keyframe? then into the bounded queue (oldest out when full)."""
        with self._gate_lock:
            self.counts["synced"] += 1
            if self._K is None:  # not a bad message: the camera_info reader may match a little later
                self.drops["no_camera_info"] += 1
                return
            if not self.gate.accept(s["camera_pose"][1]):
                self.drops["not_keyframe"] += 1
                self.counts["not_keyframe"] += 1
                return
        with self._queue_cv:
            if len(self._queue) >= self.cfg.ros.keyframe_queue:
                self._queue.popleft()
                self.drops["queue_overflow"] += 1
            self._queue.append(s)
            self._queue_cv.notify()

    # ------------------------------------------------------------------ workers
    def _serve(self, queue: deque, name: str, handle: Callable[[Any], None]) -> None:
        """A worker: jobs from ``queue`` through ``handle`` until the node stops; ``name`` is in ``_busy`` while
        one runs. A job that fails is dropped (an SslNavError: the frame is unusable), or counted as an error and
        logged; the worker goes on. The fusion worker (``_process``) takes keyframes into the map, the views
        worker (``_views_job``) cuts their crops."""
        while not self._stop.is_set():
            with self._queue_cv:
                while not queue and not self._stop.is_set():
                    self._queue_cv.wait(0.2)
                job = queue.popleft() if queue else None
                if job is not None:
                    self._busy.add(name)
                self._queue_cv.notify_all()  # room in the queue: _put_views may be waiting for it
            if job is None:
                continue
            try:
                handle(job)
            except StoreError as e:  # the store refuses the write (a linked file or directory, ...): say which and why
                try:
                    self.store.check_links()  # a link is the cause to name, before what it broke
                except StoreError as link:
                    e = link
                self.store_problem = str(e)
                self._drop("rgb", f"frame unusable: the view store was not written: {e}")
            except SslNavError as e:
                self._drop("rgb", f"frame unusable: {e}")
            except Exception as e:  # the node keeps running; the reason is logged
                self.counts["errors"] += 1
                if name == "fusion":
                    self.drops["bad_message"] += 1
                self.get_logger().error(f"{name} of a keyframe failed: {type(e).__name__}: {e}")
            finally:
                with self._queue_cv:
                    self._busy.discard(name)
                    self._queue_cv.notify_all()

    def _process(self, s: dict) -> None:
        from ssl_nav.frames import Frame

        stamp, rgb = s["rgb"]
        depth = s["depth"][1]
        T = s["camera_pose"][1]
        mask = s["instance_mask"][1] if s.get("instance_mask") is not None else None
        h, w = rgb.shape[:2]
        if depth.shape != (h, w):
            self._drop("rgb", f"depth size {depth.shape[1]}x{depth.shape[0]} does not match rgb {w}x{h}")
            return
        if mask is not None and mask.shape != (h, w):
            self._drop("rgb", f"instance_mask size {mask.shape[1]}x{mask.shape[0]} does not match rgb {w}x{h}")
            return
        if self._K_size != (h, w):
            self._drop("rgb", f"camera_info size {self._K_size[1]}x{self._K_size[0]} does not match rgb {w}x{h}")
            return
        with self._lock:
            builder = self.builder
            if builder is None:
                self.drops["no_map_yet"] += 1
                return
            frame = Frame(rgb=rgb, depth=depth, K=self._K, T_world_cam=T,
                          instance_mask=mask if builder.name == "masks" else None, stamp=stamp,
                          frame_id=f"{stamp:.6f}", quality="low").validate()
            t0 = time.perf_counter()
            builder.integrate(frame)
            self.counts["keyframes"] += 1
            self._lagging.append(frame)
            ready = []
            while len(self._lagging) > self._view_lag():
                ready.append(self._lagging.popleft())
            imap = builder.instance_map() if ready else None
            self.keyframe_seconds.append(time.perf_counter() - t0)
            self._snapshot_map()
        for f in ready:
            self._put_views(f, imap)

    def _view_lag(self) -> int:
        """Keyframes a frame waits before its crops are cut: the geometric map segments an object only after
        it was fused (``mapping.geometric_resegment_every`` frames later); masks give instances at once."""
        return self.cfg.mapping.geometric_resegment_every if self.segmenter == "geometric" else 0

    def _put_views(self, frame: Any, imap: Any) -> None:
        """Hand a keyframe to the views worker; waits while ``ros.keyframe_queue`` keyframes already wait there
        (then the fusion queue fills and overflows: the losses are counted in one place)."""
        with self._queue_cv:
            while len(self._views_queue) >= self.cfg.ros.keyframe_queue and not self._stop.is_set():
                self._queue_cv.wait(0.2)
            self._views_queue.append((frame, imap))
            self._queue_cv.notify_all()

    def _views_job(self, job: tuple[Any, Any]) -> None:
        """Crops, quality checks and store writes (PNG encoding, fsync) of a fused keyframe, next to the fusion
        of the following ones. A geometric map is a new object after each segmentation and is never changed
        afterwards; the masks and semantic maps change in place, so their crops wait for the map lock."""
        import contextlib

        frame, imap = job
        with self._lock if self.segmenter != "geometric" else contextlib.nullcontext():
            self._cut_views(frame, imap)

    def _cut_views(self, frame: Any, imap: Any) -> None:
        with self._views_lock:
            t0 = time.perf_counter()
            with self.store.batch():  # the keyframe's PNGs in parallel, its lines and instances.json once
                added = self.collector.process(frame, imap)
            self.views_seconds.append(time.perf_counter() - t0)
            self.store_problem = None
            self.counts["views_added"] += len(added)
            self._snap_views = (len(self.store), self.collector.summary())

    def idle(self) -> bool:
        """True when no keyframe is waiting or being processed (nor frames waiting for the auto decision)."""
        if self.segmenter == UNDECIDED and self._first_rgb_t is not None and self.sync.pending()["rgb"]:
            return False
        with self._queue_cv:
            return not (self._queue or self._views_queue or self._busy)

    # ------------------------------------------------------------------ outputs
    def _snapshot_map(self) -> None:
        """Instances and the map summary for ~/status (under ``_lock``; the timer never waits for the map)."""
        b = self.builder
        self._snap_map = (b.instance_map().to_store_instances(), b.summary()) if b is not None else ({}, None)

    def status(self) -> dict:
        """The ``~/status`` object (docs/ros.md lists its fields)."""
        instances, map_summary = self._snap_map
        n_views, summary = self._snap_views
        drops = {c: int(self.drops[c]) for c in DROP_CAUSES}
        drops["sync"] = int(sum(self.sync.unmatched.values()))
        n_rgb = int(self.received["rgb"])
        lost = sum(v for c, v in drops.items() if c != "not_keyframe")
        with self._queue_cv:
            queued, views_queued = len(self._queue), len(self._views_queue) + len(self._lagging)

        def p50(xs: deque) -> float | None:
            return round(1e3 * float(np.median(xs)), 1) if xs else None

        return {"segmenter": self.segmenter, "segmenter_reason": self.segmenter_reason,
                "frames": {"received": n_rgb, "keyframes": int(self.counts["keyframes"]), "queued": queued,
                           "waiting_for_views": views_queued, "waiting_for_sync": self.sync.pending()["rgb"]},
                "drops": drops, "lost_fraction": round(lost / n_rgb, 4) if n_rgb else None,
                "sync_unmatched": dict(self.sync.unmatched),
                "received": dict(self.received), "dropped": dict(self.dropped), "last_drops": list(self.last_drops),
                "counts": dict(self.counts), "pending": self.sync.pending(),
                "keyframe_ms_p50": p50(self.keyframe_seconds), "views_ms_p50": p50(self.views_seconds),
                "instances": len(instances), "views": n_views, "semantic_map": self.segmenter == "semantic_map",
                "map": map_summary, "store": str(self.data.store), "collector": summary,
                "store_problem": self.store_problem}

    def publish_status(self) -> None:
        """~/status and ~/instances from the workers' last snapshots (never waits for the map lock)."""
        instances = self._snap_map[0]
        self.status_pub.publish(json_msg(self.status()))
        if self.cfg.ros.publish_markers:
            self.markers_pub.publish(conv.instance_markers(instances, self.cfg.ros.map_frame,
                                                           self.get_clock().now().to_msg()))

    def save(self) -> str:
        """Write the map (DATA/store/map) and the store's instances.json; returns a one-line summary."""
        with self._lock:
            if self.builder is None:
                return f"no map yet (segmenter {self.segmenter}: {self.segmenter_reason}); nothing saved"
            imap = self.builder.finish()
            while self._lagging:  # the last keyframes' crops, against the final map
                self._cut_views(self._lagging.popleft(), imap)
            instances = imap.to_store_instances()
            with self._views_lock:
                self.store.set_instances({**self.store.instances(), **instances})
                self._snap_views = (len(self.store), self.collector.summary())
            imap.save(self.data.map)
            self._snapshot_map()
            return (f"saved {len(instances)} instances ({self.segmenter} segmenter) and {len(self.store)} views "
                    f"to {self.data.root}")

    def clear(self) -> str:
        with self._queue_cv:
            self._queue.clear()
            self._views_queue.clear()
            self._queue_cv.notify_all()
        with self._lock, self._views_lock:
            old = None
            if len(self.store) or self.store.instances():
                old = self.data.root / f"store.cleared-{time.strftime('%Y%m%d-%H%M%S')}"
                self.store.release_lock()
                Path(self.data.store).rename(old)
            else:
                self.store.release_lock()
            self.store = self._ViewStore(self.data.store, create=True)
            self.store.acquire_lock()
            self.collector = self._new_collector()
            self._lagging.clear()
            self.builder, self.segmenter = None, UNDECIDED
            self._snapshot_map()
            self._snap_views = (0, self.collector.summary())
        with self._gate_lock:  # (lock order everywhere: _gate_lock, then _lock)
            self.gate.reset()
            self.sync.clear()
            self._start_segmenter()
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
        with self._queue_cv:
            self._queue_cv.notify_all()
        self._worker.join(timeout=5)
        self._views_worker.join(timeout=5)
        self.store.release_lock()


def main(args: list[str] | None = None) -> int:
    return run_node(ViewCollectorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
