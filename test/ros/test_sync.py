"""Stamp synchronisation of rgb / depth / pose / mask: sets within the tolerance in any arrival order, unmatched
frames counted by the topic they missed."""

import pytest

pytest.importorskip("rclpy")  # ssl_nav.ros imports rclpy at package level only in its node modules

from ssl_nav.ros.sync import StampSynchronizer  # noqa: E402

TOPICS = ["rgb", "depth", "camera_pose", "instance_mask"]


def feed(sync, topic, stamp):
    return sync.add(topic, stamp, f"{topic}@{stamp}")


def test_sets_match_within_tolerance_in_any_arrival_order():
    s = StampSynchronizer(TOPICS, tolerance=0.02)
    assert feed(s, "depth", 1.005) == []
    assert feed(s, "rgb", 1.0) == []
    assert feed(s, "instance_mask", 1.0) == []
    out = feed(s, "camera_pose", 0.99)
    assert len(out) == 1
    assert {t: v[1] for t, v in out[0].items()} == {"rgb": "rgb@1.0", "depth": "depth@1.005",
                                                   "camera_pose": "camera_pose@0.99",
                                                   "instance_mask": "instance_mask@1.0"}
    assert s.pending() == {t: 0 for t in TOPICS}


def test_out_of_tolerance_does_not_match_and_an_unmatched_frame_expires_after_the_window():
    s = StampSynchronizer(TOPICS, tolerance=0.01, window=0.5)
    feed(s, "rgb", 1.0)
    feed(s, "depth", 1.05)  # too far
    feed(s, "camera_pose", 1.0)
    assert feed(s, "instance_mask", 1.0) == []
    # a later complete set: the rgb at 1.0 waited a whole window for its depth and counts as a sync drop
    feed(s, "depth", 2.0)
    feed(s, "camera_pose", 2.0)
    feed(s, "instance_mask", 2.0)
    out = feed(s, "rgb", 2.0)
    assert len(out) == 1 and out[0]["rgb"][0] == 2.0
    assert s.unmatched == {"no depth within 0.01 s": 1}
    # an item older than the window is refused as late
    assert feed(s, "rgb", 1.2) == [] and s.unmatched["late (older than the sync window)"] == 1


def test_sets_arriving_out_of_order_all_match():
    """Several callback threads: a newer set may complete before an older one; neither is lost."""
    s = StampSynchronizer(TOPICS, tolerance=0.01, window=1.0)
    for t in ("rgb", "camera_pose", "instance_mask"):
        feed(s, t, 1.0)
    out = [x["rgb"][0] for t in TOPICS for x in feed(s, t, 1.1)]  # the 1.1 set completes first
    out += [x["rgb"][0] for x in feed(s, "depth", 1.0)]  # the depth of 1.0 arrives late, within the window
    assert out == [1.1, 1.0] and not s.unmatched
    assert s.pending() == {t: 0 for t in TOPICS}


def test_optional_topic_can_be_left_out():
    s = StampSynchronizer(TOPICS, tolerance=0.01)
    s.set_required("instance_mask", False)
    feed(s, "rgb", 3.0)
    feed(s, "depth", 3.0)
    out = feed(s, "camera_pose", 3.0)
    assert len(out) == 1 and out[0]["instance_mask"] is None


def test_buffers_are_bounded():
    s = StampSynchronizer(TOPICS, tolerance=0.001, window=100.0, buffer_size=4)
    for k in range(20):
        feed(s, "depth", 10.0 + k)
        feed(s, "rgb", 10.0 + k)
    assert s.pending()["depth"] <= 4 and s.pending()["rgb"] <= 4
    assert s.unmatched["buffer overflow"] == 16 and s.unused["depth"] == 16
