"""rosbag2 in and out (ssl_nav.recordings.bag, .bag_writer): real MCAP and sqlite3 bags written with rosbags.

Covers the round trip (frames -> bag -> frames), every documented encoding, poses from /tf, from a pose
topic and interpolated between /tf samples, pairing by stamp, and every bad recording the CLI refuses: each must
fail with a message naming the bag and the topic or frames, and leave no store and no temporary directory.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from ssl_nav.cli import main
from ssl_nav.config import PipelineConfig
from ssl_nav.frames import FramesWriter, SkippedFrame, depth_to_png16, read_frames_dir
from ssl_nav.geometry import invert, matrix_to_quaternion
from ssl_nav.recordings import RecordingError
from ssl_nav.recordings.bag import iter_bag_frames, pair_by_stamp
from ssl_nav.recordings.bag_writer import T_BODY_OPTICAL, frames_dir_to_bag
from ssl_nav.recordings.images import encode_compressed_depth_16u
from testkit import scenes

TS = get_typestore(Stores.ROS2_HUMBLE)
T = TS.types
RGB, DEPTH, INFO = "/camera/camera/color/image_raw", "/camera/camera/aligned_depth_to_color/image_raw", \
    "/camera/camera/color/camera_info"


def _frames(n: int = 5, w: int = 160, h: int = 120):
    out = []
    for i, pose in enumerate(scenes.orbit_poses(n)):
        f = scenes.render(scenes.default_boxes(), pose, width=w, height=h, frame_id=f"{i:06d}")
        f.stamp = 100.0 + 0.2 * i
        out.append(f)
    return out


def _header(stamp: float, frame_id: str):
    sec = int(stamp)
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=int(round((stamp - sec) * 1e9))),
                                    frame_id=frame_id)


def _image(arr: np.ndarray, enc: str, stamp: float, bigendian: bool = False):
    arr = np.ascontiguousarray(arr)
    if bigendian:
        arr = arr.astype(arr.dtype.newbyteorder(">"))
    return T["sensor_msgs/msg/Image"](header=_header(stamp, "camera_color_optical_frame"), height=arr.shape[0],
                                      width=arr.shape[1], encoding=enc, is_bigendian=int(bigendian),
                                      step=arr.strides[0], data=arr.reshape(-1).view(np.uint8))


def _tf(parent: str, child: str, M: np.ndarray, stamp: float):
    q = matrix_to_quaternion(M[:3, :3])
    tr = T["geometry_msgs/msg/TransformStamped"](
        header=_header(stamp, parent), child_frame_id=child,
        transform=T["geometry_msgs/msg/Transform"](
            translation=T["geometry_msgs/msg/Vector3"](x=M[0, 3], y=M[1, 3], z=M[2, 3]),
            rotation=T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3])))
    return T["tf2_msgs/msg/TFMessage"](transforms=[tr])


def _info(K: np.ndarray, w: int, h: int, stamp: float):
    return T["sensor_msgs/msg/CameraInfo"](
        header=_header(stamp, "camera_color_optical_frame"), height=h, width=w, distortion_model="plumb_bob",
        d=np.zeros(5), k=K.reshape(-1), r=np.eye(3).reshape(-1), p=np.hstack([K, np.zeros((3, 1))]).reshape(-1),
        binning_x=0, binning_y=0, roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0,
                                                                            width=0, do_rectify=False))


def write_bag(path: Path, frames, *, storage: str = "mcap", rgb: str = "rgb8", depth: str = "16UC1",
              compressed: bool = False, tf_every: int = 1, depth_offset: float = 0.0, pose_topic: str | None = None,
              odometry: bool = False, depth_size=None, stamps=None, bigendian: bool = False) -> Path:
    """A bag as a RealSense driver records it: map->camera_link on /tf, camera_link->optical on /tf_static."""
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as w:
        img_t = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
        c = {RGB: w.add_connection(RGB, img_t, typestore=TS), DEPTH: w.add_connection(DEPTH, img_t, typestore=TS),
             INFO: w.add_connection(INFO, "sensor_msgs/msg/CameraInfo", typestore=TS),
             "/tf": w.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=TS),
             "/tf_static": w.add_connection("/tf_static", "tf2_msgs/msg/TFMessage", typestore=TS)}
        if pose_topic:
            typ = "nav_msgs/msg/Odometry" if odometry else "geometry_msgs/msg/PoseStamped"
            c[pose_topic] = w.add_connection(pose_topic, typ, typestore=TS)

        log = [0.0]

        def put(topic, msg, typ, _s):  # log time: when the recorder got it (increasing), whatever the stamp
            w.write(c[topic], int(log[0] * 1e9), TS.serialize_cdr(msg, typ))

        s0 = frames[0].stamp
        put("/tf_static", _tf("camera_link", "camera_color_optical_frame", T_BODY_OPTICAL, s0),
            "tf2_msgs/msg/TFMessage", s0)
        for i, f in enumerate(frames):
            s = f.stamp if stamps is None else stamps[i]
            log[0] = f.stamp + 0.01
            T_wb = f.T_world_cam @ invert(T_BODY_OPTICAL)
            if pose_topic and odometry:
                pose = _pose(T_wb)
                put(pose_topic, T["nav_msgs/msg/Odometry"](
                    header=_header(s, "map"), child_frame_id="camera_link",
                    pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36)),
                    twist=T["geometry_msgs/msg/TwistWithCovariance"](
                        twist=T["geometry_msgs/msg/Twist"](linear=T["geometry_msgs/msg/Vector3"](x=0, y=0, z=0),
                                                           angular=T["geometry_msgs/msg/Vector3"](x=0, y=0, z=0)),
                        covariance=np.zeros(36))), "nav_msgs/msg/Odometry", s)
            elif pose_topic:
                put(pose_topic, T["geometry_msgs/msg/PoseStamped"](header=_header(s, "map"), pose=_pose(f.T_world_cam)),
                    "geometry_msgs/msg/PoseStamped", s)
            elif i % tf_every == 0 or i == len(frames) - 1:
                put("/tf", _tf("map", "camera_link", T_wb, s), "tf2_msgs/msg/TFMessage", s)
            h, wd = f.shape
            put(INFO, _info(f.K, wd, h, s), "sensor_msgs/msg/CameraInfo", s)
            mm = depth_to_png16(f.depth)
            if depth_size is not None:
                mm = cv2.resize(mm, depth_size, interpolation=cv2.INTER_NEAREST)
            if compressed:
                ok, buf = cv2.imencode(".png", cv2.cvtColor(f.rgb, cv2.COLOR_RGB2BGR))
                put(RGB, T["sensor_msgs/msg/CompressedImage"](header=_header(s, "camera_color_optical_frame"),
                                                               format="rgb8; png compressed bgr8",
                                                               data=np.frombuffer(buf.tobytes(), np.uint8)),
                    "sensor_msgs/msg/CompressedImage", s)
                put(DEPTH, T["sensor_msgs/msg/CompressedImage"](
                    header=_header(s + depth_offset, "camera_color_optical_frame"),
                    format="16UC1; compressedDepth png",
                    data=np.frombuffer(encode_compressed_depth_16u(mm), np.uint8)), "sensor_msgs/msg/CompressedImage",
                    s + depth_offset)
                continue
            img = {"rgb8": f.rgb, "bgr8": f.rgb[:, :, ::-1], "mono8": f.rgb[:, :, 1]}.get(rgb, f.rgb)
            put(RGB, _image(img, rgb, s), "sensor_msgs/msg/Image", s)
            d = mm if depth == "16UC1" else (mm.astype(np.float32) * np.float32(0.001))
            put(DEPTH, _image(d, depth, s + depth_offset, bigendian), "sensor_msgs/msg/Image", s + depth_offset)
    return path


def _pose(M):
    q = matrix_to_quaternion(M[:3, :3])
    return T["geometry_msgs/msg/Pose"](position=T["geometry_msgs/msg/Point"](x=M[0, 3], y=M[1, 3], z=M[2, 3]),
                                       orientation=T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))


def _read(path, cfg=None):
    return list(iter_bag_frames(path, cfg or PipelineConfig()))


def _assert_same(frames, got, rgb_equal=True, depth_atol=0.0005):
    got = [g for g in got if not isinstance(g, SkippedFrame)]
    assert len(got) == len(frames)
    for f, g in zip(frames, got):
        if rgb_equal:
            assert np.array_equal(f.rgb, g.rgb)
        assert np.allclose(f.depth, g.depth, atol=depth_atol)
        assert np.allclose(f.T_world_cam, g.T_world_cam, atol=1e-6)
        assert np.allclose(f.K, g.K)
        assert g.stamp == pytest.approx(f.stamp, abs=1e-6)


# ------------------------------------------------------------------------------------------------ reading

@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_reads_raw_rgb8_16uc1_with_tf_chain(tmp_path, storage):
    fr = _frames()
    _assert_same(fr, _read(write_bag(tmp_path / "b", fr, storage=storage)))


@pytest.mark.parametrize("rgb,depth,big", [("bgr8", "32FC1", False), ("mono8", "16UC1", True), ("rgb8", "32FC1", True)])
def test_reads_every_documented_encoding(tmp_path, rgb, depth, big):
    fr = _frames(3)
    got = _read(write_bag(tmp_path / "b", fr, rgb=rgb, depth=depth, bigendian=big))
    _assert_same(fr, got, rgb_equal=rgb != "mono8")
    if rgb == "mono8":
        assert np.array_equal(got[0].rgb[:, :, 0], fr[0].rgb[:, :, 1])


@pytest.mark.parametrize("storage,suffix", [("mcap", "*.mcap"), ("sqlite3", "*.db3")])
def test_reads_a_lone_storage_file_and_compressed_images(tmp_path, storage, suffix):
    fr = _frames(3)
    bag = write_bag(tmp_path / "b", fr, compressed=True, storage=storage)
    _assert_same(fr, _read(next(bag.glob(suffix))))


def test_pose_is_interpolated_between_tf_samples(tmp_path):
    fr = _frames(5)
    got = _read(write_bag(tmp_path / "b", fr, tf_every=2))  # /tf only at frames 0, 2, 4
    assert np.allclose(got[2].T_world_cam, fr[2].T_world_cam, atol=1e-9)
    mid = got[1].T_world_cam  # halfway on the orbit's arc: rotation and translation between its neighbours
    assert np.allclose(mid[:3, :3] @ mid[:3, :3].T, np.eye(3), atol=1e-9)
    c0, c1, c2 = fr[0].T_world_cam[:3, 3], fr[2].T_world_cam[:3, 3], mid[:3, 3]
    assert np.allclose(c2, (c0 + c1) / 2, atol=1e-9)  # the optical frame is rigid below camera_link: lerp holds
    ang = np.degrees(np.arccos(np.clip((np.trace(fr[1].T_world_cam[:3, :3].T @ mid[:3, :3]) - 1) / 2, -1, 1)))
    assert ang < 1e-6  # the orbit turns at a constant rate, so slerp lands on the true middle rotation


@pytest.mark.parametrize("odometry", [False, True])
def test_pose_from_a_pose_topic(tmp_path, odometry):
    fr = _frames(3)
    bag = write_bag(tmp_path / "b", fr, pose_topic="/robot/pose", odometry=odometry)
    cfg = PipelineConfig()
    cfg.recordings = dataclasses.replace(cfg.recordings, pose_source="topic", pose_topic="/robot/pose")
    _assert_same(fr, _read(bag, cfg))


def test_depth_pairs_within_the_sync_tolerance_only(tmp_path):
    fr = _frames(3)
    assert len([f for f in _read(write_bag(tmp_path / "a", fr, depth_offset=0.03))
                if not isinstance(f, SkippedFrame)]) == 3
    got = _read(write_bag(tmp_path / "b", fr, depth_offset=0.08))  # ros.sync_tolerance_s is 0.05
    assert all(isinstance(g, SkippedFrame) and "no depth within ros.sync_tolerance_s" in g.reason for g in got)


def test_pair_by_stamp_is_one_to_one_and_nearest():
    assert pair_by_stamp([1.0, 1.01, 2.0], [1.005, 2.04, 5.0], 0.05) == [0, None, 1]
    assert pair_by_stamp([1.0], [0.96, 1.02], 0.05) == [1]


def test_frames_dir_to_bag_round_trip_is_exact(tmp_path):
    fr = _frames(4)
    with FramesWriter(tmp_path / "f") as w:
        for f in fr:
            w.write(f)
    for storage in ("mcap", "sqlite3"):
        info = frames_dir_to_bag(tmp_path / "f", tmp_path / f"out_{storage}", PipelineConfig(), storage)
        assert info["frames"] == 4
        got = _read(tmp_path / f"out_{storage}")
        want = list(read_frames_dir(tmp_path / "f"))
        _assert_same(want, got, depth_atol=0.0)
        assert all(np.array_equal(a.instance_mask, b.instance_mask) for a, b in zip(want, got))
    assert not list(tmp_path.glob(".out_*"))  # no temporary bag left


# ------------------------------------------------------------------------------------------------ bad recordings

@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """Run ``ssl-nav collect --bag`` with its own TMPDIR; return (rc, stderr, store)."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)

    def run(bag: Path, *extra: str):
        store = tmp_path / "store"
        rc = main(["collect", "--bag", str(bag), "--store", str(store), "--quiet", *extra])
        err = capsys.readouterr().err
        return rc, err, store, tmp
    return run


