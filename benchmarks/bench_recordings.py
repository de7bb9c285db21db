"""Reading recordings: a 640x480 RGB-D rosbag2 into frames on one core, before fusion.

A bag of N frames as realsense2_camera with ``align_depth.enable:=true`` records it (colour ``rgb8``, aligned
depth ``16UC1`` mm, ``CameraInfo`` per frame, ``/tf`` map -> camera_link per frame, ``/tf_static`` camera_link ->
optical frame), written by :class:`ssl_nav.recordings.bag_writer.BagWriter` with a textured, noisy image and a
slanted-plane depth (the pixel content does not change the cost of raw images). The process is pinned to one
CPU (``sched_setaffinity``) with OpenCV on one thread. Measured, each the best of 3 passes:

- **read (MCAP)**: :func:`ssl_nav.recordings.bag.iter_bag_frames` over the whole bag: the scan pass (every
  message deserialised, stamps, encodings and sizes checked, transform tree built) plus the decode pass
  (colour and depth decoded, pose interpolated, :meth:`Frame.validate`) = validated :class:`Frame` objects
  ready for fusion. Goal: >= 100 frames/s.
- the same from **sqlite3**, and from **compressed** topics (PNG colour, ``compressedDepth`` PNG depth), for
  reference;
- **convert to a frames directory** (:func:`ssl_nav.recordings.bag.bag_to_frames_dir`, what ``ssl-nav collect
  --bag`` does before collecting: the read plus two PNG encodes per frame), for reference.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

AREA = "Recordings (rosbag2 in)"


def _frames(n: int, w: int = 640, h: int = 480):
    from ssl_nav.frames import Frame
    from ssl_nav.geometry import camera_pose, intrinsics_from_fov

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 255 // (w + h))], -1).astype(np.int16)
    depth = (1.0 + 3.0 * yy / h).astype(np.float32)
    K = intrinsics_from_fov(w, h, 69.0)
    for i in range(n):
        rgb = np.clip(base + rng.integers(-12, 13, size=(h, w, 3)), 0, 255).astype(np.uint8)
        T = camera_pose(np.array([0.02 * i, 0.0, 0.6]), 0.01 * i)
        yield Frame(rgb=rgb, depth=depth, K=K, T_world_cam=T, stamp=1000.0 + i / 30.0, frame_id=f"{i:06d}")


def _write(path: Path, n: int, storage: str, compressed: bool) -> None:
    from ssl_nav.config import PipelineConfig
    from ssl_nav.recordings.bag_writer import BagWriter

    class CompressedWriter(BagWriter):
        """Colour as a PNG CompressedImage, depth as compressedDepth PNG, on the same topic names."""

        def __enter__(self):
            self.writer.open()
            rc = self.cfg.recordings
            for topic, typ in ((rc.rgb_topic, "sensor_msgs/msg/CompressedImage"),
                               (rc.depth_topic, "sensor_msgs/msg/CompressedImage"),
                               (rc.camera_info_topic, "sensor_msgs/msg/CameraInfo"),
                               ("/tf", "tf2_msgs/msg/TFMessage"), ("/tf_static", "tf2_msgs/msg/TFMessage")):
                self.conns[topic] = self.writer.add_connection(topic, typ, typestore=self.ts)
            self._static_done = False
            return self

        def _write(self, topic, msg, typ, stamp):
            from ssl_nav.recordings.images import decode_image, encode_compressed_depth_16u

            if typ == "sensor_msgs/msg/Image":
                arr = decode_image(msg.encoding, msg.height, msg.width, msg.step, False, msg.data)
                if msg.encoding == "rgb8":
                    ok, buf = cv2.imencode(".png", cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))
                    data, fmt = buf.tobytes(), "rgb8; png compressed bgr8"
                else:
                    data, fmt = encode_compressed_depth_16u(arr), "16UC1; compressedDepth png"
                typ = "sensor_msgs/msg/CompressedImage"
                msg = self.ts.types[typ](header=msg.header, format=fmt, data=np.frombuffer(data, np.uint8))
            super()._write(topic, msg, typ, stamp)

    cls = CompressedWriter if compressed else BagWriter
    with cls(path, PipelineConfig(), storage) as w:
        for f in _frames(n):
            w.write(f)


def _best(fn, reps: int = 3) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def run(quick: bool) -> list[dict]:
    from ssl_nav.config import PipelineConfig
    from ssl_nav.frames import Frame
    from ssl_nav.recordings.bag import bag_to_frames_dir, iter_bag_frames

    n = 60 if quick else 300
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except (AttributeError, OSError):
        pass
    cv2.setNumThreads(1)
    cfg = PipelineConfig()
    tmp = Path(tempfile.mkdtemp(prefix="bench_recordings-"))
    rows = []
    try:
        for name, storage, compressed in (("MCAP", "mcap", False), ("sqlite3", "sqlite3", False),
                                          ("MCAP, compressed", "mcap", True)):
            bag = tmp / name.replace(", ", "_")
            _write(bag, n, storage, compressed)
            size = sum(p.stat().st_size for p in bag.iterdir())
            got = []

            def read():
                got[:] = [sum(isinstance(f, Frame) for f in iter_bag_frames(bag, cfg))]

            s = _best(read)
            fps = n / s
            goal = name == "MCAP"
            rows.append({"benchmark": f"read 640x480 RGB-D bag ({name}) into validated frames, 1 core",
                         "figure": f"{fps:.0f} frames/s ({1000 * s / n:.1f} ms/frame)",
                         "target": ">= 100 frames/s" if goal else "", "ok": (fps >= 100 and got[0] == n) if goal else None,
                         "note": f"{n} frames, {size / 2**20:.0f} MiB bag, {got[0]} frames read; best of 3"})
        bag = tmp / "MCAP"

        def convert():
            out = tmp / "frames"
            shutil.rmtree(out, ignore_errors=True)
            bag_to_frames_dir(bag, out, cfg)

        s = _best(convert, 1 if not quick else 1)
        rows.append({"benchmark": "convert the MCAP bag into a frames directory (read + PNG writes), 1 core",
                     "figure": f"{n / s:.0f} frames/s", "target": "", "ok": None,
                     "note": "what `ssl-nav collect --bag` does before fusion; PNG encoding dominates"})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows
