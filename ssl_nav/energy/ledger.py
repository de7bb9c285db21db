"""The energy ledger: one EnergyRecord per line in ``energy.jsonl`` (the data directory's, by default).

Appends are whole lines written with one ``write`` under an exclusive ``flock`` and fsynced, so concurrent
fine-tunes never interleave or truncate each other's records. A record is stored as it is: an unmeasured
figure stays ``null``; a non-finite number (NaN, inf: not JSON) is written as ``null``, as on the ROS topic.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from pathlib import Path
from typing import Any

from ssl_nav.errors import FormatError


def _finite(x: Any) -> Any:
    """A copy with NaN/inf floats replaced by None."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def append_ledger(path: str | os.PathLike, record: dict) -> None:
    """Append ``record`` as one JSON line to the ledger at ``path`` (created with its directory if needed)."""
    p = Path(path)
    line = (json.dumps(_finite(record), allow_nan=False) + "\n").encode()
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_ledger(path: str | os.PathLike) -> list[dict]:
    """Every record of a ledger; a bad line raises FormatError naming the file and line."""
    p = Path(path)
    out = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise FormatError(f"{p}:{n}: not valid JSON ({e.msg})") from None
    return out
