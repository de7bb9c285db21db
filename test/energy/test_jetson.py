"""Jetson INA3221 rails on fixture sysfs trees (hwmon and iio layouts): domains, board total, per-phase integration."""

import time
from types import SimpleNamespace

import pytest

from ssl_nav.config import EnergyConfig
from ssl_nav.energy.jetson import JetsonBackend, ina3221_rails, rail_domain
from ssl_nav.energy.meter import EnergyMeter

from .conftest import FakeClock, make_hwmon_rail, make_iio_rail, set_hwmon


def _orin_nano(root):
    hw = root / "1-0040" / "hwmon" / "hwmon3"
    make_hwmon_rail(hw, 1, "VDD_IN", 5000, 1000)  # 5 W
    make_hwmon_rail(hw, 2, "VDD_CPU_GPU_CV", 5000, 400)  # 2 W
    make_hwmon_rail(hw, 3, "VDD_SOC", 5000, 200)  # 1 W
    (hw / "in7_label").write_text("sum of shunt voltages\n")
    (hw / "in7_input").write_text("40\n")
    (hw / "curr7_input").write_text("0\n")
    return hw


def test_rail_names_map_to_domains():
    assert rail_domain("VDD_IN") == "board" and rail_domain("POM_5V_IN") == "board"
    assert rail_domain("VIN_SYS_5V0") == "board"
    assert rail_domain("VDD_CPU_GPU_CV") == "cpu_gpu"
    assert rail_domain("VDD_GPU_SOC") == "gpu" and rail_domain("POM_5V_GPU") == "gpu" and rail_domain("GPU") == "gpu"
    assert rail_domain("VDD_CPU_CV") == "cpu" and rail_domain("VDD_SYS_CPU") == "cpu"
    assert rail_domain("VDD_SOC") == "soc"
    assert rail_domain("VDD_SYS_DDR") == "dram" and rail_domain("VDDRQ") == "dram"
    assert rail_domain("VDDQ_VDD2_1V8AO") is None and rail_domain("CV") is None and rail_domain("VDD_MUX") is None


def test_board_rail_is_the_total_per_phase(tmp_path):
    hw = _orin_nano(tmp_path)
    clock = FakeClock()
    b = JetsonBackend(tmp_path, sample_period_s=3600, clock=clock, read_at_boundaries=True)
    assert set(b.channels) == {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}  # the shunt sum is not a rail
    with EnergyMeter(EnergyConfig(), backend=b, clock=clock) as m:
        with m.phase("data"):
            clock.t += 2.0  # 5 W for 2 s
        with m.phase("train"):
            clock.t += 2.0
            set_hwmon(hw, 1, 5000, 3000)  # the next sample sees 15 W: trapezoid 5 -> 15 W over 2 s = 20 J
            m.count(images=100, steps=1)
    rec = m.record
    assert rec["source"] == "jetson-ina3221" and rec["total_covers"] == "board (VDD_IN)"
    assert rec["wall_s"] == pytest.approx(4.0)
    assert rec["phases"]["data"]["joules"]["total"] == pytest.approx(10.0)
    assert rec["phases"]["train"]["joules"]["total"] == pytest.approx(20.0)
    assert rec["joules"]["total"] == rec["joules"]["board"] == pytest.approx(30.0)
    assert rec["joules"]["cpu_gpu"] == pytest.approx(8.0) and rec["joules"]["soc"] == pytest.approx(4.0)
    assert rec["joules"]["gpu"] is None and rec["joules"]["cpu"] is None
    assert rec["phases"]["train"]["avg_w"] == pytest.approx(10.0)
    assert rec["phases"]["train"]["j_per_1k_images"] == pytest.approx(200.0)


