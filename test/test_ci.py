"""Under CI (``CI=true``) a missing rclpy or ROS message package fails the run instead of skipping the ROS tests
(the hooks in test/conftest.py); outside CI the same tests skip with the reason."""

import os
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).with_name("conftest.py")


def _run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    # the real conftest, with rclpy and sensor_msgs made unimportable
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text()
                                          + "\nsys.modules['rclpy'] = None\nsys.modules['sensor_msgs'] = None\n")
    (tmp_path / "test_module_level.py").write_text("import pytest\npytest.importorskip('rclpy')\n\n\n"
                                                   "def test_a():\n    pass\n")
    (tmp_path / "test_in_test.py").write_text("import pytest\n\n\ndef test_b():\n"
                                              "    pytest.importorskip('sensor_msgs.msg')\n\n\n"
                                              "def test_c():\n    pytest.importorskip('habitat_sim_not_here')\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-p", "no:dash",
                           "--continue-on-collection-errors", str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)


def test_missing_ros_packages_fail_under_ci(tmp_path):
    proc = _run(tmp_path, "true")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "CI is set and a ROS package is missing" in out and "rclpy" in out and "sensor_msgs" in out
    assert "1 failed" in out and "1 error" in out  # the test and the module that need ROS
    assert "1 skipped" in out  # a missing optional non-ROS package still skips


def test_missing_ros_packages_skip_outside_ci(tmp_path):
    proc = _run(tmp_path, None)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "3 skipped" in out and "could not import 'rclpy'" in out
