"""Procedural rooms for the embedded pybullet simulator, generated from a seed.

:func:`build_scene_spec` turns a seed and a :class:`~ssl_nav.config.SimConfig` into a :class:`SceneSpec`:

- a room (floor, walls, ceiling) with procedural materials (wood planks, tiles, carpet, paint, wallpaper;
  :mod:`ssl_nav.sim.textures`), support furniture (tables and shelves built from boxes);
- goal objects: ``pybullet_data`` meshes (textured models such as the duck, the teddy, the mug, the textured
  cube and ball, and the ``random_urdfs`` shapes) and, with ``sim.n_products``, product packages (boxes, cans,
  bottles of :mod:`ssl_nav.sim.meshes` with printed labels);
- **twins**: look-alikes of goal objects placed elsewhere in the room (hard negatives, in the spirit of the
  look-alike distractors of CrossIA, Sakaguchi et al. 2024): the same mesh recoloured or retextured, or a
  near-identical product that differs in one detail (colour band, variant text, logo);
- distractors, and with ``sim.hard_cases`` the segmentation hard cases: objects touching goal objects, clutter
  on one table, thin and flat objects, small objects, objects stacked on others;
- the **open set**, placed only while their own goal images render: unrelated objects, and with
  ``sim.n_lookalikes`` look-alikes of goal objects that are *not* in the map; a disjoint second open set
  (and its look-alikes) for the calibration split;
- the scene lighting.

The spec is plain numpy and needs no pybullet: object boxes are computed exactly from the mesh vertices, so
tests and the backend read the same facts. Every random choice comes from ``numpy.random.default_rng([seed,
stream])``; the features added after the first version (products, look-alikes, hard cases, calibration) draw
from their own streams, so that turning them off leaves the other objects where they were.
"""

from __future__ import annotations

import colorsys
import copy
import functools
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace

import numpy as np

from ssl_nav.config import SimConfig
from ssl_nav.errors import ConfigError, DependencyError
from ssl_nav.sim.data import data_path
from ssl_nav.sim.meshes import MeshSpec
from ssl_nav.sim.textures import (VARIANT_DETAILS, DataTexture, PackagingDesign, SurfaceTexture, Texture,
                                  near_identical, random_design, random_surface)

ROLES = ("object", "twin", "distractor", "open_set")
HARD_CASES = ("touching", "clutter", "thin_flat", "small", "stacked", "on_solid_furniture")


# ---------------------------------------------------------------- model catalogue

@dataclass(frozen=True)
class ModelSpec:
    """One mesh (of ``pybullet_data``, or procedural) and how to stand it upright.

    ``rpy`` turns the mesh into the z-up frame; ``aspect`` multiplies the mesh scale per axis; ``rgba`` is its
    own colour (``None`` for textured models, which keep their texture); ``texture`` is drawn over the mesh's
    UVs; ``procedural`` builds the mesh (:mod:`ssl_nav.sim.meshes`) instead of reading ``mesh``.
    """

    category: str
    mesh: str  #: path relative to pybullet_data, or ``procedural/<kind>``
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)
    aspect: tuple[float, float, float] = (1.0, 1.0, 1.0)
    rgba: tuple[float, float, float, float] | None = None
    textured: bool = False
    texture: Texture | None = None
    procedural: MeshSpec | None = None


_HALF_PI = math.pi / 2
#: Named models: the textured or recognisable meshes of pybullet_data.
NAMED_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("duck", "duck.obj", rpy=(_HALF_PI, 0, 0), textured=True),
    ModelSpec("teddy", "teddy2_VHACD_CHs.obj", rpy=(_HALF_PI, 0, 0), rgba=(0.62, 0.42, 0.25, 1)),
    ModelSpec("mug", "objects/mug.obj", rgba=(0.85, 0.2, 0.2, 1)),
    ModelSpec("lego", "lego/lego.obj", rpy=(_HALF_PI, 0, 0), rgba=(1.0, 0.85, 0.2, 1)),
    ModelSpec("wood_block", "jenga/jenga.obj", aspect=(1.0, 0.34, 0.2), textured=True),
    ModelSpec("soccer_ball", "soccerball.obj", textured=True),
    ModelSpec("torus", "torus/torus_textured.obj", rpy=(_HALF_PI, 0, 0), textured=True),
    ModelSpec("bunny", "bunny.obj", rgba=(0.9, 0.88, 0.8, 1)),
    ModelSpec("checker_cube", "cube.obj", textured=True, texture=DataTexture("checker_blue.png")),
    ModelSpec("uv_cube", "cube.obj", aspect=(1.0, 1.0, 0.6), textured=True, texture=DataTexture("uvmap.png")),
    ModelSpec("checker_ball", "textured_sphere_smooth.obj", textured=True),
    ModelSpec("shape_sorter", "toys/shape_sorter.obj", rgba=(0.2, 0.55, 0.9, 1)),
    ModelSpec("toy_cylinder", "toys/cylinder.obj", rgba=(0.1, 0.7, 0.4, 1)),
)
#: Models used only as distractors (never goals).
DISTRACTOR_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("tray", "tray/tray_textured2.obj", textured=True),
    ModelSpec("toy_prism", "toys/prism.obj", rgba=(0.7, 0.7, 0.7, 1)),
    ModelSpec("flat_box", "toys/concave_box.obj", aspect=(1.0, 1.0, 1.5), rgba=(0.6, 0.6, 0.55, 1)),
)
N_RANDOM_SHAPES = 1000


@dataclass(frozen=True)
class ProductKind:
    """A kind of procedural object: category, mesh kind, label layout and the range of its size (metres)."""

    category: str
    mesh: str  #: :data:`ssl_nav.sim.meshes.MESH_KINDS`
    layout: str  #: :data:`ssl_nav.sim.textures.PACKAGE_LAYOUTS`, or ``wood``
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]


