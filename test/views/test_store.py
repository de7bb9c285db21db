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
    (root / "views" / "3" / "other_1.png").write_bytes((root / c["image"]).read_bytes())
    with open(root / "views.jsonl", "a") as fh:
        fh.write(json.dumps({**c, "view_id": "other_1", "image": "views/3/other_1.png", "future_key": [1, 2]}) + "\n")
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


def _store_with_view(root):
    s = ViewStore(root, create=True)
    s.set_instances({"1": {}})
    return s, s.add_view("1", _img(0), "low", T_world_cam=np.eye(4))


@pytest.mark.parametrize("change, match", [
    ({"image": "../../victim.png"}, "path '../../victim.png' leaves"),
    ({"image": "ABS"}, "is absolute"),
    ({"image": "views.jsonl"}, "leaves"),  # inside the store, but not in views/: remove_views would delete it
    ({"image": 5}, "key 'image': must be a relative path"),
    ({"T_world_cam": "x"}, "key 'T_world_cam' must be null or a 4x4 matrix"),
    ({"T_world_cam": [[1, 0], [0, 1]]}, "key 'T_world_cam'"),
    ({"bbox": "wide"}, "key 'bbox'"),
    ({"view_id": 7}, "key 'view_id'"),
    ({"instance_id": "mug"}, "key 'instance_id'"),
    ({"sharpness": "high"}, "key 'sharpness'"),
])
def test_bad_lines_are_refused_naming_line_and_key(tmp_path, change, match):
    """Every line is checked on reading; strict refuses, strict=False skips and lists it."""
    root = tmp_path / "store"
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"precious")
    s, a = _store_with_view(root)
    change = {k: (str(victim) if v == "ABS" else v) for k, v in change.items()}
    with open(root / "views.jsonl", "a") as fh:
        fh.write(json.dumps({**a, "view_id": "1_000099", "image": "views/1/1_000099.png", **change}) + "\n")
    with pytest.raises(StoreError, match=match) as e:
        ViewStore(root)
    assert f"{root / 'views.jsonl'}:2: bad view line" in str(e.value)
    lenient = ViewStore(root, strict=False)
    assert len(lenient) == 1
    problems = lenient.check()
    assert len(problems) == 1 and "views.jsonl:2" in problems[0]
    assert lenient.remove_views(["1_000099", a["view_id"]]) == 1
    assert victim.read_bytes() == b"precious" and (root / "views.jsonl").is_file()


def test_images_linked_outside_the_store_are_refused(tmp_path):
    """A symlink under views/ pointing outside counts as outside."""
    root = tmp_path / "store"
    (tmp_path / "victim.png").write_bytes(b"precious")
    s, a = _store_with_view(root)
    os.symlink(tmp_path / "victim.png", root / "views" / "1" / "1_000050.png")
    with open(root / "views.jsonl", "a") as fh:
        fh.write(json.dumps({**a, "view_id": "1_000050", "image": "views/1/1_000050.png"}) + "\n")
    with pytest.raises(StoreError, match="leaves"):
        ViewStore(root)
    with pytest.raises(StoreError, match="leaves"):
        s.image_path({"view_id": "x", "image": "views/1/1_000050.png"})


def test_duplicate_view_ids_and_images_are_refused_with_both_lines(tmp_path):
    """The message names the duplicate id, its line and the first line."""
    root = tmp_path / "store"
    s, a = _store_with_view(root)
    b = s.add_view("1", _img(1), "low")
    with open(root / "views.jsonl", "a") as fh:
        fh.write(json.dumps({**b, "sharpness": 3.0}) + "\n")
    with pytest.raises(StoreError, match=rf"views.jsonl:3: bad view line \(duplicate view id '{b['view_id']}' "
                                         rf"\(first on line 2\)\)"):
        ViewStore(root)
    problems = ViewStore(root, strict=False).check()
    assert len(problems) == 1 and "views.jsonl:3" in problems[0] and b["view_id"] in problems[0]
    lines = (root / "views.jsonl").read_text().splitlines()
    (root / "views.jsonl").write_text("\n".join(lines[:2] + [json.dumps({**b, "view_id": "1_000077"})]) + "\n")
    with pytest.raises(StoreError, match=rf"views.jsonl:3: .*is also the image of view '{b['view_id']}'"):
        ViewStore(root)


def test_check_finds_a_view_collected_twice(tmp_path):
    """The same image of the same instance and frame under a new id is a duplicate view."""
    root = tmp_path / "store"
    s, a = _store_with_view(root)
    s.add_view("1", _img(0), "low", frame_id="f1")
    s.add_view("1", _img(0), "low", frame_id="f2")  # same pixels, another frame: not a duplicate
    assert s.check() == []
    dup = s.add_view("1", _img(0), "low", frame_id="f1")
    problems = ViewStore(root).check()
    assert len(problems) == 1 and f"views.jsonl:4: view {dup['view_id']}: the same image as view" in problems[0]
    assert "(line 2)" in problems[0]


