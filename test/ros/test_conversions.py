"""Messages <-> numpy: round trips for every encoding, and every bad case raises an SslNavError naming the field."""

import math

import numpy as np
import pytest

pytest.importorskip("rclpy")

from geometry_msgs.msg import PoseStamped  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from ssl_nav.errors import SslNavError  # noqa: E402
from ssl_nav.geometry import look_at  # noqa: E402
from ssl_nav.ros import conversions as conv  # noqa: E402

RNG = np.random.default_rng(0)

SAMPLES = {
    "rgb8": RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8),
    "bgr8": RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8),
    "rgba8": RNG.integers(0, 256, (5, 7, 4), dtype=np.uint8),
    "mono8": RNG.integers(0, 256, (5, 7), dtype=np.uint8),
    "16UC1": RNG.integers(0, 65536, (5, 7), dtype=np.uint16),
    "32FC1": RNG.normal(size=(5, 7)).astype(np.float32),
    "32SC1": RNG.integers(-2**31, 2**31 - 1, (5, 7), dtype=np.int32),
}


@pytest.mark.parametrize("encoding", sorted(SAMPLES))
def test_image_round_trip(encoding):
    arr = SAMPLES[encoding]
    msg = conv.numpy_to_image(arr, encoding, "cam", 12.5)
    assert msg.encoding == encoding and msg.height == 5 and msg.width == 7
    assert msg.header.frame_id == "cam" and conv.stamp_to_sec(msg.header.stamp) == 12.5
    back = conv.image_to_numpy(msg, "t")
    assert back.dtype == arr.dtype and np.array_equal(back, arr)


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1", "32SC1"])
def test_big_endian_image_is_byteswapped(encoding):
    arr = SAMPLES[encoding]
    msg = conv.numpy_to_image(arr, encoding)
    msg.is_bigendian = 1
    msg.data = arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    assert np.array_equal(conv.image_to_numpy(msg, "t"), arr)


def test_padded_rows_are_honoured():
    arr = SAMPLES["rgb8"]
    h, w, _ = arr.shape
    step = w * 3 + 5
    buf = np.full((h, step), 77, np.uint8)
    buf[:, :w * 3] = arr.reshape(h, -1)
    msg = Image(height=h, width=w, encoding="rgb8", step=step, is_bigendian=0)
    msg.data = buf.tobytes()
    assert np.array_equal(conv.image_to_numpy(msg, "t"), arr)


def test_colour_helpers():
    rgb = SAMPLES["rgb8"]
    assert np.array_equal(conv.image_to_rgb(conv.numpy_to_image(rgb[:, :, ::-1].copy(), "bgr8")), rgb)
    rgba = SAMPLES["rgba8"]
    assert np.array_equal(conv.image_to_rgb(conv.numpy_to_image(rgba, "rgba8")), rgba[:, :, :3])
    mono = conv.image_to_rgb(conv.numpy_to_image(SAMPLES["mono8"], "mono8"))
    assert mono.shape == (5, 7, 3) and np.array_equal(mono[:, :, 1], SAMPLES["mono8"])


def test_depth_16u_is_millimetres_and_32f_is_metres():
    mm = np.array([[0, 1000], [1500, 65535]], np.uint16)
    d = conv.image_to_depth(conv.numpy_to_image(mm, "16UC1"), "depth")
    assert d.dtype == np.float32 and np.allclose(d, mm * 0.001)
    m = np.array([[np.nan, 1.25]], np.float32)
    d2 = conv.image_to_depth(conv.numpy_to_image(m, "32FC1"), "depth")
    assert np.isnan(d2[0, 0]) and d2[0, 1] == np.float32(1.25)


def test_mask_encodings():
    ids = np.array([[0, 3], [70000, 1]], np.int32)
    assert np.array_equal(conv.image_to_mask(conv.numpy_to_image(ids, "32SC1")), ids)
    ids16 = np.array([[0, 3], [65535, 1]], np.uint16)
    out = conv.image_to_mask(conv.numpy_to_image(ids16, "16UC1"))
    assert out.dtype == np.int32 and np.array_equal(out, ids16.astype(np.int32))
    with pytest.raises(SslNavError, match="negative"):
        conv.image_to_mask(conv.numpy_to_image(np.array([[-1]], np.int32), "32SC1"))


def _bad(msg, fn=conv.image_to_numpy, **kw):
    with pytest.raises(SslNavError) as e:
        fn(msg, "some/topic", **kw)
    assert "some/topic" in str(e.value)
    return str(e.value)


