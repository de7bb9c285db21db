"""Write a frames directory as a rosbag2 recording (MCAP or sqlite3) with the topics a RealSense driver publishes.

``ssl-nav simulate --bag`` calls :func:`frames_dir_to_bag`, so a simulated scene can be ``ros2 bag play``-ed into
the nodes and read back by ``ssl-nav collect --bag`` (the round trip test/recordings/test_bag.py checks). Topics
(the names of ``cfg.recordings``, realsense2_camera's with ``align_depth.enable:=true`` by default):

- colour ``sensor_msgs/Image`` ``rgb8``; depth ``sensor_msgs/Image`` ``16UC1`` in millimetres
  (``ros.depth_scale_16u``); ``sensor_msgs/CameraInfo`` (pinhole, ``plumb_bob`` with zero distortion);
- the instance masks ``16UC1`` on ``recordings.instance_topic`` when the frames have them;
- ``/tf``: ``map -> camera_link`` per frame; ``/tf_static``: ``camera_link -> camera_color_optical_frame``
  (REP 103: the optical frame is x right, y down, z forward; the body frame x forward, z up). The header
  stamps are the frames' stamps, and so is every message's log time.

The bag is written into a temporary sibling and renamed into place, so a failure leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from ssl_nav.config import PipelineConfig
from ssl_nav.frames import Frame, SkippedFrame, depth_to_png16, read_frames_dir
from ssl_nav.geometry import invert, matrix_to_quaternion
from ssl_nav.recordings import RecordingError

BODY_FRAME = "camera_link"
OPTICAL_FRAME = "camera_color_optical_frame"
#: pose of the optical frame in the body frame (REP 103: z forward -> x forward, x right -> -y, y down -> -z)
T_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0, 0.0],
                           [-1.0, 0.0, 0.0, 0.0],
                           [0.0, -1.0, 0.0, 0.0],
                           [0.0, 0.0, 0.0, 1.0]])
STORAGES = ("mcap", "sqlite3")


class BagWriter:
    """A rosbag2 writer for RGB-D frames (module docstring); use as a context manager."""

    def __init__(self, path: str | os.PathLike, cfg: PipelineConfig, storage: str = "mcap",
                 world_frame: str | None = None) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        if storage not in STORAGES:
            raise RecordingError(f"bag storage {storage!r} is not one of {', '.join(STORAGES)}")
        self.path = Path(path)
        self.cfg = cfg
        self.world = world_frame or cfg.recordings.world_frame
        self.ts = get_typestore(Stores.ROS2_HUMBLE)
        self.writer = Writer(self.path, version=9,
                             storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3)
        self.conns: dict[str, object] = {}

    def __enter__(self) -> "BagWriter":
        self.writer.open()
        rc = self.cfg.recordings
        for topic, typ in ((rc.rgb_topic, "sensor_msgs/msg/Image"), (rc.depth_topic, "sensor_msgs/msg/Image"),
                           (rc.camera_info_topic, "sensor_msgs/msg/CameraInfo"), ("/tf", "tf2_msgs/msg/TFMessage"),
                           ("/tf_static", "tf2_msgs/msg/TFMessage")):
            self.conns[topic] = self.writer.add_connection(topic, typ, typestore=self.ts)
        self._static_done = False
        return self

    def __exit__(self, *exc) -> None:
        self.writer.close()

    # ------------------------------------------------------------------ messages

    def _header(self, stamp: float, frame_id: str):
        T = self.ts.types
        sec = int(np.floor(stamp))
        nsec = int(round((stamp - sec) * 1e9))
        if nsec >= 1_000_000_000:
            sec, nsec = sec + 1, nsec - 1_000_000_000
        return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec),
                                        frame_id=frame_id)

    def _image(self, arr: np.ndarray, encoding: str, stamp: float):
        arr = np.ascontiguousarray(arr)
        h, w = arr.shape[:2]
        step = arr.strides[0]
        return self.ts.types["sensor_msgs/msg/Image"](
            header=self._header(stamp, OPTICAL_FRAME), height=h, width=w, encoding=encoding,
            is_bigendian=0, step=step, data=arr.reshape(-1).view(np.uint8))

    def _tf(self, parent: str, child: str, T: np.ndarray, stamp: float):
        Ty = self.ts.types
        q = matrix_to_quaternion(T[:3, :3])
        tr = Ty["geometry_msgs/msg/TransformStamped"](
            header=self._header(stamp, parent), child_frame_id=child,
            transform=Ty["geometry_msgs/msg/Transform"](
                translation=Ty["geometry_msgs/msg/Vector3"](x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
                rotation=Ty["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]),
                                                            w=float(q[3]))))
        return Ty["tf2_msgs/msg/TFMessage"](transforms=[tr])

    def _camera_info(self, K: np.ndarray, w: int, h: int, stamp: float):
        P = np.zeros((3, 4))
        P[:, :3] = K
        return self.ts.types["sensor_msgs/msg/CameraInfo"](
            header=self._header(stamp, OPTICAL_FRAME), height=h, width=w, distortion_model="plumb_bob",
            d=np.zeros(5), k=np.asarray(K, dtype=np.float64).reshape(-1), r=np.eye(3).reshape(-1),
            p=P.reshape(-1), binning_x=0, binning_y=0,
            roi=self.ts.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                                  do_rectify=False))

    def _write(self, topic: str, msg, typ: str, stamp: float) -> None:
        self.writer.write(self.conns[topic], int(round(stamp * 1e9)), self.ts.serialize_cdr(msg, typ))

    def write(self, frame: Frame) -> None:
        """Write one frame: /tf_static once, then /tf, camera info, colour, depth (and mask)."""
        rc, s = self.cfg.recordings, float(frame.stamp)
        if not self._static_done:
            self._write("/tf_static", self._tf(BODY_FRAME, OPTICAL_FRAME, T_BODY_OPTICAL, s),
                        "tf2_msgs/msg/TFMessage", s)
            self._static_done = True
        T_world_body = np.asarray(frame.T_world_cam) @ invert(T_BODY_OPTICAL)
        self._write("/tf", self._tf(self.world, BODY_FRAME, T_world_body, s), "tf2_msgs/msg/TFMessage", s)
        h, w = frame.shape
        self._write(rc.camera_info_topic, self._camera_info(frame.K, w, h, s), "sensor_msgs/msg/CameraInfo", s)
        self._write(rc.rgb_topic, self._image(frame.rgb, "rgb8", s), "sensor_msgs/msg/Image", s)
        depth = depth_to_png16(frame.depth, self.cfg.ros.depth_scale_16u)
        self._write(rc.depth_topic, self._image(depth, "16UC1", s), "sensor_msgs/msg/Image", s)
        if frame.instance_mask is not None and rc.instance_topic:
            if rc.instance_topic not in self.conns:
                self.conns[rc.instance_topic] = self.writer.add_connection(rc.instance_topic, "sensor_msgs/msg/Image",
                                                                           typestore=self.ts)
            self._write(rc.instance_topic, self._image(frame.instance_mask.astype(np.uint16), "16UC1", s),
                        "sensor_msgs/msg/Image", s)


def frames_dir_to_bag(frames_dir: str | os.PathLike, bag_path: str | os.PathLike, cfg: PipelineConfig,
                      storage: str = "mcap") -> dict:
    """Write the frames of a frames directory into a new bag at ``bag_path`` (replaced when it exists).

    Returns ``{"path", "frames", "skipped", "storage"}``. Written into a temporary sibling and renamed into
    place, so a failure leaves no partial bag.
    """
    bag_path = Path(bag_path)
    tmp = bag_path.with_name(f".{bag_path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    n, skipped = 0, 0
    try:
        with BagWriter(tmp, cfg, storage) as w:
            for f in read_frames_dir(frames_dir):
                if isinstance(f, SkippedFrame):
                    skipped += 1
                    continue
                w.write(f)
                n += 1
        if bag_path.is_dir():
            shutil.rmtree(bag_path)
        elif bag_path.exists():
            raise RecordingError(f"{bag_path}: exists and is not a bag directory; not replaced")
        # rosbags names the storage file after the directory: keep that name consistent after the rename
        for p in tmp.iterdir():
            if p.name.startswith(tmp.name):
                p.rename(tmp / (bag_path.name + p.name[len(tmp.name):]))
        meta = tmp / "metadata.yaml"
        meta.write_text(meta.read_text().replace(tmp.name, bag_path.name))
        os.replace(tmp, bag_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"path": str(bag_path), "frames": n, "skipped": skipped, "storage": storage}
