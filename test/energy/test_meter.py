import json
import threading
import time
from pathlib import Path

import pytest

from ssl_nav.config import EnergyConfig
from ssl_nav.energy.jetson import JetsonBackend, rail_domain
from ssl_nav.energy.ledger import append_ledger, read_ledger
from ssl_nav.energy.meter import EnergyMeter
from ssl_nav.energy.rapl import RaplBackend, wrapped_delta


def _zone(path: Path, name: str, energy_uj: int, max_uj: int) -> Path:
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return path


def test_wrapped_delta():
    assert wrapped_delta(100, 250, 1000) == 150
    assert wrapped_delta(900, 50, 999) == 150  # 900 -> 999 -> 0 -> 50


def test_rapl_counts_across_a_wrap_around(tmp_path):
    pkg = _zone(tmp_path / "intel-rapl:0", "package-0", 999_000_000, 1_000_000_000)
    dram = _zone(pkg / "intel-rapl:0:0", "dram", 10_000_000, 1_000_000_000)
    _zone(pkg / "intel-rapl:0:1", "core", 5, 1_000_000_000)
    cfg = EnergyConfig(backend="rapl", powercap_root=str(tmp_path), sample_period_s=30.0)
    with EnergyMeter(cfg, run_id="r1") as m:
        (pkg / "energy_uj").write_text("4000000\n")  # wrapped: +1 J to the top, +4 J after it
        (dram / "energy_uj").write_text("12500000\n")
        m.count(images=500, steps=5)
    rec = m.record
    assert rec["source"] == "rapl" and rec["run_id"] == "r1"
    assert rec["joules"]["cpu"] == pytest.approx(5.000001)
    assert rec["joules"]["dram"] == pytest.approx(2.5)
    assert rec["joules"]["total"] == pytest.approx(7.500001)
    assert rec["joules"]["gpu"] is None and rec["joules"]["soc"] is None
    assert rec["j_per_1k_images"] == pytest.approx(15.000002)
    assert rec["avg_w"] == pytest.approx(7.500001 / rec["wall_s"], rel=0.05)
    assert rec["images"] == 500 and rec["steps"] == 5


def test_rapl_poller_sees_two_wraps(tmp_path):
    pkg = _zone(tmp_path / "intel-rapl:0", "package-0", 0, 99)
    backend = RaplBackend(tmp_path, sample_period_s=0.01)
    backend.start()
    for v in (80, 10, 90, 20):  # 80, +30, +80, +30 -> 220 µJ, two wraps in between samples
        (pkg / "energy_uj").write_text(f"{v}\n")
        backend._sample()
    out = backend.stop()
    assert out["cpu"] == pytest.approx(220e-6)


def _rail(hwmon: Path, ch: int, name: str, mv: int, ma: int) -> None:
    hwmon.mkdir(parents=True, exist_ok=True)
    (hwmon / f"in{ch}_label").write_text(name + "\n")
    (hwmon / f"in{ch}_input").write_text(f"{mv}\n")
    (hwmon / f"curr{ch}_input").write_text(f"{ma}\n")


def test_jetson_ina3221_rails_are_integrated(tmp_path):
    hw = tmp_path / "1-0040" / "hwmon" / "hwmon3"
    _rail(hw, 1, "VDD_IN", 5000, 1000)  # 5 W
    _rail(hw, 2, "VDD_CPU_GPU_CV", 5000, 400)  # 2 W
    _rail(hw, 3, "VDD_SOC", 5000, 200)  # 1 W
    cfg = EnergyConfig(backend="jetson", hwmon_root=str(tmp_path), sample_period_s=0.01)
    with EnergyMeter(cfg) as m:
        time.sleep(0.3)
    rec = m.record
    wall = rec["wall_s"]
    assert rec["source"] == "jetson-ina3221" and rec["sample_period_s"] == 0.01
    assert rec["joules"]["total"] == pytest.approx(5 * wall, rel=0.15)
    assert rec["joules"]["cpu"] == pytest.approx(2 * wall, rel=0.15)
    assert rec["joules"]["soc"] == pytest.approx(1 * wall, rel=0.15)
    assert set(rec["rails"]) == {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}
    assert rec["avg_w"] == pytest.approx(5.0, rel=0.15)


def test_jetson_trapezoid_integration_of_a_power_step(tmp_path, monkeypatch):
    import ssl_nav.energy.jetson as jetson

    hw = tmp_path / "1-0040" / "hwmon" / "hwmon0"
    _rail(hw, 1, "VDD_IN", 1000, 1000)  # 1 W
    b = JetsonBackend(tmp_path, sample_period_s=3600)
    clock = iter([0.0, 1.0, 2.0, 3.0])
    monkeypatch.setattr(jetson, "now", lambda: next(clock))  # a controlled clock, the sysfs files are real
    b._sample()  # t=0, 1 W
    (hw / "curr1_input").write_text("3000\n")
    b._sample()  # t=1, 3 W -> 2 J
    b._sample()  # t=2, 3 W -> 3 J
    assert b._joules["VDD_IN"] == pytest.approx(5.0)


def test_rail_names_map_to_domains():
    assert rail_domain("VDD_IN") == "total"
    assert rail_domain("VDD_GPU_SOC") == "gpu"
    assert rail_domain("VDD_CPU_CV") == "cpu"
    assert rail_domain("VDD_SOC") == "soc"
    assert rail_domain("VDDQ_VDD2_1V8AO") is None


def test_nothing_measurable_gives_null_not_zero(tmp_path):
    cfg = EnergyConfig(backend="auto", powercap_root=str(tmp_path / "none"), hwmon_root=str(tmp_path / "none"))
    with EnergyMeter(cfg) as m:
        m.count(images=10, steps=1)
    rec = m.record
    assert rec["source"] == "unavailable"
    assert all(v is None for v in rec["joules"].values())
    assert rec["avg_w"] is None and rec["j_per_1k_images"] is None
    assert rec["images"] == 10 and rec["wall_s"] >= 0


def test_unreadable_counters_are_not_a_source(tmp_path):
    pkg = _zone(tmp_path / "intel-rapl:0", "package-0", 0, 100)
    (pkg / "energy_uj").write_text("not a number\n")
    assert not RaplBackend.available(tmp_path)


def test_ledger_appends_whole_lines_from_threads(tmp_path):
    path = tmp_path / "data" / "energy.jsonl"
    recs = [{"run_id": f"r{i}", "joules": {"total": None}, "pad": "x" * 5000} for i in range(40)]
    threads = [threading.Thread(target=append_ledger, args=(path, r)) for r in recs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = read_ledger(path)
    assert sorted(r["run_id"] for r in got) == sorted(r["run_id"] for r in recs)
    assert all(json.loads(line) for line in path.read_text().splitlines())
