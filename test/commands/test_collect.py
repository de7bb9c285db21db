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


def test_collect_without_masks_segments_geometrically_and_says_so(tmp_path, capsys):
    d = tmp_path / "frames"
    boxes = [scenes.Box(1, (1.0, -0.9, 0.0), (1.4, -0.5, 0.4), (220, 40, 40)),
             scenes.Box(2, (1.2, 0.0, 0.0), (1.5, 0.3, 0.3), (40, 200, 40)),
             scenes.Box(3, (0.9, 0.6, 0.0), (1.2, 1.0, 0.35), (40, 60, 220))]
    with FramesWriter(d) as w:
        for i, T in enumerate(scenes.orbit_poses(8)):
            f = scenes.render(boxes, T, frame_id=f"f{i}")
            f.instance_mask = None  # what an RGB-D camera with a pose gives: "instance": null
            w.write(f)
    (d / "scene.json").write_text(json.dumps({"objects": [
        {"instance_id": b.instance_id, "category": c, "aabb": [list(b.lo), list(b.hi)]}
        for b, c in zip(boxes, ("red_box", "green_box", "blue_box"))]}))
    write_png(d / "photos" / "2" / "0.png", np.full((40, 40, 3), 90, np.uint8))
    (d / "photos.jsonl").write_text(json.dumps({"instance_id": "2", "image": "photos/2/0.png"}) + "\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("mapping:\n  geometric_stride: 1\nviews:\n  crop_size: 32\n  min_box_px: 8\n  min_visible_points: 10\n")
    assert main(["collect", "--frames", str(d), "--store", str(tmp_path / "s"), "--config", str(cfg), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "segmenter: geometric (auto: the frames carry no instance masks)" in out and "map: 3 instances" in out
    store = ViewStore(tmp_path / "s")
    inst = store.instances()
    photo = store.views(quality="high")
    assert len(photo) == 1 and inst[photo[0]["instance_id"]]["gt_instance_id"] == "2"  # simulator id -> map id
    assert inst[photo[0]["instance_id"]]["category"] == "green_box"
    # --segmenter masks on frames without masks: no instances, and the reason
    assert main(["collect", "--frames", str(d), "--store", str(tmp_path / "s2"), "--config", str(cfg), "--quiet",
                 "--segmenter", "masks", "--no-photos"]) == 0
    out = capsys.readouterr().out
    assert "map: 0 instances" in out and "8 frames: no instance mask" in out
