"""InstanceMap on ray-cast scenes with known boxes: stable ids, per-frame ids with association, merging."""


import numpy as np
import pytest

from ssl_nav.config import MappingConfig
from ssl_nav.errors import FrameError
from ssl_nav.mapping import InstanceMap


from testkit import scenes  # test/ is on sys.path (test/conftest.py)


def _inside_fraction(points, box, tol=0.03):
    lo, hi = np.asarray(box.lo) - tol, np.asarray(box.hi) + tol
    return float(np.mean(np.all((points >= lo) & (points <= hi), axis=1)))


@pytest.fixture(scope="module")
def frames():
    boxes = scenes.default_boxes()
    return boxes, [scenes.render(boxes, T, frame_id=f"f{i}") for i, T in enumerate(scenes.orbit_poses(6))]


def test_stable_ids_give_one_instance_per_box(frames):
    boxes, fs = frames
    m = InstanceMap(MappingConfig(voxel_size=0.02))
    for f in fs:
        m.integrate(f)
    infos = m.instances()
    assert sorted(infos) == [1, 2, 3]
    for b in boxes:
        pts = m.instance_points(b.instance_id)
        assert _inside_fraction(pts, b) > 0.99
        info = infos[b.instance_id]
        assert np.all(info.aabb_min >= np.asarray(b.lo) - 0.03) and np.all(info.aabb_max <= np.asarray(b.hi) + 0.03)
        assert info.n_points == len(pts)
    pts, labels = m.points_and_labels()
    assert pts.dtype == np.float32 and labels.dtype == np.int32 and len(pts) == len(labels)
    assert set(np.unique(labels).tolist()) == {1, 2, 3}
    store_inst = m.to_store_instances()
    assert set(store_inst) == {"1", "2", "3"}
    assert set(store_inst["1"]) >= {"category", "centroid", "aabb", "n_points"}


def test_fusing_the_same_frame_again_adds_almost_no_points(frames):
    _, fs = frames
    m = InstanceMap(MappingConfig(voxel_size=0.02))
    m.integrate(fs[0])
    before = {i: info.n_points for i, info in m.instances().items()}
    m.integrate(fs[0])
    after = {i: info.n_points for i, info in m.instances().items()}
    assert before.keys() == after.keys()
    for i in before:
        assert after[i] <= before[i] * 1.1  # voxel downsampling of the union, not a concatenation


def test_outliers_are_removed():
    boxes = scenes.default_boxes()[:1]
    f = scenes.render(boxes, scenes.orbit_poses(1)[0])
    mask = f.instance_mask.copy()
    rr, cc = np.nonzero(mask == 1)
    # a few flying pixels far behind the object, labelled as the object
    f.depth[rr[:5], cc[:5]] = 5.5
    m = InstanceMap(MappingConfig(voxel_size=0.02))
    m.integrate(f)
    pts = m.instance_points(1)
    assert _inside_fraction(pts, boxes[0]) == 1.0


def test_per_frame_ids_are_associated_across_shuffled_frames(frames):
    boxes, fs = frames
    rng = np.random.default_rng(0)
    m = InstanceMap(MappingConfig(voxel_size=0.02, id_mode="per_frame"))
    for f in fs:
        perm = rng.permutation(3) + 10 + rng.integers(0, 50)  # ids that mean nothing across frames
        shuffled = np.zeros_like(f.instance_mask)
        for k in range(3):
            shuffled[f.instance_mask == k + 1] = perm[k]
        f2 = type(f)(rgb=f.rgb, depth=f.depth, K=f.K, T_world_cam=f.T_world_cam, instance_mask=shuffled)
        m.integrate(f2)
    infos = m.instances()
    assert len(infos) == 3
    matched = set()
    for iid in infos:
        pts = m.instance_points(iid)
        fr = [_inside_fraction(pts, b) for b in boxes]
        best = int(np.argmax(fr))
        assert fr[best] > 0.99
        matched.add(best)
    assert matched == {0, 1, 2}


def test_instances_that_turn_out_to_be_one_are_merged(frames):
    boxes, fs = frames
    m = InstanceMap(MappingConfig(voxel_size=0.02, id_mode="per_frame", association_iou=1.0, merge_iou=0.3))
    # association disabled (IoU 1.0 is never reached), so each frame makes new instances; merging must fold them
    for f in fs[:3]:
        m.integrate(f)
    assert m.merges > 0
    assert len(m.instances()) == 3


def test_frame_without_mask_adds_nothing_and_bad_frame_raises(frames):
    _, fs = frames
    m = InstanceMap()
    f = fs[0]
    m.integrate(type(f)(rgb=f.rgb, depth=f.depth, K=f.K, T_world_cam=f.T_world_cam))
    assert len(m.instances()) == 0
    with pytest.raises(FrameError, match="singular"):
        m.integrate(type(f)(rgb=f.rgb, depth=f.depth, K=np.zeros((3, 3)), T_world_cam=f.T_world_cam,
                            instance_mask=f.instance_mask))


def test_save_and_load_round_trip(frames, tmp_path):
    _, fs = frames
    m = InstanceMap()
    for f in fs[:2]:
        m.integrate(f)
    m.set_category(2, "cabinet")
    m.save(tmp_path / "map")
    m2 = InstanceMap.load(tmp_path / "map")
    p1, l1 = m.points_and_labels()
    p2, l2 = m2.points_and_labels()
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(l1, l2)
    assert m2.instances()[2].category == "cabinet"
    assert m2.to_store_instances() == m.to_store_instances()


def test_max_points_per_instance_coarsens_the_voxels(frames):
    _, fs = frames
    m = InstanceMap(MappingConfig(voxel_size=0.005, max_points_per_instance=200))
    for f in fs[:2]:
        m.integrate(f)
    assert all(info.n_points <= 200 for info in m.instances().values())


def test_an_estimated_box_replaces_the_points_box_and_survives_save_and_load(tmp_path):
    rng = np.random.default_rng(0)
    pts = rng.uniform([0.0, 0.0, 0.02], [0.1, 0.1, 0.1], (200, 3)).astype(np.float32)
    box = (np.array([0.0, 0.0, 0.0]), np.array([0.1, 0.1, 0.1]))
    m = InstanceMap.from_points(np.concatenate([pts, pts + 1.0]), np.repeat([1, 2], 200),
                                MappingConfig(min_points=5), boxes={1: box})
    info = m.instances()
    assert info[1].aabb_min[2] == 0.0 and np.allclose(info[1].centroid, [0.05, 0.05, 0.05])
    assert info[2].aabb_min[2] == pytest.approx(pts[:, 2].min() + 1.0)  # no box given: the points'
    loaded = InstanceMap.load(m.save(tmp_path / "map"), MappingConfig(min_points=5)).instances()
    assert np.allclose(loaded[1].aabb_min, box[0]) and np.allclose(loaded[1].aabb_max, box[1])
    assert np.allclose(loaded[2].aabb_min, info[2].aabb_min)
    m.add_points(1, np.array([[0.5, 0.5, 0.5]], np.float32))  # new points: the estimate no longer holds
    assert m.instances()[1].aabb_max[0] == pytest.approx(0.5)
