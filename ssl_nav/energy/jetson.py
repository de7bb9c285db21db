"""NVIDIA Jetson power rails from the INA3221 monitors (sysfs, hwmon layout of JetPack 5/6 on Orin).

Each monitor is ``<root>/<i2c-device>/hwmon/hwmonN`` with channels ``inK_label`` (rail name, e.g. ``VDD_IN``,
``VDD_CPU_GPU_CV``, ``VDD_SOC`` on Orin Nano/NX; ``VDD_GPU_SOC``, ``VDD_CPU_CV``, ``VIN_SYS_5V0`` on AGX
Orin), ``inK_input`` (bus voltage, mV) and ``currK_input`` (current, mA). A thread samples P = V·I every
``sample_period_s`` and integrates it with the trapezoid rule.

Domains: the board input rail (``VDD_IN``, ``VIN_SYS_5V0``, ``POM_5V_IN``) is ``total``; rails whose names
start with ``VDD_GPU`` go to ``gpu``, ``VDD_CPU`` to ``cpu``, names containing ``SOC`` to ``soc`` (a combined
rail such as ``VDD_CPU_GPU_CV`` counts as cpu). Every rail is also reported under ``rails``. Without an input
rail, ``total`` is the sum of the mapped rails.
"""

from __future__ import annotations

from pathlib import Path

from ssl_nav.energy.base import EnergyBackend, Poller, now

INPUT_RAILS = ("VDD_IN", "VIN_SYS_5V0", "POM_5V_IN")


def ina3221_rails(root: str | Path) -> list[dict]:
    """Readable rails: ``{"name", "volt": Path, "curr": Path}``."""
    rails = []
    for label in sorted(Path(root).glob("*/hwmon/hwmon*/in*_label")):
        ch = label.name[len("in"):-len("_label")]
        volt, curr = label.parent / f"in{ch}_input", label.parent / f"curr{ch}_input"
        try:
            name = label.read_text().strip()
            int(volt.read_text().strip()), int(curr.read_text().strip())
        except (OSError, ValueError):
            continue
        if name and not name.lower().startswith("nc"):
            rails.append({"name": name, "volt": volt, "curr": curr})
    return rails


def rail_domain(name: str) -> str | None:
    n = name.upper()
    if n in INPUT_RAILS:
        return "total"
    if n.startswith("VDD_GPU"):
        return "gpu"
    if n.startswith("VDD_CPU"):
        return "cpu"
    if "SOC" in n:
        return "soc"
    return None


class JetsonBackend(EnergyBackend):
    source = "jetson-ina3221"

    def __init__(self, root: str | Path = "/sys/bus/i2c/drivers/ina3221", sample_period_s: float = 0.1) -> None:
        self.rails = ina3221_rails(root)
        self.sample_period_s = sample_period_s
        self._last: dict[str, tuple[float, float]] = {}
        self._joules: dict[str, float] = {}
        self._poller: Poller | None = None

    @classmethod
    def available(cls, root: str | Path = "/sys/bus/i2c/drivers/ina3221") -> bool:
        return bool(ina3221_rails(root))

    def _sample(self) -> None:
        t = now()
        for r in self.rails:
            watts = int(r["volt"].read_text()) * int(r["curr"].read_text()) / 1e6  # mV * mA = µW
            if r["name"] in self._last:
                t0, w0 = self._last[r["name"]]
                self._joules[r["name"]] = self._joules.get(r["name"], 0.0) + 0.5 * (w0 + watts) * (t - t0)
            self._last[r["name"]] = (t, watts)

    def start(self) -> None:
        self._last, self._joules = {}, {}
        self._poller = Poller(self._sample, self.sample_period_s)
        self._poller.start()

    def stop(self) -> dict:
        assert self._poller is not None
        self._poller.stop()
        out: dict = {"rails": {r["name"]: self._joules.get(r["name"], 0.0) for r in self.rails}}
        for r in self.rails:
            d = rail_domain(r["name"])
            if d is not None:
                out[d] = out.get(d, 0.0) + self._joules.get(r["name"], 0.0)
        if "total" not in out:
            out["total"] = sum(out.get(d, 0.0) for d in ("gpu", "cpu", "soc"))
        return out