def test_instances_json_is_checked(tmp_path):
    root = tmp_path / "store"
    _store_with_view(root)
    (root / "instances.json").write_text(json.dumps({"1": 5}))
    with pytest.raises(StoreError, match="instance 1 must be a JSON object"):
        ViewStore(root).instances()
    (root / "instances.json").write_bytes(b'{"1": {"category": "\xff"}}')
    assert "cannot read instances" in ViewStore(root).check()[0]


def test_create_refuses_foreign_or_half_stores(tmp_path):
    """No empty instances.json is made next to views it would hide; no store inside an unrelated directory."""
    root = tmp_path / "store"
    s, a = _store_with_view(root)
    (root / "instances.json").unlink()
    with pytest.raises(StoreError, match="instances.json: missing, but views.jsonl holds views"):
        ViewStore(root, create=True)
    assert not (root / "instances.json").exists()
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("x")
    with pytest.raises(StoreError, match="not a view store and not empty"):
        ViewStore(home, create=True)
    assert sorted(p.name for p in home.iterdir()) == ["thesis.tex"]
    (tmp_path / "empty").mkdir()
    assert len(ViewStore(tmp_path / "empty", create=True)) == 0


def test_transaction_undoes_everything_on_failure(tmp_path):
    """A failed block leaves views.jsonl, instances.json and views/ byte for byte as they were."""
    root = tmp_path / "store"
    s, a = _store_with_view(root)
    before = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    with pytest.raises(OSError, match="disk full"):
        with s.transaction():
            s.set_instances({"1": {}, "2": {"category": "mug"}})
            for i in range(3):
                s.add_view("2", _img(i), "low")
            raise OSError("disk full")
    after = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert after == before and not (root / "views" / "2").exists()
    assert len(s) == 1 and set(s.instances()) == {"1"}
    with s.transaction():
        s.add_view("1", _img(5), "high")
    assert len(ViewStore(root)) == 2


def test_a_failed_transaction_removes_the_store_it_created(tmp_path):
    root = tmp_path / "new" / "store"
    s = ViewStore(root, create=True)
    with pytest.raises(KeyboardInterrupt):
        with s.transaction():
            s.set_instances({"1": {}})
            s.add_view("1", _img(0), "low")
            raise KeyboardInterrupt
    assert not (tmp_path / "new").exists()


def test_oversized_images_are_not_decoded(tmp_path):
    """Load_image and check read the size from the header first."""
    from test_frames import _png_header_only  # test/ is on sys.path

    root = tmp_path / "store"
    s, a = _store_with_view(root)
    _png_header_only(root / a["image"], 12_000, 9_000)
    with pytest.raises(StoreError, match="too large"):
        s.load_image(a)
    assert "too large" in s.check()[0]


def test_batch_writes_every_view_with_one_append_and_instances_once(tmp_path, monkeypatch):
    s, first = _store_with_view(tmp_path / "store")
    appends, fsyncs = [], []
    real_append, real_fsync = ViewStore._append_lines, os.fsync
    monkeypatch.setattr(ViewStore, "_append_lines", lambda self, data: (appends.append(data), real_append(self, data)))
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd)))
    with s.batch():
        recs = [s.add_view("2", _img(10 + k), "low", frame_id="f2", T_world_cam=np.eye(4)) for k in range(5)]
        s.set_instances({**s.instances(), "2": {"category": "mug"}})
        assert len(s) == 6 and [v["view_id"] for v in s.views("2")] == [r["view_id"] for r in recs]
        assert "2" not in json.loads((s.root / "instances.json").read_text())  # written when the batch is
        assert not any((s.root / r["image"]).exists() for r in recs)
        assert s.identical_view("2", _img(12), "low")["view_id"] == recs[2]["view_id"]  # a pending view
    assert len(appends) == 1 and appends[0].count(b"\n") == 5
    assert len(fsyncs) == 5 + 1 + 1  # a PNG each, the lines once, instances.json once
    s2 = ViewStore(s.root)
    assert s2.check() == [] and s2.instances()["2"] == {"category": "mug"}
    assert [v["view_id"] for v in s2.views()] == [first["view_id"]] + [r["view_id"] for r in recs]
    for k, r in enumerate(recs):
        np.testing.assert_array_equal(s2.load_image(r), _img(10 + k))
    assert s2.identical_view("2", _img(13), "low")["view_id"] == recs[3]["view_id"]


