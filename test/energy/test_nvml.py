"""The NVML backend's own logic against a stand-in ``pynvml`` module: energy counter per phase, power fallback,
visible GPUs, clean shutdown."""

import pytest

from ssl_nav.config import EnergyConfig
from ssl_nav.energy.meter import EnergyMeter, select_backend
from ssl_nav.energy.nvml import NvmlBackend, visible_handles

from .conftest import FakeClock, FakeNvml


def _gpus():
    return [{"uuid": "GPU-aaa", "energy_mj": 1_000_000, "power_mw": 250_000},
            {"uuid": "GPU-bbb", "energy_mj": 5_000, "power_mw": 100_000}]


def test_counter_millijoules_per_phase():
    nv = FakeNvml(_gpus())
    b = NvmlBackend(nvml=nv, visible=None)
    assert b.channels == {"gpu0": "gpu", "gpu1": "gpu"} and b.poll_period_s is None
    with EnergyMeter(EnergyConfig(), backend=b) as m:
        with m.phase("train"):
            nv.gpus[0]["energy_mj"] += 120_000  # 120 J
            nv.gpus[1]["energy_mj"] += 30_500
            m.count(images=64, steps=2)
        with m.phase("monitor"):
            nv.gpus[0]["energy_mj"] += 8_000
            m.count(images=16)
    rec = m.record
    assert rec["source"] == "nvml" and rec["total_covers"] == "gpu"
    assert rec["joules"]["gpu"] == rec["joules"]["total"] == pytest.approx(158.5)
    assert rec["joules"]["cpu"] is None and rec["joules"]["dram"] is None
    assert rec["phases"]["train"]["joules"]["total"] == pytest.approx(150.5)
    assert rec["phases"]["monitor"]["joules"]["total"] == pytest.approx(8.0)
    assert rec["images"] == 80 and rec["phases"]["monitor"]["images"] == 16
    assert rec["channels"]["gpu1"]["joules"] == pytest.approx(30.5)
    assert nv.inits == nv.shutdowns == 1


def test_power_sampling_when_the_gpu_has_no_energy_counter():
    gpus = _gpus()
    gpus[1]["energy_mj"] = None  # pre-Volta
    nv, clock = FakeNvml(gpus), FakeClock()
    b = NvmlBackend(sample_period_s=0.05, nvml=nv, visible=None, clock=clock)
    assert b.mode == {"gpu0": "counter", "gpu1": "power"} and b.poll_period_s == 0.05
    assert "gpu1" in b.notes[0]
    b.start()
    clock.t += 2.0
    nv.gpus[1]["power_mw"] = 300_000  # 100 -> 300 W over 2 s: 400 J by the trapezoid rule
    assert b.read()["gpu1"] == pytest.approx(400.0)
    clock.t += 1.0
    assert b.read()["gpu1"] == pytest.approx(700.0)
    b.stop()


def test_cuda_visible_devices_picks_the_gpus():
    nv = FakeNvml(_gpus())
    assert [c for c, _ in visible_handles(nv, "1")] == ["gpu1"]
    assert [c for c, _ in visible_handles(nv, "GPU-bbb,GPU-aaa")] == ["gpu1", "gpu0"]
    assert [c for c, _ in visible_handles(nv, "0,-1,1")] == ["gpu0"]  # CUDA stops at an invalid index
    assert visible_handles(nv, "") == []
    assert [c for c, _ in visible_handles(nv, None)] == ["gpu0", "gpu1"]


def test_no_visible_gpu_is_not_a_source_and_shuts_nvml_down():
    nv = FakeNvml(_gpus())
    with pytest.raises(OSError, match="no visible GPU"):
        NvmlBackend(nvml=nv, visible="")
    assert nv.inits == nv.shutdowns == 1
    assert not NvmlBackend.available(nvml=FakeNvml([]))


def test_explicit_nvml_without_cuda_still_tries_nvml(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    b, note = select_backend(EnergyConfig(backend="nvml"), cuda_available=False, nvml=FakeNvml(_gpus()))
    assert b is not None and b.source == "nvml" and note == "NVML GPU energy"
    b, note = select_backend(EnergyConfig(backend="auto", powercap_root="/nonexistent", hwmon_root="/nonexistent"),
                             cuda_available=False, nvml=FakeNvml(_gpus()))
    assert b is None and "nvml: CUDA not available" in note
