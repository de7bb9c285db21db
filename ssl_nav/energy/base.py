"""What every energy backend provides, the domains it reports, and the polling thread of the meter.

A backend exposes **channels** (a Jetson rail, a RAPL zone, one GPU), each mapped to a **domain** of
:data:`DOMAINS` or to none. ``read()`` returns, for every channel, the joules accumulated since ``start()``:

- counter sources (RAPL ``energy_uj``, NVML's total-energy counter) read their counters, with wrap-around;
- sampled sources (Jetson INA3221 rails, NVML power on GPUs without the counter) take one power sample and
  integrate it with the trapezoid rule since the previous sample.

:class:`ssl_nav.energy.meter.EnergyMeter` calls ``read()`` at every phase boundary (unless the backend sets
``read_at_boundaries = False``) and, for backends with a ``poll_period_s``, from a :class:`Poller` thread in
between (to see every counter wrap, or to sample power
often enough). The meter serialises the calls: a backend needs no lock of its own.
"""

from __future__ import annotations

import threading
from typing import Callable

#: measured domains of an EnergyRecord, in report order. ``board`` is a board input rail (Jetson ``VDD_IN``);
#: ``cpu_gpu`` a rail that feeds CPU and GPU together (Orin Nano/NX ``VDD_CPU_GPU_CV``).
DOMAINS: tuple[str, ...] = ("gpu", "cpu", "dram", "soc", "cpu_gpu", "board")


class EnergyBackend:
    """A source of cumulative joules per channel (see the module docstring).

    ``source`` names it in the record; ``channels`` maps each channel to its domain (``None``: listed, but
    not part of any domain); ``poll_period_s`` asks the meter to call ``read()`` at least this often
    (``None``: reads at phase boundaries suffice); ``read_at_boundaries`` False leaves phase boundaries to
    the poller's readings (for sensors slow to read, see the meter); ``notes`` are remarks the meter copies
    into the record.
    """

    source: str = "unavailable"
    poll_period_s: float | None = None
    read_at_boundaries: bool = True

    def __init__(self) -> None:
        self.channels: dict[str, str | None] = {}
        self.notes: list[str] = []

    def start(self) -> None:
        """Open the sensors and take the zero point of every channel."""
        raise NotImplementedError

    def read(self) -> dict[str, float]:
        """Joules per channel since :meth:`start` (monotone non-decreasing)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Release the sensors (the last ``read()`` has been taken)."""


def trapezoid(prev: tuple[float, float] | None, t: float, watts: float) -> float:
    """Joules between the sample ``prev = (t0, w0)`` and ``(t, watts)``, power taken as linear in between."""
    if prev is None:
        return 0.0
    t0, w0 = prev
    return 0.5 * (w0 + watts) * max(0.0, t - t0)


class Poller:
    """Calls ``fn()`` every ``period`` seconds on a daemon thread until :meth:`stop`.

    ``fn`` handles its own errors (the meter counts them); one that escapes ends only that call and is kept
    in ``escaped`` for the record.
    """

    def __init__(self, fn: Callable[[], None], period: float) -> None:
        self.fn = fn
        self.period = float(period)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="energy-poller", daemon=True)
        self.escaped: Exception | None = None

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.fn()
            except Exception as e:  # a bug in fn must not end the polling
                self.escaped = e

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
