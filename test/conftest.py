"""Shared fixtures. Real-DDS tests stay on loopback with their own domain id (see ``ros_env``)."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

# Every process started from the tests (rclpy in-process, ssl-nav ros-stack subprocesses) keeps
# Fast DDS discovery on loopback; traffic leaving loopback is not allowed on CI machines.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("OMP_NUM_THREADS", "2")

# Shared test helpers (e.g. scenes_for_tests, the ray-cast scenes of known geometry) import by name.
sys.path.insert(0, str(Path(__file__).parent))

_domain_ids = itertools.count()


def unique_domain_id() -> int:
    """A ROS domain id unique to this test process and call (1..200), so parallel runs never cross."""
    return 1 + (os.getpid() * 7 + next(_domain_ids)) % 200


@pytest.fixture
def ros_env(monkeypatch):
    """LOCALHOST discovery and a fresh ``ROS_DOMAIN_ID``; returns the domain id. Subprocesses inherit both."""
    domain = unique_domain_id()
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    return domain


@pytest.fixture
def rclpy_context(ros_env):
    """An initialised rclpy Context on the test's own domain; shut down afterwards."""
    rclpy = pytest.importorskip("rclpy")
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx, domain_id=ros_env)
    yield ctx
    if ctx.ok():
        rclpy.shutdown(context=ctx)
