"""Atomic file writes: write to a temporary file in the same directory, fsync, rename.

A reader (or a process killed mid-write) never sees a half-written file. :func:`replace_dir` swaps a whole
directory the same way (two renames; a reader may find the old, then the new one, never a mix).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def replace_dir(new: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Put the finished directory ``new`` (a sibling of ``dest``) in place of ``dest``, then delete the old one.

    Between the two renames ``dest`` is missing for a moment; a crash there leaves the old directory as
    ``.<name>.old-<hex>`` next to it, whole.
    """
    new, dest = Path(new), Path(dest)
    old = None
    if dest.exists():
        old = dest.parent / f".{dest.name}.old-{secrets.token_hex(4)}"
        os.replace(dest, old)
    try:
        os.replace(new, dest)
    except BaseException:
        if old is not None:
            os.replace(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
