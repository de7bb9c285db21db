"""ROS-free image payload decoding (ssl_nav.recordings.images), shared by the ROS nodes and the bag reader."""

import cv2
import numpy as np
import pytest

from ssl_nav.recordings.images import (MessageError, decode_compressed_depth, decode_image,
                                       encode_compressed_depth_16u)


def test_padded_rows_and_big_endian_16uc1():
    arr = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000
    rows = np.zeros((3, 10), np.uint8)  # step 10 = 8 bytes of pixels + 2 of padding
    rows[:, :8] = arr.astype(">u2").view(np.uint8).reshape(3, 8)
    assert np.array_equal(decode_image("16UC1", 3, 4, 10, True, rows.reshape(-1), "d"), arr)


def test_errors_name_topic_and_field():
    with pytest.raises(MessageError, match=r"cam: field 'encoding' is 'yuv422'"):
        decode_image("yuv422", 2, 2, 4, False, bytes(8), "cam")
    with pytest.raises(MessageError, match=r"cam: field 'data' has 7 bytes"):
        decode_image("mono8", 2, 4, 4, False, bytes(7), "cam")


def test_compressed_depth_16u_and_32f():
    mm = np.array([[0, 1000], [2500, 65535]], np.uint16)
    d = decode_compressed_depth(encode_compressed_depth_16u(mm), "16UC1; compressedDepth png", "d")
    assert np.allclose(d, mm * 0.001)
    # 32FC1: inverse-depth quantisation d = A / (v - B) (compressed_depth_image_transport)
    A, B = 100.0, 10.0
    depth = np.array([[0.0, 1.0], [2.0, 4.0]], np.float32)
    v = np.where(depth > 0, A / np.where(depth > 0, depth, 1) + B, 0).astype(np.uint16)
    ok, png = cv2.imencode(".png", v)
    payload = np.array([0], "<i4").tobytes() + np.array([A, B], "<f4").tobytes() + png.tobytes()
    assert np.allclose(decode_compressed_depth(payload, "32FC1; compressedDepth png", "d"), depth, atol=1e-3)
    with pytest.raises(MessageError, match="rvl codec is not supported"):
        decode_compressed_depth(payload, "16UC1; compressedDepth rvl", "d")
    with pytest.raises(MessageError, match="not a compressedDepth PNG"):
        decode_compressed_depth(b"garbage-garbage-garbage", "16UC1; compressedDepth png", "d")
