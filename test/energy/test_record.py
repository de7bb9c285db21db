"""What ``total`` covers, and domain sums, from channel maps alone."""

import pytest

from ssl_nav.energy.record import build_record, domain_joules, total_covers


def test_total_covers_names_the_board_rail_or_the_summed_domains():
    assert total_covers({"VDD_IN": "board", "VDD_CPU_GPU_CV": "cpu_gpu", "VDD_SOC": "soc"}) == "board (VDD_IN)"
    assert total_covers({"gpu0": "gpu", "package-0": "cpu", "dram@intel-rapl:0": "dram"}) == "gpu+cpu+dram"
    assert total_covers({"gpu0": "gpu", "gpu1": "gpu"}) == "gpu"
    assert total_covers({"package-0": "cpu", "dram@intel-rapl:0": "dram"}) == "cpu+dram"
    assert total_covers({"CV": None}) is None and total_covers(None) is None and total_covers({}) is None


def test_domain_joules_sums_channels_and_keeps_unmeasured_domains_null():
    ch = {"gpu0": "gpu", "gpu1": "gpu", "package-0": "cpu", "VDD_MUX": None}
    j = domain_joules(ch, {"gpu0": 1.5, "gpu1": 2.5, "package-0": 3.0, "VDD_MUX": 100.0})
    assert j == {"gpu": 4.0, "cpu": 3.0, "dram": None, "soc": None, "cpu_gpu": None, "board": None, "total": 7.0}
    board = domain_joules({"VDD_IN": "board", "VDD_SOC": "soc"}, {"VDD_IN": 10.0, "VDD_SOC": 2.0})
    assert board["total"] == 10.0 and board["soc"] == 2.0  # the board rail already contains the SoC


def test_a_record_without_channels_is_unavailable_whatever_the_source_says():
    rec = build_record(run_id="r", start=0.0, wall_s=2.0, source="rapl", channels=None, channel_j={"x": 1.0},
                       phases={"other": {"wall_s": 2.0, "channel_j": {"x": 1.0}, "images": 5, "steps": 1,
                                         "entries": 0}},
                       sampling={}, idle={"wall_s": 1.0, "channel_w": {"x": 1.0}}, note="n")
    assert rec["source"] == "unavailable" and rec["joules"]["total"] is None and rec["idle"] is None
    assert rec["phases"]["other"]["joules"]["total"] is None and rec["start"] == "1970-01-01T00:00:00.000Z"
    assert rec["end"] == "1970-01-01T00:00:02.000Z" and rec["images"] == 5
    assert "total_above_idle_j" not in rec


def test_avg_w_and_j_per_1k_images_follow_the_total():
    rec = build_record(run_id="r", start=0.0, wall_s=4.0, source="nvml", channels={"gpu0": "gpu"},
                       channel_j={"gpu0": 20.0},
                       phases={"train": {"wall_s": 4.0, "channel_j": {"gpu0": 20.0}, "images": 400, "steps": 4,
                                         "entries": 1}},
                       sampling={}, idle=None, note="")
    assert rec["avg_w"] == pytest.approx(5.0) and rec["j_per_1k_images"] == pytest.approx(50.0)
    assert rec["phases"]["train"]["avg_w"] == pytest.approx(5.0)
