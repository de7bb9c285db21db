"""Stop on SIGINT / SIGTERM by setting a flag, so that a long-running command can shut down in order.

Python's default SIGINT handler raises ``KeyboardInterrupt`` wherever the main thread happens to be, and SIGTERM
kills the process outright; rclpy's handlers shut the ROS context down under the nodes' worker threads. A
command that owns threads and files (``ssl-nav ros-stack``) installs :class:`StopOnSignal` instead and polls
``stop``.
"""

from __future__ import annotations

import signal
import threading


class StopOnSignal:
    """A context manager: the first SIGINT or SIGTERM sets ``stop``; a second one raises ``KeyboardInterrupt``
    (for a user who does not want to wait). The previous handlers come back on exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.stop = threading.Event()
        self._old: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()

    def __enter__(self) -> "StopOnSignal":
        for sig in self.SIGNALS:
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}
