"""A PC: NVML GPUs plus RAPL packages and DRAM, one record, each domain listed, phases adding up to the total."""

import pytest

from ssl_nav.config import EnergyConfig
from ssl_nav.energy.combined import CombinedBackend
from ssl_nav.energy.meter import EnergyMeter, select_backend
from ssl_nav.energy.rapl import RaplBackend

from .conftest import FakeNvml, make_pc_rapl, set_uj


def _pc(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    pkg, dram = make_pc_rapl(tmp_path)
    nv = FakeNvml([{"uuid": "GPU-aaa", "energy_mj": 0, "power_mw": 0}])
    cfg = EnergyConfig(backend="auto", powercap_root=str(tmp_path), hwmon_root=str(tmp_path / "no-jetson"))
    return cfg, nv, pkg, dram


def test_auto_on_a_pc_meters_gpu_cpu_and_dram_per_phase(tmp_path, monkeypatch):
    cfg, nv, pkg, dram = _pc(tmp_path, monkeypatch)
    backend, note = select_backend(cfg, cuda_available=True, nvml=nv)
    assert isinstance(backend, CombinedBackend) and backend.source == "nvml+rapl"
    assert "NVML GPU energy and RAPL" in note
    with EnergyMeter(cfg, backend=backend, note=note) as m:
        with m.phase("data"):
            set_uj(pkg, 4_000_000)  # CPU augmentation: 4 J on the package, 1 J DRAM, GPU idle 2 J
            set_uj(dram, 1_000_000)
            nv.gpus[0]["energy_mj"] = 2_000
            m.count(images=32)
        with m.phase("train"):
            set_uj(pkg, 10_000_000)
            set_uj(dram, 3_000_000)
            nv.gpus[0]["energy_mj"] = 52_000
            m.count(images=32, steps=1)
        with m.phase("checkpoint"):
            set_uj(pkg, 11_000_000)
    rec = m.record
    assert rec["source"] == "nvml+rapl" and rec["total_covers"] == "gpu+cpu+dram"
    j = rec["joules"]
    assert (j["gpu"], j["cpu"], j["dram"]) == (pytest.approx(52.0), pytest.approx(11.0), pytest.approx(3.0))
    assert j["total"] == pytest.approx(66.0)
    ph = rec["phases"]
    assert ph["data"]["joules"]["total"] == pytest.approx(7.0) and ph["data"]["joules"]["cpu"] == pytest.approx(4.0)
    assert ph["train"]["joules"]["total"] == pytest.approx(58.0) and ph["train"]["joules"]["gpu"] == pytest.approx(50.0)
    assert ph["checkpoint"]["joules"]["total"] == pytest.approx(1.0)
    assert sum(p["joules"]["total"] for p in ph.values()) == pytest.approx(j["total"])
    assert sum(p["wall_s"] for p in ph.values()) == pytest.approx(rec["wall_s"], abs=1e-5)  # each rounded to 1 µs
    assert set(rec["channels"]) == {"gpu0", "package-0", "dram@intel-rapl:0"}
    assert rec["sampling"]["period_s"] == 0.5  # RAPL's poll (wrap-safe); NVML needs none


def test_unreadable_rapl_leaves_the_gpu_alone_and_says_so(tmp_path, monkeypatch):
    cfg, nv, pkg, _ = _pc(tmp_path, monkeypatch)
    (pkg / "energy_uj").write_text("garbage\n")
    backend, note = select_backend(cfg, cuda_available=True, nvml=nv)
    assert backend.source == "nvml" and "GPU energy only" in note and "rapl:" in note
    with EnergyMeter(cfg, backend=backend, note=note) as m:
        nv.gpus[0]["energy_mj"] = 9_000
    assert m.record["total_covers"] == "gpu" and m.record["joules"]["cpu"] is None
    assert m.record["joules"]["total"] == pytest.approx(9.0)


def test_channel_names_must_not_clash(tmp_path):
    make_pc_rapl(tmp_path)
    with pytest.raises(ValueError, match="share channel names"):
        CombinedBackend([RaplBackend(tmp_path), RaplBackend(tmp_path)])
