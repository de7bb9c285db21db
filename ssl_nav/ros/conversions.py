"""ROS 2 messages <-> numpy, checked at the edge.

Every function takes the ``topic`` the message came from so that a failure names it: a bad message raises
:class:`MessageError` (a :class:`~ssl_nav.errors.FrameError`, hence an :class:`~ssl_nav.errors.SslNavError`)
whose text says the topic, the field and what is wrong. Nodes log that text and drop the message.

Conventions (REP 103/105, sensor_msgs): ``Image.data`` holds ``height`` rows of ``step`` bytes, each row
starting with ``width`` pixels of the encoding's size (padding after them is allowed); ``is_bigendian``
says the byte order of multi-byte channels. Depth is ``32FC1`` in metres or ``16UC1`` in millimetres
(0 = invalid). Poses are OpenCV camera poses ``T_world_cam`` (x right, y down, z forward), the pose of the
camera *optical* frame in the map frame.
"""

from __future__ import annotations

import math
import sys
from typing import Iterable

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion, Vector3
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from ssl_nav.geometry import matrix_to_quaternion, quaternion_to_matrix
from ssl_nav.recordings.images import ENCODINGS, MessageError, array_to_depth, array_to_rgb, decode_compressed_rgb
from ssl_nav.recordings.images import decode_image

_HOST_BIG_ENDIAN = sys.byteorder == "big"


# MessageError and ENCODINGS live in the ROS-free module the bag reader shares (ssl_nav.recordings.images)


# ------------------------------------------------------------------------------------------------ stamps

