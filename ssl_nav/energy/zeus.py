"""The Zeus energy monitor (``zeus`` package, ml.energy; optional, imported lazily).

``ZeusMonitor`` measures named windows over the visible GPUs (NVML) and, where it can read RAPL, the CPU
packages and their DRAM. To give per-phase figures, this backend keeps one window open and, at every read,
ends it and opens the next one, adding each window's ``gpu_energy``, ``cpu_energy`` and ``dram_energy``
(joules per index) to running sums. Zeus synchronises CUDA at each window edge by default.

Channels ``gpu<i>`` (domain ``gpu``), ``cpu<i>`` (``cpu``), ``dram<i>`` (``dram``), as Zeus reports them.
Note that Zeus's own ``Measurement.total_energy`` is GPU-only; the record's ``total`` is instead the sum of
the measured domains, and ``total_covers`` says which. An SoC measurement (``soc_energy``, Apple silicon or
Jetson under Zeus) is not mapped: use ``energy.backend: jetson`` on a Jetson.
"""

from __future__ import annotations

import itertools
from typing import Any

from ssl_nav.energy.base import EnergyBackend

#: Measurement attribute -> (channel prefix, domain)
FIELDS = {"gpu_energy": ("gpu", "gpu"), "cpu_energy": ("cpu", "cpu"), "dram_energy": ("dram", "dram")}


class ZeusBackend(EnergyBackend):
    """Zeus windows chained at every read (see the module docstring). ``monitor``: a ``ZeusMonitor`` (one
    over every visible GPU and CPU package is made when ``None``)."""

    source = "zeus"
    poll_period_s = None

    def __init__(self, monitor: Any = None) -> None:
        super().__init__()
        if monitor is None:
            from zeus.monitor import ZeusMonitor

            monitor = ZeusMonitor()
        self.monitor = monitor
        self._ids = itertools.count()
        self._key = ""
        self._joules: dict[str, float] = {}
        self._soc_seen = False

    @classmethod
    def available(cls) -> bool:
        try:
            import zeus.monitor  # noqa: F401
        except Exception:
            return False
        return True

    def _open(self) -> None:
        self._key = f"ssl_nav-energy-{id(self)}-{next(self._ids)}"
        self.monitor.begin_window(self._key)

    def start(self) -> None:
        self._joules = {}
        self._open()

    def read(self) -> dict[str, float]:
        m = self.monitor.end_window(self._key)
        self._open()
        for attr, (prefix, domain) in FIELDS.items():
            for idx, joules in (getattr(m, attr, None) or {}).items():
                ch = f"{prefix}{idx}"
                self.channels[ch] = domain
                self._joules[ch] = self._joules.get(ch, 0.0) + float(joules)
        if getattr(m, "soc_energy", None) is not None and not self._soc_seen:
            self._soc_seen = True
            self.notes.append("zeus soc_energy not mapped (use energy.backend jetson on a Jetson)")
        return dict(self._joules)

    def stop(self) -> None:
        try:
            self.monitor.end_window(self._key)
        except Exception:
            pass  # the window may already be closed by a failed read; nothing is lost
