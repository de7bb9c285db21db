"""Read a rosbag2 recording (MCAP or sqlite3) into frames, with the pure-Python ``rosbags`` package.

:func:`read_bag` opens the bag (a rosbag2 directory, or a lone ``.mcap`` / ``.db3`` file) and makes two passes:

1. **scan** every message of the camera-info, pose (``/tf`` + ``/tf_static``, or a ``PoseStamped`` /
   ``Odometry`` topic) and image topics, checking as it goes: the topics exist (else the error lists the
   topics the bag has), the image encodings are known, colour and depth have the same size, header stamps
   never go backwards within a topic, a chain of transforms joins the world frame and the camera's optical
   frame (else the error lists the frames seen). Colour and depth are then paired by header stamp, each
   colour image with the nearest unused depth image within ``ros.sync_tolerance_s`` (the bound the ROS
   view collector uses, :mod:`ssl_nav.ros.sync`), and an instance mask likewise when the bag has one.
2. **decode** the paired images (``sensor_msgs/Image`` rgb8/bgr8/rgba8/mono8, 16UC1 mm (``ros.depth_scale_16u``
   m per unit) or 32FC1 m; ``CompressedImage`` JPEG/PNG and ``compressedDepth`` PNG) with
   :mod:`ssl_nav.recordings.images`, and look the camera pose up at the colour stamp
   (:class:`~ssl_nav.recordings.tf.TransformTree`, interpolated).

Problems with the whole recording raise :class:`~ssl_nav.recordings.RecordingError` naming the bag and the
topic or frame; a single colour image that cannot become a frame (no depth within the tolerance, no pose at
its stamp, no valid depth) is a :class:`~ssl_nav.frames.SkippedFrame` with its reason, counted by the caller.
:func:`bag_to_frames_dir` writes the frames as a frames directory, which ``ssl-nav collect --bag`` then
collects like any other (docs/formats.md, "rosbag2 recordings").
"""

from __future__ import annotations

import bisect
import os
import sqlite3
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ssl_nav.config import PipelineConfig
from ssl_nav.errors import FrameError
from ssl_nav.frames import Frame, FramesWriter, SkippedFrame
from ssl_nav.recordings import RecordingError
from ssl_nav.recordings.images import (DEPTH_ENCODINGS, RGB_ENCODINGS, MessageError, array_to_depth, array_to_rgb,
                                       decode_compressed_depth, decode_compressed_rgb, decode_image)
from ssl_nav.recordings.tf import TransformTree, make_transform

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
POSE_STAMPED = "geometry_msgs/msg/PoseStamped"
ODOMETRY = "nav_msgs/msg/Odometry"
TF_TOPIC, TF_STATIC_TOPIC = "/tf", "/tf_static"
MASK_ENCODINGS = ("16UC1", "mono16", "32SC1", "mono8")


def _errors() -> tuple[type[BaseException], ...]:
    """What a truncated or corrupt bag makes ``rosbags`` (and its storage back-ends) raise."""
    from rosbags.rosbag2 import ReaderError
    from rosbags.serde import SerdeError

    return (ReaderError, SerdeError, sqlite3.DatabaseError, struct.error, EOFError, OSError, ValueError,
            KeyError, IndexError, TypeError, AssertionError, UnicodeDecodeError)


def _stamp(header: Any) -> float:
    return float(header.stamp.sec) + float(header.stamp.nanosec) * 1e-9


@dataclass
class _Image:
    index: int  #: position among the topic's messages
    stamp: float
    frame_id: str


@dataclass
class BagScan:
    """What pass 1 found (:func:`scan_bag`)."""

    path: Path
    topics: dict[str, str]  #: topic -> message type
    rgb: list[_Image] = field(default_factory=list)
    depth: list[_Image] = field(default_factory=list)
    mask: list[_Image] = field(default_factory=list)
    infos: list[tuple[float, np.ndarray, int, int]] = field(default_factory=list)  #: (stamp, K, w, h)
    tree: TransformTree = field(default_factory=TransformTree)  #: /tf + /tf_static (only /tf_static with a pose topic)
    pose_tree: TransformTree | None = None  #: the pose topic's poses (recordings.pose_source: topic)
    pose_frames: tuple[str, str] = ("", "")  #: (parent, child) of the pose topic's poses
    world_frame: str = "map"
    camera_frame: str = ""
    image_size: tuple[int, int] | None = None  #: (h, w) of raw colour images
    messages: int = 0


class BagReader:
    """One rosbag2 recording opened for :func:`scan_bag` / :func:`iter_bag_frames` (a context manager)."""

    def __init__(self, path: str | os.PathLike) -> None:
        from rosbags.rosbag2 import Reader
        from rosbags.typesys import Stores, get_typestore

        self.path = Path(path)
        if not self.path.exists():
            raise RecordingError(f"{self.path}: bag not found")
        self.typestore = get_typestore(Stores.ROS2_HUMBLE)
        try:
            self.reader = Reader(self.path)
            self.reader.open()
        except FileNotFoundError as e:
            raise RecordingError(f"{self.path}: not a rosbag2 recording ({e})") from None
        except _errors() as e:
            raise RecordingError(f"{self.path}: cannot open the bag: truncated or corrupt? "
                                 f"({type(e).__name__}: {e}; a recording cut by a crash can often be repaired "
                                 f"with `ros2 bag reindex` or `mcap recover`)") from None
        self.topics = {c.topic: c.msgtype for c in self.reader.connections}

    def close(self) -> None:
        try:
            self.reader.close()
        except _errors():
            pass

    def __enter__(self) -> "BagReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def require(self, topic: str, types: tuple[str, ...], what: str) -> str:
        """The message type of ``topic``; :class:`RecordingError` listing the bag's topics when it is absent or
        of another type."""
        if topic not in self.topics:
            have = ", ".join(f"{t} ({m})" for t, m in sorted(self.topics.items())) or "none"
            raise RecordingError(f"{self.path}: {what} topic {topic!r} is not in the bag; its topics: {have}")
        if self.topics[topic] not in types:
            raise RecordingError(f"{self.path}: topic {topic!r} is {self.topics[topic]}, expected "
                                 f"{' or '.join(types)} for the {what}")
        return self.topics[topic]

    def messages(self, topics: set[str]) -> Iterator[tuple[str, Any]]:
        """``(topic, message)`` in log-time order; a read or decode failure is a :class:`RecordingError`."""
        conns = [c for c in self.reader.connections if c.topic in topics]
        if not conns:
            return
        it = self.reader.messages(connections=conns)
        topic = "?"
        try:
            for conn, _t, raw in it:
                topic = conn.topic
                yield topic, self.typestore.deserialize_cdr(raw, conn.msgtype)
        except _errors() as e:
            raise RecordingError(f"{self.path}: cannot read the bag at topic {topic!r}: truncated or corrupt? "
                                 f"({type(e).__name__}: {e})") from None

    @property
    def message_count(self) -> int:
        return sum(c.msgcount for c in self.reader.connections)


def _check_order(path: Path, topic: str, items: list[_Image], stamp: float) -> None:
    if items and stamp < items[-1].stamp:
        raise RecordingError(f"{path}: topic {topic!r}: header stamps go backwards at message {len(items)} "
                             f"({stamp:.6f} s after {items[-1].stamp:.6f} s); was the bag re-ordered or merged?")


def _image_meta(path: Path, topic: str, msgtype: str, msg: Any, expect: tuple[str, ...]) -> tuple[int, int] | None:
    """(h, w) of a raw Image after checking its encoding; None for a CompressedImage (size known once decoded)."""
    if msgtype != IMAGE:
        return None
    if msg.encoding not in expect:
        raise RecordingError(f"{path}: topic {topic!r}: unknown or unsupported encoding {msg.encoding!r}; "
                             f"supported: {', '.join(expect)}")
    return int(msg.height), int(msg.width)


def _pose_of(msg: Any, msgtype: str) -> tuple[str, str, np.ndarray]:
    """(parent frame, child frame or '', T_parent_child) of a PoseStamped / Odometry."""
    pose = msg.pose.pose if msgtype == ODOMETRY else msg.pose
    p, q = pose.position, pose.orientation
    t = np.array([p.x, p.y, p.z], dtype=np.float64)
    quat = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(quat))) or np.linalg.norm(quat) < 1e-6:
        raise MessageError("pose: NaN, inf or a zero quaternion")
    child = msg.child_frame_id if msgtype == ODOMETRY else ""
    return msg.header.frame_id, child, make_transform(t, quat)