def stamp_to_sec(stamp: Time) -> float:
    """``builtin_interfaces/Time`` -> seconds."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def sec_to_stamp(t: float) -> Time:
    """Seconds -> ``builtin_interfaces/Time`` (non-negative, nanoseconds < 1e9)."""
    if not math.isfinite(t) or t < 0:
        raise MessageError(f"stamp: {t!r} is not a finite, non-negative time")
    sec = int(math.floor(t))
    nsec = int(round((t - sec) * 1e9))
    if nsec >= 1_000_000_000:
        sec, nsec = sec + 1, nsec - 1_000_000_000
    return Time(sec=sec, nanosec=nsec)


def make_header(frame_id: str, stamp: float | Time) -> Header:
    return Header(frame_id=frame_id, stamp=stamp if isinstance(stamp, Time) else sec_to_stamp(stamp))


# ------------------------------------------------------------------------------------------------ Image

def image_to_numpy(msg: Image, topic: str = "image", expect: Iterable[str] | None = None) -> np.ndarray:
    """An ``Image`` as an HxW or HxWxC array of its encoding's dtype (native byte order; a copy).

    ``expect`` restricts the accepted encodings. Raises :class:`MessageError` for an unknown or unexpected
    encoding, a zero size, a ``step`` shorter than a row, or ``data`` shorter/longer than ``height * step``.
    """
    return decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data, topic, expect)


def numpy_to_image(arr: np.ndarray, encoding: str, frame_id: str = "", stamp: float | Time = 0.0) -> Image:
    """An array as an ``Image`` (host byte order, ``step`` = one packed row)."""
    if encoding not in ENCODINGS:
        raise MessageError(f"encoding {encoding!r} is not supported ({', '.join(ENCODINGS)})")
    dtype, ch = ENCODINGS[encoding]
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] != ch:
        raise MessageError(f"{encoding}: array of shape {arr.shape} does not have {ch} channel(s)")
    if arr.dtype.kind != dtype.kind or arr.dtype.itemsize != dtype.itemsize:
        raise MessageError(f"{encoding}: array dtype {arr.dtype} does not match {dtype}")
    arr = np.ascontiguousarray(arr, dtype=dtype.newbyteorder("="))
    h, w = arr.shape[:2]
    msg = Image(header=make_header(frame_id, stamp), height=h, width=w, encoding=encoding,
                is_bigendian=int(_HOST_BIG_ENDIAN and dtype.itemsize > 1), step=w * ch * dtype.itemsize)
    msg.data = arr.tobytes()
    return msg


def image_to_rgb(msg: Image, topic: str = "rgb") -> np.ndarray:
    """Colour or mono ``Image`` -> uint8 HxWx3 RGB."""
    return array_to_rgb(image_to_numpy(msg, topic, expect=("rgb8", "bgr8", "rgba8", "mono8")), msg.encoding)


def image_to_depth(msg: Image, topic: str = "depth", depth_scale_16u: float = 0.001) -> np.ndarray:
    """Depth ``Image`` (``32FC1`` metres or ``16UC1`` millimetres) -> float32 HxW metres (0/NaN = invalid)."""
    return array_to_depth(image_to_numpy(msg, topic, expect=("32FC1", "16UC1", "mono16")), depth_scale_16u)


def image_to_mask(msg: Image, topic: str = "instance_mask") -> np.ndarray:
    """Instance-mask ``Image`` (``32SC1`` or ``16UC1``/``mono16``/``mono8``) -> int32 HxW (0 = none)."""
    arr = image_to_numpy(msg, topic, expect=("32SC1", "16UC1", "mono16", "mono8"))
    if arr.dtype == np.int32 and (arr < 0).any():
        raise MessageError(f"{topic}: field 'data' holds negative instance ids")
    return arr.astype(np.int32, copy=False)


def compressed_to_rgb(msg: CompressedImage, topic: str = "query_image/compressed") -> np.ndarray:
    """``CompressedImage`` (JPEG/PNG bytes) -> uint8 HxWx3 RGB, decoded with OpenCV."""
    return decode_compressed_rgb(msg.data, msg.format, topic)


def rgb_to_compressed(rgb: np.ndarray, fmt: str = "jpeg", frame_id: str = "", stamp: float | Time = 0.0,
                      quality: int = 95) -> CompressedImage:
    """uint8 RGB -> ``CompressedImage`` (``jpeg`` or ``png``)."""
    import cv2

    ext = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}.get(fmt)
    if ext is None:
        raise MessageError(f"format {fmt!r} is not jpeg or png")
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(np.asarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise MessageError(f"cannot encode the image as {fmt}")
    msg = CompressedImage(header=make_header(frame_id, stamp), format=fmt)
    msg.data = buf.tobytes()
    return msg


# ------------------------------------------------------------------------------------------------ CameraInfo

def camera_info_to_K(msg: CameraInfo, topic: str = "camera_info") -> np.ndarray:
    """``CameraInfo.k`` (row-major 3x3) -> float64 K; raises when it is zero, non-finite or singular."""
    K = np.asarray(msg.k, dtype=np.float64)
    if K.size != 9:
        raise MessageError(f"{topic}: field 'k' has {K.size} values, expected 9")
    K = K.reshape(3, 3)
    if not np.all(np.isfinite(K)):
        raise MessageError(f"{topic}: field 'k' contains NaN or inf")
    if K[0, 0] <= 0 or K[1, 1] <= 0 or abs(np.linalg.det(K)) < 1e-9:
        raise MessageError(f"{topic}: field 'k' is not a valid intrinsic matrix (fx={K[0, 0]}, fy={K[1, 1]}); "
                           "is the camera uncalibrated?")
    return K


def K_to_camera_info(K: np.ndarray, width: int, height: int, frame_id: str = "", stamp: float | Time = 0.0
                     ) -> CameraInfo:
    """A pinhole ``CameraInfo`` without distortion (``plumb_bob`` with zero coefficients)."""
    K = np.asarray(K, dtype=np.float64)
    P = np.zeros((3, 4))
    P[:, :3] = K
    return CameraInfo(header=make_header(frame_id, stamp), width=int(width), height=int(height),
                      distortion_model="plumb_bob", d=[0.0] * 5, k=K.reshape(-1).tolist(),
                      r=np.eye(3).reshape(-1).tolist(), p=P.reshape(-1).tolist())


# ------------------------------------------------------------------------------------------------ poses

def pose_to_matrix(pose: Pose, topic: str = "pose") -> np.ndarray:
    """``geometry_msgs/Pose`` -> rigid 4x4; raises on NaN/inf or a zero quaternion."""
    p, q = pose.position, pose.orientation
    t = np.array([p.x, p.y, p.z], dtype=np.float64)
    quat = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
    if not np.all(np.isfinite(t)):
        raise MessageError(f"{topic}: field 'pose.position' contains NaN or inf")
    if not np.all(np.isfinite(quat)):
        raise MessageError(f"{topic}: field 'pose.orientation' contains NaN or inf")
    n = np.linalg.norm(quat)
    if n < 1e-6:
        raise MessageError(f"{topic}: field 'pose.orientation' is a zero quaternion")
    if abs(n - 1.0) > 1e-2:
        raise MessageError(f"{topic}: field 'pose.orientation' is not a unit quaternion (norm {n:.4f})")
    T = np.eye(4)
    T[:3, :3] = quaternion_to_matrix(quat / n)
    T[:3, 3] = t
    return T


def pose_stamped_to_matrix(msg: PoseStamped, topic: str = "camera_pose", frame_id: str | None = None) -> np.ndarray:
    """``PoseStamped`` -> 4x4; with ``frame_id`` its header must be in that frame."""
    if frame_id is not None and msg.header.frame_id and msg.header.frame_id != frame_id:
        raise MessageError(f"{topic}: field 'header.frame_id' is {msg.header.frame_id!r}, expected {frame_id!r}")
    return pose_to_matrix(msg.pose, topic)


def matrix_to_pose(T: np.ndarray) -> Pose:
    """Rigid 4x4 -> ``geometry_msgs/Pose``."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise MessageError(f"pose: expected a finite 4x4 matrix, got shape {T.shape}")
    q = matrix_to_quaternion(T[:3, :3])
    return Pose(position=Point(x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
                orientation=Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])))


