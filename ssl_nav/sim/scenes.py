"""Procedural rooms for the embedded pybullet simulator, generated from a seed.

:func:`build_scene_spec` turns a seed and a :class:`~ssl_nav.config.SimConfig`
into a :class:`SceneSpec`: a room (floor, walls and ceiling with varied colours
and textures), support furniture (tables and shelves built from boxes), object
instances from ``pybullet_data`` meshes (textured models such as the duck, the
teddy, the mug, the textured cube and ball, plus the ``random_urdfs`` shapes),
recoloured twins of some of them placed elsewhere (hard negatives, in the
spirit of the look-alike distractors of CrossIA, Sakaguchi et al. 2024),
distractors, open-set objects (placed only while their goal image is rendered)
and the scene lighting.

The spec is plain numpy and needs no pybullet: object boxes are computed
exactly from the mesh vertices, so tests and the backend read the same facts.
Every random choice comes from ``numpy.random.default_rng([seed, ...])``.
"""

from __future__ import annotations

import colorsys
import functools
import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ssl_nav.config import SimConfig
from ssl_nav.errors import ConfigError, DependencyError

ROLES = ("object", "twin", "distractor", "open_set")


def data_path() -> Path:
    """The ``pybullet_data`` directory (meshes and textures)."""
    try:
        import pybullet_data
    except ImportError as e:  # pragma: no cover - pybullet is a hard dependency
        raise DependencyError("pybullet_data is not installed (pip install pybullet)") from e
    return Path(pybullet_data.getDataPath())


# ---------------------------------------------------------------- model catalogue

@dataclass(frozen=True)
class ModelSpec:
    """One mesh of ``pybullet_data`` and how to stand it upright.

    ``rpy`` turns the mesh into the z-up frame; ``aspect`` multiplies the mesh
    scale per axis; ``rgba`` is its own colour (``None`` for textured models,
    which keep their texture).
    """

    category: str
    mesh: str  #: path relative to pybullet_data
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)
    aspect: tuple[float, float, float] = (1.0, 1.0, 1.0)
    rgba: tuple[float, float, float, float] | None = None
    textured: bool = False
    texture: str | None = None  #: texture applied over the mesh's UVs (relative to pybullet_data)


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
    ModelSpec("checker_cube", "cube.obj", textured=True, texture="checker_blue.png"),
    ModelSpec("uv_cube", "cube.obj", aspect=(1.0, 1.0, 0.6), textured=True, texture="uvmap.png"),
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
    v = _mesh_vertices_all(model.mesh) * mesh_scale
    return v @ (yaw_matrix(yaw) @ rpy_matrix(model.rpy)).T


def unit_extent(model: ModelSpec) -> np.ndarray:
    """Extent (x, y, z) of the upright mesh at scale 1 (with its aspect)."""
    v = _mesh_vertices_all(model.mesh) * np.asarray(model.aspect)
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
    texture: str | None = None  #: path relative to pybullet_data


@dataclass
class Support:
    """A horizontal rectangle objects can rest on (floor, table top, shelf board)."""

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
    texture: str | None  #: texture over the mesh (the model's, or a twin's replacement), relative to pybullet_data
    aabb_min: np.ndarray
    aabb_max: np.ndarray
    support: str
    twin_of: int | None = None

    @property
    def category(self) -> str:
        return self.model.category

    @property
    def orientation_matrix(self) -> np.ndarray:
        return yaw_matrix(self.yaw)

    def to_json(self) -> dict:
        d = {"instance_id": self.instance_id, "category": self.category, "role": self.role,
             "model": self.model.mesh, "support": self.support, "yaw": round(self.yaw, 6),
             "position": np.round(self.position, 6).tolist(), "rgba": [round(c, 4) for c in self.rgba],
             "texture": self.texture,
             "aabb": [np.round(self.aabb_min, 6).tolist(), np.round(self.aabb_max, 6).tolist()]}
        if self.twin_of is not None:
            d["twin_of"] = self.twin_of
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


@dataclass
class SceneSpec:
    """Everything the backend needs to build a scene, and the ground truth the tests check."""

    seed: int
    scene_id: str
    room_min: np.ndarray  #: (2,) inner xy corner
    room_max: np.ndarray  #: (2,)
    wall_height: float
    camera_height: float
    parts: list[BoxPart]
    footprints: list[tuple[float, float, float, float]]  #: furniture xy rectangles (xmin, xmax, ymin, ymax)
    furniture_tops: list[float]  #: top height of each footprint's furniture (m)
    supports: list[Support]
    objects: list[PlacedObject]  #: mapped scene objects (ids 1..N)
    open_set: list[PlacedObject]  #: placed only while rendering their goal images (ids N+1..)
    lighting: Lighting
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"room": {"min": self.room_min.tolist(), "max": self.room_max.tolist(), "wall_height": self.wall_height},
                "camera_height": self.camera_height, "lighting": self.lighting.to_json(),
                "furniture": [{"rect": list(f), "top": t} for f, t in zip(self.footprints, self.furniture_tops)]}


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


