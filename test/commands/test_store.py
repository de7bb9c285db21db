"""``ssl-nav store check`` and ``ssl-nav store stats``."""

import json

import numpy as np

from ssl_nav.cli import main
from ssl_nav.views.store import ViewStore


def _store(root):
    s = ViewStore(root, create=True)
    s.set_instances({"1": {"category": "mug"}, "2": {"category": None}})
    rng = np.random.default_rng(0)
    views = [s.add_view(iid, rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), q)
             for iid, q in (("1", "low"), ("1", "low"), ("1", "high"), ("2", "low"))]
    return s, views


def test_check_passes_then_lists_broken_files(tmp_path, capsys):
    s, views = _store(tmp_path / "s")
    assert main(["store", "check", str(tmp_path / "s")]) == 0
    assert "ok (4 views" in capsys.readouterr().out
    (tmp_path / "s" / views[0]["image"]).unlink()
    (tmp_path / "s" / views[3]["image"]).write_bytes(b"\x89PNG broken")
    assert main(["store", "check", str(tmp_path / "s")]) == 1
    out = capsys.readouterr().out
    assert str(tmp_path / "s" / views[0]["image"]) in out and "missing" in out
    assert str(tmp_path / "s" / views[3]["image"]) in out and "corrupt" in out
    with open(tmp_path / "s" / "views.jsonl", "a") as fh:
        fh.write("{broken\n" + json.dumps(views[1] | {"view_id": "x_1"}) + "\n")
    assert main(["store", "check", str(tmp_path / "s")]) == 1
    assert "views.jsonl:5" in capsys.readouterr().out
    assert main(["store", "check", str(tmp_path / "nope")]) == 2


def test_stats(tmp_path, capsys):
    _store(tmp_path / "s")
    assert main(["store", "stats", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "2 instances (2 with views), 4 views: 3 low-quality, 1 high-quality" in out
    assert "mug" in out
    assert main(["store", "stats", str(tmp_path / "s"), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["per_instance"] == {"1": {"low": 2, "high": 1}, "2": {"low": 1, "high": 0}}


def test_check_and_index_name_a_bad_line_instead_of_crashing(tmp_path, capsys):
    """An "image": 5, a path outside the store and a bad pose are listed by line; index refuses."""
    s, views = _store(tmp_path / "s")
    (tmp_path / "outside.png").write_bytes((tmp_path / "s" / views[0]["image"]).read_bytes())
    with open(tmp_path / "s" / "views.jsonl", "a") as fh:
        fh.write(json.dumps(views[1] | {"view_id": "x_1", "image": 5}) + "\n")
        fh.write(json.dumps(views[1] | {"view_id": "x_2", "image": "../outside.png"}) + "\n")
        fh.write(json.dumps(views[1] | {"view_id": "x_3", "image": "views/1/x_3.png", "T_world_cam": "x"}) + "\n")
    assert main(["store", "check", str(tmp_path / "s")]) == 1
    out = capsys.readouterr().out
    assert "views.jsonl:5: bad view line (key 'image': must be a relative path" in out
    assert "views.jsonl:6: bad view line (key 'image': path '../outside.png' leaves" in out
    assert "views.jsonl:7: bad view line (key 'T_world_cam'" in out
    assert "3 problem(s) in 4 views" in out
    assert main(["index", "--store", str(tmp_path / "s"), "--model", "mobilenet_v3_small",
                 "--out", str(tmp_path / "idx")]) == 2
    err = capsys.readouterr().err
    assert "views.jsonl:5: bad view line" in err and "ssl-nav store check" in err
    assert not (tmp_path / "idx").exists()


def test_a_killed_writers_transaction_is_listed_and_recovered(tmp_path, capsys):
    """A writer killed (SIGKILL) mid-transaction; the next writer, or `store recover`, puts the
    store back byte for byte (journal: truncate views.jsonl, restore instances.json)."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np

    from ssl_nav.views.store import ViewStore

    root = tmp_path / "s"
    s = ViewStore(root, create=True)
    s.set_instances({"1": {"category": "a"}})
    s.add_view("1", np.zeros((8, 8, 3), np.uint8), "low")
    snap = {p.name: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    code = ("import os, numpy as np; from ssl_nav.views.store import ViewStore\n"
            f"s = ViewStore({str(root)!r})\n"
            "with s.transaction():\n"
            "    s.set_instances({'1': {'category': 'b'}, '2': {}})\n"
            "    s.add_view('2', np.ones((8, 8, 3), np.uint8), 'low')\n"
            "    os.kill(os.getpid(), 9)\n")
    r = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert r.returncode == -signal.SIGKILL
    assert ViewStore(root).instances()["1"]["category"] == "b"  # readable, but not as it was
    assert main(["store", "check", str(root)]) == 1
    assert "a write was interrupted" in capsys.readouterr().out
    assert main(["store", "recover", str(root)]) == 0
    assert {p.name: p.read_bytes() for p in root.rglob("*") if p.is_file()} == snap
    assert main(["store", "check", str(root)]) == 0
