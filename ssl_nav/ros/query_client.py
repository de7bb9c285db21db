"""Send a query photo to a running ``retrieval_server`` and print the goal pose (a separate rclpy process).

    python -m ssl_nav.ros.query_client PHOTO.jpg [--namespace NS] [--timeout 120] [--compressed]

Publishes the photo on ``<ns>/query_image`` (or ``<ns>/query_image/compressed``) and waits for the server's
answer on ``<ns>/retrieval_server/matches`` (paired by stamp) and, when the object is in the map, for the
``<ns>/retrieval_server/goal_pose``. While the server has no index yet (or does not answer) the query is re-sent
every ``--retry`` seconds until ``--timeout``. Prints one JSON line ``{"goal": {...} | null, "answer": {...}}``.
Exit status: 0 with a goal, 1 when the server says the object is not in the map, 3 on timeout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from ssl_nav.errors import SslNavError

NO_GOAL_EXIT = 1
TIMEOUT_EXIT = 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="query_client", description=__doc__.split("\n\n")[0])
    ap.add_argument("image", help="query photo (any format OpenCV reads)")
    ap.add_argument("--namespace", default="", help="namespace of the ssl_nav nodes")
    ap.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    ap.add_argument("--retry", type=float, default=2.0, help="re-send the query every this many seconds")
    ap.add_argument("--compressed", action="store_true", help="send a CompressedImage (JPEG) instead of an Image")
    ap.add_argument("--accept-no-index", action="store_true",
                    help="stop at the first answer even if it is 'no index yet'")
    return ap.parse_args(argv)


def query(image_path: str, namespace: str = "", timeout: float = 120.0, retry: float = 2.0,
          compressed: bool = False, accept_no_index: bool = False, context=None) -> dict:
    """Send the photo and wait; returns ``{"goal": pose dict | None, "answer": matches JSON | None}``."""
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import String

    from ssl_nav.frames import read_image_rgb
    from ssl_nav.ros import conversions as conv
    from ssl_nav.ros.retrieval_server import NO_INDEX
    from ssl_nav.ros.runtime import RELIABLE_QOS

    rgb = read_image_rgb(image_path)
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    from rclpy.executors import SingleThreadedExecutor

    node = rclpy.create_node("ssl_nav_query_client", context=context)
    executor = SingleThreadedExecutor(context=context)  # (rclpy.spin_once would use the default context)
    executor.add_node(node)
    answers: dict[float, dict] = {}
    goals: dict[float, PoseStamped] = {}
    try:
        if compressed:
            pub = node.create_publisher(CompressedImage, f"{ns}/query_image/compressed", RELIABLE_QOS)
        else:
            pub = node.create_publisher(Image, f"{ns}/query_image", RELIABLE_QOS)

        def on_matches(m: String) -> None:
            try:
                obj = json.loads(m.data)
            except json.JSONDecodeError:
                return
            if isinstance(obj, dict) and obj.get("query_stamp") is not None:
                answers[round(float(obj["query_stamp"]), 6)] = obj

        def on_goal(m: PoseStamped) -> None:
            goals[round(conv.stamp_to_sec(m.header.stamp), 6)] = m

        node.create_subscription(String, f"{ns}/retrieval_server/matches", on_matches, RELIABLE_QOS)
        node.create_subscription(PoseStamped, f"{ns}/retrieval_server/goal_pose", on_goal, RELIABLE_QOS)
        end = time.monotonic() + timeout
        while pub.get_subscription_count() == 0 and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.1)
        last_sent = -1e9
        stamp_key = None
        while time.monotonic() < end:
            ans = answers.get(stamp_key) if stamp_key is not None else None
            if ans is not None:
                if ans.get("in_map") and stamp_key in goals:
                    g = goals[stamp_key]
                    return {"goal": _pose_dict(g), "answer": ans}
                if not ans.get("in_map") and (ans.get("reason") != NO_INDEX or accept_no_index):
                    return {"goal": None, "answer": ans}
            if time.monotonic() - last_sent > retry and (ans is None or ans.get("reason") == NO_INDEX):
                now = node.get_clock().now()
                stamp = now.to_msg()
                stamp_key = round(conv.stamp_to_sec(stamp), 6)
                msg = conv.rgb_to_compressed(rgb, "jpeg", "query", stamp) if compressed else \
                    conv.numpy_to_image(rgb, "rgb8", "query", stamp)
                pub.publish(msg)
                last_sent = time.monotonic()
            executor.spin_once(timeout_sec=0.05)
        return {"goal": None, "answer": answers.get(stamp_key) if stamp_key is not None else None,
                "timeout": True}
    finally:
        executor.shutdown(timeout_sec=1)
        node.destroy_node()


def _pose_dict(m) -> dict:
    p, q = m.pose.position, m.pose.orientation
    return {"frame_id": m.header.frame_id, "position": [p.x, p.y, p.z], "orientation_xyzw": [q.x, q.y, q.z, q.w]}


def main(argv: list[str] | None = None) -> int:
    import rclpy

    args = parse_args(argv if argv is not None else sys.argv[1:])
    rclpy.init()
    try:
        out = query(args.image, args.namespace, args.timeout, args.retry, args.compressed, args.accept_no_index)
    except SslNavError as e:
        print(f"query_client: error: {e}", file=sys.stderr)
        return 2
    finally:
        if rclpy.ok():
            rclpy.shutdown()
    print(json.dumps(out), flush=True)
    if out.get("timeout"):
        print(f"query_client: no answer within {args.timeout} s", file=sys.stderr)
        return TIMEOUT_EXIT
    return 0 if out["goal"] is not None else NO_GOAL_EXIT


if __name__ == "__main__":
    raise SystemExit(main())
