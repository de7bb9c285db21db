"""Where the simulator's bundled data lives: the ``pybullet_data`` directory of meshes and textures.

A leaf of :mod:`ssl_nav.sim`: the scene catalogue (:mod:`ssl_nav.sim.scenes`) and the textures
(:mod:`ssl_nav.sim.textures`) both read files from it, and neither imports the other for it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ssl_nav.errors import DependencyError


def data_path() -> Path:
    """The ``pybullet_data`` directory (meshes and textures)."""
    try:
        import pybullet_data
    except ImportError as e:  # pragma: no cover - pybullet is a hard dependency
        raise DependencyError("pybullet_data is not installed (pip install pybullet)") from e
    return Path(pybullet_data.getDataPath())


def resolve_data_file(rel: str | None) -> str | None:
    """Absolute path of a ``pybullet_data`` file (``None`` stays ``None``)."""
    return None if rel is None else os.fspath(data_path() / rel)