def scan_bag(bag: BagReader, cfg: PipelineConfig, progress: bool = False) -> BagScan:
    """Pass 1 (module docstring): every check that needs no pixels, and the transform tree."""
    rc = cfg.recordings
    path = bag.path
    rgb_t = bag.require(rc.rgb_topic, (IMAGE, COMPRESSED), "colour")
    depth_t = bag.require(rc.depth_topic, (IMAGE, COMPRESSED), "depth")
    bag.require(rc.camera_info_topic, (CAMERA_INFO,), "camera info")
    use_mask = bool(rc.instance_topic) and rc.instance_topic in bag.topics
    if use_mask:
        bag.require(rc.instance_topic, (IMAGE,), "instance mask")
    if rc.pose_source == "tf":
        bag.require(TF_TOPIC, (TF_MESSAGE,), "transform (recordings.pose_source: tf)")
        pose_topics = {TF_TOPIC}
    else:
        pose_t = bag.require(rc.pose_topic, (POSE_STAMPED, ODOMETRY), "pose (recordings.pose_source: topic)")
        pose_topics = {rc.pose_topic}
    if TF_STATIC_TOPIC in bag.topics:
        pose_topics.add(TF_STATIC_TOPIC)
    scan = BagScan(path=path, topics=dict(bag.topics))
    scan.tree = TransformTree(tolerance=cfg.ros.sync_tolerance_s)
    topics = {rc.rgb_topic, rc.depth_topic, rc.camera_info_topic} | pose_topics
    if use_mask:
        topics.add(rc.instance_topic)
    pending_poses: list[tuple[str, str, float, np.ndarray, bool]] = []
    pending_topic: list[tuple[str, str, float, np.ndarray]] = []
    depth_size = None
    bar = _bar(progress, bag.message_count, "scan bag")
    for topic, msg in bag.messages(topics):
        scan.messages += 1
        if bar is not None:
            bar.update(1)
        if topic == rc.rgb_topic:
            s = _stamp(msg.header)
            _check_order(path, topic, scan.rgb, s)
            size = _image_meta(path, topic, rgb_t, msg, RGB_ENCODINGS)
            if size is not None:
                if scan.image_size is None:
                    scan.image_size = size
                elif size != scan.image_size:
                    raise RecordingError(f"{path}: topic {topic!r}: image size changes from {scan.image_size[1]}x"
                                         f"{scan.image_size[0]} to {size[1]}x{size[0]} at message {len(scan.rgb)}")
            scan.rgb.append(_Image(len(scan.rgb), s, msg.header.frame_id))
        elif topic == rc.depth_topic:
            s = _stamp(msg.header)
            _check_order(path, topic, scan.depth, s)
            size = _image_meta(path, topic, depth_t, msg, DEPTH_ENCODINGS)
            if size is not None:
                depth_size = depth_size or size
            scan.depth.append(_Image(len(scan.depth), s, msg.header.frame_id))
        elif use_mask and topic == rc.instance_topic:
            s = _stamp(msg.header)
            _check_order(path, topic, scan.mask, s)
            _image_meta(path, topic, IMAGE, msg, MASK_ENCODINGS)
            scan.mask.append(_Image(len(scan.mask), s, msg.header.frame_id))
        elif topic == rc.camera_info_topic:
            K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
            scan.infos.append((_stamp(msg.header), K, int(msg.width), int(msg.height)))
        elif topic in (TF_TOPIC, TF_STATIC_TOPIC):
            for tr in msg.transforms:
                t, q = tr.transform.translation, tr.transform.rotation
                quat = np.array([q.x, q.y, q.z, q.w])
                if not np.all(np.isfinite(quat)) or np.linalg.norm(quat) < 1e-6:
                    continue
                T = make_transform(np.array([t.x, t.y, t.z]), quat)
                if not np.all(np.isfinite(T)):
                    continue
                pending_poses.append((tr.header.frame_id, tr.child_frame_id, _stamp(tr.header), T,
                                      topic == TF_STATIC_TOPIC))
        else:  # the pose topic
            try:
                parent, child, T = _pose_of(msg, pose_t)
            except MessageError:
                continue
            pending_topic.append((parent, child, _stamp(msg.header), T))
    if bar is not None:
        bar.close()
    _finish_scan(scan, cfg, pending_poses, pending_topic, depth_size)
    return scan


