"""ViewStore: format round trip, reopen-and-continue, unknown keys, repair, check, and crash safety."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from ssl_nav.errors import StoreError
from ssl_nav.views.store import ViewStore


def _img(seed, size=32):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_round_trip_and_reopen_and_continue(tmp_path):
    root = tmp_path / "store"
    with pytest.raises(StoreError, match="not found"):
        ViewStore(root)
    s = ViewStore(root, create=True)
    s.set_instances({"3": {"category": "mug", "centroid": [1, 2, 3], "aabb": [[0, 0, 0], [1, 1, 1]], "n_points": 10}})
    T = np.eye(4)
    a = s.add_view("3", _img(0), "low", frame_id="f1", T_world_cam=T, bbox=[1, 2, 30, 31], visible_fraction=0.5,
                   sharpness=12.5, my_extra={"k": 1})
    b = s.add_view("3", _img(1), "high")
    assert a["image"] == f"views/3/{a['view_id']}.png" and a["view_id"] != b["view_id"]
    assert len(s) == 2
    s2 = ViewStore(root)
    assert s2.instances()["3"]["category"] == "mug"
    views = s2.views()
    assert [v["view_id"] for v in views] == [a["view_id"], b["view_id"]]
    v = s2.views(quality="low")[0]
    assert v["T_world_cam"] == T.tolist() and v["bbox"] == [1, 2, 30, 31] and v["frame_id"] == "f1"
    assert v["visible_fraction"] == 0.5 and v["sharpness"] == 12.5 and v["my_extra"] == {"k": 1}
    assert set(v) >= {"view_id", "instance_id", "image", "quality", "frame_id", "T_world_cam", "bbox",
                      "visible_fraction", "sharpness"}
    np.testing.assert_array_equal(s2.load_image(v), _img(0))
    assert s2.views("3", "high")[0]["frame_id"] is None
    c = s2.add_view("3", _img(2), "low")
    assert c["view_id"] not in (a["view_id"], b["view_id"])
    assert len(ViewStore(root)) == 3
    assert ViewStore(root).check() == []
    # unknown keys written by someone else are kept
    with open(root / "views.jsonl", "a") as fh:
        fh.write(json.dumps({**c, "view_id": "other_1", "future_key": [1, 2]}) + "\n")
    assert ViewStore(root).views()[-1]["future_key"] == [1, 2]


def test_bad_ids_and_images_are_rejected(tmp_path):
    s = ViewStore(tmp_path, create=True)
    with pytest.raises(StoreError, match="integer"):
        s.add_view("mug", _img(0), "low")
    with pytest.raises(StoreError, match="quality"):
        s.add_view("1", _img(0), "medium")
    with pytest.raises(StoreError, match="uint8"):
        s.add_view("1", np.zeros((4, 4, 3), np.float32), "low")
    with pytest.raises(StoreError, match="view id"):
        s.add_view("1", _img(0), "low", view_id="../x")


def test_trailing_partial_line_is_ignored_then_repaired(tmp_path):
    s = ViewStore(tmp_path, create=True)
    s.set_instances({"1": {}})
    s.add_view("1", _img(0), "low")
    with open(tmp_path / "views.jsonl", "a") as fh:
        fh.write('{"view_id": "1_000009", "instance_id": "1", "ima')
    s2 = ViewStore(tmp_path)
    assert len(s2) == 1 and s2.check() == []
    s2.add_view("1", _img(1), "low")
    lines = (tmp_path / "views.jsonl").read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line) for line in lines)


def test_check_lists_missing_corrupt_and_malformed_by_path(tmp_path):
    s = ViewStore(tmp_path, create=True)
    s.set_instances({"1": {}, "2": {}})
    a = s.add_view("1", _img(0), "low")
    b = s.add_view("2", _img(1), "low")
    s.add_view("2", _img(2), "low")
    (tmp_path / a["image"]).unlink()
    (tmp_path / b["image"]).write_bytes(b"not a png")
    problems = ViewStore(tmp_path).check()
    assert any(str(tmp_path / a["image"]) in p and "missing" in p for p in problems)
    assert any(str(tmp_path / b["image"]) in p and "corrupt" in p for p in problems)
    assert len(problems) == 2
    with open(tmp_path / "views.jsonl", "a") as fh:
        fh.write("{oops\n")
        fh.write(json.dumps({**b, "view_id": "2_000123"}) + "\n")
    with pytest.raises(StoreError, match=r"views.jsonl:4: malformed"):
        ViewStore(tmp_path)
    assert any("views.jsonl:4" in p for p in ViewStore(tmp_path, strict=False).check())


def test_remove_views_rewrites_the_index_and_deletes_images(tmp_path):
    s = ViewStore(tmp_path, create=True)
    s.set_instances({"1": {}})
    a = s.add_view("1", _img(0), "low")
    b = s.add_view("1", _img(1), "low")
    assert s.remove_views([a["view_id"]]) == 1
    assert not (tmp_path / a["image"]).exists()
    assert [v["view_id"] for v in ViewStore(tmp_path).views()] == [b["view_id"]]


_CHILD = """
import sys, numpy as np
from ssl_nav.views.store import ViewStore
s = ViewStore(sys.argv[1], create=True)
s.set_instances({str(i): {"category": None} for i in range(1, 4)})
rng = np.random.default_rng(int(sys.argv[2]))
print("go", flush=True)
i = 0
while True:
    s.add_view(str(1 + i % 3), rng.integers(0, 256, (192, 192, 3), dtype=np.uint8), "low", frame_id=str(i))
    i += 1
"""


def test_sigkill_mid_append_leaves_a_store_that_passes_check(tmp_path):
    root = tmp_path / "store"
    rng = np.random.default_rng(0)
    counts = []
    for k in range(4):
        p = subprocess.Popen([sys.executable, "-c", _CHILD, str(root), str(k)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "go", p.stderr.read()
        time.sleep(float(rng.uniform(0.05, 0.4)))
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        s = ViewStore(root)
        assert s.check() == [], s.check()
        counts.append(len(s))
        for v in s.views():
            assert s.load_image(v).shape == (192, 192, 3)
    assert counts == sorted(counts) and counts[-1] > 0  # reopen-and-continue kept earlier views
    out = subprocess.run([sys.executable, "-m", "ssl_nav", "store", "check", str(root)], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr
