"""Done-when: ``ssl-nav ros-stack --with-sim`` runs the whole loop, and a separate rclpy process sends a query
photo and receives a goal pose near the right object. Both are subprocesses on the test's own DDS domain."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")

from .conftest import TINY  # noqa: E402

pytestmark = pytest.mark.slow  # the slow tier (the whole ROS stack): `make test-fast` leaves it out

REPO = Path(__file__).resolve().parents[2]


def tiny_params_file(path: Path) -> Path:
    import yaml

    nested: dict = {}
    for key, value in TINY.items():
        section, name = key.split(".")
        nested.setdefault(section, {})[name] = value
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": nested}}))
    return path


def _wait(pred, timeout, proc, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the stack exited ({proc.returncode}) while waiting for {what}")
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_ros_stack_with_sim_and_a_separate_query_client(ros_env, tmp_path):
    data = tmp_path / "data"
    params = tiny_params_file(tmp_path / "tiny.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "stack.log", "w")
    stack = subprocess.Popen([sys.executable, "-m", "ssl_nav", "ros-stack", "--params", str(params), "--with-sim",
                              "--data-dir", str(data)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        # the loop: views collected, baseline index, fine-tune, hot reload onto the fine-tuned model
        _wait(lambda: (data / "index" / "meta.json").is_file(), 240, stack, "the baseline index")
        store_instances = json.loads((data / "store" / "instances.json").read_text())
        views = [json.loads(line) for line in (data / "store" / "views.jsonl").read_text().splitlines() if line]
        assert views and store_instances
        target = max(store_instances, key=lambda k: sum(v["instance_id"] == k for v in views))
        photo = data / "store" / next(v["image"] for v in views if v["instance_id"] == target)

        def ask():
            r = subprocess.run([sys.executable, "-m", "ssl_nav.ros.query_client", str(photo), "--timeout", "120"],
                               cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
            assert r.returncode == 0, r.stdout + r.stderr
            return json.loads(r.stdout.strip().splitlines()[-1])

        out = ask()
        goal = np.asarray(out["goal"]["position"])
        assert out["goal"]["frame_id"] == "map"
        assert out["answer"]["matches"][0]["instance_id"] == target
        assert np.linalg.norm(goal - np.asarray(store_instances[target]["centroid"])) < 1.0

        _wait(lambda: list((data / "runs").glob("*/model.pt")), 300, stack, "the fine-tuned model")
        model = str(next((data / "runs").glob("*/model.pt")))
        _wait(lambda: json.loads((data / "index" / "meta.json").read_text()).get("model_spec") == model, 240,
              stack, "the index of the fine-tuned model")
        end = time.monotonic() + 60
        while True:  # the reload swaps in right after the index is written
            out = ask()
            if out["answer"]["index"]["model"] == model or time.monotonic() > end:
                break
            time.sleep(1)
        assert out["answer"]["index"]["model"] == model
        assert out["goal"] is not None and out["answer"]["matches"][0]["instance_id"] == target
    finally:
        rc = _interrupt(stack)
        log.close()
    text = (tmp_path / "stack.log").read_text()
    assert rc == 0, text[-3000:]
    assert "ssl-nav ros-stack:" in text and "goals" in text.splitlines()[-1], text[-3000:]


def test_stack_nodes_live_in_the_namespace_with_the_launch_remaps(rclpy_context, tmp_path):
    """The in-process stack applies the params file, the namespace and the launch files' remaps."""
    from ssl_nav.ros.sim_bridge import TOPICS
    from ssl_nav.ros.stack import Stack

    params = tiny_params_file(tmp_path / "tiny.yaml")
    stack = Stack(rclpy_context, params, with_sim=True, namespace="robot1", data_dir=str(tmp_path / "d"))
    try:
        nodes = stack.nodes
        assert set(nodes) == {"sim_bridge", "view_collector", "finetuner", "retrieval_server"}
        assert all(n.get_namespace() == "/robot1" for n in nodes.values())
        assert nodes["view_collector"].cfg.views.crop_size == 32  # from the params file
        assert nodes["finetuner"].cfg.ros.data_dir == str(tmp_path / "d")  # the --data-dir override
        subs = {s.topic_name for s in nodes["view_collector"].subscriptions}
        assert {f"/robot1/{t}" for t in TOPICS.values()} <= subs
        assert "/robot1/finetuner/model_ready" in {s.topic_name for s in nodes["retrieval_server"].subscriptions}
        pubs = {p.topic_name for p in nodes["retrieval_server"].publishers}
        assert {"/robot1/retrieval_server/goal_pose", "/robot1/retrieval_server/matches"} <= pubs
    finally:
        stack.close()


def _interrupt(proc: subprocess.Popen) -> int:
    """Ctrl-C a process (killed after 60 s) and return its exit code."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def stop_with_signal(args: list[str], env: dict, log_path: Path, when: str, sig: int, *, start_s: float,
                     stop_s: float, settle_s: float = 0.0) -> str:
    """Start ``args`` (output to ``log_path``), send ``sig`` ``settle_s`` after ``when`` is logged, and check that
    the process exits 0 without a traceback; returns its log."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for_text(log_path, when, proc, start_s)
            time.sleep(settle_s)
            proc.send_signal(sig)
            rc = proc.wait(stop_s)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log_path.read_text()
    assert rc == 0, text[-3000:]
    assert "Traceback" not in text and "RCLError" not in text, text[-3000:]
    return text