def test_by_default_phases_are_resolved_to_the_sampling_period(tmp_path, monkeypatch):
    import ssl_nav.energy.meter as meter_mod

    polls = []  # the test plays the poller thread's role, with a controlled clock
    monkeypatch.setattr(meter_mod, "Poller", lambda fn, period: polls.append(fn) or SimpleNamespace(
        start=lambda: None, stop=lambda: None, escaped=None))
    hw = _orin_nano(tmp_path)
    clock = FakeClock()
    b = JetsonBackend(tmp_path, sample_period_s=1.0, clock=clock)
    with EnergyMeter(EnergyConfig(), backend=b, clock=clock) as m:
        with m.phase("data"):
            clock.t += 0.25
        with m.phase("train"):
            clock.t += 0.75
        polls[0]()  # one sample at t+1 s, 5 W throughout: 5 J split 1:3 by time
        set_hwmon(hw, 1, 5000, 3000)
        with m.phase("train"):
            clock.t += 0.5  # the final sample sees 15 W: trapezoid over 0.5 s = 5 J, all train
    ph = m.record["phases"]
    assert ph["data"]["joules"]["total"] == pytest.approx(1.25)
    assert ph["train"]["joules"]["total"] == pytest.approx(3.75 + 5.0)
    assert m.record["sampling"]["readings"] == 3  # start, the poll, the end: none at phase edges


def test_without_an_input_rail_total_is_the_sum_of_rails(tmp_path):
    dev = tmp_path / "1-0040" / "iio:device0"  # AGX Xavier, JetPack 4: no module input rail
    make_iio_rail(dev, 0, "GPU", 3000)
    make_iio_rail(dev, 1, "CPU", 2000)
    make_iio_rail(dev, 2, "SOC", 1000)
    make_iio_rail(tmp_path / "1-0041" / "iio:device1", 0, "CV", 500)
    clock = FakeClock()
    with EnergyMeter(EnergyConfig(), backend=JetsonBackend(tmp_path, 3600, clock=clock), clock=clock) as m:
        clock.t += 2.0
    rec = m.record
    assert rec["total_covers"] == "gpu+cpu+soc"
    assert rec["joules"]["total"] == pytest.approx(12.0)  # (3 + 2 + 1) W * 2 s; CV is listed, not summed
    assert rec["channels"]["CV"] == {"domain": None, "joules": pytest.approx(1.0)}


def test_iio_layout_reads_milliwatts(tmp_path):
    make_iio_rail(tmp_path / "6-0040" / "iio:device0", 0, "POM_5V_IN", 4500)
    make_iio_rail(tmp_path / "6-0040" / "iio:device0", 1, "POM_5V_GPU", 1200)
    rails = ina3221_rails(tmp_path)
    assert [r["name"] for r in rails] == ["POM_5V_IN", "POM_5V_GPU"]
    clock = FakeClock()
    with EnergyMeter(EnergyConfig(), backend=JetsonBackend(tmp_path, 3600, clock=clock), clock=clock) as m:
        clock.t += 10.0
    assert m.record["joules"]["total"] == pytest.approx(45.0) and m.record["joules"]["gpu"] == pytest.approx(12.0)


def test_a_second_input_rail_is_not_counted_twice(tmp_path):
    hw = tmp_path / "1-0040" / "hwmon" / "hwmon1"
    make_hwmon_rail(hw, 1, "VIN_SYS_5V0", 5000, 1000)
    make_hwmon_rail(hw, 2, "VDD_IN", 5000, 1000)
    b = JetsonBackend(tmp_path)
    assert b.channels == {"VIN_SYS_5V0": None, "VDD_IN": "board"}
    assert "VIN_SYS_5V0" in b.notes[0]


def test_polled_rails_with_real_time(tmp_path):
    _orin_nano(tmp_path)
    cfg = EnergyConfig(backend="jetson", hwmon_root=str(tmp_path), sample_period_s=0.01)
    with EnergyMeter(cfg) as m:
        time.sleep(0.3)
    rec = m.record
    s = rec["sampling"]
    assert s["period_s"] == 0.01 and s["readings"] > 5 and s["errors"] == 0
    assert rec["joules"]["total"] == pytest.approx(5 * rec["wall_s"], rel=0.01)  # constant power: exact
    assert rec["avg_w"] == pytest.approx(5.0, rel=0.01)


def test_auto_prefers_the_jetson_rails(tmp_path):
    from .conftest import make_pc_rapl

    _orin_nano(tmp_path / "ina")
    make_pc_rapl(tmp_path / "powercap")
    cfg = EnergyConfig(hwmon_root=str(tmp_path / "ina"), powercap_root=str(tmp_path / "powercap"))
    with EnergyMeter(cfg) as m:
        pass
    assert m.record["source"] == "jetson-ina3221" and m.record["total_covers"] == "board (VDD_IN)"
