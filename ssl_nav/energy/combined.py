"""Several backends read as one: a PC's GPUs through NVML plus its CPU packages and DRAM through RAPL.

The record of a combined backend lists every part's channels and domains; its ``total`` is the sum of the
measured domains (``total_covers: "gpu+cpu+dram"``), which is as close to whole-device energy as a PC can meter
itself: fans, disks, the motherboard and the power supply's losses are outside every domain (a wall meter
sees them).
"""

from __future__ import annotations

from ssl_nav.energy.base import EnergyBackend


class CombinedBackend(EnergyBackend):
    """Reads ``parts`` together; ``source`` joins their names with ``+`` (e.g. ``nvml+rapl``)."""

    def __init__(self, parts: list[EnergyBackend]) -> None:
        super().__init__()
        if not parts:
            raise ValueError("CombinedBackend needs at least one backend")
        self.parts = parts
        self.source = "+".join(p.source for p in parts)
        periods = [p.poll_period_s for p in parts if p.poll_period_s is not None]
        self.poll_period_s = min(periods) if periods else None
        self.read_at_boundaries = all(p.read_at_boundaries for p in parts)
        self._refresh()

    def _refresh(self) -> None:
        self.channels = {}
        self.notes = []
        for p in self.parts:
            clash = set(self.channels) & set(p.channels)
            if clash:
                raise ValueError(f"backends {self.source} share channel names {sorted(clash)}")
            self.channels.update(p.channels)
            self.notes.extend(p.notes)

    def start(self) -> None:
        started: list[EnergyBackend] = []
        try:
            for p in self.parts:
                p.start()
                started.append(p)
        except BaseException:
            for p in started:
                p.stop()
            raise

    def read(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for p in self.parts:
            out.update(p.read())
        self._refresh()  # a part may learn channels while it reads (Zeus)
        return out

    def stop(self) -> None:
        errors = []
        for p in self.parts:
            try:
                p.stop()
            except Exception as e:
                errors.append(f"{p.source}: {type(e).__name__}: {e}")
        if errors:
            raise OSError("; ".join(errors))
