"""EnergyMeter phases on real fixture sensors: nesting, the ``other`` phase, read errors and gaps, idle baseline,
and no source giving null (never 0)."""

import json
from types import SimpleNamespace

import pytest

from ssl_nav.config import EnergyConfig
from ssl_nav.energy.jetson import JetsonBackend
from ssl_nav.energy.meter import EnergyMeter
from ssl_nav.energy.rapl import RaplBackend
from ssl_nav.energy.record import FORMAT

from .conftest import FakeClock, make_hwmon_rail, make_zone, set_uj


def _rapl(tmp_path, period=3600.0):
    pkg = make_zone(tmp_path / "intel-rapl:0", "package-0", 0)
    return pkg, RaplBackend(tmp_path, poll_period_s=period)


def test_nested_phases_charge_the_innermost_and_add_up(tmp_path):
    pkg, b = _rapl(tmp_path)
    clock = FakeClock()
    syncs = []
    with EnergyMeter(EnergyConfig(), backend=b, clock=clock, sync=lambda: syncs.append(clock.t)) as m:
        clock.t += 1.0
        set_uj(pkg, 1_000_000)  # other: 1 s, 1 J
        with m.phase("train"):
            clock.t += 2.0
            set_uj(pkg, 5_000_000)  # train: 2 s, 4 J
            m.count(images=8, steps=1)
            with m.phase("checkpoint"):
                assert m.current_phase == "checkpoint"
                clock.t += 3.0
                set_uj(pkg, 14_000_000)  # checkpoint: 3 s, 9 J
                m.count(images=0)
            clock.t += 1.0
            set_uj(pkg, 16_000_000)  # train again: 1 s, 2 J
            m.count(images=8, steps=1)
        m.count(images=4, phase="monitor")  # counted to a phase that is not open
    rec = m.record
    ph = rec["phases"]
    assert list(ph) == ["train", "monitor", "checkpoint", "other"]
    assert ph["train"]["wall_s"] == pytest.approx(3.0) and ph["train"]["joules"]["total"] == pytest.approx(6.0)
    assert ph["checkpoint"]["wall_s"] == pytest.approx(3.0)
    assert ph["checkpoint"]["joules"]["total"] == pytest.approx(9.0)
    assert ph["other"]["wall_s"] == pytest.approx(1.0) and ph["other"]["joules"]["total"] == pytest.approx(1.0)
    assert ph["monitor"]["wall_s"] == 0.0 and ph["monitor"]["images"] == 4 and ph["monitor"]["entries"] == 0
    assert ph["train"]["entries"] == 1 and ph["train"]["images"] == 16 and ph["train"]["steps"] == 2
    assert rec["wall_s"] == pytest.approx(7.0) and rec["joules"]["total"] == pytest.approx(16.0)
    assert rec["images"] == 20 and rec["steps"] == 2 and rec["format"] == FORMAT
    assert len(syncs) == 5  # four phase edges and the end; none from the (idle) poller
    json.dumps(rec, allow_nan=False)  # JSON as it is


def test_a_failed_read_spreads_the_energy_over_the_segments_it_missed(tmp_path):
    pkg, b = _rapl(tmp_path)
    clock = FakeClock()
    with EnergyMeter(EnergyConfig(), backend=b, clock=clock) as m:
        with m.phase("data"):
            clock.t += 1.0
            (pkg / "energy_uj").write_text("busy\n")  # the boundary read at the end of data fails
        with m.phase("train"):
            clock.t += 3.0
            set_uj(pkg, 8_000_000)  # 8 J over data (1 s) + train (3 s), read only here
    rec = m.record
    s = rec["sampling"]
    assert s["errors"] == 2 and "ValueError" in s["last_error"]  # the end of data and the start of train
    assert rec["phases"]["data"]["joules"]["total"] == pytest.approx(2.0)
    assert rec["phases"]["train"]["joules"]["total"] == pytest.approx(6.0)
    assert rec["joules"]["total"] == pytest.approx(8.0) and s["unmeasured_s"] == 0.0


def test_a_failed_last_read_leaves_an_unmeasured_tail(tmp_path):
    pkg, b = _rapl(tmp_path)
    clock = FakeClock()
    with EnergyMeter(EnergyConfig(), backend=b, clock=clock) as m:
        with m.phase("train"):
            clock.t += 2.0
            set_uj(pkg, 2_000_000)
        clock.t += 5.0
        (pkg / "energy_uj").write_text("gone\n")
    rec = m.record
    assert rec["joules"]["total"] == pytest.approx(2.0) and rec["sampling"]["unmeasured_s"] == pytest.approx(5.0)
    assert rec["sampling"]["errors"] == 1 and rec["wall_s"] == pytest.approx(7.0)


def test_poller_gaps_and_errors_are_in_the_record(tmp_path, monkeypatch):
    import ssl_nav.energy.meter as meter_mod

    # the test plays the poller thread's role, with a controlled clock
    monkeypatch.setattr(meter_mod, "Poller", lambda fn, period: SimpleNamespace(start=lambda: None,
                                                                                stop=lambda: None, escaped=None))
    pkg, b = _rapl(tmp_path, period=0.5)
    clock = FakeClock()
    m = EnergyMeter(EnergyConfig(), backend=b, clock=clock)
    with m:
        for dt in (0.5, 0.5, 2.0, 0.5):  # one interval over twice the period
            clock.t += dt
            m._poll()
        (pkg / "energy_uj").write_text("EIO\n")
        clock.t += 0.5
        m._poll()
        set_uj(pkg, 1)
    s = m.record["sampling"]
    assert s["period_s"] == 0.5 and s["gaps"] == 1 and s["max_gap_s"] == pytest.approx(2.0)
    assert s["errors"] == 1 and s["readings"] == 1 + 4 + 1  # start, four polls, the end
    assert m.record["phases"]["other"]["wall_s"] == pytest.approx(4.0)


