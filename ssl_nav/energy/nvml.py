"""NVIDIA GPUs through NVML (the ``nvidia-ml-py`` package, module ``pynvml``; imported lazily).

Per GPU, the total-energy counter ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the driver loaded; Volta and
newer) is read at every phase boundary. A GPU without it (the call raises, e.g. ``NVMLError_NotSupported``)
falls back to ``nvmlDeviceGetPowerUsage`` (mW), sampled every ``energy.sample_period_s`` and integrated with
the trapezoid rule. Channels ``gpu<nvml index>``, domain ``gpu``. NVML sees the GPU boards only: CPU, memory
and data loading are outside it (:class:`ssl_nav.energy.combined.CombinedBackend` adds RAPL for those).

GPUs: those named by ``CUDA_VISIBLE_DEVICES`` (integer indices, or ``GPU-``/``MIG-`` UUIDs), else all. Integer
indices are NVML's PCI order, which is CUDA's order only with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``.
The NVML counter updates about every 20-100 ms (driver dependent): phases shorter than that are attributed
coarsely.
"""

from __future__ import annotations

import os
import time
from types import ModuleType
from typing import Any, Callable

from ssl_nav.energy.base import EnergyBackend, trapezoid


def import_pynvml() -> ModuleType:
    import pynvml  # nvidia-ml-py

    return pynvml


def visible_handles(nv: Any, visible: str | None) -> list[tuple[str, Any]]:
    """``(channel, handle)`` for each GPU named by a ``CUDA_VISIBLE_DEVICES`` value (``None``: all GPUs)."""
    if visible is None:
        return [(f"gpu{i}", nv.nvmlDeviceGetHandleByIndex(i)) for i in range(nv.nvmlDeviceGetCount())]
    out = []
    for tok in (t.strip() for t in visible.split(",")):
        if not tok:
            continue
        if tok.lstrip("-").isdigit():
            if int(tok) < 0:
                break  # CUDA stops at the first invalid index
            out.append((f"gpu{int(tok)}", nv.nvmlDeviceGetHandleByIndex(int(tok))))
        else:
            h = nv.nvmlDeviceGetHandleByUUID(tok)
            out.append((f"gpu{nv.nvmlDeviceGetIndex(h)}", h))
    return out


class NvmlBackend(EnergyBackend):
    """GPU energy from NVML (see the module docstring). ``nvml`` is the ``pynvml`` module (imported when
    ``None``); ``visible`` the ``CUDA_VISIBLE_DEVICES`` value (read from the environment by default)."""

    source = "nvml"

    def __init__(self, sample_period_s: float = 0.1, nvml: Any = None, visible: str | None = "env",
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.nv = nvml if nvml is not None else import_pynvml()
        self.clock = clock
        self.nv.nvmlInit()
        try:
            handles = visible_handles(self.nv, os.environ.get("CUDA_VISIBLE_DEVICES") if visible == "env" else visible)
            if not handles:
                raise OSError("NVML: no visible GPU")
            self.handles = dict(handles)
            self.mode: dict[str, str] = {}
            for ch, h in handles:
                try:
                    self.nv.nvmlDeviceGetTotalEnergyConsumption(h)
                    self.mode[ch] = "counter"
                except Exception:
                    self.nv.nvmlDeviceGetPowerUsage(h)  # neither: this GPU cannot be metered, raise
                    self.mode[ch] = "power"
                    self.notes.append(f"{ch}: no total-energy counter, power sampled every {sample_period_s} s")
        except BaseException:
            self.nv.nvmlShutdown()
            raise
        self.channels = {ch: "gpu" for ch in self.handles}
        self.poll_period_s = sample_period_s if "power" in self.mode.values() else None
        self._zero: dict[str, int] = {}
        self._prev: dict[str, tuple[float, float]] = {}
        self._joules: dict[str, float] = {}

    @classmethod
    def available(cls, nvml: Any = None) -> bool:
        try:
            cls(nvml=nvml).stop()
            return True
        except Exception:
            return False

    def _sample(self) -> dict[str, float]:
        """Counter channels: mJ since driver load; power channels: W now."""
        return {ch: (self.nv.nvmlDeviceGetTotalEnergyConsumption(h) if self.mode[ch] == "counter"
                     else self.nv.nvmlDeviceGetPowerUsage(h) / 1e3) for ch, h in self.handles.items()}

    def start(self) -> None:
        t, s = self.clock(), self._sample()
        self._zero = {ch: v for ch, v in s.items() if self.mode[ch] == "counter"}
        self._prev = {ch: (t, v) for ch, v in s.items() if self.mode[ch] == "power"}
        self._joules = {ch: 0.0 for ch in self.handles}

    def read(self) -> dict[str, float]:
        t, s = self.clock(), self._sample()
        for ch, v in s.items():
            if self.mode[ch] == "counter":
                self._joules[ch] = (v - self._zero[ch]) / 1e3
            else:
                self._joules[ch] += trapezoid(self._prev.get(ch), t, v)
                self._prev[ch] = (t, v)
        return dict(self._joules)

    def stop(self) -> None:
        self.nv.nvmlShutdown()