#: grocery and household packages (goal objects with ``sim.n_products``)
PRODUCT_KINDS: tuple[ProductKind, ...] = (
    ProductKind("cereal_box", "atlas_box", "box", (0.18, 0.06, 0.26), (0.23, 0.08, 0.32)),
    ProductKind("tea_box", "atlas_box", "box", (0.13, 0.07, 0.07), (0.16, 0.09, 0.09)),
    ProductKind("juice_carton", "atlas_box", "box", (0.07, 0.07, 0.19), (0.095, 0.095, 0.25)),
    ProductKind("cracker_box", "atlas_box", "box", (0.18, 0.05, 0.13), (0.24, 0.07, 0.17)),
    ProductKind("soda_can", "can", "can", (0.033, 0.033, 0.115), (0.034, 0.034, 0.125)),
    ProductKind("soup_can", "can", "can", (0.037, 0.037, 0.095), (0.042, 0.042, 0.11)),
    ProductKind("coffee_tin", "can", "can", (0.05, 0.05, 0.13), (0.06, 0.06, 0.16)),
    ProductKind("water_bottle", "bottle", "bottle", (0.032, 0.032, 0.2), (0.04, 0.04, 0.25)),
    ProductKind("shampoo_bottle", "bottle", "bottle", (0.035, 0.035, 0.17), (0.045, 0.045, 0.21)),
    ProductKind("sauce_bottle", "bottle", "bottle", (0.028, 0.028, 0.16), (0.035, 0.035, 0.2)),
)
#: thin and flat objects (segmentation hard cases): they barely rise above their support in depth
THIN_FLAT_KINDS: tuple[ProductKind, ...] = (
    ProductKind("book", "atlas_box", "book", (0.15, 0.1, 0.015), (0.24, 0.17, 0.04)),
    ProductKind("plate", "plate", "plate", (0.09, 0.09, 0.012), (0.13, 0.13, 0.02)),
    ProductKind("card", "box", "plain", (0.085, 0.054, 0.002), (0.09, 0.058, 0.003)),
    ProductKind("cutting_board", "box", "wood", (0.25, 0.15, 0.012), (0.35, 0.22, 0.02)),
    ProductKind("placemat", "box", "plain", (0.3, 0.22, 0.003), (0.42, 0.3, 0.005)),
    ProductKind("pen", "pen", "plain", (0.13, 0.005, 0.005), (0.15, 0.006, 0.006)),
)
#: small objects (segmentation hard cases); scaled to ``sim.hard_small_size_min..max``
SMALL_KINDS: tuple[ProductKind, ...] = (
    ProductKind("die", "box", "plain", (0.02, 0.02, 0.02), (0.02, 0.02, 0.02)),
    ProductKind("battery", "can", "can", (0.007, 0.007, 0.05), (0.007, 0.007, 0.05)),
    ProductKind("matchbox", "atlas_box", "box", (0.05, 0.035, 0.015), (0.055, 0.037, 0.017)),
    ProductKind("eraser", "box", "plain", (0.05, 0.02, 0.012), (0.06, 0.025, 0.014)),
    ProductKind("lip_balm", "can", "can", (0.008, 0.008, 0.07), (0.009, 0.009, 0.075)),
    ProductKind("bottle_cap", "plate", "plate", (0.015, 0.015, 0.012), (0.016, 0.016, 0.014)),
)


def product_model(rng: np.random.Generator, kind: ProductKind) -> ModelSpec:
    """A new product of ``kind``: random size within its range, a new label design."""
    dims = [float(rng.uniform(a, b)) for a, b in zip(kind.lo, kind.hi)]
    if kind.mesh in ("can", "bottle", "plate"):
        dims[1] = dims[0]
    dims = tuple(round(d, 4) for d in dims)
    if kind.layout == "wood":
        tex: Texture = SurfaceTexture("wood", (178, 128, 80), int(rng.integers(0, 2**31 - 1)), 1.0, size=256)
    else:
        tex = random_design(rng, kind.layout, dims)  # type: ignore[arg-type]
    return ModelSpec(kind.category, f"procedural/{kind.mesh}", textured=True, texture=tex,
                     procedural=MeshSpec(kind.mesh, dims))  # type: ignore[arg-type]


def random_shape_model(k: int) -> ModelSpec:
    """``random_urdfs/NNN/NNN.obj`` with the colour its URDF gives it; category ``random_shape_NNN``."""
    rel = f"random_urdfs/{k:03d}/{k:03d}.urdf"
    rgba = (0.6, 0.6, 0.6, 1.0)
    try:
        color = ET.parse(data_path() / rel).find(".//visual/material/color")
        if color is not None:
            rgba = tuple(float(x) for x in color.get("rgba").split())  # type: ignore[assignment]
    except (ET.ParseError, OSError, AttributeError, ValueError):
        pass
    return ModelSpec(f"random_shape_{k:03d}", f"random_urdfs/{k:03d}/{k:03d}.obj", rgba=rgba)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=256)
def _mesh_vertices_all(mesh: str) -> np.ndarray:
    path = data_path() / mesh
    try:
        with open(path) as fh:
            v = np.asarray([[float(x) for x in line.split()[1:4]] for line in fh if line.startswith("v ")])
    except OSError as e:
        raise DependencyError(f"{path}: cannot read mesh ({e.strerror})") from None
    if v.size == 0:
        raise DependencyError(f"{path}: mesh has no vertices")
    return v


def model_vertices(model: ModelSpec) -> np.ndarray:
    """The model's mesh vertices at scale 1, before ``rpy`` (procedural meshes are built, OBJ files read)."""
    if model.procedural is not None:
        return model.procedural.build().vertices
    return _mesh_vertices_all(model.mesh)


