"""ROS image payloads <-> numpy, without ROS: the decoding shared by the ROS nodes and the bag reader.

``sensor_msgs/Image`` (REP 104 / sensor_msgs conventions): ``data`` holds ``height`` rows of ``step`` bytes,
each row starting with ``width`` pixels of the encoding's size (padding after them is allowed);
``is_bigendian`` gives the byte order of multi-byte channels. Depth is ``32FC1`` in metres or ``16UC1`` in
millimetres (``depth_scale_16u`` m per unit; 0 = invalid).

``sensor_msgs/CompressedImage``: ``format`` ``jpeg``/``png`` (image_transport's compressed plugin writes
``"rgb8; jpeg compressed bgr8"``), or ``compressedDepth`` (compressed_depth_image_transport): a 12-byte
``ConfigHeader`` (int32 format, float32 depthParam[2]) and a PNG; for ``16UC1`` the PNG holds the raw
millimetres, for ``32FC1`` an inverse-depth quantisation ``d = depthParam[0] / (v - depthParam[1])`` (0 =
invalid). The ``rvl`` codec is not supported.

Every function takes the ``topic`` the payload came from, so that a failure names it: a bad payload raises
:class:`MessageError` (a :class:`~ssl_nav.errors.FrameError`) saying the topic, the field and what is wrong.
:mod:`ssl_nav.ros.conversions` wraps these for rclpy messages; :mod:`ssl_nav.recordings.bag` for rosbags ones.
"""

from __future__ import annotations

import array
from typing import Iterable

import cv2
import numpy as np

from ssl_nav.errors import FrameError


class MessageError(FrameError):
    """A ROS message is unusable (wrong encoding, size mismatch, NaN pose, bad layout); names topic and field."""


#: encoding -> (numpy dtype (little-endian), channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "16UC1": (np.dtype("<u2"), 1),
    "mono16": (np.dtype("<u2"), 1),
    "32FC1": (np.dtype("<f4"), 1),
    "32SC1": (np.dtype("<i4"), 1),
}
#: encodings a colour stream may use, and a depth stream
RGB_ENCODINGS = ("rgb8", "bgr8", "rgba8", "mono8")
DEPTH_ENCODINGS = ("32FC1", "16UC1", "mono16")

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def decode_image(encoding: str, height: int, width: int, step: int, is_bigendian: bool, data,
                 topic: str = "image", expect: Iterable[str] | None = None) -> np.ndarray:
    """A raw image payload as an HxW or HxWxC array of its encoding's dtype (native byte order; a copy).

    ``expect`` restricts the accepted encodings. Raises :class:`MessageError` for an unknown or unexpected
    encoding, a zero size, a ``step`` shorter than a row, or ``data`` shorter/longer than ``height * step``.
    """
    enc = encoding
    if enc not in ENCODINGS:
        raise MessageError(f"{topic}: field 'encoding' is {enc!r}; supported: {', '.join(ENCODINGS)}")
    if expect is not None:
        expect = tuple(expect)
        if enc not in expect:
            raise MessageError(f"{topic}: field 'encoding' is {enc!r}, expected one of {', '.join(expect)}")
    dtype, ch = ENCODINGS[enc]
    h, w, step = int(height), int(width), int(step)
    if h <= 0 or w <= 0:
        raise MessageError(f"{topic}: image size {w}x{h} is empty (fields 'width', 'height')")
    row = w * ch * dtype.itemsize
    if step < row:
        raise MessageError(f"{topic}: field 'step' {step} is shorter than a row of {w} {enc} pixels ({row} bytes)")
    n = len(data)
    if n != h * step:
        raise MessageError(f"{topic}: field 'data' has {n} bytes, expected height*step = {h}*{step} = {h * step}")
    # rclpy gives array.array('B') and rosbags np.ndarray, which numpy reads without a copy; lists are copied
    buf = np.frombuffer(data if isinstance(data, (bytes, bytearray, memoryview, array.array, np.ndarray))
                        else bytes(data), dtype=np.uint8)
    rows = buf.reshape(h, step)[:, :row]
    if dtype.itemsize > 1:
        dt = dtype.newbyteorder(">") if is_bigendian else dtype.newbyteorder("<")
        arr = np.ascontiguousarray(rows).view(dt).reshape(h, w, ch).astype(dtype.newbyteorder("="))
    else:
        arr = np.array(rows).reshape(h, w, ch)
    return arr[:, :, 0] if ch == 1 else arr