def matrix_to_pose_stamped(T: np.ndarray, frame_id: str, stamp: float | Time = 0.0) -> PoseStamped:
    return PoseStamped(header=make_header(frame_id, stamp), pose=matrix_to_pose(T))


def goal_to_pose_stamped(goal: dict, frame_id: str, stamp: float | Time = 0.0) -> PoseStamped:
    """A retrieval goal ``{"position": [x,y,z], "yaw": rad}`` -> ``PoseStamped`` (yaw about world z)."""
    x, y, z = (float(v) for v in goal["position"])
    yaw = float(goal.get("yaw", 0.0))
    q = Quaternion(x=0.0, y=0.0, z=math.sin(yaw / 2.0), w=math.cos(yaw / 2.0))
    return PoseStamped(header=make_header(goal.get("frame_id") or frame_id, stamp),
                       pose=Pose(position=Point(x=x, y=y, z=z), orientation=q))


# ------------------------------------------------------------------------------------------------ PointCloud2

#: PointField datatype -> numpy type code (little-endian by default)
_PF_TYPES: dict[int, str] = {
    PointField.INT8: "i1", PointField.UINT8: "u1", PointField.INT16: "i2", PointField.UINT16: "u2",
    PointField.INT32: "i4", PointField.UINT32: "u4", PointField.FLOAT32: "f4", PointField.FLOAT64: "f8",
}


def cloud_dtype(msg: PointCloud2, topic: str = "semantic_map") -> np.dtype:
    """Structured numpy dtype of one point (``fields`` at their offsets, ``itemsize`` = ``point_step``)."""
    order = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for f in msg.fields:
        if f.datatype not in _PF_TYPES:
            raise MessageError(f"{topic}: field 'fields[{f.name}].datatype' {f.datatype} is unknown")
        if f.name in names:
            raise MessageError(f"{topic}: field 'fields' names {f.name!r} twice")
        base = np.dtype(order + _PF_TYPES[f.datatype])
        fmt = base if f.count <= 1 else np.dtype((base, (int(f.count),)))
        if f.offset + fmt.itemsize > msg.point_step:
            raise MessageError(f"{topic}: field 'fields[{f.name}]' (offset {f.offset}, {fmt.itemsize} bytes) "
                               f"extends past 'point_step' {msg.point_step}")
        names.append(f.name)
        formats.append(fmt)
        offsets.append(int(f.offset))
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": int(msg.point_step)})


