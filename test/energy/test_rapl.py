"""RAPL powercap counters on fixture sysfs trees: wrap-around, zones, per-phase joules, unreadable counters."""

import os

import pytest

from ssl_nav.config import EnergyConfig
from ssl_nav.energy.meter import EnergyMeter
from ssl_nav.energy.rapl import RaplBackend, rapl_zones, why_unavailable, wrapped_delta

from .conftest import make_pc_rapl, make_zone, set_uj


def test_wrapped_delta():
    assert wrapped_delta(100, 250, 1000) == 150
    assert wrapped_delta(900, 50, 999) == 150  # 900 -> 999 -> 0 -> 50


def test_packages_and_dram_are_channels_core_is_not(tmp_path):
    make_pc_rapl(tmp_path)
    make_zone(tmp_path / "intel-rapl:1", "package-1", 0)
    b = RaplBackend(tmp_path)
    assert b.channels == {"package-0": "cpu", "dram@intel-rapl:0": "dram", "package-1": "cpu"}
    assert {z["name"] for z in rapl_zones(tmp_path)} == {"package-0", "package-1", "dram", "core"}


def test_rapl_counts_across_a_wrap_around_per_phase(tmp_path):
    pkg = make_zone(tmp_path / "intel-rapl:0", "package-0", 999_000_000, 1_000_000_000)
    dram = make_zone(pkg / "intel-rapl:0:0", "dram", 10_000_000, 1_000_000_000)
    cfg = EnergyConfig(backend="rapl", powercap_root=str(tmp_path), sample_period_s=30.0)
    with EnergyMeter(cfg, run_id="r1") as m:
        with m.phase("train"):
            set_uj(pkg, 4_000_000)  # wrapped: +1 J to the top, +4 J after it
            set_uj(dram, 12_500_000)
            m.count(images=500, steps=5)
        set_uj(pkg, 6_000_000)  # +2 J outside every phase
    rec = m.record
    assert rec["source"] == "rapl" and rec["run_id"] == "r1" and rec["total_covers"] == "cpu+dram"
    assert rec["joules"]["cpu"] == pytest.approx(7.000001)
    assert rec["joules"]["dram"] == pytest.approx(2.5)
    assert rec["joules"]["total"] == pytest.approx(9.500001)
    assert rec["joules"]["gpu"] is None and rec["joules"]["board"] is None
    train, other = rec["phases"]["train"], rec["phases"]["other"]
    assert train["joules"]["cpu"] == pytest.approx(5.000001) and train["joules"]["total"] == pytest.approx(7.500001)
    assert other["joules"]["total"] == pytest.approx(2.0) and other["joules"]["dram"] == 0.0
    assert train["j_per_1k_images"] == pytest.approx(15.000002) and train["steps"] == 5
    assert rec["j_per_1k_images"] == pytest.approx(19.000002)
    assert rec["sampling"]["period_s"] == 30.0 and rec["sampling"]["errors"] == 0
    assert rec["channels"]["dram@intel-rapl:0"] == {"domain": "dram", "joules": pytest.approx(2.5)}


def test_rapl_reads_see_two_wraps(tmp_path):
    pkg = make_zone(tmp_path / "intel-rapl:0", "package-0", 0, 99)
    b = RaplBackend(tmp_path)
    b.start()
    for v in (80, 10, 90, 20):  # 80, +30, +80, +30 -> 220 µJ, two wraps between reads
        set_uj(pkg, v)
        out = b.read()
    assert out == {"package-0": pytest.approx(220e-6)}


def test_without_a_dram_zone_total_covers_the_packages(tmp_path):
    pkg = make_zone(tmp_path / "intel-rapl:0", "package-0", 0)
    with EnergyMeter(EnergyConfig(backend="rapl", powercap_root=str(tmp_path))) as m:
        set_uj(pkg, 3_000_000)
    assert m.record["total_covers"] == "cpu" and m.record["joules"]["dram"] is None
    assert m.record["joules"]["total"] == pytest.approx(3.0)


def test_unreadable_counters_are_not_a_source(tmp_path):
    pkg = make_zone(tmp_path / "intel-rapl:0", "package-0", 0, 100)
    set_uj(pkg, 0)
    (pkg / "energy_uj").write_text("not a number\n")
    assert not RaplBackend.available(tmp_path)
    assert "no readable package counter" in why_unavailable(tmp_path)
    assert "no intel-rapl zones" in why_unavailable(tmp_path / "missing")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a 0400 file")
def test_a_root_only_counter_says_so(tmp_path):
    pkg = make_zone(tmp_path / "intel-rapl:0", "package-0", 0, 100)
    (pkg / "energy_uj").chmod(0o000)
    rec = None
    with EnergyMeter(EnergyConfig(backend="rapl", powercap_root=str(tmp_path))) as m:
        pass
    rec = m.record
    assert rec["source"] == "unavailable" and rec["joules"]["total"] is None
    assert "root only" in rec["note"]
