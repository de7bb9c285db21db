"""Paths written inside sidecar files stay inside their own directory.

Every sidecar of ssl_nav names its files by paths relative to the directory that holds it: ``views.jsonl``
(relative to the store), ``frames.jsonl``, ``photos.jsonl`` and ``queries.jsonl`` (relative to the frames
directory). A path read from such a file is untrusted input: an absolute path, ``..`` or a symbolic link could
make a reader open, or :meth:`ssl_nav.views.store.ViewStore.remove_views` delete, a file anywhere on the disk.
:func:`resolve_inside` is the one check every reader applies (docs/formats.md, "Paths").
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from ssl_nav.errors import FormatError, SslNavError


def resolve_inside(root: str | os.PathLike, rel: object, where: str, *, under: str | None = None,
                   error: type[SslNavError] = FormatError) -> Path:
    """``root / rel`` when ``rel`` is a relative path that stays inside ``root`` (or ``root / under``).

    The path must be a non-empty string, not absolute, and must still lie inside the directory once ``..`` and
    symbolic links are resolved. Otherwise raise ``error`` whose message starts with ``where`` (``file:line:
    key 'image'``) and names the offending path. The returned path is *not* resolved, so that deleting it
    removes a link rather than what it points to.
    """
    if not isinstance(rel, str) or not rel.strip():
        raise error(f"{where}: must be a relative path (a non-empty string), got {rel!r}")
    if "\x00" in rel:
        raise error(f"{where}: path {rel!r} contains a NUL byte")
    if PurePosixPath(rel).is_absolute() or Path(rel).is_absolute():
        raise error(f"{where}: path {rel!r} is absolute; paths must be relative to {root}")
    base = Path(root)
    inside = base / under if under else base
    target = base / rel
    try:
        real_inside = inside.resolve()
        real_target = target.resolve()
    except (OSError, RuntimeError) as e:  # a symlink loop, an unreadable component
        raise error(f"{where}: path {rel!r} cannot be resolved ({e})") from None
    if real_target == real_inside or not real_target.is_relative_to(real_inside):
        raise error(f"{where}: path {rel!r} leaves {inside} (files named in it must lie inside it)")
    return target


# ---------------------------------------------------------------------------------------------- data directory
#: The layout one data directory shares between the pipeline (:class:`ssl_nav.pipeline.ScenePaths`, ``ssl-nav
#: demo --out DATA``) and the ROS nodes (:class:`ssl_nav.ros.runtime.DataDir`, ``ros.data_dir``):
#: ``DATA/store`` the view store, whose instance map lives in ``STORE/map`` (:func:`store_map_dir`).
STORE_DIR = "store"
#: the energy ledger next to the runs (``energy.ledger``)
LEDGER_FILE = "energy.jsonl"


def store_dir(data_dir: str | os.PathLike) -> Path:
    """``DATA/store``: the view store of a data directory."""
    return Path(data_dir) / STORE_DIR


def store_map_dir(store: str | os.PathLike) -> Path:
    """``STORE/map``: a store's instance map. ``ssl-nav collect`` writes it there and ``--append`` continues it;
    the ROS ``view_collector``'s ``~/save`` writes the same place, so a robot's store can be appended to."""
    return Path(store) / "map"
