"""RealSense-like depth: noise grows with z^2, disparity steps, stereo shadows left of near objects, holes."""

from __future__ import annotations

import dataclasses

import numpy as np

from ssl_nav.config import SimConfig
from ssl_nav.sim.depth_sensor import depth_edges, realsense_depth, stereo_shadow

FX = 400.0


def _cfg(**kw) -> SimConfig:
    base = dict(depth_model="realsense", depth_dropout=0.0, depth_dark_level=0.0, depth_specular_level=256.0,
                depth_edge_px=0)
    base.update(kw)
    return dataclasses.replace(SimConfig(), **base)


def test_noise_grows_with_the_square_of_depth_and_is_quantised_in_disparity():
    grey = np.full((120, 160, 3), 128, np.uint8)
    stds = {}
    for z in (1.0, 3.0):
        out = realsense_depth(np.full((120, 160), z), grey, FX, _cfg(), np.random.default_rng(0))
        assert np.all(out > 0)
        stds[z] = out.std()
        expected = z ** 2 * 0.08 / (FX * 0.05)
        assert 0.6 * expected < stds[z] < 1.6 * expected
    assert 6 < stds[3.0] / stds[1.0] < 12  # ~ (3 / 1)^2
    out = realsense_depth(np.full((4, 4), 3.0), grey[:4, :4], FX, _cfg(depth_disparity_noise_px=0.0),
                          np.random.default_rng(0))
    d = FX * 0.05 / out
    assert np.allclose(d * 32, np.round(d * 32), atol=1e-3)  # 1/32 px disparity steps


def test_stereo_shadow_lies_left_of_a_near_object():
    depth = np.full((10, 100), 4.0)
    depth[:, 50:70] = 1.0  # a near box
    disp = FX * 0.05 / depth
    shadow = stereo_shadow(disp)
    width = int(round(disp[0, 60] - disp[0, 0]))  # 20 - 5 = 15 px
    assert shadow[:, 50 - width + 1:50].all() and not shadow[:, :50 - width - 1].any()
    assert not shadow[:, 50:].any()
    out = realsense_depth(depth, np.full((10, 100, 3), 128, np.uint8), FX, _cfg(), np.random.default_rng(1))
    assert (out[:, 40:49] == 0).all() and (out[:, 52:68] > 0).all()


def test_holes_at_edges_dark_and_specular_surfaces_and_range_limits():
    depth = np.full((80, 80), 2.0)
    depth[20:60, 20:60] = 1.8  # a small step: an edge, no wide shadow
    depth[:, :5] = 0.1  # nearer than the minimum range
    rgb = np.full((80, 80, 3), 128, np.uint8)
    rgb[60:, 40:] = 5  # dark corner
    rgb[5:10, 60:70] = 255  # a highlight
    assert depth_edges(depth)[20, 30] and not depth_edges(depth)[40, 40]
    cfg = _cfg(depth_edge_px=2, depth_dark_level=25.0, depth_specular_level=250.0)
    out = realsense_depth(depth, rgb, FX, cfg, np.random.default_rng(2))
    assert (out[:, :5] == 0).all()
    assert (out[5:10, 60:70] == 0).all()
    assert (out[62:, 42:] == 0).mean() > 0.3 and (out[30:50, 25:55] > 0).all()
    assert (out[18:23, 25:55] == 0).mean() > 0.4  # ragged band along the edge
    again = realsense_depth(depth, rgb, FX, cfg, np.random.default_rng(2))
    assert np.array_equal(out, again)
