"""GeometricSegmenter on ray-cast scenes of known boxes: objects found without masks, furniture and floor left
out, ids stable while the map grows, frames with nothing to stand on give no instances and a reason."""

import dataclasses

import numpy as np
import pytest

from ssl_nav.config import MappingConfig
from ssl_nav.errors import FrameError
from ssl_nav.frames import Frame
from ssl_nav.geometry import backproject, look_at, transform
from ssl_nav.mapping.segment import NO_DEPTH, NO_SUPPORT, GeometricSegmenter
from ssl_nav.mapping.voxel_grid import VoxelGrid

from testkit import scenes  # test/ is on sys.path (test/conftest.py)

Box = scenes.Box
CFG = MappingConfig(geometric_stride=1)  # 160x120 test frames: every pixel


def floor_boxes() -> list:
    return [Box(1, (1.0, -0.9, 0.0), (1.4, -0.5, 0.4), (220, 40, 40)),
            Box(2, (1.2, 0.0, 0.0), (1.5, 0.3, 0.3), (40, 200, 40)),
            Box(3, (0.9, 0.6, 0.0), (1.2, 1.0, 0.35), (40, 60, 220))]


def table_scene() -> list:
    """A table (top and legs, mask id 0) with two objects on it, and one object on the floor."""
    h, top, leg = 0.72, 0.04, 0.05
    x0, x1, y0, y1 = 0.9, 1.9, -0.4, 0.4
    parts = [Box(0, (x0, y0, h - top), (x1, y1, h), (150, 110, 70))]
    for lx, ly in ((x0, y0), (x1 - leg, y0), (x0, y1 - leg), (x1 - leg, y1 - leg)):
        parts.append(Box(0, (lx, ly, 0.0), (lx + leg, ly + leg, h - top), (150, 110, 70)))
    return parts + [Box(1, (1.1, -0.2, h), (1.3, 0.0, h + 0.2), (220, 40, 40)),
                    Box(2, (1.5, 0.05, h), (1.7, 0.3, h + 0.15), (40, 200, 40)),
                    Box(3, (0.3, 0.6, 0.0), (0.6, 0.9, 0.3), (40, 60, 220))]


def render_orbit(boxes, n=8, center=(1.2, 0.0, 0.3), radius=2.2, height=1.3, arc=140.0, **kw):
    return [scenes.render(boxes, T, frame_id=f"f{i}", **kw)
            for i, T in enumerate(scenes.orbit_poses(n, center=center, radius=radius, height=height, arc_deg=arc))]


def gt_voxels(frames, voxel: float) -> dict[int, np.ndarray]:
    """Voxel keys of each masked instance (the observed surface), from the frames' own masks."""
    grid = VoxelGrid(voxel)
    keys, labels = [], []
    for f in frames:
        pts, rc = backproject(f.K, f.depth, f.instance_mask > 0)
        keys.append(grid.keys_of(transform(f.T_world_cam, pts)))
        labels.append(f.instance_mask[rc[:, 0], rc[:, 1]])
    k, lab = np.concatenate(keys), np.concatenate(labels)
    return {int(i): np.unique(k[lab == i]) for i in np.unique(lab)}


def best_iou(gt: np.ndarray, instances: dict[int, np.ndarray]) -> tuple[float, int | None]:
    best = (0.0, None)
    for iid, keys in instances.items():
        inter = len(np.intersect1d(gt, keys))
        iou = inter / (len(gt) + len(keys) - inter)
        best = max(best, (iou, iid), key=lambda t: t[0])
    return best


def segment(frames, cfg=CFG) -> GeometricSegmenter:
    seg = GeometricSegmenter(cfg)
    for f in frames:
        seg.integrate(f)
    seg.segment()
    return seg