def _finish_scan(scan: BagScan, cfg: PipelineConfig, pending_poses: list, pending_topic: list,
                 depth_size: tuple[int, int] | None) -> None:
    """The checks after pass 1 (empty topics, sizes, camera frame) and the transform trees."""
    rc, path = cfg.recordings, scan.path
    if not scan.rgb:
        raise RecordingError(f"{path}: topic {rc.rgb_topic!r} holds no messages")
    if not scan.depth:
        raise RecordingError(f"{path}: topic {rc.depth_topic!r} holds no messages")
    if not scan.infos:
        raise RecordingError(f"{path}: topic {rc.camera_info_topic!r} holds no messages")
    if scan.image_size is not None and depth_size is not None and depth_size != scan.image_size:
        raise RecordingError(f"{path}: depth {rc.depth_topic!r} is {depth_size[1]}x{depth_size[0]} but colour "
                             f"{rc.rgb_topic!r} is {scan.image_size[1]}x{scan.image_size[0]}; the depth must be "
                             f"registered to the colour camera (realsense2_camera: align_depth.enable:=true)")
    scan.camera_frame = (rc.camera_frame or scan.rgb[0].frame_id).lstrip("/")
    if not scan.camera_frame:
        raise RecordingError(f"{path}: topic {rc.rgb_topic!r} has an empty header.frame_id; set "
                             f"recordings.camera_frame")
    scan.world_frame = rc.world_frame
    try:
        for parent, child, s, T, static in pending_poses:
            scan.tree.add(parent, child, s, T, static=static)
        if rc.pose_source == "topic":
            if not pending_topic:
                raise RecordingError(f"{path}: topic {rc.pose_topic!r} holds no usable pose")
            parent, child = pending_topic[0][0].lstrip("/"), (pending_topic[0][1] or scan.camera_frame).lstrip("/")
            scan.pose_frames = (parent, child)
            scan.pose_tree = TransformTree(tolerance=cfg.ros.sync_tolerance_s)
            for _p, _c, s, T in pending_topic:
                scan.pose_tree.add(parent, child, s, T)
    except ValueError as e:
        raise RecordingError(f"{path}: transforms: {e}") from None
    if scan.pose_tree is None:
        joined = scan.tree.can_connect(rc.world_frame, scan.camera_frame)
    else:
        parent, child = scan.pose_frames
        joined = (parent == rc.world_frame or scan.tree.can_connect(rc.world_frame, parent)) and (
            child == scan.camera_frame or scan.tree.can_connect(child, scan.camera_frame))
    if not joined:
        src = "/tf + /tf_static" if rc.pose_source == "tf" else f"{rc.pose_topic} + /tf_static"
        seen = set(scan.tree.frames) | ({f for f in scan.pose_frames if f} if scan.pose_tree is not None else set())
        raise RecordingError(f"{path}: no chain of transforms in {src} joins the world frame {rc.world_frame!r} "
                             f"and the camera frame {scan.camera_frame!r}; frames seen: "
                             f"{', '.join(sorted(seen)) or 'none'} (recordings.world_frame, "
                             f"recordings.camera_frame)")


def pair_by_stamp(ref: list[float], other: list[float], tolerance: float) -> list[int | None]:
    """For each reference stamp (in order), the index of the nearest unused ``other`` stamp within ``tolerance``
    (or None): the one-to-one matching of :class:`ssl_nav.ros.sync.StampSynchronizer`, offline."""
    order = sorted(range(len(other)), key=other.__getitem__)
    stamps = [other[i] for i in order]
    used = [False] * len(order)
    out: list[int | None] = []
    for s in ref:
        i = bisect.bisect_left(stamps, s)
        best, best_d = None, tolerance
        for j in (i - 2, i - 1, i, i + 1):
            if 0 <= j < len(stamps) and not used[j]:
                d = abs(stamps[j] - s)
                if d <= best_d:
                    best, best_d = j, d
        if best is not None:
            used[best] = True
        out.append(None if best is None else order[best])
    return out


@dataclass
class BagFrames:
    """The plan of pass 2: what each colour image needs, and what was already skipped."""

    scan: BagScan
    depth_for: list[int | None]
    mask_for: list[int | None]
    skipped: Counter = field(default_factory=Counter)