WALL_TEXTURES = (None, None, "checker_blue.png", "table/table.png", "checker_grid.jpg")
FLOOR_TEXTURES = (None, None, "table/table.png", "checker_blue.png")
FURNITURE_TEXTURES = (None, "table/table.png", "table/table.png")
TWIN_TEXTURES = ("tex256.png", "uvmap.png", "checker_blue.png", "table/table.png", "jenga/jenga.png")


def _rect_overlap(a: tuple, b: tuple, margin: float = 0.0) -> bool:
    return not (a[1] + margin <= b[0] or b[1] + margin <= a[0] or a[3] + margin <= b[2] or b[3] + margin <= a[2])


def _build_room(rng: np.random.Generator, cfg: SimConfig) -> tuple[np.ndarray, np.ndarray, float, list[BoxPart]]:
    w = float(rng.uniform(cfg.room_size_min, cfg.room_size_max))
    d = float(rng.uniform(cfg.room_size_min, cfg.room_size_max))
    lo, hi = np.array([-w / 2, -d / 2]), np.array([w / 2, d / 2])
    H, t = 2.6, 0.1
    parts = []
    floor_tex = FLOOR_TEXTURES[rng.integers(len(FLOOR_TEXTURES))]
    parts.append(BoxPart("floor", np.array([0, 0, -t / 2]), np.array([w / 2 + t, d / 2 + t, t / 2]),
                         _rgba_hsv(rng.uniform(0, 1), rng.uniform(0.05, 0.35), rng.uniform(0.35, 0.75)), floor_tex))
    parts.append(BoxPart("ceiling", np.array([0, 0, H + t / 2]), np.array([w / 2 + t, d / 2 + t, t / 2]),
                         _rgba_hsv(0.1, 0.03, 0.95)))
    base_h = rng.uniform(0, 1)
    for name, c, he in (("wall_xmin", [lo[0] - t / 2, 0, H / 2], [t / 2, d / 2 + t, H / 2]),
                        ("wall_xmax", [hi[0] + t / 2, 0, H / 2], [t / 2, d / 2 + t, H / 2]),
                        ("wall_ymin", [0, lo[1] - t / 2, H / 2], [w / 2 + t, t / 2, H / 2]),
                        ("wall_ymax", [0, hi[1] + t / 2, H / 2], [w / 2 + t, t / 2, H / 2])):
        tex = WALL_TEXTURES[rng.integers(len(WALL_TEXTURES))]
        rgba = _rgba_hsv(base_h + rng.uniform(-0.15, 0.15), rng.uniform(0.1, 0.5), rng.uniform(0.55, 0.95))
        parts.append(BoxPart(name, np.array(c, float), np.array(he, float), rgba, tex))
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
        tex = FURNITURE_TEXTURES[rng.integers(len(FURNITURE_TEXTURES))]
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
           max_tries: int = 200) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray, str] | None:
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
        if any(_rect_overlap(rect, r, 0.06) for r in taken.get(s.name, [])):
            continue
        if s.name == "floor" and any(_rect_overlap(rect, r, 0.05) for r in footprints):
            continue
        position = np.array([cx - (pmin[0] + pmax[0]) / 2, cy - (pmin[1] + pmax[1]) / 2, s.z - pmin[2]])
        taken.setdefault(s.name, []).append(rect)
        return position, yaw, mesh_scale, pmin + position, pmax + position, s.name
    return None


def _twin_colour(rng: np.random.Generator, rgba: tuple) -> tuple[float, float, float, float]:
    h, s, v = colorsys.rgb_to_hsv(*rgba[:3])
    return _rgba_hsv(h + rng.uniform(0.25, 0.75), max(0.5, s), min(1.0, max(0.45, v)))