@pytest.mark.parametrize("scene", ["floor", "table"])
def test_each_object_becomes_one_instance_and_nothing_else_does(scene):
    boxes = floor_boxes() if scene == "floor" else table_scene()
    frames = render_orbit(boxes)
    seg = segment(frames)
    instances = seg.last.instances
    gt = gt_voxels(frames, CFG.voxel_size)
    assert len(instances) == 3, seg.summary()
    matched = set()
    for label, keys in gt.items():
        iou, iid = best_iou(keys, instances)
        assert iou >= 0.5, (label, iou)
        matched.add(iid)
    assert len(matched) == 3
    # the map the rest of the pipeline reads: same instances, points inside their boxes
    imap = seg.instance_map()
    assert sorted(imap.instances()) == sorted(instances)
    for b in boxes:
        if b.instance_id == 0:
            continue
        iid = best_iou(gt[b.instance_id], instances)[1]
        pts = imap.instance_points(iid)
        inside = np.all((pts >= np.asarray(b.lo) - 0.03) & (pts <= np.asarray(b.hi) + 0.03), axis=1)
        assert inside.mean() > 0.95
    summary = seg.summary()
    assert summary["supports"] >= (1 if scene == "floor" else 2)
    if scene == "table":
        assert any(abs(z - 0.72) < 0.02 for z in summary["support_heights_m"])


def test_ids_stay_stable_while_the_map_grows():
    boxes = floor_boxes()
    frames = render_orbit(boxes, n=10)
    gt = gt_voxels(frames, CFG.voxel_size)
    seg = GeometricSegmenter(dataclasses.replace(CFG, geometric_resegment_every=2))
    seen: dict[int, set[int]] = {}
    for f in frames:
        seg.integrate(f)
        seg.instance_map()
        for label, keys in gt.items():
            iou, iid = best_iou(keys, seg.last.instances)
            if iou >= 0.3:
                seen.setdefault(label, set()).add(iid)
    assert sorted(seen) == [1, 2, 3]
    assert all(len(ids) == 1 for ids in seen.values()), seen
    assert len({next(iter(v)) for v in seen.values()}) == 3


def test_overlap_keeps_ids_merges_and_splits():
    seg = GeometricSegmenter(CFG)
    a, b, c = np.arange(0, 100), np.arange(100, 150), np.arange(500, 520)
    assert seg._assign_ids([a, b]) == [1, 2]
    # one component now covers both: it keeps the id it overlaps most, the other is merged into it
    assert seg._assign_ids([np.concatenate([a, b]), c]) == [1, 3]
    assert seg.merged_into == {2: 1}
    # it splits again: the larger overlap keeps the id, the other part gets a new one; ids are never reused
    assert seg._assign_ids([b, a, c]) == [4, 1, 3]


def test_frames_with_nothing_to_stand_on_give_no_instances_and_a_reason():
    seg = GeometricSegmenter(CFG)
    # a camera facing a bare wall
    wall = [Box(0, (2.0, -3.0, 0.0), (2.1, 3.0, 2.5), (200, 200, 200))]
    T = look_at(np.array([0.0, 0.0, 1.2]), np.array([2.0, 0.0, 1.2]))
    f = scenes.render(wall, T, floor=False, frame_id="wall")
    assert seg.integrate(f).reason == NO_SUPPORT
    # depth beyond the usable range
    far = Frame(rgb=f.rgb, depth=np.full_like(f.depth, 50.0), K=f.K, T_world_cam=T, frame_id="far")
    assert seg.integrate(far).reason == NO_DEPTH
    assert seg.reasons == {NO_SUPPORT: 1, NO_DEPTH: 1}
    assert len(seg.segment().instances()) == 0
    # boxes floating in the air (their tops are too small to be supports): nothing stands on anything
    for g in render_orbit(floor_boxes(), n=4, floor=False):
        seg.integrate(g)
    assert len(seg.segment().instances()) == 0 and seg.last.supports == []
    # all-NaN depth: an error the collector counts; the map is untouched
    n, version = len(seg.grid), seg.grid.version
    bad = Frame(rgb=f.rgb, depth=np.full_like(f.depth, np.nan), K=f.K, T_world_cam=T, frame_id="nan")
    with pytest.raises(FrameError, match="no valid pixel"):
        seg.integrate(bad)
    assert (len(seg.grid), seg.grid.version) == (n, version)
    # the same segmenter still maps a good scene afterwards
    for g in render_orbit(floor_boxes()):
        seg.integrate(g)
    assert len(seg.segment().instances()) == 3


