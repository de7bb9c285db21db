"""view_collector over real DDS: sim_bridge feeds it and views get built; bad messages are survived."""

import math

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from geometry_msgs.msg import PoseStamped  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from ssl_nav.geometry import look_at  # noqa: E402
from ssl_nav.ros import conversions as conv  # noqa: E402
from ssl_nav.ros.runtime import SENSOR_QOS, STATUS_QOS  # noqa: E402

from .conftest import Inbox, add, overrides, spin_until  # noqa: E402


def _remaps():
    from ssl_nav.ros.stack import SIM_REMAPS

    args = ["--ros-args"]
    for r in SIM_REMAPS:
        args += ["-r", r]
    return args


def test_sim_bridge_feeds_view_collector_which_builds_views(rclpy_context, executor, tmp_path):
    from ssl_nav.ros.sim_bridge import SimBridgeNode
    from ssl_nav.ros.view_collector import ViewCollectorNode
    from ssl_nav.views.store import ViewStore

    col = add(executor, ViewCollectorNode(context=rclpy_context, cli_args=_remaps(),
                                          parameter_overrides=overrides("view_collector", tmp_path)))
    sim = add(executor, SimBridgeNode(context=rclpy_context,
                                      parameter_overrides=overrides("sim_bridge", tmp_path)))
    probe = add(executor, rclpy.create_node("probe", context=rclpy_context))
    status = Inbox(probe, String, "/view_collector/status", STATUS_QOS, as_json=True)
    spin_until(executor, sim.done.is_set, 90, "the sim trajectory")
    spin_until(executor, lambda: col.idle() and status.last and status.last["counts"].get("synced", 0) >= 1,
               30, "the collector to process the frames")
    spin_until(executor, lambda: status.last["views"] > 0, 10, "views in the status")
    st = status.last
    assert st["received"]["rgb"] >= 1 and st["counts"]["keyframes"] >= 1
    assert st["counts"].get("dropped", 0) == 0, st["last_drops"]
    client = probe.create_client(Trigger, "/view_collector/save")
    assert client.wait_for_service(timeout_sec=10)
    fut = client.call_async(Trigger.Request())
    spin_until(executor, fut.done, 30, "~/save")
    assert fut.result().success, fut.result().message
    store = ViewStore(tmp_path / "store")
    assert len(store) > 0 and not store.check()
    objects = {o.instance_id: o for o in sim.objects()}
    for iid, info in store.instances().items():
        assert int(iid) in objects  # stable simulator ids
        assert np.linalg.norm(np.asarray(info["centroid"]) - objects[int(iid)].centroid) < 0.75
    assert (tmp_path / "store" / "map" / "map.ply").is_file()  # where ssl-nav collect keeps a store's map


def _publish_set(pubs, stamp, rgb, depth, mask, T, K, h=48, w=64):
    pubs["camera_info"].publish(conv.K_to_camera_info(K, w, h, "cam", stamp))
    pubs["camera_pose"].publish(conv.matrix_to_pose_stamped(T, "map", stamp))
    pubs["depth"].publish(depth if isinstance(depth, Image) else conv.numpy_to_image(depth, "32FC1", "cam", stamp))
    pubs["instance_mask"].publish(conv.numpy_to_image(mask, "32SC1", "cam", stamp))
    pubs["rgb"].publish(rgb if isinstance(rgb, Image) else conv.numpy_to_image(rgb, "rgb8", "cam", stamp))


