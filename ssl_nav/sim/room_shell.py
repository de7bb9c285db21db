"""The room's floor, walls and ceiling, ray-cast in numpy instead of rasterised by TinyRenderer.

Why: a camera inside a room clips every wall and floor triangle against the near plane, and TinyRenderer
(``bullet3/examples/TinyRenderer``) rasterises each clipped triangle over its whole screen bounding box with two
barycentric evaluations per pixel. At 640x480 the six faces of the room cost ~70 of the ~85 ms of a
``getCameraImage`` call; furniture and objects cost ~15 ms. The room is an axis-aligned box seen from inside,
so each pixel's ray leaves it through exactly one face: ``t = min over axes of (bound - eye) / direction``.
With rays ``K^-1 (u, v, 1)`` (z = 1 in the camera) ``t`` is already the depth along the optical axis.

Shading follows TinyRenderer's fragment shader (``TinyRenderer.cpp``): colour = texel x rgba, then
``ambient * colour + (diffuse * max(0, n.l) + specular * max(0, r_z)^2) * colour * light_colour`` with the
reflection ``r = 2 (n.l) n - l``, truncated to integers and clipped at 255. A face's normal is constant, so the
shading is one factor per face and channel. Textures repeat every ``tile_m`` metres (nearest texel, as
TinyRenderer samples them).

Everything in the room (furniture, objects) is inside the box, so the backend composites: a pixel that
TinyRenderer covered keeps TinyRenderer's colour, depth and id; every other pixel shows the shell (id 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: face order: the index is the face id of :meth:`RoomShell.cast`
FACES = ("wall_xmin", "wall_xmax", "wall_ymin", "wall_ymax", "floor", "ceiling")
_AXIS = (0, 0, 1, 1, 2, 2)
#: (u axis, v axis) of each face's texture coordinates (world axes)
_UV_AXES = ((1, 2), (1, 2), (0, 2), (0, 2), (0, 1), (0, 1))
#: inward normals
_NORMALS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float64)


@dataclass(frozen=True)
class ShellFace:
    """One face of the shell: its colour, optional texture image (RGB uint8) and texture repeat (m)."""

    rgba: tuple[float, float, float, float]
    texture: np.ndarray | None = None
    tile_m: float = 1.0


#: side of every face texture in the shell's texel table (power of two: coordinates wrap with a bit mask)
TEXTURE_SIDE = 256


class RoomShell:
    """Ray-caster of an axis-aligned room box ``[xmin, xmax] x [ymin, ymax] x [0, height]`` seen from inside."""

    def __init__(self, room_min: np.ndarray, room_max: np.ndarray, height: float, faces: dict[str, ShellFace]):
        missing = [f for f in FACES if f not in faces]
        if missing:
            raise ValueError(f"room shell: no material for faces {missing}")
        self.lo = np.array([room_min[0], room_min[1], 0.0], np.float64)
        self.hi = np.array([room_max[0], room_max[1], height], np.float64)
        self.faces = [faces[f] for f in FACES]
        n = TEXTURE_SIDE
        texels = []
        for f in self.faces:  # every texture resampled to n x n: face k's texel (row, col) is k * n * n + row * n + col
            img = np.full((n, n, 3), 255, np.uint8) if f.texture is None else np.asarray(f.texture, np.uint8)
            if img.shape[:2] != (n, n):
                img = cv2.resize(img, (n, n), interpolation=cv2.INTER_AREA)
            texels.append(img.reshape(-1, 3))
        self._texels = np.concatenate(texels)
        #: texels per metre along each face (the image repeats every tile_m metres)
        self._texels_per_m = np.asarray([n / max(1e-6, f.tile_m) for f in self.faces], np.float32)
        self._rgba = np.asarray([f.rgba[:3] for f in self.faces], np.float32)
        self._pixels: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self._shaded: dict[tuple, np.ndarray] = {}

    def _pixel_rays(self, K: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        """Ray slopes ``(u + 0.5 - cx) / fx`` as (1, w) and ``(v + 0.5 - cy) / fy`` as (h, 1): pixel centres."""
        key = (w, h, *np.round(K, 9).ravel().tolist())
        if key not in self._pixels:
            if len(self._pixels) > 8:
                self._pixels.clear()
            x = ((np.arange(w, dtype=np.float64) + 0.5 - K[0, 2]) / K[0, 0]).astype(np.float32)[None, :]
            y = ((np.arange(h, dtype=np.float64) + 0.5 - K[1, 2]) / K[1, 1]).astype(np.float32)[:, None]
            self._pixels[key] = (x, y)
        return self._pixels[key]

    def cast(self, K: np.ndarray, T_world_cam: np.ndarray, w: int, h: int
             ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per pixel: depth along the optical axis (m, float32), face id (index into :data:`FACES`, int64) and
        the hit point in room coordinates (metres from the room's lower corner) as three float32 arrays."""
        T = np.asarray(T_world_cam, np.float64)
        eye = np.clip(T[:3, 3], self.lo, self.hi)  # a camera outside the room sees it from its nearest inside point
        R = T[:3, :3].astype(np.float32)
        x, y = self._pixel_rays(K, w, h)
        dirs, ts, pos = [], [], []
        with np.errstate(divide="ignore", invalid="ignore"):
            for a in range(3):
                # world direction of the ray K^-1 (u, v, 1) along axis a: (R[a] . (x, y, 1)), by broadcasting
                d = (R[a, 0] * x + R[a, 2]) + R[a, 1] * y
                p = d > 0
                bound = np.where(p, np.float32(self.hi[a] - eye[a]), np.float32(self.lo[a] - eye[a]))
                # >= 0 where the ray moves along a; +-inf or nan where it is parallel (d == 0)
                ts.append(np.abs(bound / d))
                dirs.append(d)
                pos.append(p)
        t = np.fmin(np.fmin(ts[0], ts[1]), ts[2])  # fmin skips nan
        face = np.where(t == ts[0], pos[0], np.where(t == ts[1], 2 + pos[1], 4 + pos[2]))
        rel = eye - self.lo
        hit = tuple(np.float32(rel[a]) + t * dirs[a] for a in range(3))
        return t, face, hit  # type: ignore[return-value]

    def shading(self, light) -> np.ndarray:
        """(6, 3) factors per face and channel of TinyRenderer's shader under ``light`` (a scenes.Lighting)."""
        ldir = np.asarray(light.direction, np.float64)
        ldir = ldir / max(np.linalg.norm(ldir), 1e-12)
        ndl = _NORMALS @ ldir
        refl = 2 * ndl[:, None] * _NORMALS - ldir
        refl = refl / np.maximum(np.linalg.norm(refl, axis=1, keepdims=True), 1e-12)
        spec = np.maximum(refl[:, 2], 0.0) ** 2
        direct = light.diffuse * np.maximum(ndl, 0.0) + light.specular * spec
        return (light.ambient + direct[:, None] * np.asarray(light.color, np.float64)[None, :]).astype(np.float32)

    def _shaded_texels(self, light) -> np.ndarray:
        """Every texel of every face, coloured and shaded under ``light`` (cached per lighting)."""
        key = (tuple(light.direction), tuple(light.color), light.ambient, light.diffuse, light.specular)
        table = self._shaded.get(key)
        if table is None:
            factor = self.shading(light)
            face_of_texel = np.repeat(np.arange(len(FACES)), TEXTURE_SIDE * TEXTURE_SIDE)
            # TinyRenderer: texel * rgba truncated to integers, then shaded, truncated, clipped at 255
            colour = np.floor(self._texels.astype(np.float32) * self._rgba[face_of_texel])
            table = np.minimum(np.floor(colour * factor[face_of_texel]), 255).astype(np.uint8)
            if len(self._shaded) > 8:
                self._shaded.clear()
            self._shaded[key] = table
        return table

    def render(self, K: np.ndarray, T_world_cam: np.ndarray, w: int, h: int, light
               ) -> tuple[np.ndarray, np.ndarray]:
        """RGB (uint8 HxWx3) and depth (float32 HxW, metres along the optical axis) of the shell alone."""
        depth, face, (hx, hy, hz) = self.cast(K, T_world_cam, w, h)
        axis = face >> 1
        # texture coordinates: walls x = const use (y, z), walls y = const (x, z), floor and ceiling (x, y);
        # room coordinates are >= 0, so truncation is floor and the bit mask wraps the repeat
        scale = self._texels_per_m[face]
        u = (np.where(axis == 0, hy, hx) * scale).astype(np.int64)
        v = (np.where(axis == 2, hy, hz) * scale).astype(np.int64)
        n = TEXTURE_SIDE
        row = (n - 1) - (v & (n - 1))  # v = 0 at the bottom row of the image
        idx = (face * (n * n)) + row * n + (u & (n - 1))
        return self._shaded_texels(light)[idx], depth