def cloud_to_arrays(msg: PointCloud2, topic: str = "semantic_map", label_field: str = "instance"
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``PointCloud2`` with ``x, y, z`` and an integer ``instance`` field -> ((N,3) float32, (N,) int32).

    Points with a non-finite coordinate are dropped. ``row_step`` may pad each of the ``height`` rows.
    """
    names = {f.name for f in msg.fields}
    missing = [n for n in ("x", "y", "z", label_field) if n not in names]
    if missing:
        raise MessageError(f"{topic}: field 'fields' lacks {', '.join(missing)} (has {', '.join(sorted(names))})")
    dt = cloud_dtype(msg, topic)
    h, w = int(msg.height), int(msg.width)
    if msg.point_step <= 0:
        raise MessageError(f"{topic}: field 'point_step' is {msg.point_step}")
    if msg.row_step < w * msg.point_step:
        raise MessageError(f"{topic}: field 'row_step' {msg.row_step} is shorter than width*point_step "
                           f"= {w * msg.point_step}")
    n = len(msg.data)
    if n != h * msg.row_step:
        raise MessageError(f"{topic}: field 'data' has {n} bytes, expected height*row_step = {h * msg.row_step}")
    if h * w == 0:
        return np.zeros((0, 3), np.float32), np.zeros(0, np.int32)
    raw = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(h, msg.row_step)[:, :w * msg.point_step]
    pts = np.ascontiguousarray(raw).view(dt).reshape(-1)
    lab_dt = pts.dtype.fields[label_field][0]
    if lab_dt.kind not in "iu" or lab_dt.shape:
        raise MessageError(f"{topic}: field 'fields[{label_field}]' must be a scalar integer, got {lab_dt}")
    xyz = np.stack([pts["x"], pts["y"], pts["z"]], axis=1).astype(np.float32)
    labels = pts[label_field].astype(np.int64)
    keep = np.all(np.isfinite(xyz), axis=1)
    if (labels[keep] < 0).any() or (labels[keep] > np.iinfo(np.int32).max).any():
        raise MessageError(f"{topic}: field '{label_field}' holds ids outside 0..2^31-1")
    return xyz[keep], labels[keep].astype(np.int32)


def arrays_to_cloud(xyz: np.ndarray, labels: np.ndarray, frame_id: str = "map", stamp: float | Time = 0.0,
                    label_field: str = "instance") -> PointCloud2:
    """(N,3) points + (N,) int32 ids -> an unordered ``PointCloud2`` (x, y, z float32; ``instance`` int32)."""
    xyz = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != xyz.shape[0]:
        raise MessageError(f"cloud: {xyz.shape[0]} points but {labels.shape[0]} labels")
    dt = np.dtype({"names": ["x", "y", "z", label_field], "formats": ["<f4", "<f4", "<f4", "<i4"],
                   "offsets": [0, 4, 8, 12], "itemsize": 16})
    arr = np.zeros(xyz.shape[0], dtype=dt)
    arr["x"], arr["y"], arr["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    arr[label_field] = labels.astype(np.int32)
    fields = [PointField(name=n, offset=o, datatype=t, count=1)
              for n, o, t in (("x", 0, PointField.FLOAT32), ("y", 4, PointField.FLOAT32),
                              ("z", 8, PointField.FLOAT32), (label_field, 12, PointField.INT32))]
    msg = PointCloud2(header=make_header(frame_id, stamp), height=1, width=int(xyz.shape[0]), fields=fields,
                      is_bigendian=False, point_step=16, row_step=16 * int(xyz.shape[0]), is_dense=True)
    msg.data = arr.tobytes()
    return msg


# ------------------------------------------------------------------------------------------------ markers

def _colour(instance_id: str | int) -> ColorRGBA:
    """A stable colour per instance id (golden-ratio hue walk)."""
    try:
        k = int(instance_id)
    except (TypeError, ValueError):
        k = sum(map(ord, str(instance_id)))
    h = (k * 0.618033988749895) % 1.0
    i, f = int(h * 6), h * 6 - int(h * 6)
    v, s = 0.95, 0.75
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i % 6]
    return ColorRGBA(r=float(r), g=float(g), b=float(b), a=0.6)


def instance_markers(instances: dict[str, dict], frame_id: str, stamp: float | Time = 0.0,
                     ns: str = "instances") -> MarkerArray:
    """ViewStore-shaped instances (``{"id": {"aabb", "centroid", "category"}}``) -> boxes + text labels.

    Starts with a DELETEALL so that instances removed from the map disappear in RViz.
    """
    header = make_header(frame_id, stamp)
    out = MarkerArray()
    out.markers.append(Marker(header=header, ns=ns, action=Marker.DELETEALL))
    for k, (iid, info) in enumerate(sorted(instances.items(), key=lambda kv: str(kv[0]))):
        aabb = info.get("aabb")
        centroid = info.get("centroid")
        if aabb is None and centroid is None:
            continue
        if aabb is not None:
            lo, hi = np.asarray(aabb[0], dtype=float), np.asarray(aabb[1], dtype=float)
            c, size = (lo + hi) / 2.0, np.maximum(hi - lo, 0.01)
        else:
            c, size = np.asarray(centroid, dtype=float), np.full(3, 0.1)
        box = Marker(header=header, ns=ns, id=2 * k, type=Marker.CUBE, action=Marker.ADD,
                     pose=Pose(position=Point(x=float(c[0]), y=float(c[1]), z=float(c[2])),
                               orientation=Quaternion(w=1.0)),
                     scale=Vector3(x=float(size[0]), y=float(size[1]), z=float(size[2])), color=_colour(iid))
        label = f"{iid}" + (f" {info['category']}" if info.get("category") else "")
        text = Marker(header=header, ns=ns + "/labels", id=2 * k + 1, type=Marker.TEXT_VIEW_FACING,
                      action=Marker.ADD, text=label,
                      pose=Pose(position=Point(x=float(c[0]), y=float(c[1]), z=float(c[2] + size[2] / 2 + 0.1)),
                                orientation=Quaternion(w=1.0)),
                      scale=Vector3(z=0.12), color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0))
        out.markers += [box, text]
    return out


def match_markers(result: dict, frame_id: str, stamp: float | Time = 0.0, ns: str = "matches") -> MarkerArray:
    """A retrieval result -> a sphere on each matched centroid (scaled by rank) and an arrow for the goal."""
    header = make_header(frame_id, stamp)
    out = MarkerArray()
    out.markers.append(Marker(header=header, ns=ns, action=Marker.DELETEALL))
    for rank, m in enumerate(result.get("matches", [])):
        c = m.get("centroid")
        if c is None:
            continue
        s = 0.3 / (rank + 1)
        col = ColorRGBA(r=0.1, g=0.9, b=0.1, a=0.8) if rank == 0 and result.get("in_map") else \
            ColorRGBA(r=0.9, g=0.6, b=0.1, a=0.5)
        out.markers.append(Marker(header=header, ns=ns, id=1 + rank, type=Marker.SPHERE, action=Marker.ADD,
                                  pose=Pose(position=Point(x=float(c[0]), y=float(c[1]), z=float(c[2])),
                                            orientation=Quaternion(w=1.0)),
                                  scale=Vector3(x=s, y=s, z=s), color=col, text=str(m.get("instance_id"))))
    if result.get("in_map") and result.get("matches") and result["matches"][0].get("goal"):
        goal = goal_to_pose_stamped(result["matches"][0]["goal"], frame_id, stamp)
        out.markers.append(Marker(header=header, ns=ns + "/goal", id=0, type=Marker.ARROW, action=Marker.ADD,
                                  pose=goal.pose, scale=Vector3(x=0.5, y=0.08, z=0.08),
                                  color=ColorRGBA(r=0.1, g=0.4, b=1.0, a=1.0)))
    return out
