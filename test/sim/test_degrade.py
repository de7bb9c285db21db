"""LQ degradation: seeded, blurs, rescales, adds noise."""

from __future__ import annotations

import dataclasses

import numpy as np

from ssl_nav.config import SimConfig
from ssl_nav.sim.degrade import Degradation, apply_degradation, degrade, laplacian_variance, motion_blur_kernel


def _checker(n: int = 64, cell: int = 4) -> np.ndarray:
    y, x = np.mgrid[:n, :n]
    g = (((x // cell) + (y // cell)) % 2 * 255).astype(np.uint8)
    return np.stack([g, g, g], -1)


def test_kernel_is_normalised_line():
    k = motion_blur_kernel(7, 0.0)
    assert k.shape == (7, 7) and np.isclose(k.sum(), 1.0)
    assert np.count_nonzero(k) == 7 and np.count_nonzero(k[3]) == 7  # horizontal line through the centre


def test_seeded_and_deterministic():
    img, cfg = _checker(), SimConfig()
    a, da = degrade(img, cfg, np.random.default_rng(3))
    b, db = degrade(img, cfg, np.random.default_rng(3))
    c, _ = degrade(img, cfg, np.random.default_rng(4))
    assert da == db and np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.dtype == np.uint8 and a.shape == img.shape


def test_degradation_blurs_and_adds_noise():
    img = _checker()
    cfg = SimConfig()
    out, d = degrade(img, cfg, np.random.default_rng(0))
    assert d.blur_length >= max(1, cfg.lq_blur_max_px // 3) and cfg.lq_downscale <= d.scale < 1.0
    assert laplacian_variance(out) < 0.5 * laplacian_variance(img)
    flat = np.full((64, 64, 3), 128, np.uint8)
    noisy = apply_degradation(flat, Degradation(1, 0.0, 1.0, 4.0), np.random.default_rng(0))
    assert 3.0 < noisy.astype(float).std() < 5.0


def test_identity_when_everything_is_off():
    img = _checker()
    cfg = dataclasses.replace(SimConfig(), lq_blur_max_px=0, lq_downscale=1.0, lq_noise_std=0.0)
    out, d = degrade(img, cfg, np.random.default_rng(0))
    assert d.blur_length <= 1 and d.scale == 1.0 and d.noise_std == 0.0
    assert np.array_equal(out, img)