def _intrinsics(scan: BagScan, s: float) -> tuple[np.ndarray, int, int]:
    stamps = [i[0] for i in scan.infos]
    j = max(0, bisect.bisect_right(stamps, s + 1e-9) - 1)
    _, K, w, h = scan.infos[j]
    return K, w, h


def iter_bag_frames(path: str | os.PathLike, cfg: PipelineConfig, progress: bool = False,
                    stats: Counter | None = None) -> Iterator[Frame | SkippedFrame]:
    """Every colour image of the bag as a :class:`Frame`, or a :class:`SkippedFrame` with the reason.

    ``stats`` (when given) counts ``frames`` and each skip reason. Raises :class:`RecordingError` for problems
    with the whole recording (module docstring).
    """
    rc, tol = cfg.recordings, cfg.ros.sync_tolerance_s
    stats = stats if stats is not None else Counter()
    with BagReader(path) as bag:
        scan = scan_bag(bag, cfg, progress)
        rgb_stamps = [i.stamp for i in scan.rgb]
        depth_for = pair_by_stamp(rgb_stamps, [i.stamp for i in scan.depth], tol)
        mask_for = pair_by_stamp(rgb_stamps, [i.stamp for i in scan.mask], tol) if scan.mask else [None] * len(
            rgb_stamps)
        want_depth = {d: r for r, d in enumerate(depth_for) if d is not None}
        want_mask = {m: r for r, m in enumerate(mask_for) if m is not None and depth_for[r] is not None}
        rgb_t, depth_t = scan.topics[rc.rgb_topic], scan.topics[rc.depth_topic]
        have: dict[int, dict[str, Any]] = {}
        counters = {rc.rgb_topic: 0, rc.depth_topic: 0, rc.instance_topic: 0}
        topics = {rc.rgb_topic, rc.depth_topic} | ({rc.instance_topic} if scan.mask else set())
        bar = _bar(progress, len(scan.rgb), "read frames")

        def skip(r: int, reason: str) -> SkippedFrame:
            stats[reason] += 1
            if bar is not None:
                bar.update(1)
            return SkippedFrame(frame_id=f"{r:06d}", line=r + 1,
                                reason=f"{path}: {rc.rgb_topic} message {r} (stamp {rgb_stamps[r]:.6f}): {reason}")

        for topic, msg in bag.messages(topics):
            k = counters[topic]
            counters[topic] += 1
            if topic == rc.rgb_topic:
                r = k
                if depth_for[r] is None:
                    yield skip(r, f"no depth within ros.sync_tolerance_s = {tol} s")
                    continue
                have.setdefault(r, {})["rgb"] = _decode_rgb(msg, rgb_t, topic)
            elif topic == rc.depth_topic:
                r = want_depth.get(k)
                if r is None:
                    continue
                have.setdefault(r, {})["depth"] = _decode_depth(msg, depth_t, topic, cfg.ros.depth_scale_16u)
            else:
                r = want_mask.get(k)
                if r is None:
                    continue
                have.setdefault(r, {})["mask"] = decode_image(msg.encoding, msg.height, msg.width, msg.step,
                                                              msg.is_bigendian, msg.data, topic,
                                                              MASK_ENCODINGS).astype(np.int32)
            got = have.get(r)
            if got is None or "rgb" not in got or "depth" not in got or (mask_for[r] is not None and "mask" not in got):
                continue
            del have[r]
            rgb, depth = got["rgb"], got["depth"]
            if rgb.shape[:2] != depth.shape:
                raise RecordingError(f"{path}: depth {rc.depth_topic!r} is {depth.shape[1]}x{depth.shape[0]} but "
                                     f"colour {rc.rgb_topic!r} is {rgb.shape[1]}x{rgb.shape[0]} (message {r}); the "
                                     f"depth must be registered to the colour camera")
            mask = got.get("mask")
            if mask is not None and mask.shape != depth.shape:
                raise RecordingError(f"{path}: instance mask {rc.instance_topic!r} is {mask.shape[1]}x"
                                     f"{mask.shape[0]} but colour is {rgb.shape[1]}x{rgb.shape[0]}")
            s = rgb_stamps[r]
            try:
                T_world_cam = camera_pose(scan, s)
            except LookupError as e:
                yield skip(r, f"no pose at the image stamp ({_first_clause(str(e))})")
                continue
            K, w, h = _intrinsics(scan, s)
            if (w, h) != (rgb.shape[1], rgb.shape[0]) and w and h:
                raise RecordingError(f"{path}: camera info {rc.camera_info_topic!r} is for {w}x{h} images but "
                                     f"colour {rc.rgb_topic!r} is {rgb.shape[1]}x{rgb.shape[0]}")
            frame = Frame(rgb=rgb, depth=depth, K=K, T_world_cam=T_world_cam, instance_mask=mask, stamp=s,
                          frame_id=f"{r:06d}")
            try:
                frame.validate()
            except FrameError as e:
                yield skip(r, _reason(str(e)))
                continue
            stats["frames"] += 1
            if bar is not None:
                bar.update(1)
            yield frame
        if bar is not None:
            bar.close()


