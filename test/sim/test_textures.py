"""Procedural textures: deterministic, near-identical products differ in one detail, files are temporary."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ssl_nav.sim.textures import (SURFACE_KINDS, VARIANT_DETAILS, TextureFiles, hue_rotate, near_identical,
                                  periodic_noise, random_design, random_surface, texture_image)


@pytest.mark.parametrize("layout,dims", [("box", (0.2, 0.07, 0.3)), ("can", (0.033, 0.033, 0.12)),
                                         ("bottle", (0.035, 0.035, 0.22)), ("book", (0.2, 0.14, 0.03)),
                                         ("plate", (0.1, 0.1, 0.02)), ("plain", (0.05, 0.02, 0.01))])
def test_designs_are_deterministic_and_printed(layout, dims):
    a = random_design(np.random.default_rng(3), layout, dims)
    b = random_design(np.random.default_rng(3), layout, dims)
    assert a == b and a.key() == b.key()
    img = a.draw()
    assert img.dtype == np.uint8 and img.ndim == 3 and np.array_equal(img, b.draw())
    assert img.std() > 10  # not a flat colour
    assert a.key() != random_design(np.random.default_rng(4), layout, dims).key()


def test_near_identical_products_differ_in_one_detail():
    d = random_design(np.random.default_rng(0), "box", (0.2, 0.07, 0.3))
    base = d.draw().astype(int)
    for detail in VARIANT_DETAILS:
        v = near_identical(d, detail, np.random.default_rng(1))
        changed = {k for k in dataclasses.asdict(d) if getattr(d, k) != getattr(v, k)}
        assert changed and changed <= {"band", "variant", "logo_shape", "logo_colour"}
        diff = np.abs(v.draw().astype(int) - base).sum(-1) > 30
        assert 0.002 < diff.mean() < 0.25  # a local change: most of the label is the same


def test_recolour_rotates_hue_and_keeps_grey():
    img = np.zeros((2, 2, 3), np.uint8)
    img[0, 0] = (200, 30, 30)
    img[1, 1] = (128, 128, 128)
    out = hue_rotate(img, 1 / 3)
    assert out[0, 0, 1] > out[0, 0, 0] and np.array_equal(out[1, 1], img[1, 1])


def test_surfaces_tile_seamlessly():
    for kind in SURFACE_KINDS:
        img = texture_image(random_surface(np.random.default_rng(2), (kind,))).astype(float)
        for axis in (0, 1):
            steps = np.abs(np.diff(img, axis=axis)).mean(axis=(1 - axis, 2))  # mean step across each boundary
            seam = np.abs(np.take(img, 0, axis=axis) - np.take(img, -1, axis=axis)).mean()
            assert seam <= steps.max() + 2, (kind, axis)  # the wrap-around is like a boundary inside the image
    n = periodic_noise(np.random.default_rng(0), 32, 32, 4)
    assert abs(n.mean()) < 1e-5 and abs(n.std() - 1) < 1e-4


def test_texture_files_are_written_once_and_removed():
    files = TextureFiles()
    d = random_design(np.random.default_rng(0), "can", (0.03, 0.03, 0.1))
    p = files.path(d)
    assert files.path(d) == p and files.root is not None and (files.root / f"{d.key()}.png").is_file()
    root = files.root
    files.cleanup()
    assert not root.exists()
