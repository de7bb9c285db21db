"""NVIDIA GPUs through NVML's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ since driver
load; Volta and newer). Needs the ``nvidia-ml-py`` package (imported lazily, only when this backend is used).
Domain: ``gpu`` (= ``total``: NVML sees only the boards)."""

from __future__ import annotations

from ssl_nav.energy.base import EnergyBackend


def _nvml():
    import pynvml  # nvidia-ml-py

    return pynvml


class NvmlBackend(EnergyBackend):
    source = "nvml"
    sample_period_s = None  # a hardware counter, read at start and stop

    def __init__(self, device_indices: list[int] | None = None) -> None:
        self.nv = _nvml()
        self.nv.nvmlInit()
        n = self.nv.nvmlDeviceGetCount()
        self.handles = [self.nv.nvmlDeviceGetHandleByIndex(i) for i in (device_indices or range(n))]
        self._start: list[int] = []

    @classmethod
    def available(cls) -> bool:
        try:
            b = cls()
            return bool(b.handles) and all(b.nv.nvmlDeviceGetTotalEnergyConsumption(h) >= 0 for h in b.handles)
        except Exception:
            return False

    def start(self) -> None:
        self._start = [self.nv.nvmlDeviceGetTotalEnergyConsumption(h) for h in self.handles]

    def stop(self) -> dict:
        end = [self.nv.nvmlDeviceGetTotalEnergyConsumption(h) for h in self.handles]
        per = [(e - s) / 1000.0 for s, e in zip(self._start, end)]
        gpu = sum(per)
        return {"gpu": gpu, "total": gpu, "rails": {f"gpu{i}": j for i, j in enumerate(per)}}
