"""Package-level rules: importing ssl_nav never imports rclpy, and every subcommand has --help."""

import subprocess
import sys

import pytest

from ssl_nav.cli import build_parser, command_modules


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
