"""Package-level rules: only ssl_nav/ros imports rclpy or ROS messages (read from every import statement, and
checked at import time), and every subcommand has --help."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from ssl_nav.cli import build_parser, command_modules


PACKAGE = Path(__file__).resolve().parents[1] / "ssl_nav"
#: ROS client libraries and the other ROS-only packages; message packages are matched by suffix
ROS_TOP_LEVEL = {"rclpy", "rcl_interfaces", "builtin_interfaces", "tf2_ros", "tf2_py", "message_filters", "launch",
                 "launch_ros", "launch_testing", "ament_index_python", "rosidl_runtime_py", "rosbag2_py"}
ROS_SUFFIXES = ("_msgs", "_srvs", "_interfaces", "_actions")


def is_ros_module(name: str) -> bool:
    top = name.split(".")[0]
    return top in ROS_TOP_LEVEL or top.endswith(ROS_SUFFIXES)


def ros_imports(source: str, filename: str = "<source>") -> list[str]:
    """``file:line module`` of every import of a ROS package anywhere in ``source`` (inside functions too)."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"{filename}:{node.lineno} {n}" for n in names if is_ros_module(n)]
    return found


def test_the_ros_boundary_check_reads_every_import():
    src = ("import os\nfrom ssl_nav.ros_free import x\n\ndef f():\n    import rclpy.node\n\n"
           "class C:\n    def g(self):\n        from sensor_msgs.msg import Image\n        from std_srvs.srv import Trigger\n")
    assert [s.split(" ")[1] for s in ros_imports(src)] == ["rclpy.node", "sensor_msgs.msg", "std_srvs.srv"]


def test_only_ssl_nav_ros_imports_ros_packages():
    """An AST walk over every module outside ssl_nav/ros/: no import of rclpy or a ROS message package, not
    even inside a function."""
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "ros" in path.relative_to(PACKAGE).parts[:1]:
            continue
        bad += ros_imports(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    assert not bad, "ROS imports outside ssl_nav/ros/: " + "; ".join(bad)
    assert ros_imports((PACKAGE / "ros" / "view_collector.py").read_text())  # the walk does see ROS imports


def test_import_does_not_pull_rclpy():
    code = ("import sys, pkgutil, importlib, ssl_nav\n"
            "for m in pkgutil.walk_packages(ssl_nav.__path__, 'ssl_nav.'):\n"
            "    if not m.name.startswith('ssl_nav.ros') and not m.name.endswith('__main__'):\n"
            "        importlib.import_module(m.name)\n"
            "bad = [n for n in sys.modules if n.split('.')[0] in ('rclpy', 'sensor_msgs', 'std_msgs', 'geometry_msgs')]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", [m.NAME for m in command_modules()])
def test_every_subcommand_has_help(name):
    out = subprocess.run([sys.executable, "-m", "ssl_nav", name, "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "usage: ssl-nav " + name in out.stdout


def test_top_level_help_lists_commands():
    text = build_parser().format_help()
    for m in command_modules():
        assert m.NAME in text


MAX_FUNCTION_LINES = 100


def test_no_function_is_longer_than_100_lines_without_a_stated_reason():
    """A function over 100 lines (def to last line) must say in its docstring why it is long."""
    import re

    long_ones = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES and not re.search(r"\blong\b", ast.get_docstring(node) or "", re.I):
                    long_ones.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({n} lines)")
    assert not long_ones, "split these, or say in the docstring why they are long: " + "; ".join(long_ones)


def test_the_imagenet_weights_are_installed_where_the_backbones_look():
    """setup.py installs models/*.pth into share/ssl_nav/models: models_dir()'s last place, <prefix>/share/..."""
    import inspect

    from ssl_nav.learning.backbones import models_dir

    tree = ast.parse((PACKAGE.parent / "setup.py").read_text())
    kw = next(n for n in ast.walk(tree) if isinstance(n, ast.keyword) and n.arg == "data_files")
    installed = {ast.unparse(t.elts[0]).strip("f'\"").replace("{PACKAGE}", "ssl_nav"):
                 [c.args[0].value for c in ast.walk(t.elts[1])
                  if isinstance(c, ast.Call) and getattr(c.func, "id", "") == "glob"] for t in kw.value.elts}
    assert installed["share/ssl_nav/models"] == ["models/*.pth"]
    assert '"share" / "ssl_nav" / "models"' in inspect.getsource(models_dir)
