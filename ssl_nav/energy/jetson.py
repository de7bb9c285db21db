"""NVIDIA Jetson power rails from the on-module INA3221 monitors (sysfs).

Two driver layouts are read, both under ``energy.hwmon_root``:

- hwmon (mainline ``ina3221`` driver, JetPack 5/6, Orin; root ``/sys/bus/i2c/drivers/ina3221``):
  ``<dev>/hwmon/hwmonN/inK_label`` (rail name), ``inK_input`` (bus voltage, mV), ``currK_input`` (mA);
  P = V·I.
- iio (L4T ``ina3221x`` driver, JetPack 4, Nano/TX2/Xavier; root ``/sys/bus/i2c/drivers/ina3221x``):
  ``<dev>/iio:deviceN/rail_name_K`` and ``in_powerK_input`` (mW).

The meter samples every rail every ``energy.sample_period_s`` and integrates the power with the trapezoid
rule. Each sample is an I2C transaction per file, so phase boundaries do not sample by default
(``read_at_boundaries``): the energy between two samples is split over the phases in between by their
durations, i.e. phases are resolved to the sampling period.

Domains by rail name: the module input rail (``VDD_IN``, ``VIN_SYS_5V0`` on AGX Orin, ``POM_5V_IN`` on Nano)
is ``board``: it feeds everything on the module (CPU, GPU, memory, SoC, regulators), so it becomes the
record's ``total``. Otherwise names with both ``CPU`` and ``GPU`` go to ``cpu_gpu`` (Orin Nano/NX
``VDD_CPU_GPU_CV``), ``GPU`` to ``gpu`` (``VDD_GPU_SOC`` on AGX Orin includes part of the SoC), ``CPU`` to
``cpu``, ``SOC`` to ``soc``, ``DDR``/``VDDRQ`` to ``dram``; other rails (``CV``, carrier-board rails such as
``VDD_MUX``) are listed as channels without a domain.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable

from ssl_nav.energy.base import EnergyBackend, trapezoid

DEFAULT_ROOT = "/sys/bus/i2c/drivers/ina3221"
#: module input rails, in preference order
INPUT_RAILS = ("VDD_IN", "VIN_SYS_5V0", "POM_5V_IN")


def _int(p: Path) -> int:
    return int(p.read_text().strip())


def _hwmon_rails(root: Path) -> list[dict]:
    rails = []
    for label in sorted(root.glob("*/hwmon/hwmon*/in*_label")):
        ch = label.name[len("in"):-len("_label")]
        volt, curr = label.parent / f"in{ch}_input", label.parent / f"curr{ch}_input"
        try:
            name = label.read_text().strip()
            _int(volt), _int(curr)
        except (OSError, ValueError):
            continue
        rails.append({"name": name, "files": (volt, curr), "unit": "mV*mA"})
    return rails


def _iio_rails(root: Path) -> list[dict]:
    rails = []
    for label in sorted(root.glob("*/iio:device*/rail_name_*")):
        ch = label.name[len("rail_name_"):]
        power = label.parent / f"in_power{ch}_input"
        try:
            name = label.read_text().strip()
            _int(power)
        except (OSError, ValueError):
            continue
        rails.append({"name": name, "files": (power,), "unit": "mW"})
    return rails


def ina3221_rails(root: str | Path) -> list[dict]:
    """Readable rails under ``root`` (either layout): ``{"name", "files", "unit"}``. Unconnected channels
    (``NC``) and labels that are not rail names (with spaces, e.g. "Sum of shunt voltages") are skipped; a
    name seen twice gets its device directory appended."""
    root = Path(root)
    out: list[dict] = []
    for r in _hwmon_rails(root) + _iio_rails(root):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", r["name"]) or r["name"].upper().startswith("NC"):
            continue
        if any(q["name"] == r["name"] for q in out):
            r["name"] = f"{r['name']}@{r['files'][0].relative_to(root).parts[0]}"
        out.append(r)
    return out


def rail_domain(name: str) -> str | None:
    """The domain of a rail name (see the module docstring)."""
    n = name.upper().split("@")[0]
    if n in INPUT_RAILS:
        return "board"
    tokens = set(re.split(r"[_\W]+", n))
    if "GPU" in tokens and "CPU" in tokens:
        return "cpu_gpu"
    for token, domain in (("GPU", "gpu"), ("CPU", "cpu"), ("SOC", "soc")):
        if token in tokens:
            return domain
    if tokens & {"DDR", "DDRQ", "VDDRQ", "DRAM"}:
        return "dram"
    return None


class JetsonBackend(EnergyBackend):
    """INA3221 rails, sampled and integrated (see the module docstring)."""

    source = "jetson-ina3221"

    def __init__(self, root: str | Path = DEFAULT_ROOT, sample_period_s: float = 0.1,
                 clock: Callable[[], float] = time.monotonic, read_at_boundaries: bool = False) -> None:
        super().__init__()
        self.read_at_boundaries = read_at_boundaries
        self.rails = ina3221_rails(root)
        if not self.rails:
            raise OSError(f"no readable INA3221 rails under {root}")
        self.poll_period_s = sample_period_s
        self.clock = clock
        self.channels = {r["name"]: rail_domain(r["name"]) for r in self.rails}
        boards = sorted((r["name"] for r in self.rails if self.channels[r["name"]] == "board"),
                        key=lambda n: INPUT_RAILS.index(n.upper().split("@")[0]))
        for extra in boards[1:]:  # two input rails would count the module twice: keep the preferred one
            self.channels[extra] = None
            self.notes.append(f"rail {extra} listed without a domain: {boards[0]} is the board input")
        self._prev: dict[str, tuple[float, float]] = {}
        self._joules: dict[str, float] = {}

    @classmethod
    def available(cls, root: str | Path = DEFAULT_ROOT) -> bool:
        return bool(ina3221_rails(root))

    def _watts(self) -> dict[str, float]:
        out = {}
        for r in self.rails:
            if r["unit"] == "mW":
                out[r["name"]] = _int(r["files"][0]) / 1e3
            else:
                volt, curr = r["files"]
                out[r["name"]] = _int(volt) * _int(curr) / 1e6  # mV * mA = µW
        return out

    def start(self) -> None:
        t, w = self.clock(), self._watts()
        self._prev = {n: (t, w[n]) for n in w}
        self._joules = {n: 0.0 for n in w}

    def read(self) -> dict[str, float]:
        t, w = self.clock(), self._watts()  # all rails or none
        for n, watts in w.items():
            self._joules[n] += trapezoid(self._prev.get(n), t, watts)
            self._prev[n] = (t, watts)
        return dict(self._joules)