def camera_pose(scan: BagScan, t: float) -> np.ndarray:
    """``T_world_cam`` at ``t``: the transform chain, or the pose topic chained with /tf_static."""
    if scan.pose_tree is None:
        return scan.tree.lookup(scan.world_frame, scan.camera_frame, t)
    parent, child = scan.pose_frames
    T = scan.pose_tree.lookup(parent, child, t)
    if parent != scan.world_frame:
        T = scan.tree.lookup(scan.world_frame, parent, t) @ T
    if child != scan.camera_frame:
        T = T @ scan.tree.lookup(child, scan.camera_frame, t)
    return T


def _first_clause(msg: str) -> str:
    """A skip reason without the stamps, so that equal reasons count together."""
    return msg.split(":")[0] + ": outside the transforms' time range" if "extrapolation" in msg else msg


def _reason(msg: str) -> str:
    return msg.split(": ", 1)[1] if msg.startswith("frame ") and ": " in msg else msg


def _decode_rgb(msg: Any, msgtype: str, topic: str) -> np.ndarray:
    if msgtype == COMPRESSED:
        return decode_compressed_rgb(msg.data, msg.format, topic)
    arr = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data, topic,
                       RGB_ENCODINGS)
    return array_to_rgb(arr, msg.encoding)


def _decode_depth(msg: Any, msgtype: str, topic: str, depth_scale_16u: float) -> np.ndarray:
    if msgtype == COMPRESSED:
        if "compressedDepth" not in msg.format:
            raise RecordingError(f"{topic}: CompressedImage format {msg.format!r} is not compressedDepth (a lossy "
                                 f"colour codec cannot hold depth)")
        return decode_compressed_depth(msg.data, msg.format, topic, depth_scale_16u)
    arr = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data, topic,
                       DEPTH_ENCODINGS)
    return array_to_depth(arr, depth_scale_16u)


def _bar(progress: bool, total: int, desc: str):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="msg" if desc.startswith("scan") else "frame", leave=False)


def write_frames_dir(frames: Iterator[Frame | SkippedFrame], out_dir: str | os.PathLike,
                     on_skip: Callable[[SkippedFrame], None] | None = None) -> int:
    """Write frames into a new frames directory (16-bit PNG depth in mm); return the number written."""
    n = 0
    with FramesWriter(out_dir) as w:
        for f in frames:
            if isinstance(f, SkippedFrame):
                if on_skip is not None:
                    on_skip(f)
                continue
            w.write(f)
            n += 1
    return n


def bag_to_frames_dir(path: str | os.PathLike, out_dir: str | os.PathLike, cfg: PipelineConfig,
                      progress: bool = False) -> dict:
    """Convert a bag into a frames directory ``out_dir``; return ``{"frames", "images", "skipped": {reason: n}}``.

    Raises :class:`RecordingError` (the caller removes ``out_dir``) when the recording is unusable, including
    when no colour image becomes a frame.
    """
    stats: Counter = Counter()
    examples: list[str] = []

    def on_skip(s: SkippedFrame) -> None:
        if len(examples) < 3:
            examples.append(s.reason)

    n = write_frames_dir(iter_bag_frames(path, cfg, progress, stats), out_dir, on_skip)
    skipped = {k: v for k, v in stats.items() if k != "frames"}
    if n == 0:
        raise RecordingError(f"{path}: none of its {sum(skipped.values())} colour images became a frame "
                             f"({'; '.join(examples) or 'no images'})")
    return {"frames": n, "images": n + sum(skipped.values()), "skipped": skipped, "examples": examples}
