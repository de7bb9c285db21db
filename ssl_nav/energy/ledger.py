"""The energy ledger: one EnergyRecord per line in ``energy.jsonl`` (the data directory's, by default).

Appends are whole lines written with one ``write`` under an exclusive ``flock`` and fsynced, so concurrent
fine-tunes never interleave or truncate each other's records. A partial last line (a writer killed mid-write,
a full disk) is cut off under the lock before the next record is appended, so it never swallows that record;
readers skip it. :func:`check_ledger_path` refuses a path that cannot be a ledger (a directory) before a
fine-tune starts. :func:`with_earlier_parts` makes the record of a resumed run cover the whole run. A record
is stored as it is: an unmeasured figure stays ``null``; a non-finite number (NaN, inf: not JSON) is written as
``null``, as on the ROS topic.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from pathlib import Path
from typing import Any

from ssl_nav.errors import ConfigError, FormatError


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
    fd = os.open(p, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _cut_partial_line(fd)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _cut_partial_line(fd: int) -> None:
    """Truncate the file after its last newline when it ends in a partial line (under the caller's lock)."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        chunk = os.pread(fd, pos - start, start)
        i = chunk.rfind(b"\n")
        if i >= 0:
            os.ftruncate(fd, start + i + 1)
            return
        pos = start
    os.ftruncate(fd, 0)


def check_ledger_path(path: str | os.PathLike) -> Path:
    """Refuse, before any work, a ledger path that cannot be appended to: a directory, a file under a
    non-directory, a directory that is not writable. Returns the path."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory; the energy ledger is a file (for example {p / 'energy.jsonl'})")
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{p}: cannot be created ({parent} is not a directory)")
    target = p if p.exists() else parent
    if not os.access(target, os.W_OK):
        raise ConfigError(f"{p}: not writable ({target})")
    return p


def read_ledger(path: str | os.PathLike) -> list[dict]:
    """Every record of a ledger; a bad line raises FormatError naming the file and line. A partial last line
    (a killed writer's) is skipped."""
    p = Path(path)
    out = []
    text = p.read_bytes().decode("utf-8", errors="replace")
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise FormatError(f"{p}:{n}: not valid JSON ({e.msg})") from None
    return out


def _part(rec: dict) -> dict:
    return {"run_id": rec.get("run_id"), "wall_s": rec.get("wall_s"), "status": rec.get("status"),
            "joules_total": (rec.get("joules") or {}).get("total")}


def with_earlier_parts(record: dict, run_dir: str | os.PathLike, steps_before: int,
                       ledger: str | os.PathLike | None = None) -> dict:
    """The EnergyRecord of a resumed run with ``resumed``: the parts of the same run before this one and the
    whole run's wall time and joules.

    ``steps_before`` optimisation steps were done before the resume (the checkpoint's step). The earlier parts
    are the latest records of ``run_dir`` in the ledger (and the run's previous ``energy.json``), newest first,
    until their steps add up to ``steps_before``. A part killed before it wrote its record leaves none: then
    ``missing`` is true and the whole run's figures are ``null`` (unknown, never the resumed part's alone)."""
    run_dir = Path(run_dir)
    recs: list[dict] = []
    if ledger is not None and Path(ledger).is_file():
        try:
            recs = [r for r in read_ledger(ledger) if isinstance(r, dict) and r.get("run_dir") == str(run_dir)]
        except FormatError:
            recs = []
    try:
        prev = json.loads((run_dir / "energy.json").read_bytes())
    except (OSError, ValueError):
        prev = None
    if isinstance(prev, dict) and prev.get("run_id") not in {r.get("run_id") for r in recs}:
        recs.append(prev)
    found, steps = [], 0
    for r in reversed(recs):
        if steps >= steps_before:
            break
        found.insert(0, r)
        steps += int(r.get("steps") or 0)
    missing = steps < steps_before
    parts = [_part(r) for r in found] + [_part(record)]
    joules = [p["joules_total"] for p in parts]
    walls = [p["wall_s"] for p in parts]
    whole = {"wall_s": None if missing or None in walls else round(sum(walls), 3),
             "joules_total": None if missing or None in joules else round(sum(joules), 3)}
    note = (f"{steps_before - steps} of the {steps_before} steps before the resume have no energy record (a "
            f"process killed before it wrote one): the whole run's figures are unknown" if missing else
            f"the whole run: {len(parts)} parts")
    return {**record, "resumed": {"steps_before": int(steps_before), "parts": parts, "missing": missing,
                                  "whole_run": whole, "note": note}}