def test_bad_images_name_topic_and_field():
    good = conv.numpy_to_image(SAMPLES["rgb8"], "rgb8")
    m = conv.numpy_to_image(SAMPLES["rgb8"], "rgb8")
    m.encoding = "yuv422"
    assert "encoding" in _bad(m)
    m = conv.numpy_to_image(SAMPLES["rgb8"], "rgb8")
    m.step = 7 * 3 - 1
    assert "step" in _bad(m)
    m = conv.numpy_to_image(SAMPLES["rgb8"], "rgb8")
    m.data = bytes(good.data)[:-1]
    assert "data" in _bad(m)
    m = conv.numpy_to_image(SAMPLES["rgb8"], "rgb8")
    m.height = 6  # claims more rows than it carries
    assert "data" in _bad(m)
    m = conv.numpy_to_image(SAMPLES["rgb8"], "rgb8")
    m.width = 0
    assert "width" in _bad(m)
    # a depth topic given a colour image
    assert "expected" in _bad(conv.numpy_to_image(SAMPLES["rgb8"], "rgb8"), conv.image_to_depth)
    with pytest.raises(SslNavError, match="channel"):
        conv.numpy_to_image(SAMPLES["mono8"], "rgb8")
    with pytest.raises(SslNavError, match="dtype"):
        conv.numpy_to_image(SAMPLES["32FC1"], "16UC1")


def test_compressed_round_trip_and_garbage():
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[:, :12] = (200, 30, 10)
    back = conv.compressed_to_rgb(conv.rgb_to_compressed(rgb, "png"))
    assert np.array_equal(back, rgb)
    jpg = conv.compressed_to_rgb(conv.rgb_to_compressed(rgb, "jpeg"))
    assert np.abs(jpg.astype(int) - rgb).mean() < 8
    junk = CompressedImage(format="jpeg")
    junk.data = b"not an image at all"
    assert "decoded" in _bad(junk, conv.compressed_to_rgb)
    assert "empty" in _bad(CompressedImage(format="jpeg"), conv.compressed_to_rgb)


def test_camera_info():
    K = np.array([[300.0, 0, 32], [0, 310.0, 24], [0, 0, 1]])
    info = conv.K_to_camera_info(K, 64, 48, "cam")
    assert np.allclose(conv.camera_info_to_K(info), K)
    assert "'k'" in _bad(CameraInfo(), conv.camera_info_to_K)  # all zeros: uncalibrated
    info.k[0] = math.nan
    assert "NaN" in _bad(info, conv.camera_info_to_K)


def test_pose_round_trip_and_bad_poses():
    T = look_at(np.array([1.0, -2.0, 1.2]), np.array([3.0, 0.5, 0.4]))
    msg = conv.matrix_to_pose_stamped(T, "map", 3.25)
    assert msg.header.frame_id == "map"
    assert np.allclose(conv.pose_stamped_to_matrix(msg, "pose", "map"), T, atol=1e-9)
    assert "frame_id" in _bad(msg, conv.pose_stamped_to_matrix, frame_id="odom")
    bad = conv.matrix_to_pose_stamped(T, "map")
    bad.pose.position.x = math.nan
    assert "position" in _bad(bad, conv.pose_stamped_to_matrix)
    bad = conv.matrix_to_pose_stamped(T, "map")
    bad.pose.orientation.w = math.inf
    assert "orientation" in _bad(bad, conv.pose_stamped_to_matrix)
    zero = PoseStamped()
    zero.pose.orientation.w = 0.0
    assert "zero quaternion" in _bad(zero, conv.pose_stamped_to_matrix)
    bad = conv.matrix_to_pose_stamped(T, "map")
    bad.pose.orientation.w *= 3
    assert "unit" in _bad(bad, conv.pose_stamped_to_matrix)


def test_goal_pose_yaw():
    ps = conv.goal_to_pose_stamped({"position": [1, 2, 0], "yaw": math.pi / 2}, "map", 1.0)
    T = conv.pose_stamped_to_matrix(ps)
    assert np.allclose(T[:3, 3], [1, 2, 0]) and np.allclose(T[:3, 0], [0, 1, 0], atol=1e-9)


def test_stamp_conversion():
    for t in (0.0, 1.5, 1234567.999999999):
        assert abs(conv.stamp_to_sec(conv.sec_to_stamp(t)) - t) < 2e-9
    with pytest.raises(SslNavError):
        conv.sec_to_stamp(math.nan)


