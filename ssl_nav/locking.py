"""One writer at a time: an advisory lock per view store and per run directory.

A writer (``collect``, ``add-photos``, ``store`` repairs, ``finetune``, the ROS view collector and finetuner)
holds ``fcntl.flock(LOCK_EX | LOCK_NB)`` on the hidden file ``DIR/.lock`` while it writes, and records its PID
and start time in it. A second writer does not wait: it gets a :class:`LockedError` that names the holder's PID,
so two ``collect --append`` or two ``finetune --out R`` at once never both succeed. The kernel drops the lock
when its holder exits (also on SIGKILL), so a stale ``.lock`` file never blocks anyone; a writer that
finishes deletes the file while it still holds the lock (a writer that then finds its locked file gone opens
the new one), so a finished command leaves the directory byte-identical. Readers take no lock
(every file is replaced atomically or appended whole; docs/formats.md, "Locks").
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from ssl_nav.errors import SslNavError

LOCK_FILE = ".lock"


class LockedError(SslNavError):
    """Another process is writing the same store or run directory."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_bytes() or b"{}")
        return f"PID {int(info['pid'])}, {info.get('what', 'a writer')} since {info.get('since', '?')}"
    except (OSError, ValueError, KeyError, TypeError):
        return "PID unknown"


class DirLock:
    """An exclusive, non-blocking lock on ``directory/.lock`` (module docstring); re-entrant in one object."""

    def __init__(self, directory: str | os.PathLike, what: str, name: str = LOCK_FILE) -> None:
        self.directory = Path(directory)
        self.what = what
        self.path = self.directory / name
        self._fd: int | None = None
        self._depth = 0

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "DirLock":
        if self._fd is not None:
            self._depth += 1
            return self
        fd = self._open_locked()
        info = json.dumps({"pid": os.getpid(), "what": self.what,
                           "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, info + b"\n", 0)
        except OSError:
            pass  # a full disk: the lock holds all the same, only the holder's name is missing
        self._fd, self._depth = fd, 1
        return self

    def _open_locked(self) -> int:
        """Open and flock the lock file; again when the holder before us unlinked it meanwhile (the inode we
        locked is no longer the file at ``path``)."""
        for _ in range(100):
            if self.path.is_symlink():
                raise LockedError(f"{self.path}: is a symbolic link; remove it (a lock file is a plain file)")
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as e:
                raise LockedError(f"{self.path}: cannot open the lock file ({e.strerror})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                try:
                    same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
            except BlockingIOError:
                os.close(fd)
                what = self.directory if self.path.name == LOCK_FILE else self.path
                raise LockedError(f"{what}: another process is writing it ({_holder(self.path)}; lock "
                                  f"file {self.path}); wait for it to finish or stop it, then try again") from None
            except BaseException:
                os.close(fd)
                raise
            if same:
                return fd
            os.close(fd)
        raise LockedError(f"{self.path}: the lock file keeps being replaced; is another writer starting?")

    def release(self) -> None:
        if self._fd is None:
            return
        self._depth -= 1
        if self._depth > 0:
            return
        fd, self._fd = self._fd, None
        try:
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    self.path.unlink()  # still ours: a finished writer leaves the directory as it was
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> "DirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
