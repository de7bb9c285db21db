"""View collection on ray-cast scenes with known geometry: right instance in every crop, occlusion, bad frames."""

import dataclasses
import json

import cv2
import numpy as np

from ssl_nav.config import MappingConfig, PipelineConfig, ViewsConfig
from ssl_nav.crops import crop_square
from ssl_nav.frames import FramesWriter, read_frames_dir
from ssl_nav.geometry import look_at
from ssl_nav.mapping import InstanceMap
from ssl_nav.views.collect import ViewCollector, collect_frames
from ssl_nav.views.store import ViewStore

from testkit import scenes  # test/ is on sys.path (test/conftest.py)


def _cfg(**views):
    cfg = PipelineConfig()
    cfg.views = ViewsConfig(**{"crop_size": 32, "min_box_px": 8, "min_visible_points": 10, **views})
    return cfg


def _majority(store, view, gt_mask):
    crop = crop_square(gt_mask, tuple(int(v) for v in view["bbox"]), 32, interpolation=cv2.INTER_NEAREST)
    ids, counts = np.unique(crop[crop > 0], return_counts=True)
    return int(ids[np.argmax(counts)])


def test_every_crop_shows_its_instance_and_views_are_diverse(tmp_path):
    boxes = scenes.default_boxes()
    frames = [scenes.render(boxes, T, frame_id=f"f{i:02d}") for i, T in enumerate(scenes.orbit_poses(10))]
    gt = {f.frame_id: f.instance_mask.copy() for f in frames}
    store = ViewStore(tmp_path / "s", create=True)
    summary = collect_frames(frames, store, _cfg(max_views_per_instance=4), progress=False,
                             categories={1: "box", 2: "cabinet", 3: "crate"}, map_dir=tmp_path / "s" / "map")
    assert summary["frames_used"] == 10 and summary["frames_skipped"] == 0 and summary["instances"] == 3
    views = store.views()
    assert {v["instance_id"] for v in views} == {"1", "2", "3"}
    for iid in ("1", "2", "3"):
        vs = store.views(iid)
        assert len(vs) == 4  # K, out of 10 candidate frames
        # farthest-point sampling spreads the chosen frames over the arc, including both ends
        idx = sorted(int(v["frame_id"][1:]) for v in vs)
        assert idx[-1] - idx[0] >= 6
    for v in views:
        assert _majority(store, v, gt[v["frame_id"]]) == int(v["instance_id"])
        img = store.load_image(v)
        assert img.shape == (32, 32, 3)
        assert 0 < v["visible_fraction"] <= 1 and v["sharpness"] > 0 and v["quality"] == "low"
        x0, y0, x1, y1 = v["bbox"]
        assert x1 - x0 == y1 - y0
    assert store.instances()["2"]["category"] == "cabinet"
    assert store.check() == []
    assert InstanceMap.load(tmp_path / "s" / "map").instances()[3].category == "crate"


def test_fully_occluded_object_gets_no_view_from_that_frame(tmp_path):
    small = scenes.Box(1, (2.0, -0.15, 0.0), (2.3, 0.15, 0.3), (200, 50, 50))
    wall = scenes.Box(2, (1.0, -0.8, 0.0), (1.1, 0.8, 1.0), (50, 200, 50))
    target = np.array([1.6, 0.0, 0.3])
    poses = {"side_a": look_at(np.array([2.15, -2.5, 1.2]), target),
             "side_b": look_at(np.array([2.8, -2.2, 1.2]), target),
             "front": look_at(np.array([-0.5, 0.0, 0.6]), np.array([2.0, 0.0, 0.2]))}
    frames = [scenes.render([small, wall], T, frame_id=k) for k, T in poses.items()]
    store = ViewStore(tmp_path / "s", create=True)
    collect_frames(frames, store, _cfg(), progress=False)
    assert {v["frame_id"] for v in store.views("1")} == {"side_a", "side_b"}
    assert "front" in {v["frame_id"] for v in store.views("2")}


def test_streaming_collector_keeps_at_most_k_diverse_views(tmp_path):
    boxes = scenes.default_boxes()
    cfg = _cfg(max_views_per_instance=3)
    store = ViewStore(tmp_path / "s", create=True)
    col = ViewCollector(cfg.views, store)
    imap = InstanceMap(cfg.mapping)
    poses = scenes.orbit_poses(8)
    for i, T in enumerate(poses):
        f = scenes.render(boxes, T, frame_id=f"f{i}")
        imap.integrate(f)
        col.process(f, imap)
    # the same pose again is not a keyframe
    assert col.process(scenes.render(boxes, poses[-1], frame_id="again"), imap) == []
    s = col.summary()
    assert s["keyframes"] == 8 and s["not_keyframe"] == 1 and s["replaced"] > 0
    for iid in ("1", "2", "3"):
        assert len(store.views(iid)) == 3
    assert ViewStore(tmp_path / "s").check() == []
    assert set(store.instances()) == {"1", "2", "3"}
    # reopen-and-continue: a new collector on the same store starts from the views already there
    col2 = ViewCollector(cfg.views, ViewStore(tmp_path / "s"))
    assert col2.summary()["views_per_instance"] == {"1": 3, "2": 3, "3": 3}