def test_cloud_round_trip():
    xyz = RNG.normal(size=(10, 3)).astype(np.float32)
    lab = np.arange(10, dtype=np.int32) % 3 + 1
    xyz[4] = np.nan
    pts, ids = conv.cloud_to_arrays(conv.arrays_to_cloud(xyz, lab), "semantic_map")
    keep = np.arange(10) != 4
    assert np.array_equal(pts, xyz[keep]) and np.array_equal(ids, lab[keep])


def test_cloud_with_foreign_layout_padding_and_big_endian():
    """An organised 2x3 cloud with an rgb float, uint16 instance, padded points and rows, big-endian."""
    h, w, point_step, row_step = 2, 3, 24, 24 * 3 + 8
    dt = np.dtype({"names": ["x", "y", "z", "rgb", "instance"], "formats": [">f4", ">f4", ">f4", ">f4", ">u2"],
                   "offsets": [0, 4, 8, 16, 20], "itemsize": point_step})
    pts = np.zeros(h * w, dt)
    xyz = RNG.normal(size=(h * w, 3)).astype(np.float32)
    pts["x"], pts["y"], pts["z"] = xyz.T
    pts["instance"] = np.arange(h * w) + 60000
    buf = np.zeros((h, row_step), np.uint8)
    buf[:, :w * point_step] = np.frombuffer(pts.tobytes(), np.uint8).reshape(h, -1)
    fields = [PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
              PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
              PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
              PointField(name="rgb", offset=16, datatype=PointField.FLOAT32, count=1),
              PointField(name="instance", offset=20, datatype=PointField.UINT16, count=1)]
    msg = PointCloud2(height=h, width=w, fields=fields, is_bigendian=True, point_step=point_step,
                      row_step=row_step, is_dense=True)
    msg.data = buf.tobytes()
    out_xyz, out_ids = conv.cloud_to_arrays(msg)
    assert np.allclose(out_xyz, xyz) and np.array_equal(out_ids, np.arange(6) + 60000)


def test_bad_clouds():
    good = conv.arrays_to_cloud(np.zeros((3, 3)), np.ones(3))
    no_inst = conv.arrays_to_cloud(np.zeros((3, 3)), np.ones(3), label_field="label")
    assert "instance" in _bad(no_inst, conv.cloud_to_arrays)
    m = conv.arrays_to_cloud(np.zeros((3, 3)), np.ones(3))
    m.data = bytes(good.data)[:-2]
    assert "data" in _bad(m, conv.cloud_to_arrays)
    m = conv.arrays_to_cloud(np.zeros((3, 3)), np.ones(3))
    m.row_step = 10
    assert "row_step" in _bad(m, conv.cloud_to_arrays)
    m = conv.arrays_to_cloud(np.zeros((3, 3)), np.ones(3))
    m.fields[3].offset = 14  # runs past point_step
    assert "point_step" in _bad(m, conv.cloud_to_arrays)
    m = conv.arrays_to_cloud(np.zeros((3, 3)), np.ones(3))
    m.fields[3].datatype = PointField.FLOAT32
    assert "integer" in _bad(m, conv.cloud_to_arrays)


def test_markers():
    inst = {"3": {"category": "mug", "centroid": [1, 2, 0.5], "aabb": [[0.9, 1.9, 0.4], [1.1, 2.1, 0.6]]},
            "5": {"category": None, "centroid": [0, 0, 0], "aabb": None}}
    ma = conv.instance_markers(inst, "map", 1.0)
    assert ma.markers[0].action == Marker.DELETEALL
    cubes = [m for m in ma.markers if m.type == Marker.CUBE]
    texts = [m for m in ma.markers if m.type == Marker.TEXT_VIEW_FACING]
    assert len(cubes) == 2 and len(texts) == 2 and "mug" in texts[0].text
    assert cubes[0].pose.position.x == pytest.approx(1.0) and cubes[0].scale.x == pytest.approx(0.2)
    added = [m for m in ma.markers if m.action == Marker.ADD]
    assert len({(m.ns, m.id) for m in added}) == len(added) == 4
    res = {"in_map": True, "matches": [{"instance_id": "3", "centroid": [1, 2, 0.5],
                                        "goal": {"position": [0, 2, 0], "yaw": 0.0}},
                                       {"instance_id": "5", "centroid": [0, 0, 0], "goal": None}]}
    mm = conv.match_markers(res, "map")
    assert mm.markers[0].action == Marker.DELETEALL
    assert [m.type for m in mm.markers[1:]] == [Marker.SPHERE, Marker.SPHERE, Marker.ARROW]
    res["in_map"] = False
    assert [m.type for m in conv.match_markers(res, "map").markers[1:]] == [Marker.SPHERE, Marker.SPHERE]
