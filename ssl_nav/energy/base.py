"""What every energy backend provides, and the polling thread the sampled backends share."""

from __future__ import annotations

import threading
import time
from typing import Callable

#: per-domain joule keys of an EnergyRecord
DOMAINS: tuple[str, ...] = ("gpu", "cpu", "dram", "soc", "total")


class EnergyBackend:
    """``start()`` then ``stop() -> {domain: joules}`` (domains of :data:`DOMAINS` it measures, plus optional
    ``rails``); ``source`` names it in the record, ``sample_period_s`` is its polling period (None = counter)."""

    source: str = "unavailable"
    sample_period_s: float | None = None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> dict:
        raise NotImplementedError


class Poller:
    """Calls ``fn()`` every ``period`` seconds on a daemon thread until :meth:`stop` (which calls it once more)."""

    def __init__(self, fn: Callable[[], None], period: float) -> None:
        self.fn = fn
        self.period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="energy-poller", daemon=True)
        self.error: BaseException | None = None

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.fn()
            except BaseException as e:  # keep the last error; the meter reports it
                self.error = e

    def start(self) -> None:
        self.fn()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.fn()


def now() -> float:
    return time.monotonic()
