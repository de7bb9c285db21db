"""Helpers of the real-DDS node tests: tiny configurations and spinning until a condition holds."""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import numpy as np
import pytest

#: a tiny scene, small images and crops, quick mapping: the whole test/ros/ stays small on 2 cores
TINY: dict[str, Any] = {
    "sim.width": 64, "sim.height": 48, "sim.n_objects_min": 3, "sim.n_objects_max": 4, "sim.n_twins": 0,
    "sim.n_distractors": 0, "sim.n_explore_positions": 1, "sim.n_turn_steps": 6, "sim.lq_blur_max_px": 0,
    "views.crop_size": 32, "views.min_box_px": 4, "views.min_visible_points": 5,
    "views.keyframe_translation": 0.0, "views.max_views_per_instance": 6,
    "mapping.voxel_size": 0.05, "mapping.min_points": 5,
    "learning.backbone": "mobilenet_v3_small", "learning.pretrained": False, "learning.trainable": "heads",
    "learning.epochs": 1, "learning.batch_size": 4, "learning.image_size": 32, "learning.proj_dim": 32,
    "learning.pred_hidden_dim": 16, "learning.holdout_fraction": 0.0, "learning.device": "cpu",
    "learning.threads": 1, "learning.monitor_max_views": 16, "energy.backend": "none",
    "retrieval.image_size": 32, "retrieval.device": "cpu", "retrieval.batch_size": 16,
    "retrieval.open_set_score": "best",  # a 1-epoch classifier is not confident; the stack is what is tested
    "ros.sim_rate_hz": 10.0, "ros.status_period_s": 0.3, "ros.index_model": "mobilenet_v3_small",
}


def overrides(node_name: str, data_dir: str, **extra: Any) -> list:
    """``parameter_overrides`` for one node: the TINY values of the sections it declares, plus ``extra``."""
    from rclpy.parameter import Parameter

    from ssl_nav.ros.params import NODE_SECTIONS

    values = {**TINY, "ros.data_dir": str(data_dir), **{k.replace("__", "."): v for k, v in extra.items()}}
    return [Parameter(k, value=v) for k, v in values.items() if k.split(".")[0] in NODE_SECTIONS[node_name]]


def spin_until(executor, pred: Callable[[], bool], timeout: float, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        executor.spin_once(timeout_sec=0.05)
    if not pred():
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Inbox:
    """Collects messages of one topic; ``json`` decodes String payloads."""

    def __init__(self, node, msg_type, topic: str, qos=10, as_json: bool = False) -> None:
        self.items: list = []
        node.create_subscription(msg_type, topic,
                                 lambda m: self.items.append(json.loads(m.data) if as_json else m), qos)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def last(self):
        return self.items[-1] if self.items else None


def make_store(root, n_instances: int = 3, views_per_instance: int = 4, size: int = 32, seed: int = 0):
    """A small ViewStore of coloured-pattern views with instances at known centroids (1.5 m apart)."""
    from ssl_nav.views.store import ViewStore

    rng = np.random.default_rng(seed)
    store = ViewStore(root, create=True)
    instances = {}
    for i in range(1, n_instances + 1):
        base = rng.integers(0, 256, 3)
        for v in range(views_per_instance):
            img = np.zeros((size, size, 3), np.uint8)
            img[:] = base
            img[(v * 3) % size:, : size // (i + 1)] = 255 - base  # instance-specific pattern, shifted per view
            img = np.clip(img.astype(int) + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)
            store.add_view(str(i), img, "low", frame_id=f"f{v}")
        c = [1.5 * i, -1.0 * i, 0.5]
        instances[str(i)] = {"category": f"thing{i}", "centroid": c,
                             "aabb": [[c[0] - 0.1, c[1] - 0.1, 0.4], [c[0] + 0.1, c[1] + 0.1, 0.6]], "n_points": 100}
    store.set_instances(instances)
    return store


@pytest.fixture
def executor(rclpy_context):
    from rclpy.executors import MultiThreadedExecutor

    ex = MultiThreadedExecutor(num_threads=4, context=rclpy_context)
    nodes = []
    ex.nodes_to_close = nodes
    yield ex
    ex.shutdown(timeout_sec=2)
    for n in nodes:
        close = getattr(n, "close", None)
        if close:
            close()
        n.destroy_node()


def add(executor, node):
    """Add a node to the test executor; it is closed and destroyed after the test."""
    executor.add_node(node)
    executor.nodes_to_close.append(node)
    return node
