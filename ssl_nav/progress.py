"""Progress bars, the same on every command: one helper that all long-running work uses.

:func:`tqdm` is ``tqdm.tqdm`` whose bars switch themselves off when their stream (stderr by default) is not a
terminal (tqdm's own ``disable=None``: logs, pipes and CI stay free of carriage returns); ``disable=True`` (a
command's ``--no-progress``) switches them off everywhere. ``SSL_NAV_PROGRESS=1`` forces them on, for a terminal
that does not say it is one.
"""

from __future__ import annotations

import os
from typing import Any


def bars_disabled(disable: bool | None = False) -> bool | None:
    """tqdm's ``disable`` for a caller's flag: ``True`` stays off; otherwise ``None`` (off unless a terminal)."""
    if disable:
        return True
    return False if os.environ.get("SSL_NAV_PROGRESS") == "1" else None


def tqdm(iterable: Any = None, *args: Any, disable: bool | None = False, **kwargs: Any) -> Any:
    """``tqdm.tqdm(iterable, ...)`` with :func:`bars_disabled` semantics for ``disable``."""
    from tqdm import tqdm as _tqdm  # progress bars only; kept out of the CLI's start-up

    return _tqdm(iterable, *args, disable=bars_disabled(disable), **kwargs)