def test_idle_baseline_is_measured_before_the_run(tmp_path):
    hw = tmp_path / "1-0040" / "hwmon" / "hwmon0"
    make_hwmon_rail(hw, 1, "VDD_IN", 5000, 600)  # 3 W idle
    clock = FakeClock()
    b = JetsonBackend(tmp_path, sample_period_s=3600, clock=clock, read_at_boundaries=True)
    cfg = EnergyConfig(idle_baseline_s=2.0)
    with EnergyMeter(cfg, backend=b, clock=clock, sleep=clock.sleep) as m:
        make_hwmon_rail(hw, 1, "VDD_IN", 5000, 2000)  # 10 W at work
        with m.phase("train"):
            clock.t += 4.0
    rec = m.record
    assert rec["idle"]["wall_s"] == pytest.approx(2.0) and rec["idle"]["avg_w"]["total"] == pytest.approx(3.0)
    assert rec["wall_s"] == pytest.approx(4.0)  # the idle window is not part of the run
    assert rec["joules"]["total"] == pytest.approx(40.0)
    assert rec["total_above_idle_j"] == pytest.approx(28.0)
    assert rec["phases"]["train"]["total_above_idle_j"] == pytest.approx(28.0)


def test_nothing_measurable_gives_null_not_zero(tmp_path):
    cfg = EnergyConfig(backend="auto", powercap_root=str(tmp_path / "none"), hwmon_root=str(tmp_path / "none"))
    with EnergyMeter(cfg) as m:
        with m.phase("train"):
            m.count(images=10, steps=1)
    rec = m.record
    assert rec["source"] == "unavailable" and rec["total_covers"] is None and rec["channels"] is None
    assert all(v is None for v in rec["joules"].values())
    assert rec["avg_w"] is None and rec["j_per_1k_images"] is None
    for p in rec["phases"].values():
        assert all(v is None for v in p["joules"].values()) and p["avg_w"] is None and p["j_per_1k_images"] is None
    assert rec["images"] == 10 and rec["phases"]["train"]["steps"] == 1 and rec["wall_s"] >= 0
    assert "rapl" in rec["note"] and "jetson" in rec["note"]


def test_a_backend_that_fails_to_start_is_unavailable(tmp_path):
    pkg, b = _rapl(tmp_path)
    (pkg / "energy_uj").write_text("x\n")
    with EnergyMeter(EnergyConfig(), backend=b) as m:
        pass
    assert m.record["source"] == "unavailable" and m.record["joules"]["total"] is None
    assert "rapl failed to start" in m.record["note"]


def test_a_backend_whose_every_read_fails_is_unavailable(tmp_path):
    pkg, b = _rapl(tmp_path)
    with EnergyMeter(EnergyConfig(), backend=b) as m:
        (pkg / "energy_uj").write_text("x\n")  # every reading after the zero point fails
    rec = m.record
    assert rec["source"] == "unavailable" and rec["joules"]["total"] is None
    assert rec["sampling"]["errors"] == 1 and "no reading succeeded" in rec["note"]


def test_phase_names_are_checked_and_phases_need_the_meter_running(tmp_path):
    m = EnergyMeter(EnergyConfig(backend="none"))
    with pytest.raises(RuntimeError, match="outside"):
        with m.phase("train"):
            pass
    with m:
        for bad in ("Train", "other", "", "a b"):
            with pytest.raises(ValueError, match="phase name"):
                with m.phase(bad):
                    pass
        with pytest.raises(ValueError, match="phase name"):
            m.count(images=1, phase="Bad Name")
    assert m.record["note"] == "energy.backend is none"


def test_iterate_charges_loading_to_the_data_phase(tmp_path):
    pkg, b = _rapl(tmp_path)
    clock = FakeClock()
    uj = [0]

    def loader():
        for i in range(3):
            clock.t += 0.5  # loading and augmenting a batch: 0.5 s, 1 J
            uj[0] += 1_000_000
            set_uj(pkg, uj[0])
            yield [i] * 4

    with EnergyMeter(EnergyConfig(), backend=b, clock=clock) as m:
        for batch in m.iterate(loader(), "data", images=len):
            with m.phase("train"):
                clock.t += 1.0  # the step: 1 s, 3 J
                uj[0] += 3_000_000
                set_uj(pkg, uj[0])
                m.count(images=len(batch), steps=1)
            if batch[0] == 1:
                break
    ph = m.record["phases"]
    assert ph["data"]["entries"] == 2 and ph["data"]["images"] == 8 and ph["data"]["wall_s"] == pytest.approx(1.0)
    assert ph["data"]["joules"]["total"] == pytest.approx(2.0) and ph["train"]["joules"]["total"] == pytest.approx(6.0)
    assert ph["train"]["steps"] == 2 and ph["other"]["wall_s"] == pytest.approx(0.0)
