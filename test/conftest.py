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

# Shared test helpers (test/testkit: ray-cast scenes of known geometry, tiny stores) import by name.
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


# ------------------------------------------------------------------------------------------------ CI: no silent ROS skips

#: what the ROS tests import; pip installs them (requirements-ros.txt) or a sourced ROS 2 provides them
ROS_PACKAGES = ("rclpy", "std_msgs", "sensor_msgs", "geometry_msgs", "std_srvs", "visualization_msgs", "nav_msgs")


def in_ci() -> bool:
    """``CI`` set to a true value, as CI services (and ``.ci/run``) set it."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


def missing_ros_reason(longrepr) -> str | None:
    """The skip reason when a skip comes from a missing ROS package (``pytest.importorskip("rclpy")`` and the
    like), else None."""
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr or "")
    for name in ROS_PACKAGES:
        if f"could not import '{name}" in text or f"No module named '{name}" in text:
            return text
    return None


def _fail_in_ci(report) -> None:
    reason = missing_ros_reason(report.longrepr) if report.skipped else None
    if reason is not None and in_ci():
        report.outcome = "failed"
        report.longrepr = (f"CI is set and a ROS package is missing, so the ROS tests cannot run: {reason}. "
                           f"Install requirements-ros.txt (scripts/setup.sh does) or source a ROS 2 distribution")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A module skipped at import (``pytest.importorskip("rclpy")`` at module level) fails under CI."""
    outcome = yield
    _fail_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test skipped for a missing ROS package (the ``rclpy_context`` fixture, an in-test importorskip) fails
    under CI."""
    outcome = yield
    _fail_in_ci(outcome.get_result())