def test_batch_with_removals_rewrites_the_index_once(tmp_path):
    s, first = _store_with_view(tmp_path / "store")
    with s.batch():
        a = s.add_view("1", _img(1), "low")
        b = s.add_view("1", _img(2), "low")
        assert s.remove_views([first["view_id"], a["view_id"]]) == 2
        assert (s.root / first["image"]).exists()  # deleted only after the new index is written
    assert not (s.root / first["image"]).exists() and not (s.root / a["image"]).exists()
    s2 = ViewStore(s.root)
    assert [v["view_id"] for v in s2.views()] == [b["view_id"]] and s2.check() == []
    assert s.line_of(b["view_id"]) == s2.line_of(b["view_id"]) == 1


def test_a_batch_failing_after_some_pngs_leaves_none_of_its_views(tmp_path, monkeypatch):
    import ssl_nav.views.store as store_mod

    s, first = _store_with_view(tmp_path / "store")
    before = (s.root / "views.jsonl").read_bytes()
    real, calls = store_mod.atomic_write_bytes, []

    def fail_third(path, data):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(store_mod, "atomic_write_bytes", fail_third)
    with pytest.raises(OSError, match="No space"):
        with s.batch():
            for k in range(5):
                s.add_view("1", _img(10 + k), "low")
            s.set_instances({"1": {}, "2": {}})
    assert len(calls) >= 3
    assert (s.root / "views.jsonl").read_bytes() == before
    assert sorted(p.name for p in (s.root / "views" / "1").iterdir()) == [f"{first['view_id']}.png"]
    assert [v["view_id"] for v in s.views()] == [first["view_id"]] and s.instances() == {"1": {}}
    assert ViewStore(s.root).check() == []
    monkeypatch.setattr(store_mod, "atomic_write_bytes", real)
    with s.batch():  # the store goes on after the failure
        c = s.add_view("1", _img(20), "low")
    assert [v["view_id"] for v in ViewStore(s.root).views()] == [first["view_id"], c["view_id"]]


_BATCH_CHILD = """
import os, sys
import numpy as np
from ssl_nav.views.store import ViewStore
s = ViewStore(sys.argv[1])
ViewStore._append_lines = lambda self, data: os._exit(9)  # killed after the PNGs, before the lines
with s.batch():
    for k in range(4):
        s.add_view("1", np.full((32, 32, 3), k, np.uint8), "low")
"""


def test_a_process_killed_mid_batch_leaves_a_valid_store_without_its_lines(tmp_path):
    s, first = _store_with_view(tmp_path / "store")
    r = subprocess.run([sys.executable, "-c", _BATCH_CHILD, str(s.root)], capture_output=True, text=True)
    assert r.returncode == 9, r.stderr
    assert len(list((s.root / "views" / "1").glob("*.png"))) == 5  # the batch's PNGs: orphans, no line
    s2 = ViewStore(s.root)
    assert [v["view_id"] for v in s2.views()] == [first["view_id"]] and s2.check() == []


def test_a_torn_batch_append_keeps_its_complete_lines(tmp_path, monkeypatch):
    s, first = _store_with_view(tmp_path / "store")
    real = ViewStore._append_lines
    monkeypatch.setattr(ViewStore, "_append_lines", lambda self, data: real(self, data[:-20]))
    with s.batch():
        recs = [s.add_view("1", _img(10 + k), "low") for k in range(3)]
    s2 = ViewStore(s.root)
    assert [v["view_id"] for v in s2.views()] == [first["view_id"]] + [r["view_id"] for r in recs[:2]]
    assert s2.check() == []
    monkeypatch.undo()
    s2.add_view("1", _img(30), "low")  # the partial line is cut before the next append
    assert len(ViewStore(s.root)) == 4


def test_identical_view_finds_photos_written_with_the_previous_encoding(tmp_path):
    from ssl_nav.frames import encode_png

    s = ViewStore(tmp_path, create=True)
    rec = s.add_view("1", _img(5), "high")
    (tmp_path / rec["image"]).write_bytes(encode_png(_img(5)))  # as stores written before encode_view_png
    assert s.identical_view("1", _img(5), "high")["view_id"] == rec["view_id"]
    assert s.identical_view("1", _img(6), "high") is None


def test_a_long_batch_is_written_in_parts(tmp_path, monkeypatch):
    import ssl_nav.views.store as store_mod

    monkeypatch.setattr(store_mod, "BATCH_MAX_VIEWS", 2)
    s, first = _store_with_view(tmp_path / "store")
    with pytest.raises(KeyboardInterrupt):
        with s.batch():
            recs = [s.add_view("1", _img(10 + k), "low") for k in range(5)]
            assert len(ViewStore(s.root)) == 5  # two parts of 2 written, the fifth view waits
            raise KeyboardInterrupt
    assert [v["view_id"] for v in ViewStore(s.root).views()] == [first["view_id"]] + [r["view_id"] for r in recs[:4]]
    assert not (s.root / recs[4]["image"]).exists() and len(s) == 5 and ViewStore(s.root).check() == []
