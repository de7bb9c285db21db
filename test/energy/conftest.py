"""Fixture sysfs trees (RAPL powercap, Jetson INA3221 in both driver layouts), a controlled clock, and a stand-in
for the ``pynvml`` module (the only library faked: NVML needs an NVIDIA driver)."""

from __future__ import annotations

from pathlib import Path


def make_zone(path: Path, name: str, energy_uj: int, max_uj: int = 2**32 - 1) -> Path:
    """A powercap zone directory as the kernel's intel_rapl driver lays it out."""
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return path


def set_uj(zone: Path, uj: int) -> None:
    (zone / "energy_uj").write_text(f"{uj}\n")


def make_pc_rapl(root: Path) -> tuple[Path, Path]:
    """One package (with core and dram subzones) at 0 µJ; returns (package, dram)."""
    pkg = make_zone(root / "intel-rapl:0", "package-0", 0)
    dram = make_zone(pkg / "intel-rapl:0:0", "dram", 0)
    make_zone(pkg / "intel-rapl:0:1", "core", 0)
    return pkg, dram


def make_hwmon_rail(hwmon: Path, ch: int, name: str, mv: int, ma: int) -> None:
    """One channel of an INA3221 under the mainline hwmon driver (JetPack 5/6)."""
    hwmon.mkdir(parents=True, exist_ok=True)
    (hwmon / f"in{ch}_label").write_text(name + "\n")
    set_hwmon(hwmon, ch, mv, ma)


def set_hwmon(hwmon: Path, ch: int, mv: int, ma: int) -> None:
    (hwmon / f"in{ch}_input").write_text(f"{mv}\n")
    (hwmon / f"curr{ch}_input").write_text(f"{ma}\n")


def make_iio_rail(dev: Path, ch: int, name: str, mw: int) -> None:
    """One channel of an INA3221 under the L4T iio driver (JetPack 4)."""
    dev.mkdir(parents=True, exist_ok=True)
    (dev / f"rail_name_{ch}").write_text(name + "\n")
    (dev / f"in_power{ch}_input").write_text(f"{mw}\n")
    (dev / f"in_current{ch}_input").write_text("0\n")
    (dev / f"in_voltage{ch}_input").write_text("5000\n")


class FakeClock:
    """A monotonic clock the test advances; also a ``sleep`` that advances it."""

    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class FakeNvml:
    """The slice of the ``pynvml`` API the NVML backend uses. ``gpus``: dicts with ``uuid``, ``energy_mj`` (None:
    no total-energy counter, as before Volta) and ``power_mw``."""

    NVMLError = NVMLError

    def __init__(self, gpus: list[dict]) -> None:
        self.gpus = gpus
        self.inits = 0
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> dict:
        if not 0 <= i < len(self.gpus):
            raise NVMLError(f"invalid index {i}")
        return self.gpus[i]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> dict:
        for g in self.gpus:
            if g["uuid"] == uuid:
                return g
        raise NVMLError(f"no GPU {uuid}")

    def nvmlDeviceGetIndex(self, h: dict) -> int:
        return self.gpus.index(h)

    def nvmlDeviceGetTotalEnergyConsumption(self, h: dict) -> int:
        if h.get("energy_mj") is None:
            raise NVMLError_NotSupported("Not Supported")
        return h["energy_mj"]

    def nvmlDeviceGetPowerUsage(self, h: dict) -> int:
        return h["power_mw"]
