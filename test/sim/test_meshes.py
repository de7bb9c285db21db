"""Procedural meshes: closed, outward-facing, UVs inside the texture, standing on z = 0."""

from __future__ import annotations

import numpy as np
import pytest

from ssl_nav.sim.meshes import MeshSpec
from ssl_nav.sim.textures import box_atlas_layout


@pytest.mark.parametrize("spec", [MeshSpec("atlas_box", (0.2, 0.07, 0.3)), MeshSpec("box", (0.05, 0.02, 0.01)),
                                  MeshSpec("can", (0.033, 0.033, 0.12)), MeshSpec("bottle", (0.035, 0.035, 0.22)),
                                  MeshSpec("plate", (0.1, 0.1, 0.02)), MeshSpec("pen", (0.14, 0.006, 0.006))])
def test_meshes_face_outwards_and_stand_on_the_floor(spec):
    m = spec.build()
    v = m.vertices
    assert v[:, 2].min() == pytest.approx(0.0, abs=1e-9)
    assert np.all(m.uvs >= -1e-9) and np.all(m.uvs <= 1 + 1e-9)
    tri = v[m.indices.reshape(-1, 3)]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = np.linalg.norm(n, axis=1)
    # counter-clockwise seen from outside (TinyRenderer culls the rest): the winding agrees with the normals
    normals = m.normals[m.indices.reshape(-1, 3)].sum(1)
    assert np.all(np.einsum("kd,kd->k", n, normals)[area > 1e-12] > 0)
    if spec.kind != "bottle":  # convex: every face also points away from the centre
        centre = (v.min(0) + v.max(0)) / 2
        assert np.all(np.einsum("kd,kd->k", n, tri.mean(1) - centre)[area > 1e-12] > 0)
    ext = v.max(0) - v.min(0)
    dims = np.array(spec.dims)
    if spec.kind in ("box", "atlas_box"):
        assert np.allclose(ext, dims)
    elif spec.kind == "pen":
        assert ext[0] == pytest.approx(dims[0]) and ext[2] == pytest.approx(2 * dims[1])
    else:
        assert ext[2] == pytest.approx(dims[2]) and ext[0] == pytest.approx(2 * dims[0], rel=0.02)


def test_box_atlas_keeps_face_proportions_without_overlap():
    a, b, c = 0.2, 0.07, 0.3
    lay = box_atlas_layout((a, b, c))
    wm, hm = 2 * a + 2 * b, c + b
    for face, (w, h) in {"front": (a, c), "right": (b, c), "back": (a, c), "left": (b, c), "top": (a, b)}.items():
        u0, v0, u1, v1 = lay[face]
        assert (u1 - u0) * wm == pytest.approx(w) and (v1 - v0) * hm == pytest.approx(h)
    rects = list(lay.values())
    for i, r in enumerate(rects):
        for s in rects[i + 1:]:
            assert r[2] <= s[0] + 1e-9 or s[2] <= r[0] + 1e-9 or r[3] <= s[1] + 1e-9 or s[3] <= r[1] + 1e-9