def _fails(cli, bag, *extra, expect=()):
    rc, err, store, tmp = cli(bag, *extra)
    assert rc == 2, err
    assert "Traceback" not in err
    assert str(bag) in err
    for e in expect:
        assert e in err, err
    assert not store.exists()  # nothing written
    assert not list(tmp.iterdir())  # the temporary frames directory is gone
    return err


def test_missing_topic_names_the_topics_the_bag_has(tmp_path, cli):
    bag = write_bag(tmp_path / "b", _frames(2))
    _fails(cli, bag, "--rgb-topic", "/camera/color/image_raw",
           expect=("'/camera/color/image_raw' is not in the bag", RGB, DEPTH, INFO, "/tf_static"))


def test_unknown_encoding(tmp_path, cli):
    bag = write_bag(tmp_path / "b", _frames(2), rgb="yuv422")
    _fails(cli, bag, expect=(RGB, "'yuv422'", "rgb8"))


def test_no_tf_path_names_the_frames_seen(tmp_path, cli):
    bag = write_bag(tmp_path / "b", _frames(2))
    _fails(cli, bag, "--world-frame", "odom",
           expect=("'odom'", "'camera_color_optical_frame'", "frames seen: camera_color_optical_frame, camera_link, map"))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_or_corrupt_bag(tmp_path, cli, storage):
    bag = write_bag(tmp_path / "b", _frames(3), storage=storage)
    data = next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))
    raw = data.read_bytes()
    if storage == "mcap":
        data.write_bytes(raw[: len(raw) // 2])  # cut mid-recording, as a crash leaves it
    else:
        data.write_bytes(raw[:100] + bytes(len(raw) - 100))  # the sqlite pages zeroed
    _fails(cli, bag, expect=("truncated or corrupt",))


def test_depth_and_colour_of_different_sizes(tmp_path, cli):
    bag = write_bag(tmp_path / "b", _frames(2), depth_size=(80, 60))
    _fails(cli, bag, expect=(DEPTH, RGB, "80x60", "160x120"))


def test_compressed_depth_of_a_different_size(tmp_path, cli):
    bag = write_bag(tmp_path / "b", _frames(2), compressed=True, depth_size=(80, 60))
    _fails(cli, bag, expect=(DEPTH, "80x60", "160x120"))


def test_stamps_that_go_backwards(tmp_path, cli):
    fr = _frames(3)
    bag = write_bag(tmp_path / "b", fr, stamps=[100.0, 100.4, 100.2])
    _fails(cli, bag, expect=(RGB, "go backwards", "message 2"))


def test_no_usable_frame_is_an_error(tmp_path, cli):
    bag = write_bag(tmp_path / "b", _frames(2), depth_offset=0.5)
    _fails(cli, bag, expect=("none of its 2 colour images became a frame", "no depth within"))
    keep = tmp_path / "keep"
    keep.mkdir()
    _fails(cli, bag, "--keep-frames", str(keep), expect=("none of its 2 colour images",))
    assert keep.is_dir() and not list(keep.iterdir())  # made by the user: left, and left empty


def test_not_a_bag(tmp_path, cli):
    d = tmp_path / "nobag"
    d.mkdir()
    (d / "metadata.yaml").write_text("not: [a bag")
    _fails(cli, d)
    with pytest.raises(RecordingError, match="bag not found"):
        _read(tmp_path / "missing")


# ------------------------------------------------------------------------------------------------ CLI

def test_collect_bag_builds_the_store_and_keep_frames(tmp_path, capsys):
    fr = _frames(6)
    bag = write_bag(tmp_path / "b", fr, depth_offset=0.01)
    rc = main(["collect", "--bag", str(bag), "--store", str(tmp_path / "s"), "--quiet", "--keep-frames",
               str(tmp_path / "kept")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "6 colour images, 6 frames, 0 skipped" in out
    with FramesWriter(tmp_path / "f") as w:  # the same frames without masks (this bag has none): geometric
        for f in fr:
            w.write(dataclasses.replace(f, instance_mask=None))
    assert main(["collect", "--frames", str(tmp_path / "f"), "--store", str(tmp_path / "sf"), "--quiet"]) == 0
    inst = json.loads((tmp_path / "s" / "map" / "instances.json").read_text())
    want = json.loads((tmp_path / "sf" / "map" / "instances.json").read_text())
    assert sorted(inst) == sorted(want) and len(inst) >= 2
    for k in inst:
        assert np.allclose(inst[k]["centroid"], want[k]["centroid"], atol=1e-4)
    assert len(list(read_frames_dir(tmp_path / "kept"))) == 6
    # the same bag again is recognised as collected (same converted frames.jsonl)
    rc = main(["collect", "--bag", str(bag), "--store", str(tmp_path / "s"), "--quiet", "--append"])
    assert rc == 0 and "already collected" in capsys.readouterr().out


def test_collect_help_documents_the_recording_flags(capsys):
    with pytest.raises(SystemExit):
        main(["collect", "--help"])
    out = capsys.readouterr().out
    for flag in ("--bag", "--tum", "--rgb-topic", "--depth-topic", "--camera-info-topic", "--world-frame",
                 "--pose-topic", "--camera-frame", "--keep-frames", "--tum-camera"):
        assert flag in out
