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