def _wait_for_text(path: Path, text: str, proc, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in path.read_text():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the process exited ({proc.returncode}) before {text!r}:\n{path.read_text()[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"no {text!r} after {timeout} s:\n{path.read_text()[-3000:]}")


@pytest.mark.parametrize("sig, when", [
    (signal.SIGTERM, "[sim_bridge]: scene"),  # while the nodes are being created
    (signal.SIGINT, "sim loop: fine-tune: started"),  # while worker threads publish
])
def test_ros_stack_shuts_down_cleanly_on_a_signal(ros_env, tmp_path, sig, when):
    """Ctrl-C or SIGTERM stops the nodes' threads before the context goes: exit 0, no traceback. With
    LOCALHOST discovery and no profile of the user's, the stack uses config/fastdds_large_data.xml."""
    from ssl_nav.ros.dds_profile import USER_ENVS, profile_path

    params = tiny_params_file(tmp_path / "tiny.yaml")
    log_path = tmp_path / "stack.log"
    env = {k: v for k, v in os.environ.items() if k not in USER_ENVS}
    env.update({"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    args = [sys.executable, "-m", "ssl_nav", "ros-stack", "--params", str(params), "--with-sim",
            "--data-dir", str(tmp_path / "data")]
    text = stop_with_signal(args, env, log_path, when, sig, start_s=180, stop_s=90)
    assert f"ssl-nav ros-stack: Fast DDS profile {profile_path()} (FASTDDS_DEFAULT_PROFILES_FILE was unset" in text


def test_a_store_with_a_bad_pose_stops_the_stack_with_a_clear_error(rclpy_context, tmp_path):
    """A view with "T_world_cam": "x" is named by line when the view collector opens the store."""
    from ssl_nav.errors import StoreError
    from ssl_nav.ros.stack import Stack
    from ssl_nav.views.store import ViewStore

    store = ViewStore(tmp_path / "d" / "store", create=True)
    store.set_instances({"1": {}})
    rec = store.add_view("1", np.zeros((8, 8, 3), np.uint8), "low", T_world_cam=np.eye(4))
    (tmp_path / "d" / "store" / "views.jsonl").write_text(json.dumps({**rec, "T_world_cam": "x"}) + "\n")
    with pytest.raises(StoreError, match=r"views.jsonl:1: bad view line \(key 'T_world_cam'"):
        Stack(rclpy_context, tiny_params_file(tmp_path / "tiny.yaml"), data_dir=str(tmp_path / "d"))


def test_ros_stack_with_sim_and_no_masks_ends_with_a_goal_near_the_object(rclpy_context, tmp_path):
    """``ssl-nav ros-stack --with-sim`` with ``ros.sim_publish_masks: false``: the collector
    decides on the geometric segmenter, the loop indexes its views, and a query (one of the robot's own crops
    of the instance at a placed object) gets a goal within 0.3 m of that object's true centre (the centre of its
    simulator bounding box)."""
    import dataclasses

    import yaml

    from ssl_nav.config import SimConfig
    from ssl_nav.ros.query_client import query
    from ssl_nav.sim.pybullet_backend import PyBulletSimulator

    data = tmp_path / "data"
    params = tiny_params_file(tmp_path / "tiny.yaml")
    doc = yaml.safe_load(params.read_text())
    p = doc["/**"]["ros__parameters"]
    p["sim"].update(width=160, height=120, n_turn_steps=8)
    p["mapping"] = {"voxel_size": 0.02, "min_points": 30, "geometric_stride": 1, "geometric_resegment_every": 2}
    p["ros"].update(sim_publish_masks=False, mask_wait_s=0.5)
    params.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "stack.log"
    with open(log_path, "w") as log:
        stack = subprocess.Popen([sys.executable, "-m", "ssl_nav", "ros-stack", "--params", str(params), "--with-sim",
                                  "--no-finetune", "--data-dir", str(data)], cwd=REPO, env=env, stdout=log,
                                 stderr=subprocess.STDOUT)
        try:
            _wait(lambda: (data / "index" / "meta.json").is_file(), 180, stack, "the baseline index")
            sim = PyBulletSimulator(dataclasses.replace(SimConfig(), **p["sim"]))
            sim.load_scene(p["sim"].get("seed", SimConfig().seed))
            objects = {o.instance_id: (o.aabb_min + o.aabb_max) / 2 for o in sim.objects()}
            sim.close()
            instances = json.loads((data / "store" / "instances.json").read_text())
            views = [json.loads(line) for line in (data / "store" / "views.jsonl").read_text().splitlines() if line]
            # the placed object with the nearest map instance that has views
            with_views = {v["instance_id"] for v in views}
            dist, obj, target = min((float(np.linalg.norm(np.asarray(instances[i]["centroid"]) - c)), o, i)
                                    for o, c in objects.items() for i in with_views if i in instances)
            assert dist < 0.3, f"no map instance within 0.3 m of any placed object: {instances}"
            photo = data / "store" / next(v["image"] for v in views if v["instance_id"] == target)
            out = query(str(photo), timeout=60, context=rclpy_context)
        finally:
            rc = _interrupt(stack)
    text = log_path.read_text()
    assert rc == 0, text[-3000:]
    assert "segmenter: geometric (auto: no instance_mask" in text, text[-3000:]
    assert out["goal"] is not None and out["answer"]["matches"][0]["instance_id"] == target, out
    goal = np.asarray(out["goal"]["position"])
    assert np.linalg.norm(goal - objects[obj]) < 0.3, (goal, objects[obj])