def test_bad_frames_are_skipped_and_counted(tmp_path):
    boxes = scenes.default_boxes()
    d = tmp_path / "frames"
    with FramesWriter(d) as w:
        for i, T in enumerate(scenes.orbit_poses(8)):
            w.write(scenes.render(boxes, T, frame_id=f"f{i}"))
    lines = (d / "frames.jsonl").read_text().splitlines()
    recs = [json.loads(line) for line in lines]
    cv2.imwrite(str(d / recs[1]["depth"]), np.zeros((120, 160), np.uint16))  # zero depth
    np.save(d / "depth" / "f2.npy", np.full((120, 160), np.nan, np.float32))  # NaN depth
    recs[2]["depth"] = "depth/f2.npy"
    cv2.imwrite(str(d / recs[3]["depth"]), np.ones((60, 80), np.uint16) * 1000)  # mismatched shape
    recs[4]["K"] = [[0, 0, 80], [0, 0, 60], [0, 0, 1]]  # singular K
    (d / recs[5]["rgb"]).unlink()  # missing file
    out = [json.dumps(r) for r in recs]
    out.insert(6, '{"frame_id": "broken", "rgb": ')  # malformed line: line 7
    (d / "frames.jsonl").write_text("\n".join(out) + "\n")
    store = ViewStore(tmp_path / "s", create=True)
    summary = collect_frames(read_frames_dir(d), store, _cfg(), progress=False, total=9)
    assert summary["frames_total"] == 9
    assert summary["frames_used"] == 3 and summary["frames_skipped"] == 6
    assert summary["skip_reasons"] == {"no valid depth": 2, "shape mismatch": 1, "bad intrinsics": 1,
                                       "missing file": 1, "malformed line": 1}
    malformed = [s for s in summary["skipped"] if "malformed" in s["reason"]]
    assert malformed[0]["line"] == 7 and "frames.jsonl:7" in malformed[0]["reason"]
    assert any(str(d / recs[5]["rgb"]) in s["reason"] for s in summary["skipped"])
    assert summary["instances"] == 3 and len(store) > 0 and store.check() == []


def _short_boxes():
    return [scenes.Box(1, (1.0, -0.9, 0.0), (1.4, -0.5, 0.4), (220, 40, 40)),
            scenes.Box(2, (1.2, 0.0, 0.0), (1.5, 0.3, 0.3), (40, 200, 40)),
            scenes.Box(3, (0.9, 0.6, 0.0), (1.2, 1.0, 0.35), (40, 60, 220))]


def test_frames_without_masks_are_segmented_geometrically_and_matched_to_the_scene(tmp_path):
    boxes = _short_boxes()
    rendered = [scenes.render(boxes, T, frame_id=f"f{i:02d}") for i, T in enumerate(scenes.orbit_poses(8))]
    gt = {f.frame_id: f.instance_mask.copy() for f in rendered}
    frames = [dataclasses.replace(f, instance_mask=None) for f in rendered]
    objects = [{"instance_id": str(b.instance_id), "category": name, "aabb": [list(b.lo), list(b.hi)]}
               for b, name in zip(boxes, ("box", "cube", "crate"))]
    cfg = _cfg(max_views_per_instance=4)
    cfg.mapping = MappingConfig(geometric_stride=1)
    store = ViewStore(tmp_path / "s", create=True)
    summary = collect_frames(frames, store, cfg, progress=False, categories={1: "wrong: keyed by simulator id"},
                             gt_objects=objects, map_dir=tmp_path / "s" / "map")
    assert summary["segmenter"] == "geometric" and "no instance masks" in summary["segmenter_reason"]
    assert summary["instances"] == 3 and summary["gt_matched"] == 3
    inst = store.instances()
    assert sorted(v["gt_instance_id"] for v in inst.values()) == ["1", "2", "3"]
    assert {v["gt_instance_id"]: v["category"] for v in inst.values()} == {"1": "box", "2": "cube", "3": "crate"}
    for v in store.views(quality="low"):  # every crop shows the object its instance was matched to
        assert _majority(store, v, gt[v["frame_id"]]) == int(inst[v["instance_id"]]["gt_instance_id"])
    assert len(store.views(quality="low")) >= 9
    # the saved map keeps the annotation
    again = InstanceMap.load(tmp_path / "s" / "map")
    assert sorted(again.gt_instance_ids().values()) == ["1", "2", "3"]
    # the same frames with masks: auto picks the masks, ids are the simulator's, no annotation
    store2 = ViewStore(tmp_path / "s2", create=True)
    s2 = collect_frames(rendered, store2, cfg, progress=False, gt_objects=objects)
    assert s2["segmenter"] == "masks" and s2["gt_matched"] == 0 and "gt_instance_id" not in store2.instances()["1"]