def rpy_matrix(rpy: tuple[float, float, float]) -> np.ndarray:
    """Rotation of fixed-axis roll, pitch, yaw (the URDF / pybullet convention: R = Rz(y) Ry(p) Rx(r))."""
    r, p, y = rpy
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    Rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    Ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    Rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def yaw_matrix(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def model_points(model: ModelSpec, mesh_scale: np.ndarray, yaw: float) -> np.ndarray:
    """Mesh vertices scaled, stood upright and turned by ``yaw``, relative to the body origin."""
    v = model_vertices(model) * mesh_scale
    return v @ (yaw_matrix(yaw) @ rpy_matrix(model.rpy)).T


def unit_extent(model: ModelSpec) -> np.ndarray:
    """Extent (x, y, z) of the upright mesh at scale 1 (with its aspect)."""
    v = model_vertices(model) * np.asarray(model.aspect)
    v = v @ rpy_matrix(model.rpy).T
    return v.max(0) - v.min(0)


# ---------------------------------------------------------------- scene description

@dataclass
class BoxPart:
    """A static box of the room or of a piece of furniture (mask id 0)."""

    name: str
    center: np.ndarray  #: (3,)
    half_extents: np.ndarray  #: (3,)
    rgba: tuple[float, float, float, float]
    texture: Texture | None = None


@dataclass
class Support:
    """A horizontal rectangle objects can rest on (floor, table top, shelf board, the top of an object)."""

    name: str
    xmin: float
    xmax: float
    ymin: float
    ymax: float
    z: float
    clearance: float  #: free height above the surface


@dataclass
class PlacedObject:
    """An object instance: its model, colour, scale, pose and exact world box."""

    instance_id: int
    role: str  #: object | twin | distractor | open_set
    model: ModelSpec
    mesh_scale: np.ndarray  #: (3,) scale passed to pybullet
    yaw: float
    position: np.ndarray  #: (3,) body origin in the world
    rgba: tuple[float, float, float, float]
    texture: Texture | None  #: texture over the mesh (the model's, or a look-alike's replacement)
    aabb_min: np.ndarray
    aabb_max: np.ndarray
    support: str
    twin_of: int | None = None
    lookalike_of: int | None = None  #: open-set look-alike: the goal object it resembles
    lookalike: str | None = None  #: how it differs: recolour, retexture, variant:band|variant|logo
    hard_case: str | None = None  #: one of HARD_CASES
    touching: list[int] = field(default_factory=list)  #: ids of objects whose footprint it touches

    @property
    def category(self) -> str:
        return self.model.category

    @property
    def orientation_matrix(self) -> np.ndarray:
        return yaw_matrix(self.yaw)

    def to_json(self) -> dict:
        tex = self.texture
        d = {"instance_id": self.instance_id, "category": self.category, "role": self.role,
             "model": self.model.mesh, "support": self.support, "yaw": round(self.yaw, 6),
             "position": np.round(self.position, 6).tolist(), "rgba": [round(c, 4) for c in self.rgba],
             "texture": None if tex is None else tex.key(),
             "aabb": [np.round(self.aabb_min, 6).tolist(), np.round(self.aabb_max, 6).tolist()]}
        if isinstance(tex, PackagingDesign):
            d["design"] = {k: v for k, v in tex.to_json().items() if k not in ("seed", "max_px", "key")}
        if self.model.procedural is not None:
            d["mesh_dims"] = list(self.model.procedural.dims)
        for k in ("twin_of", "lookalike_of", "lookalike", "hard_case"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.touching:
            d["touching"] = sorted(self.touching)
        return d


@dataclass
class Lighting:
    """Arguments of ``pybullet.getCameraImage`` that light the TinyRenderer image."""

    direction: tuple[float, float, float]
    color: tuple[float, float, float]
    ambient: float
    diffuse: float
    specular: float

    def to_json(self) -> dict:
        return {"direction": list(self.direction), "color": list(self.color), "ambient": self.ambient,
                "diffuse": self.diffuse, "specular": self.specular}


SHELL_PARTS = ("wall_xmin", "wall_xmax", "wall_ymin", "wall_ymax", "floor", "ceiling")


@dataclass
class SceneSpec:
    """Everything the backend needs to build a scene, and the ground truth the tests check."""

    seed: int
    scene_id: str
    room_min: np.ndarray  #: (2,) inner xy corner
    room_max: np.ndarray  #: (2,)
    wall_height: float
    camera_height: float
    parts: list[BoxPart]  #: the room shell (SHELL_PARTS) and the furniture
    footprints: list[tuple[float, float, float, float]]  #: furniture xy rectangles (xmin, xmax, ymin, ymax)
    furniture_tops: list[float]  #: top height of each footprint's furniture (m)
    supports: list[Support]
    objects: list[PlacedObject]  #: mapped scene objects (ids 1..N)
    open_set: list[PlacedObject]  #: placed only while rendering their goal images (ids N+1..)
    lighting: Lighting
    calibration_open_set: list[PlacedObject] = field(default_factory=list)  #: the calibration split's open set
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"room": {"min": self.room_min.tolist(), "max": self.room_max.tolist(), "wall_height": self.wall_height,
                         "materials": {p.name: None if p.texture is None else p.texture.key()
                                       for p in self.parts if p.name in SHELL_PARTS}},
                "camera_height": self.camera_height, "lighting": self.lighting.to_json(),
                "furniture": [{"rect": list(f), "top": t} for f, t in zip(self.footprints, self.furniture_tops)]}

    def all_objects(self) -> list[PlacedObject]:
        return self.objects + self.open_set + self.calibration_open_set


def random_lighting(rng: np.random.Generator, strength: float = 1.0) -> Lighting:
    """A random key light: direction from above, warm to cool colour, ambient/diffuse balance."""
    az = rng.uniform(0, 2 * math.pi)
    el = rng.uniform(math.radians(35), math.radians(80))
    warm = rng.uniform(-1, 1)
    color = (1.0, float(np.clip(0.95 + 0.05 * warm, 0, 1)), float(np.clip(0.9 - 0.1 * warm, 0, 1)))
    return Lighting(direction=(math.cos(az) * math.cos(el), math.sin(az) * math.cos(el), math.sin(el)),
                    color=tuple(round(c, 4) for c in color),  # type: ignore[arg-type]
                    ambient=round(float(rng.uniform(0.45, 0.7)) * strength, 4),
                    diffuse=round(float(rng.uniform(0.35, 0.6)) * strength, 4),
                    specular=round(float(rng.uniform(0.0, 0.3)), 4))


def _rgba_hsv(h: float, s: float, v: float) -> tuple[float, float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (round(r, 4), round(g, 4), round(b, 4), 1.0)


WALL_MATERIALS = ("paint", "paint", "paint", "wallpaper", "tiles", "concrete")
FLOOR_MATERIALS = ("wood", "wood", "tiles", "carpet", "concrete")
FURNITURE_TEXTURES = (None, "wood", "wood")
TWIN_TEXTURES = ("tex256.png", "uvmap.png", "checker_blue.png", "table/table.png", "jenga/jenga.png")


def _rect_overlap(a: tuple, b: tuple, margin: float = 0.0) -> bool:
    return not (a[1] + margin <= b[0] or b[1] + margin <= a[0] or a[3] + margin <= b[2] or b[3] + margin <= a[2])


def _build_room(rng: np.random.Generator, cfg: SimConfig) -> tuple[np.ndarray, np.ndarray, float, list[BoxPart]]:
    w = float(rng.uniform(cfg.room_size_min, cfg.room_size_max))
    d = float(rng.uniform(cfg.room_size_min, cfg.room_size_max))
    lo, hi = np.array([-w / 2, -d / 2]), np.array([w / 2, d / 2])
    H, t = 2.6, 0.1
    parts = []
    floor_tex = random_surface(rng, FLOOR_MATERIALS, tile_m=(0.9, 1.8))
    parts.append(BoxPart("floor", np.array([0, 0, -t / 2]), np.array([w / 2 + t, d / 2 + t, t / 2]),
                         (1.0, 1.0, 1.0, 1.0), floor_tex))
    parts.append(BoxPart("ceiling", np.array([0, 0, H + t / 2]), np.array([w / 2 + t, d / 2 + t, t / 2]),
                         _rgba_hsv(0.1, 0.03, 0.95)))
    base_h = float(rng.uniform(0, 1))
    main = random_surface(rng, WALL_MATERIALS, hue=base_h)
    for name, c, he in (("wall_xmin", [lo[0] - t / 2, 0, H / 2], [t / 2, d / 2 + t, H / 2]),
                        ("wall_xmax", [hi[0] + t / 2, 0, H / 2], [t / 2, d / 2 + t, H / 2]),
                        ("wall_ymin", [0, lo[1] - t / 2, H / 2], [w / 2 + t, t / 2, H / 2]),
                        ("wall_ymax", [0, hi[1] + t / 2, H / 2], [w / 2 + t, t / 2, H / 2])):
        # most walls share the room's material; some get an accent material
        tex = main if rng.uniform() < 0.7 else random_surface(rng, WALL_MATERIALS,
                                                                hue=base_h + float(rng.uniform(-0.15, 0.15)))
        parts.append(BoxPart(name, np.array(c, float), np.array(he, float), (1.0, 1.0, 1.0, 1.0), tex))
    return lo, hi, H, parts


def _place_furniture(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray
                     ) -> tuple[list[BoxPart], list[tuple], list[float], list[Support]]:
    """Tables and shelves against the walls, leaving the middle of the room free."""
    parts: list[BoxPart] = []
    footprints: list[tuple] = []
    tops: list[float] = []
    supports: list[Support] = []
    kinds = ["table"] * int(rng.integers(2, 4)) + ["shelf"] * int(rng.integers(1, 3))
    for i, kind in enumerate(kinds):
        if kind == "table":
            sx, sy, h = rng.uniform(0.9, 1.4), rng.uniform(0.6, 0.85), rng.uniform(0.68, 0.8)
        else:
            sx, sy, h = rng.uniform(0.8, 1.2), 0.38, 1.55
        for _ in range(50):
            side = int(rng.integers(4))  # 0: xmin wall, 1: xmax, 2: ymin, 3: ymax
            along_x = side >= 2
            if along_x:
                fx, fy = sx, sy
                cx = rng.uniform(lo[0] + fx / 2 + 0.05, hi[0] - fx / 2 - 0.05)
                gap = rng.uniform(0.02, 0.3) if kind == "table" else 0.02
                cy = lo[1] + gap + fy / 2 if side == 2 else hi[1] - gap - fy / 2
            else:
                fx, fy = sy, sx
                cy = rng.uniform(lo[1] + fy / 2 + 0.05, hi[1] - fy / 2 - 0.05)
                gap = rng.uniform(0.02, 0.3) if kind == "table" else 0.02
                cx = lo[0] + gap + fx / 2 if side == 0 else hi[0] - gap - fx / 2
            rect = (cx - fx / 2, cx + fx / 2, cy - fy / 2, cy + fy / 2)
            if not any(_rect_overlap(rect, r, margin=0.5) for r in footprints):
                break
        else:
            continue
        footprints.append(rect)
        tops.append(float(h))
        material = FURNITURE_TEXTURES[rng.integers(len(FURNITURE_TEXTURES))]
        tex = None if material is None else random_surface(rng, (material,), tile_m=(1.0, 1.0))
        rgba = _rgba_hsv(rng.uniform(0.05, 0.12), rng.uniform(0.2, 0.6), rng.uniform(0.35, 0.8)) if tex is None \
            else (1.0, 1.0, 1.0, 1.0)
        name = f"{kind}_{i}"
        if kind == "table":
            top = 0.04
            parts.append(BoxPart(f"{name}_top", np.array([cx, cy, h - top / 2]), np.array([fx / 2, fy / 2, top / 2]),
                                 rgba, tex))
            leg = 0.05
            for sx_, sy_ in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
                parts.append(BoxPart(f"{name}_leg", np.array([cx + sx_ * (fx / 2 - leg), cy + sy_ * (fy / 2 - leg),
                                                             (h - top) / 2]),
                                     np.array([leg / 2, leg / 2, (h - top) / 2]), rgba, None))
            supports.append(Support(name, rect[0] + 0.05, rect[1] - 0.05, rect[2] + 0.05, rect[3] - 0.05, h, 1.0))
        else:
            board, boards = 0.03, (0.1, 0.6, 1.1)
            panel = 0.03
            in_x = fx > fy  # the shelf's long side
            for z in boards + (h,):
                parts.append(BoxPart(f"{name}_board", np.array([cx, cy, z - board / 2]),
                                     np.array([fx / 2, fy / 2, board / 2]), rgba, tex))
            for s in (-1, 1):
                off = np.array([s * (fx / 2 - panel / 2), 0, 0]) if in_x else np.array([0, s * (fy / 2 - panel / 2), 0])
                he = np.array([panel / 2, fy / 2, h / 2]) if in_x else np.array([fx / 2, panel / 2, h / 2])
                parts.append(BoxPart(f"{name}_side", np.array([cx, cy, h / 2]) + off, he, rgba, None))
            for k, z in enumerate(boards):
                clear = (boards[k + 1] if k + 1 < len(boards) else h) - z - board - 0.04
                m = panel + 0.03
                supports.append(Support(f"{name}_board{k}", rect[0] + (m if in_x else 0.03), rect[1] - (m if in_x else 0.03),
                                        rect[2] + (0.03 if in_x else m), rect[3] - (0.03 if in_x else m), z, clear))
    return parts, footprints, tops, supports


def _choose_models(rng: np.random.Generator, n: int, exclude: set[str]) -> list[ModelSpec]:
    """``n`` distinct models: about half named (textured) models, the rest random_urdfs shapes."""
    named = [m for m in NAMED_MODELS if m.category not in exclude]
    n_named = min(len(named), int(round(n * 0.5)))
    picks = [named[i] for i in rng.permutation(len(named))[:n_named]]
    shapes = [k for k in rng.permutation(N_RANDOM_SHAPES) if f"random_shape_{k:03d}" not in exclude]
    picks += [random_shape_model(int(k)) for k in shapes[: n - n_named]]
    return picks


def _place(rng: np.random.Generator, model: ModelSpec, size: float, supports: list[Support], weights: np.ndarray,
           taken: dict[str, list[tuple]], footprints: list[tuple], avoid_support: str | None = None,
           max_tries: int = 200, margin: float = 0.06
           ) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray, str] | None:
    """Rest a model on a random support without overlapping what is there; returns its pose and box."""
    ext = unit_extent(model)
    scale = size / ext.max()
    mesh_scale = scale * np.asarray(model.aspect)
    for _ in range(max_tries):
        w = weights.copy()
        if avoid_support is not None:
            w[[s.name == avoid_support for s in supports]] = 0
        if w.sum() <= 0:
            return None
        s = supports[int(rng.choice(len(supports), p=w / w.sum()))]
        yaw = float(rng.uniform(0, 2 * math.pi))
        pts = model_points(model, mesh_scale, yaw)
        pmin, pmax = pts.min(0), pts.max(0)
        if pmax[2] - pmin[2] > s.clearance:
            continue
        half = (pmax[:2] - pmin[:2]) / 2
        if s.xmax - s.xmin < 2 * half[0] or s.ymax - s.ymin < 2 * half[1]:
            continue
        cx = rng.uniform(s.xmin + half[0], s.xmax - half[0])
        cy = rng.uniform(s.ymin + half[1], s.ymax - half[1])
        rect = (cx - half[0], cx + half[0], cy - half[1], cy + half[1])
        if any(_rect_overlap(rect, r, margin) for r in taken.get(s.name, [])):
            continue
        if s.name == "floor" and any(_rect_overlap(rect, r, 0.05) for r in footprints):
            continue
        position = np.array([cx - (pmin[0] + pmax[0]) / 2, cy - (pmin[1] + pmax[1]) / 2, s.z - pmin[2]])
        taken.setdefault(s.name, []).append(rect)
        return position, yaw, mesh_scale, pmin + position, pmax + position, s.name
    return None


# ---------------------------------------------------------------- touching footprints (hard cases)

def convex_hull_2d(points: np.ndarray) -> np.ndarray:
    """Counter-clockwise convex hull of 2D points (Andrew's monotone chain).

    Points strictly inside the polygon of the extreme points in eight directions are dropped first
    (Akl-Toussaint), so meshes with thousands of vertices leave a few dozen candidates.
    """
    pts = np.unique(np.round(np.asarray(points, np.float64), 9), axis=0)
    if len(pts) > 16:
        dirs = np.array([[1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1]], np.float64)
        ext = pts[np.unique(np.argmax(pts @ dirs.T, axis=0))]
        ext = ext[np.argsort(np.arctan2(*(ext - ext.mean(0)).T[::-1]))]  # counter-clockwise
        if len(ext) >= 3:
            edge = np.roll(ext, -1, axis=0) - ext
            rel = pts[:, None, :] - ext[None]
            inside = (edge[None, :, 0] * rel[..., 1] - edge[None, :, 1] * rel[..., 0] > 1e-12).all(1)
            pts = pts[~inside]
    if len(pts) < 3:
        return pts

    def half(seq: np.ndarray) -> list:
        out: list = []
        for p in seq.tolist():
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(pts[::-1])
    return np.asarray(lower[:-1] + upper[:-1])


def _segment_distances(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of each point of ``p`` (N, 2) to each segment a[k]-b[k]; (N, K)."""
    ab = b - a
    t = np.clip(np.einsum("nkd,kd->nk", p[:, None] - a[None], ab) / np.maximum((ab ** 2).sum(1), 1e-18), 0, 1)
    closest = a[None] + t[..., None] * ab[None]
    return np.linalg.norm(p[:, None] - closest, axis=-1)


def polygon_gap(P: np.ndarray, Q: np.ndarray) -> float:
    """Distance between two convex CCW polygons; 0 when they overlap (separating axis test)."""
    for A, B in ((P, Q), (Q, P)):
        edges = np.roll(A, -1, axis=0) - A
        normals = np.stack([edges[:, 1], -edges[:, 0]], 1)  # outward for CCW
        proj_a = np.einsum("kd,kd->k", normals, A)
        if np.any((B @ normals.T).min(0) >= proj_a):
            break  # a separating axis exists
    else:
        return 0.0
    d1 = _segment_distances(P, Q, np.roll(Q, -1, axis=0)).min()
    d2 = _segment_distances(Q, P, np.roll(P, -1, axis=0)).min()
    return float(min(d1, d2))


def footprint(obj: PlacedObject) -> np.ndarray:
    """The object's convex footprint on the floor plane (world xy, CCW)."""
    return convex_hull_2d((model_points(obj.model, obj.mesh_scale, obj.yaw) + obj.position)[:, :2])


def _place_touching(rng: np.random.Generator, model: ModelSpec, size: float, anchor: PlacedObject,
                    support: Support, taken: dict[str, list[tuple]], gap: float,
                    others: list[PlacedObject]) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray] | None:
    """Rest a model on ``anchor``'s support so that their footprints are ``gap`` apart (touching)."""
    scale = size / unit_extent(model).max()
    mesh_scale = scale * np.asarray(model.aspect)
    A = footprint(anchor)
    a_c = A.mean(0)
    anchor_rect = (anchor.aabb_min[0], anchor.aabb_max[0], anchor.aabb_min[1], anchor.aabb_max[1])
    for _ in range(60):
        # half the time turn it like the anchor (flush faces for boxes), else any yaw
        yaw = anchor.yaw + float(rng.integers(4)) * _HALF_PI if rng.uniform() < 0.5 \
            else float(rng.uniform(0, 2 * math.pi))
        pts = model_points(model, mesh_scale, yaw)
        if np.ptp(pts[:, 2]) > support.clearance:
            return None
        hull = convex_hull_2d(pts[:, :2])
        h_c = hull.mean(0)
        theta = float(rng.uniform(0, 2 * math.pi))
        u = np.array([math.cos(theta), math.sin(theta)])
        far = float(np.linalg.norm(A - a_c, axis=1).max() + np.linalg.norm(hull - h_c, axis=1).max() + 0.05)
        lo_s, hi_s = 0.0, far  # overlapping at 0, apart at far: bisect to the touching distance
        for _ in range(40):
            mid = (lo_s + hi_s) / 2
            if polygon_gap(A, hull - h_c + a_c + mid * u) > gap:
                hi_s = mid
            else:
                lo_s = mid
        offset = a_c + hi_s * u - h_c
        B = hull + offset
        g = polygon_gap(A, B)
        if not (0.0 < g <= gap + 1e-6):
            continue
        bmin, bmax = B.min(0), B.max(0)
        if bmin[0] < support.xmin or bmax[0] > support.xmax or bmin[1] < support.ymin or bmax[1] > support.ymax:
            continue
        rect = (bmin[0], bmax[0], bmin[1], bmax[1])
        if any(_rect_overlap(rect, r, 0.01) for r in taken.get(support.name, [])
               if not np.allclose(r, anchor_rect, atol=1e-6)):
            continue
        if any(o is not anchor and o.support == support.name and polygon_gap(footprint(o), B) <= 0.0
               for o in others):
            continue
        pmin, pmax = pts.min(0), pts.max(0)
        position = np.array([offset[0], offset[1], support.z - pmin[2]])
        taken.setdefault(support.name, []).append(rect)
        return position, yaw, mesh_scale, pmin + position, pmax + position
    return None


# ---------------------------------------------------------------- look-alikes

def _hue(rgb) -> float:
    r, g, b = (float(c) / (255.0 if max(rgb[:3]) > 1.0 else 1.0) for c in rgb[:3])
    return colorsys.rgb_to_hsv(r, g, b)[0]


def _circ(a: float, b: float) -> float:
    d = abs(a - b) % 1.0
    return min(d, 1.0 - d)


def designs_distinct(a: PackagingDesign, b: PackagingDesign, min_hue: float = 0.12) -> bool:
    """Whether two designs differ visibly in at least one detail (text, logo, band colour, overall hue)."""
    return (a.variant != b.variant or a.logo_shape != b.logo_shape or a.layout != b.layout or a.brand != b.brand
            or _circ(_hue(a.band), _hue(b.band)) >= min_hue or _circ(a.hue_shift, b.hue_shift) >= min_hue)


def _looks_distinct(rgba: tuple, tex: Texture | None, family: list[tuple[tuple, Texture | None]]) -> bool:
    for f_rgba, f_tex in family:
        if isinstance(tex, PackagingDesign) and isinstance(f_tex, PackagingDesign):
            if not designs_distinct(tex, f_tex):
                return False
        elif (tex.key() if tex else None) == (f_tex.key() if f_tex else None) \
                and float(np.linalg.norm(np.subtract(rgba[:3], f_rgba[:3]))) < 0.25:
            return False
    return True


def lookalike_appearance(rng: np.random.Generator, src: PlacedObject,
                         family: list[tuple[tuple, Texture | None]]
                         ) -> tuple[tuple[float, float, float, float], Texture | None, str]:
    """Colour, texture and kind of a new look-alike of ``src``, visibly distinct from every ``family`` member.

    Products become a near-identical product (one detail changed) or a recoloured one (hue rotated); textured
    models get another texture and tint; plain models another colour.
    """
    rgba, tex, kind = src.rgba, src.texture, "recolour"
    for _ in range(40):
        if isinstance(src.texture, PackagingDesign):
            if rng.uniform() < 0.5:
                kind = "recolour"
                tex = replace(src.texture, hue_shift=round(float(rng.uniform(0.15, 0.85)), 3))
            else:
                detail = VARIANT_DETAILS[int(rng.integers(len(VARIANT_DETAILS)))]
                kind = f"variant:{detail}"
                tex = near_identical(src.texture, detail, rng)
            rgba = src.rgba
        elif src.model.textured and rng.uniform() < 0.5:  # the same texture, tinted another colour
            kind, tex = "recolour", src.texture
            rgba = _rgba_hsv(rng.uniform(0, 1), float(rng.uniform(0.45, 0.8)), 1.0)
        elif src.model.textured:
            kind = "retexture"
            choices = [t for t in TWIN_TEXTURES if src.texture is None or t != src.texture.key()]
            tex = DataTexture(str(rng.choice(choices)))
            rgba = _rgba_hsv(rng.uniform(0, 1), 0.35, 1.0)
        else:
            kind, tex = "recolour", None
            h, s, v = colorsys.rgb_to_hsv(*src.rgba[:3])
            rgba = _rgba_hsv(h + rng.uniform(0.25, 0.75), max(0.5, s), min(1.0, max(0.45, v)))
        if _looks_distinct(rgba, tex, family):
            break
    return rgba, tex, kind


# ---------------------------------------------------------------- the scene

def _check_config(cfg: SimConfig) -> None:
    for lo_key, hi_key in (("room_size_min", "room_size_max"), ("object_size_min", "object_size_max"),
                           ("photo_distance_min", "photo_distance_max"), ("goal_distance_min", "goal_distance_max"),
                           ("hard_small_size_min", "hard_small_size_max"), ("depth_min_m", "depth_max_m")):
        if getattr(cfg, lo_key) > getattr(cfg, hi_key):
            raise ConfigError(f"key 'sim.{lo_key}' exceeds 'sim.{hi_key}'")
    if cfg.n_twins + cfg.n_distractors >= cfg.n_objects_min:
        raise ConfigError(f"sim.n_twins + sim.n_distractors ({cfg.n_twins + cfg.n_distractors}) must be below "
                          f"sim.n_objects_min ({cfg.n_objects_min})")


class _Placer:
    """Rests objects on the supports without overlap and keeps them in placement order (ids come later)."""

    def __init__(self, rng: np.random.Generator, cfg: SimConfig, supports: list[Support], weights: np.ndarray,
                 footprints: list[tuple]):
        self.rng, self.cfg, self.supports, self.weights, self.footprints = rng, cfg, supports, weights, footprints
        self.taken: dict[str, list[tuple]] = {}
        self.placed: list[PlacedObject] = []

    def add(self, model: ModelSpec, role: str, size: float, rgba: tuple | None = None,
            texture: Texture | None = None, twin_of: int | None = None, avoid: str | None = None,
            generator: np.random.Generator | None = None, weights: np.ndarray | None = None, margin: float = 0.06,
            into: dict | None = None) -> PlacedObject | None:
        """Place ``model``; ``weights`` picks the supports (default: furniture twice as likely as the floor),
        ``into`` a private copy of the occupied rectangles (objects that never share the room)."""
        w = self.weights if weights is None else weights
        w = np.concatenate([w, np.zeros(len(self.supports) - len(w))])  # supports on objects only by request
        res = _place(generator if generator is not None else self.rng, model, size, self.supports, w,
                     self.taken if into is None else into, self.footprints, avoid_support=avoid, margin=margin)
        if res is None:
            return None
        position, yaw, mesh_scale, amin, amax, sname = res
        obj = PlacedObject(0, role, model, mesh_scale, yaw, position, rgba or model.rgba or (1.0, 1.0, 1.0, 1.0),
                           texture, amin, amax, sname, twin_of)
        self.placed.append(obj)
        return obj

    def size(self, m: ModelSpec, r: np.random.Generator) -> float:
        if m.procedural is not None:  # real-size products, kept within the configured size range
            return float(np.clip(max(m.procedural.dims), self.cfg.object_size_min, self.cfg.object_size_max))
        return float(r.uniform(self.cfg.object_size_min, self.cfg.object_size_max))


def build_scene_spec(seed: int, cfg: SimConfig) -> SceneSpec:
    """The procedural scene of ``seed``: same seed and config, same scene (pure numpy, no pybullet)."""
    _check_config(cfg)
    seed = int(seed)
    rng = np.random.default_rng([seed, 0x5CE7E])
    lo, hi, H, parts = _build_room(rng, cfg)
    fparts, footprints, tops, supports = _place_furniture(rng, lo, hi)
    parts += fparts
    floor = Support("floor", lo[0] + 0.1, hi[0] - 0.1, lo[1] + 0.1, hi[1] - 0.1, 0.0, H - 0.2)
    supports = [floor] + supports
    # objects prefer furniture; the floor gets about a third
    weights = np.array([0.35 * len(supports[1:]) / 0.65 if s.name == "floor" else 1.0 for s in supports]) \
        if len(supports) > 1 else np.ones(1)
    placer = _Placer(rng, cfg, supports, weights / weights.sum(), footprints)
    n_total = int(rng.integers(cfg.n_objects_min, cfg.n_objects_max + 1))
    n_primary = n_total - cfg.n_twins - cfg.n_distractors
    primary_models = _choose_models(rng, n_primary + cfg.n_open_set, exclude=set())
    open_models, primary_models = primary_models[n_primary:], primary_models[:n_primary]
    n_products = min(int(cfg.n_products), n_primary)
    if n_products:  # products take the last goal slots (their own stream: the other goals stay as they were)
        prng = np.random.default_rng([seed, 0x9D0C])
        kinds = [PRODUCT_KINDS[int(k)] for k in prng.permutation(len(PRODUCT_KINDS))]
        kinds = (kinds * (n_products // len(kinds) + 1))[:n_products]
        primary_models[n_primary - n_products:] = [product_model(prng, k) for k in kinds]
    sizes = _add_goals_and_twins(placer, seed, primary_models)
    dmodels = list(DISTRACTOR_MODELS) + [random_shape_model(int(k)) for k in rng.integers(0, N_RANDOM_SHAPES, 4)]
    used = {m.category for m in primary_models + open_models}
    dmodels = [m for m in dmodels if m.category not in used]
    for k in range(cfg.n_distractors):
        m = dmodels[int(rng.integers(len(dmodels)))]
        placer.add(m, "distractor", float(rng.uniform(cfg.object_size_min, cfg.object_size_max)), texture=m.texture)
    if cfg.hard_cases:
        _add_hard_cases(np.random.default_rng([seed, 0x4A2D]), placer)
        _add_solid_furniture(np.random.default_rng([seed, 0x50F1]), placer, lo, hi, parts, tops)
    _assign_ids(placer.placed, supports)
    open_set, calibration = _add_open_sets(placer, seed, open_models, sizes,
                                           exclude={m.category for m in primary_models + open_models})
    camera_height = float(rng.uniform(cfg.camera_height_min, cfg.camera_height_max))
    lighting = random_lighting(rng)
    return SceneSpec(seed=seed, scene_id=f"pybullet_seed{seed}", room_min=lo, room_max=hi, wall_height=H,
                     camera_height=camera_height, parts=parts, footprints=footprints, furniture_tops=tops,
                     supports=supports, objects=list(placer.placed), open_set=open_set, lighting=lighting,
                     calibration_open_set=calibration)


def _add_goals_and_twins(placer: _Placer, seed: int, models: list[ModelSpec]) -> dict[int, float]:
    """Place the goal objects, then ``sim.n_twins`` look-alikes of them elsewhere; returns sizes by ``id(obj)``."""
    rng, cfg = placer.rng, placer.cfg
    sizes: dict[int, float] = {}
    for m in models:
        size = float(rng.uniform(cfg.object_size_min, cfg.object_size_max))
        if m.procedural is not None:
            size = placer.size(m, rng)
        o = placer.add(m, "object", size, texture=m.texture)
        if o is not None:
            sizes[id(o)] = size
    primaries = list(placer.placed)
    family: dict[int, list[tuple[tuple, Texture | None]]] = {id(o): [(o.rgba, o.texture)] for o in primaries}
    for i, j in enumerate(rng.permutation(len(primaries))[: cfg.n_twins]):
        src = primaries[int(j)]
        if isinstance(src.texture, PackagingDesign):
            rgba, tex, kind = lookalike_appearance(np.random.default_rng([seed, 0x7A1, i]), src, family[id(src)])
        elif src.model.textured:
            tex = DataTexture(str(rng.choice([t for t in TWIN_TEXTURES
                                              if src.texture is None or t != src.texture.key()])))
            rgba, kind = _rgba_hsv(rng.uniform(0, 1), 0.35, 1.0), "retexture"
        else:
            h, s, v = colorsys.rgb_to_hsv(*src.rgba[:3])
            tex, kind = None, "recolour"
            rgba = _rgba_hsv(h + rng.uniform(0.25, 0.75), max(0.5, s), min(1.0, max(0.45, v)))
        twin = placer.add(src.model, "twin", sizes[id(src)], rgba, tex, twin_of=placer.placed.index(src),
                          avoid=src.support)
        if twin is not None:
            twin.lookalike = kind
            family[id(src)].append((rgba, tex))
    return sizes


def _assign_ids(placed: list[PlacedObject], supports: list[Support]) -> None:
    """Stable instance ids 1..N in placement order; indices (twins, touching, supports on objects) become ids."""
    for i, o in enumerate(placed, start=1):
        o.instance_id = i
    for o in placed:
        if o.twin_of is not None:
            o.twin_of = placed[o.twin_of].instance_id
        o.touching = [placed[k].instance_id for k in o.touching]
        if o.support.startswith("on_object#"):
            o.support = f"on_object_{placed[int(o.support.split('#')[1])].instance_id}"
    for s in supports:
        if s.name.startswith("on_object#"):
            s.name = f"on_object_{placed[int(s.name.split('#')[1])].instance_id}"


def _add_open_sets(placer: _Placer, seed: int, open_models: list[ModelSpec], sizes: dict[int, float],
                   exclude: set[str]) -> tuple[list[PlacedObject], list[PlacedObject]]:
    """The test open set (unrelated models, then look-alikes of goal objects) and the calibration open set.

    Each open-set object reserves a free spot, used only while its goal images render; the unrelated test
    objects share one set of occupied spots (as they always did), the others each get a copy of the mapped
    room's. Ids follow the mapped objects'.
    """
    rng, cfg = placer.rng, placer.cfg
    mapped = list(placer.placed)
    mapped_taken = copy.deepcopy(placer.taken)
    open_set: list[PlacedObject] = []
    calibration: list[PlacedObject] = []

    def reserve(o: PlacedObject | None, bucket: list[PlacedObject]) -> None:
        if o is not None:
            placer.placed.remove(o)
            o.instance_id = len(mapped) + len(open_set) + len(calibration) + 1
            bucket.append(o)

    for m in open_models:
        reserve(placer.add(m, "open_set", float(rng.uniform(cfg.object_size_min, cfg.object_size_max)),
                           texture=m.texture), open_set)
    goals = [o for o in mapped if o.role == "object"]
    families = {o.instance_id: [(o.rgba, o.texture)] + [(t.rgba, t.texture) for t in mapped
                                                         if t.twin_of == o.instance_id] for o in goals}

    def add_lookalikes(r: np.random.Generator, n: int, bucket: list[PlacedObject]) -> None:
        order = [goals[int(k)] for k in r.permutation(len(goals))]
        for k in range(n if order else 0):
            src = order[k % len(order)]
            rgba, tex, kind = lookalike_appearance(r, src, families[src.instance_id])
            o = placer.add(src.model, "open_set", sizes.get(id(src), placer.size(src.model, r)), rgba, tex,
                           generator=r, into=copy.deepcopy(mapped_taken))
            if o is not None:
                o.lookalike_of, o.lookalike = src.instance_id, kind
                families[src.instance_id].append((rgba, tex))
                reserve(o, bucket)

    add_lookalikes(np.random.default_rng([seed, 0x100C]), int(cfg.n_lookalikes), open_set)
    if cfg.n_calibration_queries_per_instance > 0:
        crng = np.random.default_rng([seed, 0xCA1B])
        for m in _choose_models(crng, cfg.n_open_set, exclude=exclude | {o.category for o in mapped}):
            reserve(placer.add(m, "open_set", float(crng.uniform(cfg.object_size_min, cfg.object_size_max)),
                               texture=m.texture, generator=crng, into=copy.deepcopy(mapped_taken)), calibration)
        add_lookalikes(crng, int(cfg.n_lookalikes), calibration)
    return open_set, calibration


def _add_hard_cases(rng: np.random.Generator, placer: _Placer) -> None:
    """Segmentation hard cases (mapped distractors tagged ``hard_case``), from their own random stream.

    touching: boxes and cans whose footprint comes within ``sim.hard_touch_gap`` of a goal object's;
    clutter: ``sim.hard_clutter`` objects on one table, ``sim.hard_clutter_margin`` apart; thin_flat: books,
    plates, cards, boards, mats, pens; small: dice, batteries, matchboxes, erasers, lip balms, caps;
    stacked: a small object resting on a book.
    """
    cfg, placed, supports, taken = placer.cfg, placer.placed, placer.supports, placer.taken
    by_name = {s.name: s for s in supports}
    goals = [o for o in placed if o.role == "object"]

    def add(model: ModelSpec, role: str, size: float, rgba: tuple, texture: Texture | None, **kw
            ) -> PlacedObject | None:
        return placer.add(model, role, size, rgba, texture, generator=rng, **kw)

    def tag(o: PlacedObject | None, case: str) -> PlacedObject | None:
        if o is not None:
            o.hard_case = case
        return o

    def small_model() -> tuple[ModelSpec, float]:
        m = product_model(rng, SMALL_KINDS[int(rng.integers(len(SMALL_KINDS)))])
        return m, float(rng.uniform(cfg.hard_small_size_min, cfg.hard_small_size_max))

    def thin_model() -> tuple[ModelSpec, float]:
        m = product_model(rng, THIN_FLAT_KINDS[int(rng.integers(len(THIN_FLAT_KINDS)))])
        return m, float(max(m.procedural.dims))  # type: ignore[union-attr]

    # touching: a product against a goal object
    for k in range(int(cfg.hard_touching)):
        if not goals:
            break
        anchor = goals[int(rng.integers(len(goals)))]
        kind = PRODUCT_KINDS[int(rng.integers(len(PRODUCT_KINDS)))]
        m = product_model(rng, kind)
        size = float(np.clip(max(m.procedural.dims), cfg.object_size_min, cfg.object_size_max))  # type: ignore
        res = _place_touching(rng, m, size, anchor, by_name[anchor.support], taken, float(cfg.hard_touch_gap),
                              placed)
        if res is None:
            continue
        position, yaw, mesh_scale, amin, amax = res
        o = PlacedObject(0, "distractor", m, mesh_scale, yaw, position, (1.0, 1.0, 1.0, 1.0), m.texture, amin, amax,
                         anchor.support, hard_case="touching")
        o.touching = [placed.index(anchor)]
        anchor.touching = anchor.touching + [len(placed)]
        placed.append(o)
    # clutter: many objects crowded on the largest table
    tables = [s for s in supports if s.name.startswith("table")]
    if tables and cfg.hard_clutter > 0:
        table = max(tables, key=lambda s: (s.xmax - s.xmin) * (s.ymax - s.ymin))
        w = np.array([1.0 if s is table else 0.0 for s in supports])
        for k in range(int(cfg.hard_clutter)):
            r = rng.uniform()
            if r < 0.4:
                m, size = small_model()
            elif r < 0.8:
                m = product_model(rng, PRODUCT_KINDS[int(rng.integers(len(PRODUCT_KINDS)))])
                size = float(max(m.procedural.dims))  # type: ignore[union-attr]
            else:
                m = random_shape_model(int(rng.integers(N_RANDOM_SHAPES)))
                size = float(rng.uniform(0.06, 0.15))
            tag(add(m, "distractor", size, m.rgba or (1.0, 1.0, 1.0, 1.0), m.texture, weights=w,
                    margin=float(cfg.hard_clutter_margin)), "clutter")
    def furniture_w(floor: bool = False) -> np.ndarray:
        w = np.array([0.0 if s.name.startswith("on_object") or (s.name == "floor" and not floor) else 1.0
                      for s in supports])
        return w if w.sum() > 0 else np.array([1.0 if s.name == "floor" else 0.0 for s in supports])

    for k in range(int(cfg.hard_thin_flat)):
        m, size = thin_model()
        w = furniture_w(floor=m.category in ("placemat", "book"))
        tag(add(m, "distractor", size, (1.0, 1.0, 1.0, 1.0), m.texture, weights=w, margin=0.03),
            "thin_flat")
    for k in range(int(cfg.hard_small)):
        m, size = small_model()
        tag(add(m, "distractor", size, (1.0, 1.0, 1.0, 1.0), m.texture, weights=furniture_w(),
                margin=0.03), "small")
    # stacked: a small object on a book (the book becomes a support)
    for k in range(int(cfg.hard_stacked)):
        base_m = product_model(rng, THIN_FLAT_KINDS[0])
        base = tag(add(base_m, "distractor", float(max(base_m.procedural.dims)),  # type: ignore[union-attr]
                       (1.0, 1.0, 1.0, 1.0), base_m.texture, weights=furniture_w(), margin=0.05),
                   "thin_flat")
        if base is None:
            continue
        below = by_name[base.support]
        top = Support(f"on_object#{placed.index(base)}", base.aabb_min[0] + 0.005, base.aabb_max[0] - 0.005,
                      base.aabb_min[1] + 0.005, base.aabb_max[1] - 0.005, float(base.aabb_max[2]),
                      float(below.clearance - (base.aabb_max[2] - base.aabb_min[2])))
        supports.append(top)
        m, size = small_model()
        w = np.array([1.0 if s is top else 0.0 for s in supports])
        o = tag(add(m, "distractor", size, (1.0, 1.0, 1.0, 1.0), m.texture, weights=w, margin=0.01),
                "stacked")
        if o is not None:
            o.touching = [placed.index(base)]
            base.touching = base.touching + [placed.index(o)]


#: solid furniture of the hard cases: (kind, x/y side range, height range) (m); the longest side is at least
#: 0.55 m, so that its top is a support surface to a geometric segmenter (mapping.geometric_min_support_extent)
SOLID_FURNITURE = (("cabinet", (0.55, 0.9), (0.4, 0.55), (0.6, 0.9)),
                   ("crate", (0.55, 0.7), (0.4, 0.55), (0.3, 0.45)))


def _add_solid_furniture(rng: np.random.Generator, placer: _Placer, lo: np.ndarray, hi: np.ndarray,
                         parts: list[BoxPart], tops: list[float]) -> None:
    """``sim.hard_solid_furniture`` solid boxes without legs on the floor (a cabinet, a crate; tagged parts of the
    room, mask id 0) clear of the other furniture and of the floor's objects, each a new support with one or two
    objects on it (``hard_case: on_solid_furniture``), from their own random stream: the rest of the scene stays
    as it was. Against a wall or free-standing."""
    cfg, supports, footprints = placer.cfg, placer.supports, placer.footprints
    floor_taken = placer.taken.get("floor", [])
    for k in range(int(cfg.hard_solid_furniture)):
        kind, side_a, side_b, height = SOLID_FURNITURE[k % len(SOLID_FURNITURE)]
        a, b, h = (float(rng.uniform(*r)) for r in (side_a, side_b, height))
        fx, fy = (a, b) if rng.uniform() < 0.5 else (b, a)
        for _ in range(100):
            cx = float(rng.uniform(lo[0] + fx / 2 + 0.02, hi[0] - fx / 2 - 0.02))
            cy = float(rng.uniform(lo[1] + fy / 2 + 0.02, hi[1] - fy / 2 - 0.02))
            if rng.uniform() < 0.5:  # against the nearest wall
                gaps = (cx - fx / 2 - lo[0], hi[0] - cx - fx / 2, cy - fy / 2 - lo[1], hi[1] - cy - fy / 2)
                side = int(np.argmin(gaps))
                cx += (-gaps[0] + 0.02, gaps[1] - 0.02, 0.0, 0.0)[side]
                cy += (0.0, 0.0, -gaps[2] + 0.02, gaps[3] - 0.02)[side]
            rect = (cx - fx / 2, cx + fx / 2, cy - fy / 2, cy + fy / 2)
            if not any(_rect_overlap(rect, r, margin=0.5) for r in footprints) \
                    and not any(_rect_overlap(rect, r, margin=0.1) for r in floor_taken):
                break
        else:
            continue
        material = FURNITURE_TEXTURES[rng.integers(len(FURNITURE_TEXTURES))]
        tex = None if material is None else random_surface(rng, (material,), tile_m=(1.0, 1.0))
        rgba = _rgba_hsv(rng.uniform(0.0, 1.0), rng.uniform(0.1, 0.5), rng.uniform(0.35, 0.85)) if tex is None \
            else (1.0, 1.0, 1.0, 1.0)
        name = f"{kind}_solid_{k}"
        parts.append(BoxPart(name, np.array([cx, cy, h / 2]), np.array([fx / 2, fy / 2, h / 2]), rgba, tex))
        footprints.append(rect)
        tops.append(h)
        top = Support(name, rect[0] + 0.04, rect[1] - 0.04, rect[2] + 0.04, rect[3] - 0.04, h, 2.2 - h)
        supports.append(top)
        w = np.array([1.0 if s is top else 0.0 for s in supports])
        for _ in range(int(rng.integers(1, 3))):
            m = product_model(rng, PRODUCT_KINDS[int(rng.integers(len(PRODUCT_KINDS)))])
            size = float(np.clip(max(m.procedural.dims), cfg.object_size_min, cfg.object_size_max))  # type: ignore
            o = placer.add(m, "distractor", size, (1.0, 1.0, 1.0, 1.0), m.texture, generator=rng, weights=w,
                           margin=0.03)
            if o is not None:
                o.hard_case = "on_solid_furniture"


def navigable(spec: SceneSpec, point: np.ndarray, radius: float) -> bool:
    """Whether a robot of ``radius`` can stand at ``point`` (xy): inside the room, clear of furniture and floor objects."""
    x, y = float(point[0]), float(point[1])
    if not (spec.room_min[0] + radius <= x <= spec.room_max[0] - radius
            and spec.room_min[1] + radius <= y <= spec.room_max[1] - radius):
        return False
    for r in spec.footprints:
        if r[0] - radius <= x <= r[1] + radius and r[2] - radius <= y <= r[3] + radius:
            return False
    for o in spec.objects:
        if o.support == "floor" and (o.aabb_min[0] - radius <= x <= o.aabb_max[0] + radius
                                     and o.aabb_min[1] - radius <= y <= o.aabb_max[1] + radius):
            return False
    return True