def test_bad_messages_are_logged_dropped_and_the_node_keeps_serving(rclpy_context, executor, tmp_path):
    from ssl_nav.ros.view_collector import ViewCollectorNode

    col = add(executor, ViewCollectorNode(context=rclpy_context,
                                          parameter_overrides=overrides("view_collector", tmp_path)))
    pub_node = add(executor, rclpy.create_node("feeder", context=rclpy_context))
    pubs = {"rgb": pub_node.create_publisher(Image, "rgb", SENSOR_QOS),
            "depth": pub_node.create_publisher(Image, "depth", SENSOR_QOS),
            "instance_mask": pub_node.create_publisher(Image, "instance_mask", SENSOR_QOS),
            "camera_info": pub_node.create_publisher(CameraInfo, "camera_info", SENSOR_QOS),
            "camera_pose": pub_node.create_publisher(PoseStamped, "camera_pose", SENSOR_QOS)}
    status = Inbox(pub_node, String, "/view_collector/status", STATUS_QOS, as_json=True)
    spin_until(executor, lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 20, "discovery")

    # a synthetic box 2 m in front of the camera, instance 7
    h, w = 48, 64
    K = np.array([[50.0, 0, w / 2], [0, 50.0, h / 2], [0, 0, 1]])
    rgb = np.full((h, w, 3), 90, np.uint8)
    depth = np.full((h, w), 4.0, np.float32)
    mask = np.zeros((h, w), np.int32)
    depth[14:34, 20:44], mask[14:34, 20:44], rgb[14:34, 20:44] = 2.0, 7, (200, 40, 40)
    rgb[14:34:4, 20:44] = (20, 200, 30)
    T = look_at(np.array([0.0, 0.0, 1.0]), np.array([2.0, 0.0, 1.0]))

    def now():
        return probe_now(pub_node)

    def pause():
        _spin_for(executor, 0.2)

    def received_sets():
        return (status.last or {}).get("counts", {}).get("synced", 0)

    # 1. wrong encoding on rgb
    bad_rgb = conv.numpy_to_image(rgb, "rgb8", "cam", now())
    bad_rgb.encoding = "yuv422"
    _publish_set(pubs, now(), bad_rgb, depth, mask, T, K)
    pause()  # sets further apart than ros.sync_tolerance_s
    # 2. size mismatch: depth of another size
    _publish_set(pubs, now(), rgb, depth[:40, :60].copy(), mask, T, K)
    pause()
    # 3. NaN pose
    t = now()
    pubs["camera_pose"].publish(PoseStamped(header=conv.make_header("map", t), pose=conv.Pose(
        position=conv.Point(x=math.nan, y=0.0, z=1.0), orientation=conv.Quaternion(w=1.0))))
    pause()
    # 4. a stamp far out of sync with its arrival time
    _publish_set(pubs, conv.sec_to_stamp(conv.stamp_to_sec(now()) - 600.0), rgb, depth, mask, T, K)
    spin_until(executor, lambda: status.last and status.last["counts"].get("dropped", 0) >= 4 + 3, 20,
               "the bad messages to be counted")
    drops = "\n".join(status.last["last_drops"])
    assert "encoding" in drops and "does not match rgb" in drops
    assert "NaN" in drops and "arrival time" in drops
    # the node keeps serving: good sets still become views
    for k in range(6):
        T_k = look_at(np.array([0.0, 0.1 * k, 1.0]), np.array([2.0, 0.0, 1.0]))
        _publish_set(pubs, now(), rgb, depth, mask, T_k, K)
        pause()
    spin_until(executor, lambda: status.last["views"] > 0, 30, "views from the good frames")
    assert status.last["instances"] == 1 and received_sets() >= 1
    assert status.last["store_problem"] is None

    # A directory of the store swapped for a link: every later frame drops, and ~/status
    # says which file and why
    import shutil

    views7 = tmp_path / "store" / "views" / "7"
    elsewhere = tmp_path / "elsewhere"
    shutil.move(views7, elsewhere)
    views7.symlink_to(elsewhere, target_is_directory=True)
    n_files = len(list(elsewhere.iterdir()))
    for k in range(6):
        T_k = look_at(np.array([0.3, -0.1 * k - 0.05, 1.0]), np.array([2.0, 0.0, 1.0]))
        _publish_set(pubs, now(), rgb, depth, mask, T_k, K)
        pause()
    spin_until(executor, lambda: status.last.get("store_problem"), 30, "the store problem in ~/status")
    assert f"{views7}: is a symbolic link" in status.last["store_problem"]
    assert len(list(elsewhere.iterdir())) == n_files  # nothing written through the link


def _spin_for(executor, seconds):
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.02)


def probe_now(node):
    return node.get_clock().now().to_msg()


def test_semantic_map_replaces_masks(rclpy_context, executor, tmp_path):
    """A PointCloud2 with an ``instance`` field becomes the map; frames without masks then give views."""
    from sensor_msgs.msg import PointCloud2

    from ssl_nav.ros.view_collector import ViewCollectorNode

    add(executor, ViewCollectorNode(context=rclpy_context,
                                    parameter_overrides=overrides("view_collector", tmp_path)))
    feeder = add(executor, rclpy.create_node("feeder", context=rclpy_context))
    pubs = {"rgb": feeder.create_publisher(Image, "rgb", SENSOR_QOS),
            "depth": feeder.create_publisher(Image, "depth", SENSOR_QOS),
            "camera_info": feeder.create_publisher(CameraInfo, "camera_info", SENSOR_QOS),
            "camera_pose": feeder.create_publisher(PoseStamped, "camera_pose", SENSOR_QOS)}
    cloud_pub = feeder.create_publisher(PointCloud2, "semantic_map", STATUS_QOS)
    status = Inbox(feeder, String, "/view_collector/status", STATUS_QOS, as_json=True)
    # instance 4: a 0.4 m square patch of points on the plane x = 2, facing the camera
    ys, zs = np.meshgrid(np.linspace(-0.2, 0.2, 15), np.linspace(0.8, 1.2, 15))
    xyz = np.stack([np.full(ys.size, 2.0), ys.ravel(), zs.ravel()], axis=1)
    cloud_pub.publish(conv.arrays_to_cloud(xyz, np.full(len(xyz), 4), "map"))
    spin_until(executor, lambda: status.last and status.last["semantic_map"], 20, "the semantic map")
    assert status.last["instances"] == 1
    spin_until(executor, lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 20, "discovery")
    h, w = 48, 64
    K = np.array([[50.0, 0, w / 2], [0, 50.0, h / 2], [0, 0, 1]])
    rgb = np.full((h, w, 3), 90, np.uint8)
    rgb[14:34, 22:42] = (30, 60, 220)
    depth = np.full((h, w), 2.0, np.float32)
    for k in range(4):
        stamp = feeder.get_clock().now().to_msg()
        T = look_at(np.array([0.0, 0.05 * k, 1.0]), np.array([2.0, 0.0, 1.0]))
        pubs["camera_info"].publish(conv.K_to_camera_info(K, w, h, "cam", stamp))
        pubs["camera_pose"].publish(conv.matrix_to_pose_stamped(T, "map", stamp))
        pubs["depth"].publish(conv.numpy_to_image(depth, "32FC1", "cam", stamp))
        pubs["rgb"].publish(conv.numpy_to_image(rgb, "rgb8", "cam", stamp))
        _spin_for(executor, 0.2)
    spin_until(executor, lambda: status.last["views"] > 0, 30, "views from the semantic map")
    assert set(status.last["collector"]["views_per_instance"]) == {"4"}


