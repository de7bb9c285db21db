"""The rclpy wheels work: a real publisher and subscriber exchange a message over DDS on loopback."""

import time

import pytest

rclpy = pytest.importorskip("rclpy")


def test_publish_subscribe_over_dds(rclpy_context):
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String

    pub_node = rclpy.create_node("smoke_pub", context=rclpy_context)
    sub_node = rclpy.create_node("smoke_sub", context=rclpy_context)
    got = []
    sub_node.create_subscription(String, "smoke", lambda m: got.append(m.data), 10)
    pub = pub_node.create_publisher(String, "smoke", 10)
    ex = SingleThreadedExecutor(context=rclpy_context)
    ex.add_node(pub_node)
    ex.add_node(sub_node)
    deadline = time.monotonic() + 20
    while not got and time.monotonic() < deadline:
        pub.publish(String(data="hello"))
        ex.spin_once(timeout_sec=0.1)
    ex.shutdown()
    pub_node.destroy_node()
    sub_node.destroy_node()
    assert got and got[0] == "hello"
