"""The Zeus energy monitor (``zeus`` package, ml.energy), when installed: ``ZeusMonitor`` measurement windows
over the visible GPUs and, where Zeus can read RAPL, the CPUs. Imported lazily."""

from __future__ import annotations

from ssl_nav.energy.base import EnergyBackend


class ZeusBackend(EnergyBackend):
    source = "zeus"
    sample_period_s = None

    def __init__(self) -> None:
        from zeus.monitor import ZeusMonitor

        self.monitor = ZeusMonitor()
        self._window = "ssl_nav"

    @classmethod
    def available(cls) -> bool:
        try:
            import zeus.monitor  # noqa: F401
        except Exception:
            return False
        return True

    def start(self) -> None:
        self.monitor.begin_window(self._window)

    def stop(self) -> dict:
        m = self.monitor.end_window(self._window)
        gpu = sum((m.gpu_energy or {}).values()) if getattr(m, "gpu_energy", None) else None
        cpu = sum((m.cpu_energy or {}).values()) if getattr(m, "cpu_energy", None) else None
        dram = sum((m.dram_energy or {}).values()) if getattr(m, "dram_energy", None) else None
        return {"gpu": gpu, "cpu": cpu, "dram": dram, "total": float(m.total_energy)}