def test_instance_map_is_cached_until_enough_new_frames():
    frames = render_orbit(floor_boxes(), n=6)
    seg = GeometricSegmenter(dataclasses.replace(CFG, geometric_resegment_every=3))
    seg.integrate(frames[0])
    first = seg.instance_map()
    seg.integrate(frames[1])
    assert seg.instance_map() is first
    seg.integrate(frames[2])
    seg.integrate(frames[3])
    assert seg.instance_map() is not first


def test_noisy_depth_still_gives_the_objects():
    rng = np.random.default_rng(0)
    clean = render_orbit(floor_boxes())
    noisy = [dataclasses.replace(f, depth=np.where(f.depth > 0, f.depth + rng.normal(0, 0.01, f.depth.shape), 0)
                                 .astype(np.float32)) for f in clean]
    seg = segment(noisy)
    gt = gt_voxels(clean, CFG.voxel_size)
    assert all(best_iou(keys, seg.last.instances)[0] >= 0.4 for keys in gt.values()), seg.summary()
    assert len(seg.last.instances) <= 4


def test_boxes_reach_down_to_the_support_and_hug_the_sides():
    """A 6 cm and a 5 cm cube on a table, one on the floor: the support-band cut takes their lowest 2 cm, but
    the instance box still starts at the support and its sides are within a few millimetres of the cube's."""
    h = 0.72
    parts = table_scene()[:5] + [Box(1, (1.2, -0.1, h), (1.26, -0.04, h + 0.06), (220, 40, 40)),
                                 Box(2, (1.5, 0.1, h), (1.55, 0.15, h + 0.05), (40, 200, 40)),
                                 Box(3, (0.4, 0.6, 0.0), (0.46, 0.66, 0.06), (40, 60, 220))]
    frames = [scenes.render(parts, T, width=320, height=240, frame_id=f"f{i}") for i, T in
              enumerate(scenes.orbit_poses(12, center=(1.1, 0.1, 0.4), radius=1.6, height=1.3, arc_deg=140.0))]
    seg = segment(frames, dataclasses.replace(CFG, min_points=5))
    gt = gt_voxels(frames, CFG.voxel_size)
    infos = seg.instance_map().instances()
    assert seg.summary()["base_voxels"] > 0
    for b in parts[5:]:
        iou, iid = best_iou(gt[b.instance_id], seg.last.instances)
        assert iid is not None and iou >= 0.5, (b.instance_id, iou)
        info = infos[iid]
        assert abs(info.aabb_min[2] - b.lo[2]) <= 0.005, (b.instance_id, info.aabb_min, b.lo)
        assert np.all(np.abs(info.aabb_min[:2] - np.asarray(b.lo[:2])) <= 0.008), (info.aabb_min, b.lo)
        assert np.all(np.abs(info.aabb_max - np.asarray(b.hi)) <= 0.008), (info.aabb_max, b.hi)
        center = (np.asarray(b.lo) + np.asarray(b.hi)) / 2
        assert np.linalg.norm(info.centroid - center) <= 0.01


def test_touching_objects_are_split_by_colour_but_a_two_coloured_box_is_not():
    """Two boxes of different colours pressed together (one segment) become two instances; a box whose two
    halves have different colours, standing alone, stays one. With the split off, the pair is one instance."""
    parts = [Box(1, (1.0, -0.3, 0.0), (1.2, -0.1, 0.2), (220, 40, 40)),
             Box(2, (1.2, -0.22, 0.0), (1.36, -0.04, 0.15), (40, 60, 220)),
             Box(3, (1.0, 0.3, 0.0), (1.12, 0.5, 0.2), (230, 200, 40)),
             Box(3, (1.12, 0.3, 0.0), (1.24, 0.5, 0.2), (40, 160, 60))]
    frames = render_orbit(parts, n=10, center=(1.15, 0.1, 0.1), radius=1.5)
    gt = gt_voxels(frames, CFG.voxel_size)
    seg = segment(frames)
    assert seg.summary()["splits"].get("colour", 0) >= 1, seg.summary()
    found = {label: best_iou(keys, seg.last.instances) for label, keys in gt.items()}
    assert all(iou >= 0.5 for iou, _ in found.values()), found
    assert len({iid for _, iid in found.values()}) == 3 and len(seg.last.instances) == 3
    whole = segment(frames, dataclasses.replace(CFG, geometric_split="none"))
    assert len(whole.last.instances) == 2 and whole.summary()["splits"] == {}


