"""Plane detection on synthetic voxel centres: a floor and a table top are supports, an object top is not; walls."""

import numpy as np

from ssl_nav.mapping.planes import cell_keys, fill_holes, horizontal_planes, vertical_planes


def _grid(x0, x1, y0, y1, z, step=0.02):
    xs, ys = np.meshgrid(np.arange(x0, x1, step), np.arange(y0, y1, step))
    return np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, z)], 1)


def test_large_horizontal_regions_are_planes_small_ones_are_not():
    floor = _grid(-2, 2, -2, 2, 0.0)
    table = _grid(0.5, 1.5, 0.0, 0.6, 0.75)
    table = table[~((table[:, 0] > 0.9) & (table[:, 0] < 1.1) & (table[:, 1] > 0.2) & (table[:, 1] < 0.4))]  # hidden
    box_top = _grid(-1.0, -0.7, -1.0, -0.7, 0.3)
    planes = horizontal_planes(np.concatenate([floor, table, box_top]), 0.02, 0.02, 0.1, 0.5, up=True)
    assert [round(p.z, 2) for p in planes] == [0.0, 0.75]
    top = planes[1]
    assert 0.5 < top.area_m2 < 0.65 and 1.0 <= top.extent_m < 1.2
    # the footprint covers the hole an object left in the table, and the convex hull band covers it too
    hidden = cell_keys(np.floor(np.array([[1.0, 0.3]]) / 0.02).astype(np.int64))
    assert top.contains(hidden)[0] and top.in_band(hidden)[0]
    assert not top.contains(cell_keys(np.array([[0, 0]])))[0]


def test_walls_are_found_with_their_normal_and_offset():
    ys, zs = np.meshgrid(np.arange(-2, 2, 0.02), np.arange(0, 2.4, 0.02))
    wall = np.stack([np.full(ys.size, 3.0), ys.ravel(), zs.ravel()], 1)
    small = np.stack([np.full(100, 1.0), np.repeat(np.arange(10) * 0.02, 10), np.tile(np.arange(10) * 0.02, 10)], 1)
    normals = np.concatenate([np.tile([-1.0, 0, 0], (len(wall), 1)), np.tile([-1.0, 0, 0], (100, 1))])
    planes = vertical_planes(np.concatenate([wall, small]), normals, 0.02, 0.02, 0.5)
    assert len(planes) == 1
    w = planes[0]
    assert np.allclose(w.normal, [-1, 0], atol=1e-6) and abs(w.d + 3.0) < 0.01
    assert w.area_m2 > 9 and w.z_range[1] > 2.3


def test_fill_holes_fills_enclosed_background_only():
    m = np.zeros((7, 7), np.uint8)
    m[1:6, 1:6] = 1
    m[3, 3] = 0
    m[2, 4:6] = 0  # a notch open to the border, not a hole
    out = fill_holes(m)
    assert out[3, 3] == 1 and out[2, 4] == 0 and out[0, 0] == 0 and out.sum() == m.sum() + 1
