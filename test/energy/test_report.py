"""Text summaries of a record, and the rule that an unavailable source never becomes 0 J anywhere: the record,
``energy.json``, the ledger, the ROS ``~/energy`` message and every text report."""

import json
import re

import pytest

from ssl_nav.atomic import atomic_write_json
from ssl_nav.config import EnergyConfig
from ssl_nav.energy.ledger import append_ledger, read_ledger
from ssl_nav.energy.meter import EnergyMeter
from ssl_nav.energy.rapl import RaplBackend
from ssl_nav.energy.report import format_record, phase_table, summary_line

from .conftest import FakeClock, make_pc_rapl, set_uj

ZERO_JOULES = re.compile(r"(?<![\d.])0(\.0*)? ?(J|W)\b")


def _joule_figures(rec: dict) -> list:
    """Every joule, watt and J/1k figure of a record, phases and idle included."""
    out = list(rec["joules"].values()) + [rec["avg_w"], rec["j_per_1k_images"], rec.get("total_above_idle_j")]
    for p in rec["phases"].values():
        out += list(p["joules"].values()) + [p["avg_w"], p["j_per_1k_images"]]
    return out


def test_unavailable_is_null_in_record_file_ledger_topic_and_reports(tmp_path):
    cfg = EnergyConfig(powercap_root=str(tmp_path / "none"), hwmon_root=str(tmp_path / "none"), idle_baseline_s=1.0)
    with EnergyMeter(cfg, run_id="nosensor") as m:
        for _ in range(3):
            with m.phase("data"):
                m.count(images=8)
            with m.phase("train"):
                m.count(images=8, steps=1)
        with m.phase("checkpoint"):
            pass
    rec = m.record
    assert rec["source"] == "unavailable" and rec["images"] == 48
    assert all(v is None for v in _joule_figures(rec))

    atomic_write_json(tmp_path / "energy.json", rec)  # what the trainer writes
    from_file = json.loads((tmp_path / "energy.json").read_text())
    append_ledger(tmp_path / "energy.jsonl", rec)
    from_ledger = read_ledger(tmp_path / "energy.jsonl")[0]
    for r in (from_file, from_ledger):
        assert r == rec and all(v is None for v in _joule_figures(r))

    text = format_record(rec)
    assert "not measured" in text and "n/a" in text and not ZERO_JOULES.search(text)
    assert phase_table(rec).count("n/a") == 3 * 4  # J, W and J/1k of each of the 4 phases

    pytest.importorskip("rclpy")
    from ssl_nav.ros.runtime import json_msg

    msg = json.loads(json_msg({"run_id": "nosensor", **rec}).data)  # what the finetuner publishes on ~/energy
    assert msg == rec and all(v is None for v in _joule_figures(msg))


def test_measured_record_prints_total_cover_and_phases(tmp_path):
    pkg, dram = make_pc_rapl(tmp_path)
    clock = FakeClock()
    with EnergyMeter(EnergyConfig(), backend=RaplBackend(tmp_path, 3600), clock=clock) as m:
        with m.phase("train"):
            clock.t += 10.0
            set_uj(pkg, 50_000_000)
            set_uj(dram, 5_000_000)
            m.count(images=1000, steps=10)
    text = format_record(m.record)
    first, *rows = text.splitlines()
    assert first.startswith("energy: 55.0 J total (cpu+dram; source rapl), avg 5.5 W, 55.0 J per 1k images")
    assert "cpu 50.0 J, dram 5.0 J" in first
    train = next(r for r in rows if r.startswith("train"))
    assert train.split() == ["train", "10.00", "55.0", "5.5", "1000", "10", "55.0"]


def test_sampling_trouble_is_reported(tmp_path):
    pkg, _ = make_pc_rapl(tmp_path)
    clock = FakeClock()
    with EnergyMeter(EnergyConfig(), backend=RaplBackend(tmp_path, 3600), clock=clock) as m:
        with m.phase("train"):
            set_uj(pkg, 1_000_000)
        clock.t += 1.0
        (pkg / "energy_uj").write_text("?\n")
    table = phase_table(m.record)
    assert "1 read errors" in table and "unmeasured tail 1.000 s" in table


def test_a_format_1_record_prints_its_totals():
    old = {"run_id": "r", "wall_s": 10.0, "images": 100, "steps": 2, "source": "nvml", "avg_w": 30.0,
           "joules": {"gpu": 300.0, "cpu": None, "dram": None, "soc": None, "total": 300.0}, "j_per_1k_images": 3000.0}
    assert summary_line(old).startswith("energy: 300.0 J total (?; source nvml)")
    assert phase_table(old) == "" and format_record(None) == "energy: not recorded"
