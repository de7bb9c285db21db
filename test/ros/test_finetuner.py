"""finetuner over real DDS: ~/start trains off the executor and leads to a latched model_ready; ~/cancel stops."""

import json
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from ssl_nav.energy.record import PHASES  # noqa: E402
from ssl_nav.ros.runtime import LATCHED_QOS, STATUS_QOS  # noqa: E402

from .conftest import Inbox, add, make_store, overrides, spin_until  # noqa: E402


def _call(executor, client, timeout=20):
    assert client.wait_for_service(timeout_sec=10)
    fut = client.call_async(Trigger.Request())
    spin_until(executor, fut.done, timeout, f"{client.srv_name}")
    return fut.result()


def test_start_leads_to_model_ready_and_services_answer_while_training(rclpy_context, executor, tmp_path):
    from ssl_nav.learning.backbones import load_encoder
    from ssl_nav.ros.finetuner import FinetunerNode

    make_store(tmp_path / "store", n_instances=3, views_per_instance=4)
    ft = add(executor, FinetunerNode(context=rclpy_context, parameter_overrides=overrides("finetuner", tmp_path)))
    probe = add(executor, rclpy.create_node("ft_probe", context=rclpy_context))
    progress = Inbox(probe, String, "/finetuner/progress", STATUS_QOS, as_json=True)
    energy = Inbox(probe, String, "/finetuner/energy", STATUS_QOS, as_json=True)
    start = probe.create_client(Trigger, "/finetuner/start")
    r1 = _call(executor, start)
    assert r1.success, r1.message
    r2 = _call(executor, start)  # answered while the first run trains
    assert not r2.success and "already running" in r2.message
    assert ft.running
    spin_until(executor, lambda: not ft.running, 240, "the fine-tune")
    assert ft.last_result["state"] == "completed", ft.last_result
    # a subscriber that joins after the fact still gets the latched model
    ready = Inbox(probe, String, "/finetuner/model_ready", LATCHED_QOS)
    spin_until(executor, lambda: len(ready) > 0, 20, "model_ready")
    model = Path(ready.last.data)
    assert model.is_file() and model.parent.parent == tmp_path / "runs"
    assert load_encoder(model).model_hash
    spin_until(executor, lambda: any(p.get("state") == "completed" for p in progress.items), 10, "progress")
    states = [p.get("state") for p in progress.items]
    assert "running" in states and states[-1] == "completed"
    assert (tmp_path / "energy.jsonl").is_file()  # the ledger in the data directory
    # ~/energy carries the run's EnergyRecord, the same object as energy.json; no source -> null, never 0
    spin_until(executor, lambda: len(energy) > 0, 10, "~/energy")
    rec = energy.last
    assert rec == json.loads((model.parent / "energy.json").read_text())
    assert rec["format"] == "ssl_nav.energy/2" and rec["source"] == "unavailable"
    # the phases partition the run (which ones depends on the trainer; every name is one the record knows)
    assert rec["phases"] and set(rec["phases"]) <= set(PHASES)
    assert abs(sum(p["wall_s"] for p in rec["phases"].values()) - rec["wall_s"]) < 1e-3
    assert sum(p["images"] for p in rec["phases"].values()) == rec["images"] > 0
    assert rec["joules"]["total"] is None and rec["avg_w"] is None and rec["j_per_1k_images"] is None
    assert all(p["joules"]["total"] is None and p["avg_w"] is None for p in rec["phases"].values())


def test_cancel_stops_the_run_without_a_model(rclpy_context, executor, tmp_path):
    from ssl_nav.ros.finetuner import FinetunerNode

    make_store(tmp_path / "store", n_instances=2, views_per_instance=4)
    ft = add(executor, FinetunerNode(context=rclpy_context,
                                     parameter_overrides=overrides("finetuner", tmp_path, learning__epochs=1000)))
    probe = add(executor, rclpy.create_node("ft_probe", context=rclpy_context))
    progress = Inbox(probe, String, "/finetuner/progress", STATUS_QOS, as_json=True)
    assert not _call(executor, probe.create_client(Trigger, "/finetuner/cancel")).success  # nothing to cancel
    assert _call(executor, probe.create_client(Trigger, "/finetuner/start")).success
    spin_until(executor, lambda: any(p.get("state") == "running" for p in progress.items), 240, "a first epoch")
    assert _call(executor, probe.create_client(Trigger, "/finetuner/cancel")).success
    spin_until(executor, lambda: not ft.running, 120, "the run to stop")
    assert ft.last_result["state"] == "cancelled"
    assert not list((tmp_path / "runs").glob("*/model.pt"))


def test_start_without_views_is_refused(rclpy_context, executor, tmp_path):
    from ssl_nav.ros.finetuner import FinetunerNode

    add(executor, FinetunerNode(context=rclpy_context, parameter_overrides=overrides("finetuner", tmp_path)))
    probe = add(executor, rclpy.create_node("ft_probe", context=rclpy_context))
    r = _call(executor, probe.create_client(Trigger, "/finetuner/start"))
    assert not r.success and "store" in r.message
