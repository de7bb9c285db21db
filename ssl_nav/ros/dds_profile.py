"""The large-data Fast DDS profile (``config/fastdds_large_data.xml``) as the default of ssl_nav's processes.

On one machine with ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (or ``ROS_LOCALHOST_ONLY=1``) rmw_fastrtps sends
everything over UDP on loopback, where best-effort 640x480 RGB-D frames (several 64 KB fragments each) are lost
when the socket buffer fills; the profile adds shared memory and larger socket buffers
(``benchmarks/bench_ros.py`` measures both). ``ssl-nav ros-stack``, every node executable and the launch files
therefore set ``FASTDDS_DEFAULT_PROFILES_FILE`` to it when:

- the user has set neither ``FASTDDS_DEFAULT_PROFILES_FILE`` nor the older ``FASTRTPS_DEFAULT_PROFILES_FILE``
  (any value counts, an empty one too: ``FASTDDS_DEFAULT_PROFILES_FILE=`` keeps Fast DDS's own defaults);
- the RMW is Fast DDS (``RMW_IMPLEMENTATION`` unset or ``rmw_fastrtps*``);
- discovery is limited to this host: the profile sends UDP on 127.0.0.1 only, so on a robot talking to other
  machines (``SUBNET``, the ROS default) it would cut them off, and it is left out.

The XML is found next to the package in a source checkout (``<repo>/config``) and in the installed share
directory (``share/ssl_nav/config``, from ``setup.py``'s ``data_files``) of a colcon or pip install.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path

PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
#: the variables through which a user chooses a profile (Fast DDS reads both; the second is the older name)
USER_ENVS = (PROFILE_ENV, "FASTRTPS_DEFAULT_PROFILES_FILE")
PROFILE_NAME = "fastdds_large_data.xml"
PACKAGE = "ssl_nav"


def profile_path() -> Path | None:
    """``config/fastdds_large_data.xml`` of a source checkout, else of the installed package (the ament index,
    then pip's ``data_files`` under ``sys.prefix``); ``None`` when none exists."""
    source = Path(__file__).resolve().parents[2] / "config" / PROFILE_NAME
    if source.is_file():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory(PACKAGE)) / "config" / PROFILE_NAME
        if share.is_file():
            return share
    except (ImportError, LookupError, OSError):  # no ROS environment, or ssl_nav not in its index
        pass
    prefix = Path(sys.prefix) / "share" / PACKAGE / "config" / PROFILE_NAME
    return prefix if prefix.is_file() else None


def host_only_discovery(environ: Mapping[str, str]) -> bool:
    """Whether ROS discovery is limited to this host (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` or the older
    ``ROS_LOCALHOST_ONLY=1``)."""
    return (environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").strip().upper() == "LOCALHOST"
            or environ.get("ROS_LOCALHOST_ONLY", "").strip() == "1")


def default_profile_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{FASTDDS_DEFAULT_PROFILES_FILE: path}`` to add to ``environ`` (default ``os.environ``), or ``{}`` when
    the profile does not apply (module docstring)."""
    env = os.environ if environ is None else environ
    if any(k in env for k in USER_ENVS):
        return {}
    rmw = env.get("RMW_IMPLEMENTATION", "").strip()
    if rmw and not rmw.startswith("rmw_fastrtps"):
        return {}
    if not host_only_discovery(env):
        return {}
    path = profile_path()
    return {PROFILE_ENV: str(path)} if path is not None else {}


def use_default_profile(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Set the default profile in ``environ`` (default ``os.environ``, before ``rclpy.init``: Fast DDS reads the
    variable when it creates the first participant); returns the path set, or ``None`` when nothing was set."""
    env = os.environ if environ is None else environ
    add = default_profile_env(env)
    env.update(add)
    return add.get(PROFILE_ENV)