def build_scene_spec(seed: int, cfg: SimConfig) -> SceneSpec:
    """The procedural scene of ``seed``: same seed and config, same scene (pure numpy, no pybullet)."""
    for lo_key, hi_key in (("room_size_min", "room_size_max"), ("object_size_min", "object_size_max"),
                           ("photo_distance_min", "photo_distance_max"), ("goal_distance_min", "goal_distance_max")):
        if getattr(cfg, lo_key) > getattr(cfg, hi_key):
            raise ConfigError(f"key 'sim.{lo_key}' exceeds 'sim.{hi_key}'")
    if cfg.n_twins + cfg.n_distractors >= cfg.n_objects_min:
        raise ConfigError(f"sim.n_twins + sim.n_distractors ({cfg.n_twins + cfg.n_distractors}) must be below "
                          f"sim.n_objects_min ({cfg.n_objects_min})")
    rng = np.random.default_rng([int(seed), 0x5CE7E])
    lo, hi, H, parts = _build_room(rng, cfg)
    fparts, footprints, tops, supports = _place_furniture(rng, lo, hi)
    parts += fparts
    floor = Support("floor", lo[0] + 0.1, hi[0] - 0.1, lo[1] + 0.1, hi[1] - 0.1, 0.0, H - 0.2)
    supports = [floor] + supports
    # objects prefer furniture; the floor gets about a third
    weights = np.array([0.35 * len(supports[1:]) / 0.65 if s.name == "floor" else 1.0 for s in supports]) \
        if len(supports) > 1 else np.ones(1)
    weights = weights / weights.sum()
    n_total = int(rng.integers(cfg.n_objects_min, cfg.n_objects_max + 1))
    n_primary = n_total - cfg.n_twins - cfg.n_distractors
    primary_models = _choose_models(rng, n_primary + cfg.n_open_set, exclude=set())
    open_models, primary_models = primary_models[n_primary:], primary_models[:n_primary]
    taken: dict[str, list[tuple]] = {}
    placed: list[PlacedObject] = []

    def add(model: ModelSpec, role: str, size: float, rgba: tuple, texture: str | None = None,
            twin_of: int | None = None, avoid: str | None = None) -> PlacedObject | None:
        res = _place(rng, model, size, supports, weights, taken, footprints, avoid_support=avoid)
        if res is None:
            return None
        position, yaw, mesh_scale, amin, amax, sname = res
        obj = PlacedObject(0, role, model, mesh_scale, yaw, position, rgba, texture, amin, amax, sname, twin_of)
        placed.append(obj)
        return obj

    sizes = {}
    for m in primary_models:
        size = float(rng.uniform(cfg.object_size_min, cfg.object_size_max))
        sizes[m.category] = size
        add(m, "object", size, m.rgba or (1.0, 1.0, 1.0, 1.0), m.texture)
    primaries = [o for o in placed]
    for i, j in enumerate(rng.permutation(len(primaries))[: cfg.n_twins]):
        src = primaries[int(j)]
        if src.model.textured:
            tex = str(rng.choice([t for t in TWIN_TEXTURES if t != src.texture]))
            rgba = _rgba_hsv(rng.uniform(0, 1), 0.35, 1.0)
        else:
            tex, rgba = None, _twin_colour(rng, src.rgba)
        add(src.model, "twin", sizes[src.category], rgba, tex, twin_of=placed.index(src), avoid=src.support)
    dmodels = list(DISTRACTOR_MODELS) + [random_shape_model(int(k)) for k in rng.integers(0, N_RANDOM_SHAPES, 4)]
    used = {m.category for m in primary_models + open_models}
    dmodels = [m for m in dmodels if m.category not in used]
    for k in range(cfg.n_distractors):
        m = dmodels[int(rng.integers(len(dmodels)))]
        add(m, "distractor", float(rng.uniform(cfg.object_size_min, cfg.object_size_max)),
            m.rgba or (1.0, 1.0, 1.0, 1.0), m.texture)
    # assign the stable instance ids 1..N in placement order; twins point at their source's id
    for i, o in enumerate(placed, start=1):
        o.instance_id = i
    for o in placed:
        if o.twin_of is not None:
            o.twin_of = placed[o.twin_of].instance_id
    # open-set objects reserve a free spot (used only while their goal image is rendered)
    open_set: list[PlacedObject] = []
    for m in open_models:
        n_before = len(placed)
        o = add(m, "open_set", float(rng.uniform(cfg.object_size_min, cfg.object_size_max)),
                m.rgba or (1.0, 1.0, 1.0, 1.0), m.texture)
        if o is not None:
            placed.pop(n_before)
            o.instance_id = len(placed) + len(open_set) + 1
            open_set.append(o)
    camera_height = float(rng.uniform(cfg.camera_height_min, cfg.camera_height_max))
    lighting = random_lighting(rng)
    return SceneSpec(seed=int(seed), scene_id=f"pybullet_seed{int(seed)}", room_min=lo, room_max=hi, wall_height=H,
                     camera_height=camera_height, parts=parts, footprints=footprints, furniture_tops=tops,
                     supports=supports,
                     objects=placed, open_set=open_set, lighting=lighting)


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


def resolve_data_file(rel: str | None) -> str | None:
    """Absolute path of a ``pybullet_data`` file (``None`` stays ``None``)."""
    return None if rel is None else os.fspath(data_path() / rel)
