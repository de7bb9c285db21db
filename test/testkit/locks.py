"""A lock held by another process: the second writer of a store, run or index directory."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def lock_held_elsewhere(imports: str, acquire: str, release: str) -> Iterator[subprocess.Popen]:
    """A child process that runs ``imports`` and ``acquire`` (a statement taking a lock), then holds it until the
    block ends, when it runs ``release`` and exits 0. Yields the child once it holds the lock (its ``pid`` is the
    holder an error must name)."""
    code = f"import sys; {imports}; {acquire}; print('held', flush=True); sys.stdin.read(); {release}"
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.communicate("")
    assert holder.returncode == 0
