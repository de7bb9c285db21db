"""The ledger: whole lines from concurrent writers, records stored as they are, bad lines named."""

import json
import threading

import pytest

from ssl_nav.energy.ledger import append_ledger, read_ledger
from ssl_nav.errors import FormatError


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


def test_nulls_stay_null_and_non_finite_numbers_become_null(tmp_path):
    path = tmp_path / "energy.jsonl"
    append_ledger(path, {"run_id": "a", "joules": {"total": None, "gpu": float("nan")}, "avg_w": float("inf")})
    (rec,) = read_ledger(path)
    assert rec == {"run_id": "a", "joules": {"total": None, "gpu": None}, "avg_w": None}
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()


def test_a_bad_line_names_the_file_and_line(tmp_path):
    path = tmp_path / "energy.jsonl"
    append_ledger(path, {"run_id": "a"})
    with open(path, "a") as fh:
        fh.write('{"run_id": "b", "joules": {"to\n')  # a line cut by a power loss
    with pytest.raises(FormatError, match=r"energy.jsonl:2: not valid JSON"):
        read_ledger(path)


def test_a_partial_last_line_is_cut_before_the_next_record(tmp_path):
    """A ledger ending in a partial line swallowed the next record."""
    path = tmp_path / "energy.jsonl"
    append_ledger(path, {"run_id": "a"})
    with open(path, "a") as fh:
        fh.write('{"run_id": "killed", "jou')
    assert [r["run_id"] for r in read_ledger(path)] == ["a"]  # readers skip it
    append_ledger(path, {"run_id": "b"})
    assert [r["run_id"] for r in read_ledger(path)] == ["a", "b"]
    assert path.read_text() == '{"run_id": "a"}\n{"run_id": "b"}\n'


def test_a_ledger_path_that_is_a_directory_is_refused(tmp_path):
    from ssl_nav.energy.ledger import check_ledger_path
    from ssl_nav.errors import ConfigError

    with pytest.raises(ConfigError, match="is a directory"):
        check_ledger_path(tmp_path)
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match="is not a directory"):
        check_ledger_path(tmp_path / "f" / "energy.jsonl")
    assert check_ledger_path(tmp_path / "new" / "energy.jsonl") == tmp_path / "new" / "energy.jsonl"


def test_a_resumed_record_covers_the_whole_run_or_says_what_is_missing(tmp_path):
    from ssl_nav.energy.ledger import with_earlier_parts

    ledger = tmp_path / "energy.jsonl"
    run = tmp_path / "run"
    run.mkdir()
    append_ledger(ledger, {"run_id": "old", "run_dir": str(run), "steps": 7, "wall_s": 1.0,
                           "joules": {"total": 100.0}, "status": "completed"})  # an earlier run, overwritten
    append_ledger(ledger, {"run_id": "p1", "run_dir": str(run), "steps": 10, "wall_s": 2.0,
                           "joules": {"total": 20.0}, "status": "cancelled"})
    append_ledger(ledger, {"run_id": "other", "run_dir": str(tmp_path / "x"), "steps": 3, "wall_s": 9.0,
                           "joules": {"total": 9.0}})
    now = {"run_id": "p2", "steps": 5, "wall_s": 1.5, "joules": {"total": 5.0}, "status": "completed"}
    r = with_earlier_parts(now, run, 10, ledger)["resumed"]
    assert [p["run_id"] for p in r["parts"]] == ["p1", "p2"] and not r["missing"]
    assert r["whole_run"] == {"wall_s": 3.5, "joules_total": 25.0}
    r = with_earlier_parts(now, run, 10, None)["resumed"]  # no ledger, no earlier energy.json
    assert r["missing"] and r["whole_run"] == {"wall_s": None, "joules_total": None}
    assert "10 of the 10 steps before the resume have no energy record" in r["note"]