def test_frames_without_masks_are_segmented_geometrically(rclpy_context, executor, tmp_path):
    """Rgb + depth + pose and no instance_mask -> after ros.mask_wait_s the geometric segmenter builds
    the map; instances land on the boxes and views are cut; ~/status names the segmenter and why."""
    from testkit import scenes  # test/ is on sys.path (test/conftest.py)

    from ssl_nav.ros.view_collector import ViewCollectorNode

    col = add(executor, ViewCollectorNode(context=rclpy_context, parameter_overrides=overrides(
        "view_collector", tmp_path, mapping__voxel_size=0.02, mapping__min_points=30, mapping__geometric_stride=1,
        mapping__geometric_resegment_every=2, ros__mask_wait_s=0.3)))
    feeder = add(executor, rclpy.create_node("feeder", context=rclpy_context))
    pubs = {"rgb": feeder.create_publisher(Image, "rgb", SENSOR_QOS),
            "depth": feeder.create_publisher(Image, "depth", SENSOR_QOS),
            "camera_info": feeder.create_publisher(CameraInfo, "camera_info", SENSOR_QOS),
            "camera_pose": feeder.create_publisher(PoseStamped, "camera_pose", SENSOR_QOS)}
    status = Inbox(feeder, String, "/view_collector/status", STATUS_QOS, as_json=True)
    spin_until(executor, lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 20, "discovery")
    boxes = [scenes.Box(1, (1.0, -0.9, 0.0), (1.4, -0.5, 0.4), (220, 40, 40)),
             scenes.Box(2, (1.2, 0.0, 0.0), (1.5, 0.3, 0.3), (40, 200, 40)),
             scenes.Box(3, (0.9, 0.6, 0.0), (1.2, 1.0, 0.35), (40, 60, 220))]
    poses = scenes.orbit_poses(8, center=(1.2, 0.0, 0.3), radius=2.2, height=1.3, arc_deg=140.0)
    for T in poses:
        f = scenes.render(boxes, T)
        stamp = feeder.get_clock().now().to_msg()
        pubs["camera_info"].publish(conv.K_to_camera_info(f.K, 160, 120, "cam", stamp))
        pubs["camera_pose"].publish(conv.matrix_to_pose_stamped(T, "map", stamp))
        pubs["depth"].publish(conv.numpy_to_image(f.depth.astype(np.float32), "32FC1", "cam", stamp))
        pubs["rgb"].publish(conv.numpy_to_image(f.rgb, "rgb8", "cam", stamp))
        _spin_for(executor, 0.15)
    spin_until(executor, lambda: col.idle() and status.last and status.last["frames"]["keyframes"] >= 6, 30,
               "the keyframes to be fused")
    spin_until(executor, lambda: status.last["views"] > 0 and status.last["instances"] >= 3, 10, "views")
    st = status.last
    assert st["segmenter"] == "geometric" and "no instance_mask" in st["segmenter_reason"], st["segmenter_reason"]
    assert st["map"]["segmenter"] == "geometric" and st["map"]["geometric"]["supports"] >= 1
    assert st["drops"]["sync"] == 0 and st["drops"]["queue_overflow"] == 0, st["drops"]
    assert "geometric segmenter" in col.save()
    centroids = [np.asarray(c["centroid"]) for c in col.store.instances().values()]
    for b in boxes:  # every box has an instance near its centre
        centre = (np.asarray(b.lo) + np.asarray(b.hi)) / 2
        assert min(np.linalg.norm(c - centre) for c in centroids) < 0.15, (b, centroids)
