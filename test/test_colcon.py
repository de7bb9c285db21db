"""A real ``colcon build`` of the package (colcon from PyPI, requirements.txt) into a temporary workspace.

Checks what a ROS user relies on after ``colcon build``: the node executables in ``<prefix>/lib/ssl_nav``, where
``ros2 run ssl_nav <exe>`` looks them up through the ament index (ros2run's ``get_executable_paths``: the
package's prefix from ``AMENT_PREFIX_PATH``, then ``lib/<package>``); the launch files, configuration files and
``package.xml`` under ``share/ssl_nav``; the package marker in the ament index; and that an installed node, run
from the install alone (its own ``PYTHONPATH``, outside the source tree), starts and answers a service call on a
private ``ROS_DOMAIN_ID`` over loopback, with the Fast DDS profile found in the install's share directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("colcon_core")
rclpy = pytest.importorskip("rclpy")

REPO = Path(__file__).resolve().parents[1]
NODES = ("view_collector", "finetuner", "retrieval_server", "sim_bridge", "query_client")
#: the source files colcon needs (a package is its package.xml, setup.py/cfg, resource marker and data files)
SOURCES = ("package.xml", "setup.py", "setup.cfg", "resource", "launch", "config", "ssl_nav")

@pytest.fixture(scope="module")
def install(tmp_path_factory) -> Path:
    """``colcon build`` of a copy of the package; returns the package's install prefix."""
    ws = tmp_path_factory.mktemp("colcon_ws")
    src = ws / "src" / "ssl_nav"
    src.mkdir(parents=True)
    for name in SOURCES:
        p = REPO / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(p, src / name)
    colcon = Path(sys.executable).parent / "colcon"  # the venv's (requirements.txt), else the one on PATH
    if not colcon.is_file():
        colcon = Path(shutil.which("colcon") or pytest.fail("colcon-common-extensions is installed, but no colcon"))
    env = dict(os.environ, PATH=f"{colcon.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    r = subprocess.run([str(colcon), "--log-base", "log", "build", "--base-paths", "src", "--build-base", "build",
                        "--install-base", "install", "--event-handlers", "console_direct-"],
                       cwd=ws, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Summary: 1 package finished" in r.stdout, r.stdout
    return ws / "install" / "ssl_nav"


def _install_env(prefix: Path, domain: int) -> dict:
    site = next((prefix / "lib").glob("python3*/site-packages"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FASTRTPS_DEFAULT_PROFILES_FILE",
                                                             "FASTDDS_DEFAULT_PROFILES_FILE")}
    env.update(PYTHONPATH=str(site), AMENT_PREFIX_PATH=str(prefix), ROS_DOMAIN_ID=str(domain),
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
    return env


def test_ros2_run_finds_every_node_executable(install, ros_env):
    code = ("from ament_index_python.packages import get_package_prefix\n"
            "import os\nprint(get_package_prefix('ssl_nav'))\n")
    r = subprocess.run([sys.executable, "-c", code], env=_install_env(install, ros_env), capture_output=True,
                       text=True, cwd=install.parent, timeout=60)
    assert r.returncode == 0, r.stderr
    prefix = Path(r.stdout.strip())
    assert prefix == install
    for exe in NODES:
        p = prefix / "lib" / "ssl_nav" / exe
        assert p.is_file() and os.access(p, os.X_OK), f"{p} missing or not executable"


def test_share_holds_package_xml_launch_and_config(install):
    share = install / "share" / "ssl_nav"
    assert (share / "package.xml").read_bytes() == (REPO / "package.xml").read_bytes()
    for sub, pattern in (("launch", "*.launch.py"), ("config", "*.yaml"), ("config", "*.xml")):
        want = sorted(p.name for p in (REPO / sub).glob(pattern))
        assert want and sorted(p.name for p in (share / sub).glob(pattern)) == want
    assert (install / "share" / "ament_index" / "resource_index" / "packages" / "ssl_nav").is_file()


def test_the_install_imports_its_own_copy(install, ros_env):
    r = subprocess.run([sys.executable, "-c", "import ssl_nav, ssl_nav.ros.view_collector; print(ssl_nav.__file__)"],
                       env=_install_env(install, ros_env), capture_output=True, text=True, cwd=install.parent,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).is_relative_to(install), r.stdout


def test_an_installed_node_starts_and_answers(install, rclpy_context, ros_env, tmp_path):
    from rclpy.executors import SingleThreadedExecutor
    from std_srvs.srv import Trigger

    exe = install / "lib" / "ssl_nav" / "view_collector"
    log_path = tmp_path / "node.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(exe), "--ros-args", "-p", f"ros.data_dir:={tmp_path / 'data'}"],
                                env=_install_env(install, ros_env), cwd=tmp_path, stdout=log,
                                stderr=subprocess.STDOUT)
    node = rclpy.create_node("colcon_probe", context=rclpy_context)
    ex = SingleThreadedExecutor(context=rclpy_context)
    ex.add_node(node)
    try:
        client = node.create_client(Trigger, "/view_collector/save")
        deadline = time.monotonic() + 120
        while not client.wait_for_service(timeout_sec=0.5):
            assert proc.poll() is None, f"the installed node exited: {log_path.read_text()}"
            assert time.monotonic() < deadline, f"no /view_collector/save service: {log_path.read_text()}"
        future = client.call_async(Trigger.Request())
        deadline = time.monotonic() + 60
        while not future.done() and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.2)
        assert future.done(), "the save service did not answer"
        assert future.result().message  # answered (success, or why not), from the installed node
    finally:
        ex.shutdown()
        node.destroy_node()
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    log = log_path.read_text()
    assert rc == 0, log
    assert "Traceback" not in log
    assert str(install / "share" / "ssl_nav" / "config" / "fastdds_large_data.xml") in log, log
