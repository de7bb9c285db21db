"""``EnergyMeter``: a context manager that measures the energy of a block of work as an EnergyRecord.

    with EnergyMeter(cfg.energy, run_id="run-1") as meter:
        for batch in loader:
            ...
            meter.count(images=len(batch), steps=1)
    record = meter.record

EnergyRecord (DESIGN.md), a JSON object::

    {"run_id", "start" (ISO 8601 UTC), "end", "wall_s", "images", "steps",
     "joules": {"gpu", "cpu", "dram", "soc", "total"}, "avg_w", "j_per_1k_images",
     "source": "nvml" | "jetson-ina3221" | "rapl" | "zeus" | "unavailable", "sample_period_s",
     "rails": {name: joules} (when the backend has them), "note"}

A domain the backend cannot see is ``null``. When nothing can be measured, every joule figure, ``avg_w`` and
``j_per_1k_images`` are ``null`` and ``source`` is ``"unavailable"`` (never 0). ``backend: auto`` tries, in
order: Jetson INA3221 rails, NVML (when CUDA is available), Zeus, RAPL.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

from ssl_nav.config import EnergyConfig
from ssl_nav.energy.base import DOMAINS, EnergyBackend


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def select_backend(cfg: EnergyConfig) -> tuple[EnergyBackend | None, str]:
    """The backend to use and a note saying why (or why none)."""
    from ssl_nav.energy.jetson import JetsonBackend
    from ssl_nav.energy.nvml import NvmlBackend
    from ssl_nav.energy.rapl import RaplBackend
    from ssl_nav.energy.zeus import ZeusBackend

    want = cfg.backend
    if want == "none":
        return None, "energy.backend is none"
    tried = []
    order = ["jetson", "nvml", "zeus", "rapl"] if want == "auto" else [want]
    for name in order:
        try:
            if name == "jetson" and JetsonBackend.available(cfg.hwmon_root):
                return JetsonBackend(cfg.hwmon_root, cfg.sample_period_s), f"INA3221 rails under {cfg.hwmon_root}"
            if name == "nvml" and (want == "nvml" or _cuda_available()) and NvmlBackend.available():
                return NvmlBackend(), "NVML total-energy counter"
            if name == "zeus" and (want == "zeus" or _cuda_available()) and ZeusBackend.available():
                return ZeusBackend(), "Zeus monitor"
            if name == "rapl" and RaplBackend.available(cfg.powercap_root):
                return RaplBackend(cfg.powercap_root, max(cfg.sample_period_s, 0.5)), \
                    f"RAPL powercap under {cfg.powercap_root}"
        except Exception as e:  # a backend that fails to start is skipped, with the reason in the note
            tried.append(f"{name}: {type(e).__name__}: {e}")
            continue
        tried.append(f"{name}: not available")
    return None, "no energy source: " + "; ".join(tried)


class EnergyMeter:
    """Context manager measuring one run; ``record`` holds the EnergyRecord after the block exits."""

    def __init__(self, cfg: EnergyConfig | None = None, run_id: str | None = None,
                 backend: EnergyBackend | None = None) -> None:
        self.cfg = cfg or EnergyConfig()
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.backend, self.note = (backend, "given backend") if backend is not None else select_backend(self.cfg)
        self.images = 0
        self.steps = 0
        self.record: dict[str, Any] | None = None
        self._t0 = self._wall0 = 0.0
        self.extra: dict[str, Any] = {}

    def count(self, images: int = 0, steps: int = 0) -> None:
        """Add processed images and optimisation steps."""
        self.images += int(images)
        self.steps += int(steps)

    def __enter__(self) -> "EnergyMeter":
        self._wall0, self._t0 = time.time(), time.monotonic()
        if self.backend is not None:
            try:
                self.backend.start()
            except Exception as e:
                self.note = f"{self.backend.source} failed to start: {type(e).__name__}: {e}"
                self.backend = None
        return self

    def __exit__(self, *exc) -> None:
        wall = time.monotonic() - self._t0
        joules: dict[str, float | None] = {d: None for d in DOMAINS}
        rails = None
        source, period = "unavailable", None
        if self.backend is not None:
            try:
                measured = self.backend.stop()
                rails = measured.pop("rails", None)
                for d in DOMAINS:
                    if measured.get(d) is not None:
                        joules[d] = float(measured[d])
                source, period = self.backend.source, self.backend.sample_period_s
            except Exception as e:
                self.note = f"{self.backend.source} failed: {type(e).__name__}: {e}"
        total = joules["total"]
        rec: dict[str, Any] = {
            "run_id": self.run_id, "start": _iso(self._wall0), "end": _iso(self._wall0 + wall),
            "wall_s": round(wall, 6), "images": self.images, "steps": self.steps, "joules": joules,
            "avg_w": (total / wall) if total is not None and wall > 0 else None,
            "j_per_1k_images": (1000.0 * total / self.images) if total is not None and self.images else None,
            "source": source, "sample_period_s": period, "note": self.note,
        }
        if rails is not None:
            rec["rails"] = rails
        rec.update(self.extra)
        self.record = rec


def append_ledger(path, record: dict) -> None:
    """Append an EnergyRecord to the ledger (see :mod:`ssl_nav.energy.ledger`)."""
    from ssl_nav.energy.ledger import append_ledger as _append

    _append(path, record)
