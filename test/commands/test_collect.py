"""``ssl-nav collect`` on a frames directory with scene.json and photos.jsonl, including bad frames."""

import json
from pathlib import Path

import numpy as np

from ssl_nav.cli import main
from ssl_nav.frames import FramesWriter, write_png
from ssl_nav.mapping import InstanceMap
from ssl_nav.views.store import ViewStore


import scenes_for_tests as scenes  # test/ is on sys.path (test/conftest.py)


def _frames_dir(d: Path) -> Path:
    boxes = scenes.default_boxes()
    with FramesWriter(d) as w:
        for i, T in enumerate(scenes.orbit_poses(6)):
            w.write(scenes.render(boxes, T, frame_id=f"f{i}"))
    with open(d / "frames.jsonl", "a") as fh:
        fh.write("not json\n")
    (d / "scene.json").write_text(json.dumps({"seed": 0, "scene_id": "test", "objects": [
        {"instance_id": 1, "category": "red_box"}, {"instance_id": 2, "category": "green_box"},
        {"instance_id": 3, "category": "blue_box"}]}))
    rng = np.random.default_rng(0)
    write_png(d / "photos" / "2" / "0.png", rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    (d / "photos.jsonl").write_text(json.dumps({"instance_id": "2", "image": "photos/2/0.png"}) + "\n"
                                    + json.dumps({"instance_id": "2", "image": "photos/2/missing.png"}) + "\n")
    return d


def test_collect_command(tmp_path, capsys):
    d = _frames_dir(tmp_path / "frames")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("views:\n  crop_size: 32\n  min_box_px: 8\n  min_visible_points: 10\n")
    rc = main(["collect", "--frames", str(d), "--store", str(tmp_path / "s"), "--config", str(cfg), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "frames: 7 read, 6 used" in out and "1 skipped" in out and "malformed line" in out
    assert "frames.jsonl:7" in out
    assert "map: 3 instances" in out
    assert "1 high-quality photos added" in out and "missing.png" in out
    store = ViewStore(tmp_path / "s")
    assert {v["instance_id"] for v in store.views(quality="low")} == {"1", "2", "3"}
    assert len(store.views("2", "high")) == 1
    assert store.instances()["1"]["category"] == "red_box"
    imap = InstanceMap.load(tmp_path / "s" / "map")
    assert sorted(imap.instances()) == [1, 2, 3]
    assert main(["store", "check", str(tmp_path / "s")]) == 0
    # a second run into the same store would duplicate every view: refused unless --append
    n = len(store)
    capsys.readouterr()
    assert main(["collect", "--frames", str(d), "--store", str(tmp_path / "s"), "--quiet"]) == 2
    assert "already holds" in capsys.readouterr().err and len(ViewStore(tmp_path / "s")) == n
    assert main(["collect", "--frames", str(d), "--store", str(tmp_path / "s"), "--config", str(cfg), "--quiet",
                 "--append", "--no-photos"]) == 0
    assert len(ViewStore(tmp_path / "s")) == 2 * n - 1


def test_collect_per_frame_ids(tmp_path, capsys):
    d = _frames_dir(tmp_path / "frames")
    rc = main(["collect", "--frames", str(d), "--store", str(tmp_path / "s"), "--id-mode", "per_frame", "--quiet",
               "--no-photos"])
    assert rc == 0
    assert "map: 3 instances" in capsys.readouterr().out


def test_collect_missing_frames_dir_is_an_error(tmp_path, capsys):
    assert main(["collect", "--frames", str(tmp_path / "nope"), "--store", str(tmp_path / "s"), "--quiet"]) == 2
    assert "frames.jsonl" in capsys.readouterr().err
