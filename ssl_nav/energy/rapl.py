"""Intel/AMD RAPL (Running Average Power Limit) counters through the Linux powercap interface.

Zones ``<root>/intel-rapl:N`` (packages, name ``package-N``) and their subzones ``intel-rapl:N:M`` (names such
as ``core``, ``uncore``, ``dram``) expose a cumulative ``energy_uj`` counter that wraps to 0 after
``max_energy_range_uj``. The meter reads the counters at every phase boundary and polls them in between often
enough to see every wrap (a package at 250 W wraps about every 17 minutes on a 2^38 µJ range); each delta is
taken modulo the range (:func:`wrapped_delta`). The kernel's ``intel_rapl`` driver serves AMD Zen packages
under the same names.

Channels: every package (domain ``cpu``) and every ``dram`` subzone (domain ``dram``, named
``dram@intel-rapl:N``). ``core`` and ``uncore`` are parts of their package and not counted again; ``psys``
(platform, some laptops) is not read. Reading ``energy_uj`` needs root (or a udev rule) since Linux 5.10.
"""

from __future__ import annotations

from pathlib import Path

from ssl_nav.energy.base import EnergyBackend

DEFAULT_ROOT = "/sys/class/powercap"


def _read_int(p: Path) -> int:
    return int(p.read_text().strip())


def rapl_zones(root: str | Path) -> list[dict]:
    """Zones under ``root`` whose counters can be read: ``{"path", "name", "kind", "max_uj"}``, ``kind`` one of
    ``package``, ``dram``, ``other``."""
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


def why_unavailable(root: str | Path) -> str | None:
    """``None`` when a package counter can be read under ``root``, else the reason, for the record's note."""
    r = Path(root)
    packages = sorted(r.glob("intel-rapl:*")) if r.is_dir() else []
    if not packages:
        return f"no intel-rapl zones under {r}"
    if any(z["kind"] == "package" for z in rapl_zones(r)):
        return None
    try:
        (packages[0] / "energy_uj").read_text()
    except PermissionError:
        return f"{packages[0] / 'energy_uj'} is not readable (root only since Linux 5.10)"
    except OSError as e:
        return f"{packages[0] / 'energy_uj'}: {e.strerror or e}"
    return f"no readable package counter under {r}"


def wrapped_delta(before: int, after: int, max_range: int) -> int:
    """Counter increase from ``before`` to ``after`` on a counter that wraps to 0 after ``max_range``."""
    return after - before if after >= before else after + (max_range + 1) - before


class RaplBackend(EnergyBackend):
    """Package and DRAM counters of RAPL (see the module docstring)."""

    source = "rapl"

    def __init__(self, root: str | Path = DEFAULT_ROOT, poll_period_s: float = 1.0) -> None:
        super().__init__()
        self.zones = [z for z in rapl_zones(root) if z["kind"] in ("package", "dram")]
        if not any(z["kind"] == "package" for z in self.zones):
            raise OSError(why_unavailable(root) or f"no RAPL package under {root}")
        self.poll_period_s = poll_period_s
        self._names = {z["path"]: z["name"] if z["kind"] == "package" else f"dram@{z['path'].parent.name}"
                       for z in self.zones}
        self.channels = {self._names[z["path"]]: "cpu" if z["kind"] == "package" else "dram" for z in self.zones}
        self._last: dict[Path, int] = {}
        self._acc: dict[Path, int] = {}

    @classmethod
    def available(cls, root: str | Path = DEFAULT_ROOT) -> bool:
        return why_unavailable(root) is None

    def start(self) -> None:
        self._last = {z["path"]: _read_int(z["path"] / "energy_uj") for z in self.zones}
        self._acc = {z["path"]: 0 for z in self.zones}

    def read(self) -> dict[str, float]:
        now = {z["path"]: _read_int(z["path"] / "energy_uj") for z in self.zones}  # all or nothing
        for z in self.zones:
            p = z["path"]
            self._acc[p] += wrapped_delta(self._last[p], now[p], z["max_uj"])
            self._last[p] = now[p]
        return {self._names[p]: uj / 1e6 for p, uj in self._acc.items()}
