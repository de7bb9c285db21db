"""ROS 2 nodes over real DDS on loopback: query round trip, collector throughput, query floods.

Each node runs in its own process (``python -m ssl_nav.ros.<node> --ros-args ...``) on a private
``ROS_DOMAIN_ID`` with ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``; this process publishes and measures.

- **query round trip**: a 640x480 rgb8 ``Image`` published on ``query_image`` -> ``~/goal_pose`` received, one
  query at a time, with the default retrieval settings (mobilenet_v2 ImageNet weights when present, 224 px),
  against an index of 20 instances x 10 views. p50 / p99 of the round trip; the server's own share
  (``latency_s`` in ``~/matches``) alongside.
- **collector at 10 Hz 640x480 RGB-D**: rgb8 + 32FC1 depth + 32SC1 mask + pose + camera_info at 10 Hz, the camera
  moving 0.02 m per frame (0.2 m/s: the keyframe gate passes about one frame in three) or 0.1 m per frame
  (every frame a keyframe: the worst case); with the default Fast DDS transports and with
  ``config/fastdds_large_data.xml``. Drop rate = 1 - frames processed (gated or fused) / frames published,
  split into DDS loss, sets unmatched by stamp and sets superseded in the node's one-slot queue.
- **flood**: 200 queries as fast as they can be published, ``ros.query_queue`` = 2: how many were served,
  whether the newest was, and the server-side latency of served queries (bounded by the queue length times
  the service time, not by the flood size).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

AREA = "ROS 2"
REPO = Path(__file__).resolve().parents[1]


def _env(domain: int) -> dict:
    return {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONUNBUFFERED": "1"}


def _start(module: str, params: dict, env: dict, log: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", module, "--ros-args"]
    for k, v in params.items():
        args += ["-p", f"{k}:={json.dumps(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else v}"]
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)


def _stop(p: subprocess.Popen) -> None:
    import signal

    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def _synthetic_store(root: Path, n_instances: int, n_views: int, size: int = 224) -> None:
    from ssl_nav.views.store import ViewStore

    rng = np.random.default_rng(0)
    store = ViewStore(root, create=True)
    inst = {}
    for i in range(1, n_instances + 1):
        base = rng.integers(0, 256, 3)
        for v in range(n_views):
            img = np.empty((size, size, 3), np.uint8)
            img[:] = base
            img[rng.integers(0, size // 2):, : size // (1 + i % 5)] = 255 - base
            store.add_view(str(i), img, "low", frame_id=f"{i}_{v}")
        c = [float(i), float(i % 3), 0.5]
        inst[str(i)] = {"category": None, "centroid": c, "aabb": [c, c], "n_points": 100}
    store.set_instances(inst)


class _Client:
    """This process's rclpy side: publishers, inboxes and a spin helper."""

    def __init__(self, domain: int) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.rclpy = rclpy
        self.ctx = rclpy.context.Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = rclpy.create_node("ssl_nav_bench", context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)

    def spin_until(self, pred, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            self.ex.spin_once(timeout_sec=0.005)
        return bool(pred())

    def close(self) -> None:
        self.ex.shutdown()
        self.node.destroy_node()
        self.rclpy.shutdown(context=self.ctx)


def bench_queries(tmp: Path, domain: int, quick: bool) -> list[dict]:
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import Image
    from std_msgs.msg import String
    from std_srvs.srv import Trigger

    from ssl_nav.ros import conversions as conv
    from ssl_nav.ros.runtime import RELIABLE_QOS, STATUS_QOS

    data = tmp / "retrieval"
    _synthetic_store(data / "store", 20, 10)
    server = _start("ssl_nav.ros.retrieval_server", {"ros.data_dir": str(data), "retrieval.device": "cpu",
                                                     "ros.query_queue": 2, "ros.publish_markers": True},
                    _env(domain), tmp / "retrieval_server.log")
    c = _Client(domain)
    rows = []
    try:
        pub = c.node.create_publisher(Image, "query_image", RELIABLE_QOS)
        goals, matches, status = {}, {}, []
        c.node.create_subscription(PoseStamped, "/retrieval_server/goal_pose",
                                   lambda m: goals.setdefault(conv.stamp_to_sec(m.header.stamp), time.monotonic()),
                                   RELIABLE_QOS)
        c.node.create_subscription(String, "/retrieval_server/matches",
                                   lambda m: (lambda o: matches.setdefault(o.get("query_stamp"), o))(
                                       json.loads(m.data)), RELIABLE_QOS)
        c.node.create_subscription(String, "/retrieval_server/status", lambda m: status.append(json.loads(m.data)),
                                   STATUS_QOS)
        reload = c.node.create_client(Trigger, "/retrieval_server/reload")
        if not reload.wait_for_service(timeout_sec=120):
            raise RuntimeError("retrieval_server did not come up; see " + str(tmp / "retrieval_server.log"))
        fut = reload.call_async(Trigger.Request())
        c.spin_until(fut.done, 60)
        t0 = time.monotonic()
        if not c.spin_until(lambda: status and status[-1].get("index") and not status[-1]["reloading"], 600):
            raise RuntimeError("the index was not built; see " + str(tmp / "retrieval_server.log"))
        index_s = time.monotonic() - t0
        c.spin_until(lambda: pub.get_subscription_count() > 0, 30)
        rng = np.random.default_rng(1)
        query = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        query[100:380, 150:500] = (40, 200, 90)
        n = 15 if quick else 60
        stamp_s = 1000.0
        rtt, server_s = [], []
        for k in range(n + 3):  # 3 warm-up queries
            stamp_s += 1.0
            t_pub = time.monotonic()
            pub.publish(conv.numpy_to_image(query, "rgb8", "q", stamp_s))
            ok = c.spin_until(lambda: stamp_s in matches and (stamp_s in goals or not matches[stamp_s]["in_map"]), 60)
            if not ok:
                raise RuntimeError(f"query {k} got no answer")
            if k >= 3 and stamp_s in goals:
                rtt.append(goals[stamp_s] - t_pub)
                server_s.append(matches.get(stamp_s, {}).get("latency_s", float("nan")))
        rows.append({"benchmark": f"query round trip Image 640x480 -> goal_pose ({len(rtt)} queries, index "
                                  f"{status[-1]['index']['vectors']} views)",
                     "figure": f"p50 {1e3 * _pct(rtt, 50):.0f} ms, p99 {1e3 * _pct(rtt, 99):.0f} ms",
                     "target": "p50 < 500 ms on CPU", "ok": _pct(rtt, 50) < 0.5,
                     "note": f"server share p50 {1e3 * _pct(server_s, 50):.0f} ms (embed + search); "
                             f"model {status[-1]['index']['model']}; index built in {index_s:.1f} s"})

        # flood
        flood = 200
        first = stamp_s + 1.0
        t0 = time.monotonic()
        for k in range(flood):
            pub.publish(conv.numpy_to_image(query, "rgb8", "q", first + k))
        publish_s = time.monotonic() - t0
        newest = first + flood - 1
        c.spin_until(lambda: newest in matches, 120)
        c.spin_until(lambda: False, 2.0)  # let the last answers arrive
        served = [s for s in matches if s is not None and s >= first]
        lat = [matches[s]["latency_s"] for s in served if matches[s].get("latency_s") is not None]
        st = status[-1] if status else {}
        rows.append({"benchmark": f"flood: {flood} queries in {publish_s:.2f} s, query_queue = 2",
                     "figure": f"{len(served)} served, newest served: {'yes' if newest in matches else 'no'}, "
                               f"server latency p50 {1e3 * _pct(lat, 50):.0f} ms / max {1e3 * max(lat or [0]):.0f} ms",
                     "target": "newest served; latency bounded (about (queue+1) x service time)",
                     "ok": newest in matches and max(lat or [1e9]) < 4 * max(_pct(server_s, 99), 1e-3) + 0.5,
                     "note": "the rest dropped oldest-first (bounded queue) or by DDS keep-last history"})
    finally:
        c.close()
        _stop(server)
    return rows


def bench_collector(tmp: Path, domain: int, quick: bool, step_m: float = 0.1) -> list[dict]:
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import String

    from ssl_nav.geometry import look_at
    from ssl_nav.ros import conversions as conv
    from ssl_nav.ros.runtime import SENSOR_QOS, STATUS_QOS

    data = tmp / "collector"
    proc = _start("ssl_nav.ros.view_collector", {"ros.data_dir": str(data), "ros.status_period_s": 0.5},
                  _env(domain), tmp / "view_collector.log")
    c = _Client(domain)
    try:
        pubs = {"rgb": c.node.create_publisher(Image, "rgb", SENSOR_QOS),
                "depth": c.node.create_publisher(Image, "depth", SENSOR_QOS),
                "instance_mask": c.node.create_publisher(Image, "instance_mask", SENSOR_QOS),
                "camera_info": c.node.create_publisher(CameraInfo, "camera_info", SENSOR_QOS),
                "camera_pose": c.node.create_publisher(PoseStamped, "camera_pose", SENSOR_QOS)}
        status = []
        c.node.create_subscription(String, "/view_collector/status", lambda m: status.append(json.loads(m.data)),
                                   STATUS_QOS)
        if not c.spin_until(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 120):
            raise RuntimeError("view_collector did not come up; see " + str(tmp / "view_collector.log"))
        h, w = 480, 640
        K = np.array([[525.0, 0, w / 2], [0, 525.0, h / 2], [0, 0, 1]])
        rng = np.random.default_rng(0)
        rgb = rng.integers(60, 120, (h, w, 3), dtype=np.uint8)
        depth = np.full((h, w), 4.0, np.float32)
        mask = np.zeros((h, w), np.int32)
        for i in range(1, 6):  # five boxes at 2-3 m
            y0, x0 = 100 + 40 * (i % 3), 40 + 110 * (i - 1)
            rgb[y0:y0 + 120, x0:x0 + 90] = rng.integers(0, 256, 3)
            depth[y0:y0 + 120, x0:x0 + 90] = 2.0 + 0.2 * i
            mask[y0:y0 + 120, x0:x0 + 90] = i
        seconds = 10 if quick else 30
        n = int(seconds * 10)
        t_next = time.monotonic()
        for k in range(n):
            stamp = c.node.get_clock().now().to_msg()
            y = step_m * k
            y = (y % 2.0) if int(y // 2.0) % 2 == 0 else 2.0 - (y % 2.0)  # back and forth over 2 m
            T = look_at(np.array([0.0, y - 1.0, 1.2]), np.array([3.0, 0.0, 1.0]))
            pubs["camera_info"].publish(conv.K_to_camera_info(K, w, h, "cam", stamp))
            pubs["camera_pose"].publish(conv.matrix_to_pose_stamped(T, "map", stamp))
            pubs["depth"].publish(conv.numpy_to_image(depth, "32FC1", "cam", stamp))
            pubs["instance_mask"].publish(conv.numpy_to_image(mask, "32SC1", "cam", stamp))
            pubs["rgb"].publish(conv.numpy_to_image(rgb, "rgb8", "cam", stamp))
            t_next += 0.1
            c.spin_until(lambda: time.monotonic() >= t_next, 1.0)
        c.spin_until(lambda: False, 5.0)  # drain
        st = status[-1]
        frames = st["counts"].get("frames", 0) + st["counts"].get("waiting_for_camera_info", 0)
        rgb_in = st["received"].get("rgb", 0)
        drop = 1.0 - frames / n
        motion = ("every frame a keyframe" if step_m >= 0.05 else
                  f"camera at {10 * step_m:.1f} m/s: {st['counts'].get('keyframes', 0)} keyframes")
        return [{"benchmark": f"view_collector at 10 Hz 640x480 RGB-D + mask + pose ({seconds} s, {motion})",
                 "figure": f"drop rate {100 * drop:.0f} % ({frames}/{n} frames processed)",
                 "target": "< 10 % drops", "ok": drop < 0.10,
                 "note": f"keyframe (fusion + views) p50 {st.get('keyframe_ms_p50')} ms; "
                         f"DDS delivered {rgb_in}/{n} rgb; sets superseded in the one-slot queue: "
                         f"{st['counts'].get('superseded', 0)}; unmatched by stamp: {sum(st['sync_dropped'].values())}"
                         f"; {st['views']} views of {st['instances']} instances"}]
    finally:
        c.close()
        _stop(proc)


FASTDDS_PROFILE = REPO / "config" / "fastdds_large_data.xml"


def _collector_in_child(domain: int, quick: bool, profile: bool, step_m: float) -> dict:
    """Run :func:`bench_collector` in a child process: a Fast DDS profile is read once per process."""
    env = _env(domain)
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    env.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)
    if profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(FASTDDS_PROFILE)
    r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "_collector", str(domain),
                        "1" if quick else "0", str(step_m)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"collector benchmark failed: {r.stderr[-2000:]}")
    row = json.loads(r.stdout.strip().splitlines()[-1])
    row["benchmark"] += " — " + ("with config/fastdds_large_data.xml" if profile else "default Fast DDS transports")
    return row


def run(quick: bool = False) -> list[dict]:
    domain = 215 + os.getpid() % 17  # 215..231: outside the test fixtures (1..200) and valid for Fast DDS
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    with tempfile.TemporaryDirectory(prefix="bench_ros_") as d:
        rows = bench_queries(Path(d), domain, quick)
    rows.append(_collector_in_child(domain, quick, profile=False, step_m=0.02))
    rows.append(_collector_in_child(domain, quick, profile=True, step_m=0.02))
    rows.append(_collector_in_child(domain, quick, profile=True, step_m=0.1))
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_collector":
        with tempfile.TemporaryDirectory(prefix="bench_ros_collector_") as d:
            print(json.dumps(bench_collector(Path(d), int(sys.argv[2]), sys.argv[3] == "1", float(sys.argv[4]))[0]))
    else:
        for r in run(quick="--quick" in sys.argv):
            print(r)
