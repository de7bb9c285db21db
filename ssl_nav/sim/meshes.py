"""Procedural meshes with texture coordinates: product boxes, cans, bottles, books, plates, pens, dice.

Each function returns a :class:`Mesh` in metres, standing on ``z = 0`` and centred on the z axis, with
outward normals and counter-clockwise triangles seen from outside (TinyRenderer culls back faces). The UVs
follow the layouts that :mod:`ssl_nav.sim.textures` draws: the box atlas of
:func:`~ssl_nav.sim.textures.box_atlas_layout`, a label wrapped around a cylinder (``u`` around, ``v`` up),
planar UVs for plates. pybullet takes them as ``createVisualShape(GEOM_MESH, vertices=..., indices=...,
uvs=..., normals=...)``; the scene generator reads the same vertices for exact object boxes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ssl_nav.sim.textures import box_atlas_layout

MESH_KINDS = ("box", "atlas_box", "can", "bottle", "plate", "pen")


@dataclass(frozen=True)
class MeshSpec:
    """A procedural mesh: its kind and size (metres); hashable, so meshes are built once."""

    kind: str  #: one of MESH_KINDS
    #: box: (x, y, z); can, bottle, plate: (radius, radius, height); pen: (length, radius, radius)
    dims: tuple[float, float, float]

    def build(self) -> "Mesh":
        return build_mesh(self)


@dataclass(frozen=True)
class Mesh:
    vertices: np.ndarray  #: (N, 3)
    indices: np.ndarray  #: (3M,) int
    uvs: np.ndarray  #: (N, 2)
    normals: np.ndarray  #: (N, 3)

    @property
    def n_triangles(self) -> int:
        return len(self.indices) // 3


class _Builder:
    def __init__(self) -> None:
        self.v: list = []
        self.uv: list = []
        self.n: list = []
        self.i: list = []

    def vert(self, p, uv, n) -> int:
        self.v.append(p)
        self.uv.append(uv)
        self.n.append(n)
        return len(self.v) - 1

    def quad(self, ps, uvs, n) -> None:
        """Four corners counter-clockwise seen from outside (along ``n``)."""
        k = [self.vert(p, t, n) for p, t in zip(ps, uvs)]
        self.i += [k[0], k[1], k[2], k[0], k[2], k[3]]

    def mesh(self) -> Mesh:
        return Mesh(np.asarray(self.v, np.float64), np.asarray(self.i, np.int64), np.asarray(self.uv, np.float64),
                    np.asarray(self.n, np.float64))


def box_mesh(a: float, b: float, c: float, atlas: bool = True) -> Mesh:
    """A box a (x) by b (y) by c (z) on z = 0; ``atlas``: the packaging atlas UVs, else each face [0, 1]^2."""
    B = _Builder()
    x0, x1, y0, y1 = -a / 2, a / 2, -b / 2, b / 2
    lay = box_atlas_layout((a, b, c)) if atlas else None

    def uvq(face: str) -> list:
        if lay is None:
            return [(0, 0), (1, 0), (1, 1), (0, 1)]
        u0, v0, u1, v1 = lay[face]
        return [(u0, v0), (u1, v0), (u1, v1), (u0, v1)]

    # each face: bottom-left, bottom-right, top-right, top-left as seen from outside
    B.quad([(x0, y0, 0), (x1, y0, 0), (x1, y0, c), (x0, y0, c)], uvq("front"), (0, -1, 0))
    B.quad([(x1, y0, 0), (x1, y1, 0), (x1, y1, c), (x1, y0, c)], uvq("right"), (1, 0, 0))
    B.quad([(x1, y1, 0), (x0, y1, 0), (x0, y1, c), (x1, y1, c)], uvq("back"), (0, 1, 0))
    B.quad([(x0, y1, 0), (x0, y0, 0), (x0, y0, c), (x0, y1, c)], uvq("left"), (-1, 0, 0))
    B.quad([(x0, y0, c), (x1, y0, c), (x1, y1, c), (x0, y1, c)], uvq("top"), (0, 0, 1))
    B.quad([(x0, y1, 0), (x1, y1, 0), (x1, y0, 0), (x0, y0, 0)], uvq("bottom"), (0, 0, -1))
    return B.mesh()


def lathe_mesh(profile: list[tuple[float, float]], segments: int, cap_uv_top: tuple[float, float],
               cap_uv_bottom: tuple[float, float], height: float) -> Mesh:
    """A surface of revolution of ``profile`` = [(radius, z), ...] bottom to top; ``u`` around, ``v = z / height``.

    Closed by flat caps where the first/last radius is positive; cap vertices sample one texel of the label.
    """
    B = _Builder()
    prof = np.asarray(profile, np.float64)
    ang = np.linspace(0.0, 2 * math.pi, segments + 1)
    # profile normals from the slope (dr, dz) -> outward (dz, -dr)
    d = np.gradient(prof, axis=0)
    nr, nz = d[:, 1], -d[:, 0]
    ln = np.hypot(nr, nz)
    ln[ln == 0] = 1
    nr, nz = nr / ln, nz / ln
    rows = []
    for (r, z), a_r, a_z in zip(prof, nr, nz):
        row = [B.vert((r * math.cos(t), r * math.sin(t), z), (t / (2 * math.pi), z / height),
                      (a_r * math.cos(t), a_r * math.sin(t), a_z)) for t in ang]
        rows.append(row)
    for lo, hi in zip(rows[:-1], rows[1:]):
        for k in range(segments):
            a, b2, c, d2 = lo[k], lo[k + 1], hi[k + 1], hi[k]
            B.i += [a, b2, c, a, c, d2]
    for (r, z), up, uv in ((prof[0], False, cap_uv_bottom), (prof[-1], True, cap_uv_top)):
        if r <= 0:
            continue
        n = (0, 0, 1) if up else (0, 0, -1)
        centre = B.vert((0, 0, z), uv, n)
        ring = [B.vert((r * math.cos(t), r * math.sin(t), z), uv, n) for t in ang]
        for k in range(segments):
            B.i += [centre, ring[k], ring[k + 1]] if up else [centre, ring[k + 1], ring[k]]
    return B.mesh()


def can_mesh(r: float, h: float, segments: int = 28) -> Mesh:
    """A can: a cylinder with the label over its whole height; the lids sample the rim colour."""
    return lathe_mesh([(r, 0.0), (r, h)], segments, (0.25, 0.995), (0.25, 0.005), h)


def bottle_mesh(r: float, h: float, segments: int = 24) -> Mesh:
    """A bottle: body to 58 % of the height, a rounded shoulder, a neck and a slightly wider cap."""
    prof = [(r * 0.92, 0.0), (r, 0.02 * h), (r, 0.58 * h)]
    for k in range(1, 6):  # shoulder
        t = k / 6
        prof.append((r * (1 - 0.62 * math.sin(t * math.pi / 2)), h * (0.58 + 0.2 * t)))
    prof += [(r * 0.36, 0.8 * h), (r * 0.36, 0.9 * h), (r * 0.42, 0.9 * h), (r * 0.42, h)]
    return lathe_mesh(prof, segments, (0.5, 0.99), (0.5, 0.3), h)


def plate_mesh(r: float, h: float, segments: int = 32) -> Mesh:
    """A plate or coaster: a flat cylinder with planar UVs on its top (centre of the texture at the middle)."""
    B = _Builder()
    ang = np.linspace(0.0, 2 * math.pi, segments + 1)
    lo = [B.vert((r * math.cos(t), r * math.sin(t), 0.0), (0.5, 0.02), (math.cos(t), math.sin(t), 0)) for t in ang]
    hi = [B.vert((r * math.cos(t), r * math.sin(t), h), (0.5, 0.02), (math.cos(t), math.sin(t), 0)) for t in ang]
    for k in range(segments):
        B.i += [lo[k], lo[k + 1], hi[k + 1], lo[k], hi[k + 1], hi[k]]
    for z, up in ((h, True), (0.0, False)):
        n = (0, 0, 1) if up else (0, 0, -1)
        centre = B.vert((0, 0, z), (0.5, 0.5), n)
        ring = [B.vert((r * math.cos(t), r * math.sin(t), z), (0.5 + 0.5 * math.cos(t), 0.5 + 0.5 * math.sin(t)), n)
                for t in ang]
        for k in range(segments):
            B.i += [centre, ring[k], ring[k + 1]] if up else [centre, ring[k + 1], ring[k]]
    return B.mesh()


def pen_mesh(length: float, r: float, segments: int = 12) -> Mesh:
    """A pen lying along x on z = 0: a cylinder of radius ``r`` (texture wraps around it)."""
    m = lathe_mesh([(r, 0.0), (r, length)], segments, (0.5, 0.5), (0.5, 0.5), length)
    # the lathe stands along z; lay it down along x, resting on z = 0
    R = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    v = m.vertices @ R.T
    v += np.array([-length / 2, 0.0, r])
    return Mesh(v, m.indices, m.uvs, m.normals @ R.T)


@functools.lru_cache(maxsize=256)
def build_mesh(spec: MeshSpec) -> Mesh:
    """The mesh of a :class:`MeshSpec` (cached)."""
    a, b, c = spec.dims
    if spec.kind == "atlas_box":
        return box_mesh(a, b, c, atlas=True)
    if spec.kind == "box":
        return box_mesh(a, b, c, atlas=False)
    if spec.kind == "can":
        return can_mesh(a, c)
    if spec.kind == "bottle":
        return bottle_mesh(a, c)
    if spec.kind == "plate":
        return plate_mesh(a, c)
    if spec.kind == "pen":
        return pen_mesh(a, b)
    raise ValueError(f"unknown mesh kind {spec.kind!r}; one of {MESH_KINDS}")