def array_to_rgb(arr: np.ndarray, encoding: str) -> np.ndarray:
    """A decoded colour or mono array (:func:`decode_image`) -> uint8 HxWx3 RGB."""
    if encoding == "rgb8":
        return arr
    if encoding == "bgr8":
        return np.ascontiguousarray(arr[:, :, ::-1])
    if encoding == "rgba8":
        return np.ascontiguousarray(arr[:, :, :3])
    return np.repeat(arr[:, :, None], 3, axis=2)


def array_to_depth(arr: np.ndarray, depth_scale_16u: float = 0.001) -> np.ndarray:
    """A decoded depth array (``32FC1`` metres or ``16UC1`` units) -> float32 HxW metres (0/NaN = invalid)."""
    if arr.dtype == np.float32:
        return arr.astype(np.float32, copy=False)
    return arr.astype(np.float32) * np.float32(depth_scale_16u)


def decode_compressed_rgb(data, fmt: str = "", topic: str = "image/compressed") -> np.ndarray:
    """``CompressedImage`` bytes (JPEG/PNG) -> uint8 HxWx3 RGB, decoded with OpenCV."""
    buf = np.frombuffer(bytes(data) if not isinstance(data, np.ndarray) else data, dtype=np.uint8)
    if buf.size == 0:
        raise MessageError(f"{topic}: field 'data' is empty")
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise MessageError(f"{topic}: field 'data' cannot be decoded as an image (format {fmt!r})")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def decode_compressed_depth(data, fmt: str, topic: str = "depth/compressedDepth",
                            depth_scale_16u: float = 0.001) -> np.ndarray:
    """A ``compressedDepth`` payload (module docstring) -> float32 HxW metres (0 = invalid)."""
    f = fmt.replace(" ", "")
    enc = f.split(";", 1)[0]
    if "compressedDepth" not in f or enc not in ("16UC1", "32FC1"):
        raise MessageError(f"{topic}: field 'format' is {fmt!r}; supported: '16UC1; compressedDepth png', "
                           f"'32FC1; compressedDepth png'")
    if "rvl" in f:
        raise MessageError(f"{topic}: field 'format' is {fmt!r}: the rvl codec is not supported (png is)")
    raw = bytes(data) if not isinstance(data, np.ndarray) else data.tobytes()
    params = (0.0, 0.0)
    if not raw.startswith(_PNG_MAGIC):
        if len(raw) < 12 or not raw[12:].startswith(_PNG_MAGIC):
            raise MessageError(f"{topic}: field 'data' is not a compressedDepth PNG (no PNG after the 12-byte "
                               f"header)")
        params = tuple(float(v) for v in np.frombuffer(raw[4:12], dtype="<f4"))
        raw = raw[12:]
    img = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 2 or img.dtype != np.uint16:
        raise MessageError(f"{topic}: field 'data' cannot be decoded as a 16-bit single-channel PNG")
    if enc == "16UC1":
        return img.astype(np.float32) * np.float32(depth_scale_16u)
    a, b = params
    v = img.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(v > 0, np.float32(a) / (v - np.float32(b)), 0.0).astype(np.float32)
    d[~np.isfinite(d) | (d < 0)] = 0.0
    return d


def encode_compressed_depth_16u(depth_units: np.ndarray) -> bytes:
    """uint16 depth -> a ``16UC1; compressedDepth png`` payload (header with zero params, then the PNG)."""
    ok, buf = cv2.imencode(".png", np.asarray(depth_units, dtype=np.uint16))
    if not ok:
        raise MessageError("cannot encode the depth image as PNG")
    return np.array([0], dtype="<i4").tobytes() + np.zeros(2, dtype="<f4").tobytes() + buf.tobytes()
