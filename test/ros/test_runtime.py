"""``run_node`` (every node executable's ``main()``): SIGINT / SIGTERM stop a real node process cleanly, exit 0;
the large-data Fast DDS profile is used when the user chose none, and the user's choice is kept."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

from ssl_nav.ros.dds_profile import PROFILE_ENV, USER_ENVS, profile_path  # noqa: E402

from .test_stack import REPO, _wait_for_text, tiny_params_file  # noqa: E402


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
    with open(log_path, "w") as log:
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for_text(log_path, when, proc, 120)
            time.sleep(settle_s)
            proc.send_signal(sig)
            rc = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log_path.read_text()
    assert rc == 0, text[-3000:]
    assert "Traceback" not in text and "RCLError" not in text, text[-3000:]
    used = f"Fast DDS profile {profile_path()} ({PROFILE_ENV} was unset"
    assert (used in text) != user_profile, text[-3000:]
