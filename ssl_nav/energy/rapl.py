"""Intel/AMD RAPL through the Linux powercap interface.

Zones ``<root>/intel-rapl:N`` (packages, name ``package-N``) and their subzones ``intel-rapl:N:M`` (names such
as ``core``, ``uncore``, ``dram``) expose a cumulative ``energy_uj`` counter that wraps at
``max_energy_range_uj``. The counters are polled by a thread often enough to see every wrap (a package at
250 W wraps about every 17 minutes on a 2^38 µJ range), and each delta is taken modulo the range.
Domains: ``cpu`` = sum of packages, ``dram`` = sum of dram subzones, ``total`` = cpu + dram.
Reading ``energy_uj`` usually needs root (or a udev rule) since Linux 5.10.
"""

from __future__ import annotations

from pathlib import Path

from ssl_nav.energy.base import EnergyBackend, Poller


def _read_int(p: Path) -> int:
    return int(p.read_text().strip())


def rapl_zones(root: str | Path) -> list[dict]:
    """Readable zones under ``root``: ``{"path", "name", "kind": "package"|"dram"|"other", "max_uj"}``."""
    zones = []
    for z in sorted(Path(root).glob("intel-rapl:*")) + sorted(Path(root).glob("intel-rapl:*/intel-rapl:*")):
        try:
            name = (z / "name").read_text().strip()
            _read_int(z / "energy_uj")
            max_uj = _read_int(z / "max_energy_range_uj")
        except (OSError, ValueError):
            continue
        top = z.parent == Path(root)
        kind = "package" if top and name.startswith("package") else ("dram" if name == "dram" else "other")
        if any(q["path"] == z for q in zones):
            continue
        zones.append({"path": z, "name": name, "kind": kind, "max_uj": max_uj})
    return zones


def wrapped_delta(before: int, after: int, max_range: int) -> int:
    """Counter increase from ``before`` to ``after`` on a counter that wraps to 0 after ``max_range``."""
    return after - before if after >= before else after + (max_range + 1) - before


class RaplBackend(EnergyBackend):
    source = "rapl"

    def __init__(self, root: str | Path = "/sys/class/powercap", sample_period_s: float = 1.0) -> None:
        self.zones = [z for z in rapl_zones(root) if z["kind"] in ("package", "dram")]
        self.sample_period_s = sample_period_s
        self._last: dict[Path, int] = {}
        self._acc: dict[Path, int] = {}
        self._poller: Poller | None = None

    @classmethod
    def available(cls, root: str | Path = "/sys/class/powercap") -> bool:
        return any(z["kind"] == "package" for z in rapl_zones(root))

    def _sample(self) -> None:
        for z in self.zones:
            v = _read_int(z["path"] / "energy_uj")
            p = z["path"]
            if p in self._last:
                self._acc[p] = self._acc.get(p, 0) + wrapped_delta(self._last[p], v, z["max_uj"])
            self._last[p] = v

    def start(self) -> None:
        self._last, self._acc = {}, {}
        self._poller = Poller(self._sample, self.sample_period_s)
        self._poller.start()

    def stop(self) -> dict:
        assert self._poller is not None
        self._poller.stop()
        cpu = sum(self._acc.get(z["path"], 0) for z in self.zones if z["kind"] == "package") / 1e6
        dram_zones = [z for z in self.zones if z["kind"] == "dram"]
        dram = sum(self._acc.get(z["path"], 0) for z in dram_zones) / 1e6 if dram_zones else None
        return {"cpu": cpu, "dram": dram, "total": cpu + (dram or 0.0),
                "rails": {z["name"] + ("" if z["kind"] == "package" else f"@{z['path'].parent.name}"):
                          self._acc.get(z["path"], 0) / 1e6 for z in self.zones}}
