"""``ssl-nav collect`` on a frames directory with scene.json and photos.jsonl, including bad frames."""

import json
from pathlib import Path

import numpy as np
import pytest

from ssl_nav.cli import main
from ssl_nav.frames import FramesWriter, write_png
from ssl_nav.mapping import InstanceMap
from ssl_nav.views.store import ViewStore


from testkit import scenes  # test/ is on sys.path (test/conftest.py)


def _snapshot(root: Path) -> dict:
    """Every file under ``root`` with its bytes (a store, compared before and after a command)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _frames_dir(d: Path, shift: float = 0.0, prefix: str = "f") -> Path:
    """Six views of three boxes (moved ``shift`` m along x), a malformed line, scene.json and two photos."""
    boxes = [scenes.Box(b.instance_id, (b.lo[0] + shift, *b.lo[1:]), (b.hi[0] + shift, *b.hi[1:]), b.color)
             for b in scenes.default_boxes()]
    with FramesWriter(d) as w:
        for i, T in enumerate(scenes.orbit_poses(6, center=(1.2 + shift, 0.0, 0.3))):
            w.write(scenes.render(boxes, T, frame_id=f"{prefix}{i}"))
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
    # --append of the same recording is a no-op, not a second copy of every view
    before = _snapshot(tmp_path / "s")
    assert main(["collect", "--frames", str(d), "--store", str(tmp_path / "s"), "--config", str(cfg), "--quiet",
                 "--append"]) == 0
    assert "already collected" in capsys.readouterr().out
    assert _snapshot(tmp_path / "s") == before
    assert main(["store", "check", str(tmp_path / "s")]) == 0


def test_collect_per_frame_ids(tmp_path, capsys):
    d = _frames_dir(tmp_path / "frames")
    rc = main(["collect", "--frames", str(d), "--store", str(tmp_path / "s"), "--id-mode", "per_frame", "--quiet",
               "--no-photos"])
    assert rc == 0
    assert "map: 3 instances" in capsys.readouterr().out


def test_collect_missing_frames_dir_is_an_error(tmp_path, capsys):
    assert main(["collect", "--frames", str(tmp_path / "nope"), "--store", str(tmp_path / "s"), "--quiet"]) == 2
    assert "frames.jsonl" in capsys.readouterr().err


TINY_VIEWS = "views:\n  crop_size: 32\n  min_box_px: 8\n  min_visible_points: 10\n"


def test_append_continues_the_map_and_its_ids(tmp_path, capsys):
    """A second recording appended in per_frame mode gets new ids; map/ holds both maps."""
    a = _frames_dir(tmp_path / "a")
    b = _frames_dir(tmp_path / "b", shift=10.0, prefix="g")  # three other objects, far from the first
    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY_VIEWS)
    common = ["--store", str(tmp_path / "s"), "--config", str(cfg), "--id-mode", "per_frame", "--quiet",
              "--no-photos"]
    assert main(["collect", "--frames", str(a), *common]) == 0
    first = ViewStore(tmp_path / "s")
    ids_a = set(first.instances())
    assert len(ids_a) == 3
    assert main(["collect", "--frames", str(b), *common, "--append"]) == 0
    store = ViewStore(tmp_path / "s")
    ids = set(store.instances())
    assert len(ids) == 6 and ids_a < ids
    for v in store.views():  # no id holds views of both recordings
        assert (v["instance_id"] in ids_a) == v["frame_id"].startswith("f"), v
    centroids = {k: store.instances()[k]["centroid"][0] for k in ids}
    assert all(centroids[k] < 5 for k in ids_a) and all(centroids[k] > 5 for k in ids - ids_a)
    assert sorted(InstanceMap.load(tmp_path / "s" / "map").instances()) == sorted(int(k) for k in ids)
    sources = [json.loads(x) for x in (tmp_path / "s" / "sources.jsonl").read_text().splitlines()]
    assert [s["frames"] for s in sources] == [str(a.resolve()), str(b.resolve())]
    assert main(["store", "check", str(tmp_path / "s")]) == 0


def test_append_needs_the_map_of_the_store(tmp_path, capsys):
    a = _frames_dir(tmp_path / "a")
    b = _frames_dir(tmp_path / "b", shift=10.0, prefix="g")
    assert main(["collect", "--frames", str(a), "--store", str(tmp_path / "s"), "--quiet", "--no-photos"]) == 0
    import shutil

    shutil.rmtree(tmp_path / "s" / "map")
    before = _snapshot(tmp_path / "s")
    assert main(["collect", "--frames", str(b), "--store", str(tmp_path / "s"), "--quiet", "--append"]) == 2
    assert "map: missing; --append continues the store's map" in capsys.readouterr().err
    assert _snapshot(tmp_path / "s") == before


def test_a_truncated_photos_file_fails_before_anything_is_written(tmp_path, capsys):
    """The photos.jsonl is read first; a bad line fails the command and no store is left behind."""
    d = _frames_dir(tmp_path / "frames")
    with open(d / "photos.jsonl", "a") as fh:
        fh.write('{"instance_id": "3", "image": "photos/3/0.p')
    assert main(["collect", "--frames", str(d), "--store", str(tmp_path / "s"), "--quiet"]) == 2
    assert "photos.jsonl:3: malformed JSON" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_command_that_fails_midway_leaves_the_store_as_it_was(tmp_path, capsys, monkeypatch, failure):
    """A failure after some views were written (a full disk, Ctrl-C) undoes them, the map and sources too."""
    a = _frames_dir(tmp_path / "a")
    b = _frames_dir(tmp_path / "b", shift=10.0, prefix="g")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY_VIEWS + "mapping:\n  id_mode: per_frame\n")
    assert main(["collect", "--frames", str(a), "--store", str(tmp_path / "s"), "--config", str(cfg), "--quiet",
                 "--no-photos"]) == 0
    before = _snapshot(tmp_path / "s")
    real_add, calls = ViewStore.add_view, []

    def failing_add(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise failure
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(ViewStore, "add_view", failing_add)
    rc = main(["collect", "--frames", str(b), "--store", str(tmp_path / "s"), "--config", str(cfg), "--quiet",
               "--append"])
    assert rc == (130 if isinstance(failure, KeyboardInterrupt) else 2) and len(calls) == 4
    assert _snapshot(tmp_path / "s") == before
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["instances.json", "map", "sources.jsonl",
                                                                   "views", "views.jsonl"]
    monkeypatch.setattr(ViewStore, "add_view", real_add)
    assert main(["collect", "--frames", str(b), "--store", str(tmp_path / "s"), "--config", str(cfg), "--quiet",
                 "--append"]) == 0
    assert len(ViewStore(tmp_path / "s").instances()) == 6


def test_collect_into_a_store_without_instances_json_changes_nothing(tmp_path, capsys):
    """The half store is refused; no empty instances.json is written."""
    d = _frames_dir(tmp_path / "frames")
    assert main(["collect", "--frames", str(d), "--store", str(tmp_path / "s"), "--quiet", "--no-photos"]) == 0
    (tmp_path / "s" / "instances.json").unlink()
    before = _snapshot(tmp_path / "s")
    assert main(["collect", "--frames", str(d), "--store", str(tmp_path / "s"), "--quiet", "--append"]) == 2
    assert "instances.json: missing, but views.jsonl holds views" in capsys.readouterr().err
    assert _snapshot(tmp_path / "s") == before


def test_no_frames_or_no_usable_frame_is_an_error_and_makes_no_store(tmp_path, capsys):
    """An empty frames.jsonl, or one whose every frame is bad, exits 2 without leaving a store."""
    d = tmp_path / "frames"
    d.mkdir()
    (d / "frames.jsonl").write_text("\n")
    assert main(["collect", "--frames", str(d), "--store", str(tmp_path / "s"), "--quiet"]) == 2
    assert "holds no frames" in capsys.readouterr().err and not (tmp_path / "s").exists()
    (d / "frames.jsonl").write_text('{"frame_id": "a", "stamp": null}\nnot json\n')
    assert main(["collect", "--frames", str(d), "--store", str(tmp_path / "s"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "none of its 2 frames is usable" in err and "frames.jsonl:1: missing key 'rgb'" in err
    assert not (tmp_path / "s").exists()


def test_frames_with_bad_fields_are_skipped_and_photos_outside_are_refused(tmp_path, capsys):
    """Wrong types skip the frame; photos.jsonl paths outside the directory are skipped, named."""
    d = _frames_dir(tmp_path / "frames")
    lines = (d / "frames.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    lines[1] = json.dumps({**json.loads(lines[1]), "depth_scale": "abc"})
    lines[2] = json.dumps({**json.loads(lines[2]), "rgb": None})
    (d / "frames.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "outside.png").write_bytes((d / "photos" / "2" / "0.png").read_bytes())
    with open(d / "photos.jsonl", "a") as fh:
        fh.write(json.dumps({"instance_id": "1", "image": "../outside.png"}) + "\n")
        fh.write(json.dumps({"instance_id": "1", "image": str(tmp_path / "outside.png")}) + "\n")
        fh.write(json.dumps({"instance_id": "2", "image": "photos/2/0.png"}) + "\n")  # the same photo again
    assert rec["frame_id"] == "f0"
    assert main(["collect", "--frames", str(d), "--store", str(tmp_path / "s"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "frames.jsonl:2: key 'depth_scale'" in out and "frames.jsonl:3: key 'rgb'" in out
    assert "photos.jsonl:3: key 'image': path '../outside.png' leaves" in out
    assert "photos.jsonl:4: key 'image': path" in out and "is absolute" in out
    assert "photos.jsonl:5: already in the store as view" in out
    assert len(ViewStore(tmp_path / "s").views(quality="high")) == 1


def test_a_store_path_that_cannot_be_made_is_a_clear_error(tmp_path, capsys):
    d = _frames_dir(tmp_path / "frames")
    (tmp_path / "file").write_text("x")
    assert main(["collect", "--frames", str(d), "--store", str(tmp_path / "file" / "s"), "--quiet"]) == 2
    assert str(tmp_path / "file") in capsys.readouterr().err


def test_stable_ids_of_another_scene_are_not_merged(tmp_path, capsys):
    """In stable mode, ids are the simulator's; appending a recording of another scene would merge objects."""
    a = _frames_dir(tmp_path / "a")
    b = _frames_dir(tmp_path / "b", shift=10.0, prefix="g")
    scene = json.loads((b / "scene.json").read_text())
    (b / "scene.json").write_text(json.dumps({**scene, "scene_id": "other"}))
    assert main(["collect", "--frames", str(a), "--store", str(tmp_path / "s"), "--quiet", "--no-photos"]) == 0
    before = _snapshot(tmp_path / "s")
    assert main(["collect", "--frames", str(b), "--store", str(tmp_path / "s"), "--quiet", "--append"]) == 2
    err = capsys.readouterr().err
    assert "scene 'other'" in err and "scene 'test'" in err and "--id-mode per_frame" in err
    assert _snapshot(tmp_path / "s") == before


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


def test_append_with_the_geometric_segmenter_is_refused_and_loses_nothing(tmp_path, capsys):
    """Its ids would restart at 1 and merge the second recording's objects with the first's."""
    a = _frames_dir(tmp_path / "a")
    b = _frames_dir(tmp_path / "b", shift=10.0, prefix="g")
    common = ["--store", str(tmp_path / "s"), "--segmenter", "geometric", "--quiet", "--no-photos"]
    assert main(["collect", "--frames", str(a), *common]) == 0
    assert ViewStore(tmp_path / "s").instances()
    before = _snapshot(tmp_path / "s")
    assert main(["collect", "--frames", str(b), *common, "--append"]) == 2
    assert "cannot continue a map" in capsys.readouterr().err
    assert _snapshot(tmp_path / "s") == before
