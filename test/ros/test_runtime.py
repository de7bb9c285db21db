"""``run_node`` (every node executable's ``main()``): SIGINT / SIGTERM stop a real node process cleanly, exit 0;
the large-data Fast DDS profile is used when the user chose none, and the user's choice is kept."""

import os
import signal
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

from ssl_nav.ros.dds_profile import PROFILE_ENV, USER_ENVS, profile_path  # noqa: E402

from .test_stack import stop_with_signal, tiny_params_file  # noqa: E402


@pytest.mark.parametrize("module, sig, when, settle_s, user_profile", [
    ("ssl_nav.ros.view_collector", signal.SIGINT, "collecting views into", 0.0, False),  # worker thread waiting
    ("ssl_nav.ros.sim_bridge", signal.SIGTERM, "[sim_bridge]: scene", 1.5, True),  # render thread publishing
])
def test_a_node_process_stops_cleanly_on_a_signal(ros_env, tmp_path, module, sig, when, settle_s, user_profile):
    params = tiny_params_file(tmp_path / "tiny.yaml")
    log_path = tmp_path / "node.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "RCUTILS_LOGGING_BUFFERED_STREAM": "0"}
    for k in USER_ENVS:
        env.pop(k, None)
    if user_profile:  # the user's own choice (here the same file) is left alone: no "Fast DDS profile" line
        env[PROFILE_ENV] = str(profile_path())
    args = [sys.executable, "-m", module, "--ros-args", "--params-file", str(params),
            "-p", f"ros.data_dir:={tmp_path / 'data'}", "-p", "ros.sim_loop:=true", "-p", "ros.status_period_s:=0.1"]
    text = stop_with_signal(args, env, log_path, when, sig, start_s=120, stop_s=60, settle_s=settle_s)
    used = f"Fast DDS profile {profile_path()} ({PROFILE_ENV} was unset"
    assert (used in text) != user_profile, text[-3000:]
