"""Visibility: z-buffer projection of the map with occlusion against the frame's depth."""


import numpy as np

from ssl_nav.config import MappingConfig
from ssl_nav.geometry import look_at
from ssl_nav.mapping import InstanceMap
from ssl_nav.views.visibility import compute_visibility, instance_mask


from testkit import scenes  # test/ is on sys.path (test/conftest.py)


def _map_of(boxes, poses):
    m = InstanceMap(MappingConfig(voxel_size=0.02))
    for T in poses:
        m.integrate(scenes.render(boxes, T))
    return m


def test_fully_occluded_object_is_not_visible():
    small = scenes.Box(1, (2.0, -0.15, 0.0), (2.3, 0.15, 0.3), (200, 50, 50))
    wall = scenes.Box(2, (1.0, -0.8, 0.0), (1.1, 0.8, 1.0), (50, 200, 50))
    # map both from the side, where the small box is in full view
    side = [look_at(np.array([2.15, -2.5, 1.2]), np.array([1.6, 0.0, 0.3])),
            look_at(np.array([2.8, -2.2, 1.2]), np.array([1.6, 0.0, 0.3]))]
    m = _map_of([small, wall], side)
    assert set(m.instances()) == {1, 2}
    pts, labels = m.points_and_labels()
    # from the front the wall hides the small box completely
    front = scenes.render([small, wall], look_at(np.array([-0.5, 0.0, 0.6]), np.array([2.0, 0.0, 0.2])))
    assert not (front.instance_mask == 1).any()
    vis = compute_visibility(pts, labels, front.K, front.T_world_cam, front.depth, 0.05, point_size=0.02)
    assert 1 not in vis.instances
    assert 2 in vis.instances
    # without any depth, the z-buffer over the map points hides it too (up to a few leaks between sparse points)
    blind = compute_visibility(pts, labels, front.K, front.T_world_cam, np.full_like(front.depth, np.nan), 0.05,
                               point_size=0.02)
    assert blind.instances.get(1) is None or blind.instances[1].visible_fraction < 0.1
    # from the side it is visible
    f = scenes.render([small, wall], side[0])
    vis = compute_visibility(pts, labels, f.K, f.T_world_cam, f.depth, 0.05, point_size=0.02)
    assert vis.instances[1].n_visible > 50


def test_visible_boxes_and_mask_match_ground_truth_without_a_frame_mask():
    boxes = scenes.default_boxes()
    poses = scenes.orbit_poses(5)
    m = _map_of(boxes, poses)
    pts, labels = m.points_and_labels()
    f = scenes.render(boxes, poses[2])
    vis = compute_visibility(pts, labels, f.K, f.T_world_cam, f.depth, 0.05, point_size=0.02)
    mask = instance_mask(vis, f.K, 0.02)
    for b in boxes:
        gt = f.instance_mask == b.instance_id
        rows, cols = np.nonzero(gt)
        x0, y0, x1, y1 = vis.instances[b.instance_id].bbox
        # the box from map points covers the true silhouette within a pixel or two
        assert abs(x0 - cols.min()) <= 2 and abs(x1 - (cols.max() + 1)) <= 2
        assert abs(y0 - rows.min()) <= 2 and abs(y1 - (rows.max() + 1)) <= 2
        ours = mask == b.instance_id
        assert (gt[ours]).mean() > 0.8  # precision
        assert ours[gt].mean() > 0.8  # recall


def test_zbuffer_decides_where_the_frame_has_no_depth():
    boxes = scenes.default_boxes()
    poses = scenes.orbit_poses(5)
    m = _map_of(boxes, poses)
    pts, labels = m.points_and_labels()
    f = scenes.render(boxes, poses[1])
    with_depth = compute_visibility(pts, labels, f.K, f.T_world_cam, f.depth, 0.05)
    no_depth = compute_visibility(pts, labels, f.K, f.T_world_cam, np.full_like(f.depth, np.nan), 0.05,
                                  point_size=0.02)
    for iid, iv in with_depth.instances.items():
        assert iid in no_depth.instances
        # the z-buffer over the map keeps most of the front surface the depth test keeps (it is conservative:
        # footprints of near points hide grazing parts of the same surface)
        assert 0.6 * iv.n_visible <= no_depth.instances[iid].n_visible <= 1.1 * iv.n_visible