def test_flat_objects_on_a_table_are_found_by_height_and_by_colour():
    """A 3 cm book (its sides lie in the table's band) is found by its top above the table; a 6 mm mat by its
    colour against the table's. Nothing else on the plain table becomes an instance."""
    h = 0.72
    parts = table_scene()[:5] + [Box(1, (1.1, -0.3, h), (1.35, -0.1, h + 0.03), (40, 60, 220)),
                                 Box(2, (1.45, 0.0, h), (1.75, 0.3, h + 0.006), (230, 40, 40))]
    frames = render_orbit(parts, n=10, center=(1.4, 0.0, 0.7), radius=1.6, height=1.6)
    gt = gt_voxels(frames, CFG.voxel_size)
    seg = segment(frames)
    assert seg.summary()["flat_objects"] >= 1
    for label in (1, 2):
        iou, iid = best_iou(gt[label], seg.last.instances)
        assert iou >= 0.5, (label, iou, seg.summary())
        assert abs(seg.instance_map().instances()[iid].aabb_min[2] - h) <= 0.005
    assert len(seg.last.instances) == 2
    off = segment(frames, dataclasses.replace(CFG, geometric_flat_objects=False))
    assert len(off.last.instances) == 0



def test_solid_furniture_is_not_an_object_but_what_stands_on_it_is():
    """A cabinet without legs (a solid box on the floor, 0.6 m long) with a box on top: the top is a support,
    the cabinet's sides are structure (long planar runs, plane fragments), the box on it is the only instance."""
    parts = [Box(0, (0.9, -0.3, 0.0), (1.5, 0.15, 0.6), (120, 90, 60)),
             Box(1, (1.1, -0.15, 0.6), (1.3, 0.0, 0.75), (220, 40, 40))]
    frames = render_orbit(parts, n=10, center=(1.2, -0.05, 0.4), radius=1.8, height=1.5)
    seg = segment(frames)
    gt = gt_voxels(frames, CFG.voxel_size)
    assert best_iou(gt[1], seg.last.instances)[0] >= 0.5
    assert len(seg.last.instances) == 1, seg.summary()
    assert any(abs(z - 0.6) < 0.02 for z in seg.summary()["support_heights_m"])


def test_touching_objects_of_close_colours_are_split_at_their_concave_crease():
    """Two boxes of different heights and close colours pressed together: colour alone does not tell them
    apart (their two-means colours are less than geometric_split_colour apart), the concave crease where the
    low box's top meets the tall box's side does. Of one colour, the two are taken for one bumpy object."""
    parts = [Box(1, (1.0, -0.1, 0.0), (1.2, 0.1, 0.3), (150, 150, 200)),
             Box(2, (1.2, -0.02, 0.0), (1.42, 0.2, 0.12), (175, 150, 170))]
    frames = render_orbit(parts, n=10, center=(1.2, 0.05, 0.1), radius=1.4, height=1.2)
    gt = gt_voxels(frames, CFG.voxel_size)
    seg = segment(frames)
    assert seg.summary()["splits"].get("concave", 0) >= 1, seg.summary()
    found = {label: best_iou(keys, seg.last.instances) for label, keys in gt.items()}
    assert all(iou >= 0.5 for iou, _ in found.values()) and len({i for _, i in found.values()}) == 2, found
    assert len(segment(frames, dataclasses.replace(CFG, geometric_split="colour")).last.instances) == 1
    one = [dataclasses.replace(b, color=(150, 150, 200)) for b in parts]
    assert len(segment(render_orbit(one, n=10, center=(1.2, 0.05, 0.1), radius=1.4, height=1.2)).last.instances) == 1
