"""Procedural, seeded textures for the embedded simulator: room surfaces and product packaging.

Flat-coloured shapes are easy to tell apart; real rooms and grocery shelves are not. This module draws
deterministic RGB textures with numpy and OpenCV:

- **surfaces** (:class:`SurfaceTexture`): painted plaster, wallpaper stripes, wooden planks, floor tiles,
  carpet and concrete, periodic so that they tile over a wall or a floor;
- **packaging** (:class:`PackagingDesign`): product labels with a brand name, a variant line, a logo, a
  colour band, a pattern, a "product photo", small print and a barcode, laid out for the meshes of
  :mod:`ssl_nav.sim.meshes` (a box atlas, a can label, a bottle label). Near-identical products differ in one
  field of the design (band colour, variant text or logo); recoloured twins rotate the hue of the whole label.

Every texture is a frozen dataclass whose fields fully define the image: the same fields give the same bytes
(:func:`texture_image`), and :meth:`key` names it in ``scene.json``. pybullet loads textures from files, so
:class:`TextureFiles` writes the images as PNGs into a private temporary directory (never committed; removed
when the simulator closes).
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from ssl_nav.errors import DependencyError

RGB = tuple[int, int, int]

#: the Hershey fonts of OpenCV used for printed text (plain, duplex, triplex, complex)
_FONTS = (0, 2, 4, 3)
_SYLLABLES = ("ka", "lo", "mi", "ra", "ven", "to", "su", "nor", "bel", "fi", "da", "ro", "zan", "ki", "mo",
              "pa", "tel", "vi", "na", "sol", "cor", "li", "te", "qua", "bra", "do", "me", "ga")
VARIANT_WORDS = ("ORIGINAL", "LIGHT", "ZERO", "CLASSIC", "EXTRA", "MILD", "INTENSE", "FRESH", "GOLD", "BIO",
                 "FAMILY", "PLUS", "CRISPY", "SMOOTH", "NATURE", "DARK")
LOGO_SHAPES = ("circle", "star", "diamond", "triangle", "hexagon", "ellipse", "square", "leaf")
PATTERNS = ("none", "stripes", "diagonal", "dots", "waves", "checks")


def _rgb(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(1.0, max(0.0, s)), min(1.0, max(0.0, v)))
    return (int(round(r * 255)), int(round(g * 255)), int(round(b * 255)))


def random_colour(rng: np.random.Generator, s: tuple[float, float] = (0.45, 0.95),
                  v: tuple[float, float] = (0.45, 0.95)) -> RGB:
    """A saturated random colour (packaging inks)."""
    return _rgb(float(rng.uniform(0, 1)), float(rng.uniform(*s)), float(rng.uniform(*v)))


def brand_name(rng: np.random.Generator) -> str:
    """A pronounceable made-up brand (2-3 syllables, upper case)."""
    n = int(rng.integers(2, 4))
    return "".join(_SYLLABLES[int(rng.integers(len(_SYLLABLES)))] for _ in range(n)).upper()


def periodic_noise(rng: np.random.Generator, h: int, w: int, scale_px: float) -> np.ndarray:
    """Smooth noise that tiles (FFT-filtered white noise), zero mean, unit std, float32 HxW."""
    white = rng.standard_normal((h, w))
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    lowpass = np.exp(-((fx ** 2 + fy ** 2) * (math.pi * scale_px) ** 2))
    out = np.real(np.fft.ifft2(np.fft.fft2(white) * lowpass))
    out -= out.mean()
    std = out.std()
    return (out / std if std > 0 else out).astype(np.float32)


def _clip_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------ surfaces

SURFACE_KINDS = ("paint", "wallpaper", "wood", "tiles", "carpet", "concrete")


@dataclass(frozen=True)
class SurfaceTexture:
    """A room or furniture material that tiles every ``tile_m`` metres (floor, walls, table tops)."""

    kind: str  #: one of SURFACE_KINDS
    colour: RGB
    seed: int
    tile_m: float = 1.0  #: metres covered by one repeat of the image
    accent: RGB = (0, 0, 0)
    size: int = 256  #: image side (px)

    def key(self) -> str:
        return f"surface_{self.kind}_{_digest(self)}"

    def draw(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 0x5F])
        n = self.size
        base = np.array(self.colour, np.float32)
        img = np.empty((n, n, 3), np.float32)
        img[:] = base
        if self.kind == "paint":
            img += periodic_noise(rng, n, n, 24)[..., None] * 3.0
            img += rng.standard_normal((n, n, 1)).astype(np.float32) * 1.5
        elif self.kind == "wallpaper":
            x = np.arange(n)
            stripes = ((x * 8 // n) % 2).astype(np.float32)[None, :, None]
            img = img * (1 - 0.5 * stripes) + np.array(self.accent, np.float32) * 0.5 * stripes
            dots = (np.add.outer(np.arange(n) % 32, x % 32) == 0)
            img[dots] = np.array(self.accent, np.float32)
            img += periodic_noise(rng, n, n, 16)[..., None] * 3.0
        elif self.kind == "wood":
            planks = 4
            y, x = np.mgrid[:n, :n].astype(np.float32)
            row = (y * planks // n).astype(int)
            tint = rng.uniform(0.85, 1.1, planks).astype(np.float32)[row]
            warp = periodic_noise(rng, n, n, 20) * 6.0
            grain = np.sin((y + warp) * (2 * math.pi * 28 / n) + row * 1.7) * 0.5 + 0.5
            img *= (tint * (0.88 + 0.16 * grain))[..., None]
            seam = (y % (n // planks)) < 2
            img[seam] *= 0.55
            offs = rng.integers(0, n, planks)
            for k in range(planks):  # staggered butt joints
                r0, r1 = k * n // planks, (k + 1) * n // planks
                img[r0:r1, offs[k]:offs[k] + 2] *= 0.6
        elif self.kind == "tiles":
            k = 4
            cell = n // k
            tint = rng.uniform(0.9, 1.08, (k, k)).astype(np.float32)
            img *= np.kron(tint, np.ones((cell, cell), np.float32))[..., None]
            img += periodic_noise(rng, n, n, 6)[..., None] * 4.0
            grout = np.zeros((n, n), bool)
            grout[np.arange(n) % cell < 3, :] = True
            grout[:, np.arange(n) % cell < 3] = True
            img[grout] = np.array(self.accent, np.float32)
        elif self.kind == "carpet":
            img += periodic_noise(rng, n, n, 18)[..., None] * 8.0
            img += rng.standard_normal((n, n, 1)).astype(np.float32) * 12.0
        elif self.kind == "concrete":
            img += periodic_noise(rng, n, n, 30)[..., None] * 10.0
            img += periodic_noise(rng, n, n, 4)[..., None] * 6.0
            img += rng.standard_normal((n, n, 1)).astype(np.float32) * 4.0
        else:
            raise ValueError(f"unknown surface kind {self.kind!r}")
        return _clip_u8(img)


def random_surface(rng: np.random.Generator, kinds: tuple[str, ...], hue: float | None = None,
                   tile_m: tuple[float, float] = (0.8, 1.6)) -> SurfaceTexture:
    """A random material of one of ``kinds`` with plausible colours."""
    kind = kinds[int(rng.integers(len(kinds)))]
    h = float(rng.uniform(0, 1)) if hue is None else hue
    if kind == "wood":
        colour = _rgb(float(rng.uniform(0.05, 0.11)), float(rng.uniform(0.35, 0.7)), float(rng.uniform(0.35, 0.8)))
    elif kind == "concrete":
        colour = _rgb(0.1, 0.03, float(rng.uniform(0.45, 0.7)))
    elif kind == "tiles":
        colour = _rgb(h, float(rng.uniform(0.02, 0.3)), float(rng.uniform(0.6, 0.95)))
    else:
        colour = _rgb(h, float(rng.uniform(0.05, 0.45)), float(rng.uniform(0.45, 0.95)))
    accent = _rgb(h + 0.5, 0.3, 0.35) if kind != "tiles" else _rgb(0.1, 0.05, float(rng.uniform(0.3, 0.8)))
    return SurfaceTexture(kind, colour, int(rng.integers(0, 2**31 - 1)), float(rng.uniform(*tile_m)), accent)


@dataclass(frozen=True)
class DataTexture:
    """A texture file of ``pybullet_data`` (path relative to its directory)."""

    path: str
    tile_m: float = 1.0

    def key(self) -> str:
        return self.path

    def draw(self) -> np.ndarray:
        from ssl_nav.sim.data import data_path

        p = data_path() / self.path
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise DependencyError(f"{p}: cannot read texture")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


# ------------------------------------------------------------------------------------------ packaging

PACKAGE_LAYOUTS = ("box", "can", "bottle", "book", "plate", "plain")


@dataclass(frozen=True)
class PackagingDesign:
    """Everything printed on one product: two designs with equal fields give identical textures.

    ``layout`` is the mesh's UV layout (:mod:`ssl_nav.sim.meshes`); ``dims`` the mesh size in metres, which
    sets the atlas proportions so that text is not stretched. Near-identical products change one of
    ``band``, ``variant`` or ``logo_shape``/``logo_colour``; recoloured twins change ``hue_shift``.
    """

    layout: str
    dims: tuple[float, float, float]
    brand: str
    variant: str
    base: RGB
    accent: RGB
    band: RGB
    text: RGB
    logo_shape: str
    logo_colour: RGB
    pattern: str
    seed: int  #: photo blobs, small print, barcode digits, print noise
    hue_shift: float = 0.0  #: rotate every hue by this fraction of the colour circle (recoloured twin)
    max_px: int = 768  #: longest atlas side (px)

    def key(self) -> str:
        return f"{self.layout}_{self.brand.lower()}_{_digest(self)}"

    def to_json(self) -> dict:
        d = asdict(self)
        d["key"] = self.key()
        return d

    def draw(self) -> np.ndarray:
        if self.layout == "box":
            img = _draw_box_atlas(self)
        elif self.layout in ("can", "bottle"):
            img = _draw_wrap_label(self)
        elif self.layout == "book":
            img = _draw_book_atlas(self)
        elif self.layout == "plate":
            img = _draw_plate(self)
        elif self.layout == "plain":
            img = _draw_plain(self)
        else:
            raise ValueError(f"unknown packaging layout {self.layout!r}")
        return hue_rotate(img, self.hue_shift) if self.hue_shift else img


def random_design(rng: np.random.Generator, layout: str, dims: tuple[float, float, float]) -> PackagingDesign:
    """A new product line: random brand, colours, logo and pattern (variant ``ORIGINAL``)."""
    h = float(rng.uniform(0, 1))
    light = bool(rng.uniform() < 0.35)
    base = _rgb(h, float(rng.uniform(0.05, 0.25)), float(rng.uniform(0.88, 0.98))) if light \
        else _rgb(h, float(rng.uniform(0.55, 0.95)), float(rng.uniform(0.45, 0.9)))
    accent = _rgb(h + float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.5, 0.95)), float(rng.uniform(0.5, 0.95)))
    text = (25, 25, 25) if light else (250, 250, 250)
    return PackagingDesign(
        layout=layout, dims=tuple(float(round(d, 4)) for d in dims),  # type: ignore[arg-type]
        brand=brand_name(rng), variant=VARIANT_WORDS[0], base=base, accent=accent,
        band=random_colour(rng), text=text, logo_shape=LOGO_SHAPES[int(rng.integers(len(LOGO_SHAPES)))],
        logo_colour=random_colour(rng), pattern=PATTERNS[int(rng.integers(len(PATTERNS)))],
        seed=int(rng.integers(0, 2**31 - 1)))


#: the one-detail changes that make a near-identical product
VARIANT_DETAILS = ("band", "variant", "logo")


def near_identical(design: PackagingDesign, detail: str, rng: np.random.Generator) -> PackagingDesign:
    """The same product with one detail changed: the colour band, the variant text, or the logo."""
    if detail == "band":
        h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in design.band))
        return replace(design, band=_rgb(h + float(rng.uniform(0.25, 0.75)), max(0.55, s), max(0.5, v)))
    if detail == "variant":
        words = [w for w in VARIANT_WORDS if w != design.variant]
        return replace(design, variant=words[int(rng.integers(len(words)))])
    if detail == "logo":
        shapes = [s for s in LOGO_SHAPES if s != design.logo_shape]
        return replace(design, logo_shape=shapes[int(rng.integers(len(shapes)))], logo_colour=random_colour(rng))
    raise ValueError(f"unknown detail {detail!r}; one of {VARIANT_DETAILS}")


def hue_rotate(img: np.ndarray, shift: float) -> np.ndarray:
    """Rotate the hue of an RGB image by ``shift`` of the colour circle (greys stay grey)."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV_FULL)
    hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + int(round(shift * 256))) % 256).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)


# ---- drawing helpers (all coordinates in pixels of the region being drawn)

def _put_text_fit(img: np.ndarray, text: str, box: tuple[int, int, int, int], colour: RGB, font: int = 2,
                  thickness_frac: float = 0.08, outline: RGB | None = None, rotate: bool = False) -> None:
    """Write ``text`` as large as fits into ``box`` = (x0, y0, x1, y1), centred."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    if bw < 4 or bh < 4 or not text:
        return
    if rotate:  # draw into a rotated patch, then paste
        patch = np.ascontiguousarray(np.rot90(img[y0:y1, x0:x1]))
        _put_text_fit(patch, text, (0, 0, bh, bw), colour, font, thickness_frac, outline)
        img[y0:y1, x0:x1] = np.rot90(patch, -1)
        return
    (tw, th), base = cv2.getTextSize(text, font, 1.0, 1)
    scale = min(bw * 0.92 / max(tw, 1), bh * 0.8 / max(th + base, 1))
    thick = max(1, int(round(scale * 30 * thickness_frac)))
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    org = (int(x0 + (bw - tw) / 2), int(y0 + (bh + th) / 2 - base / 2))
    if outline is not None:
        cv2.putText(img, text, org, font, scale, outline, thick + max(2, thick), cv2.LINE_AA)
    cv2.putText(img, text, org, font, scale, colour, thick, cv2.LINE_AA)


def _poly(shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    if shape == "star":
        ang = np.arange(10) * math.pi / 5 - math.pi / 2
        rad = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
    elif shape == "diamond":
        ang, rad = np.arange(4) * math.pi / 2 - math.pi / 2, np.full(4, r)
    elif shape == "triangle":
        ang, rad = np.arange(3) * 2 * math.pi / 3 - math.pi / 2, np.full(3, r)
    elif shape == "hexagon":
        ang, rad = np.arange(6) * math.pi / 3, np.full(6, r)
    elif shape == "square":
        ang, rad = np.arange(4) * math.pi / 2 + math.pi / 4, np.full(4, r)
    elif shape == "leaf":
        t = np.linspace(0, 2 * math.pi, 24, endpoint=False)
        return np.stack([cx + r * 0.55 * np.sin(t) * np.abs(np.sin(t)) ** 0.2,
                         cy - r * np.cos(t)], 1).astype(np.int32)
    else:
        raise ValueError(shape)
    return np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).astype(np.int32)


def _draw_logo(img: np.ndarray, d: PackagingDesign, cx: float, cy: float, r: float) -> None:
    if r < 3:
        return
    col, edge = d.logo_colour, d.text
    if d.logo_shape == "circle":
        cv2.circle(img, (int(cx), int(cy)), int(r), col, -1, cv2.LINE_AA)
        cv2.circle(img, (int(cx), int(cy)), int(r), edge, max(1, int(r / 12)), cv2.LINE_AA)
    elif d.logo_shape == "ellipse":
        cv2.ellipse(img, (int(cx), int(cy)), (int(r), int(r * 0.6)), 0, 0, 360, col, -1, cv2.LINE_AA)
        cv2.ellipse(img, (int(cx), int(cy)), (int(r), int(r * 0.6)), 0, 0, 360, edge, max(1, int(r / 12)),
                    cv2.LINE_AA)
    else:
        pts = _poly(d.logo_shape, cx, cy, r)
        cv2.fillPoly(img, [pts], col, cv2.LINE_AA)
        cv2.polylines(img, [pts], True, edge, max(1, int(r / 12)), cv2.LINE_AA)
    _put_text_fit(img, d.brand[0], (int(cx - r * 0.5), int(cy - r * 0.5), int(cx + r * 0.5), int(cy + r * 0.5)),
                  edge, font=4, thickness_frac=0.12)


def _background(d: PackagingDesign, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Base colour with a soft gradient, the design's pattern and print noise (float32)."""
    img = np.empty((h, w, 3), np.float32)
    img[:] = np.array(d.base, np.float32)
    grad = np.linspace(1.06, 0.9, h, dtype=np.float32)[:, None, None]
    img *= grad
    acc = np.array(d.accent, np.float32)
    y, x = np.ogrid[:h, :w]
    period = max(8, min(h, w) // 8)
    if d.pattern == "stripes":
        m = (y // max(2, period // 2)) % 4 == 0
    elif d.pattern == "diagonal":
        m = ((x + y) // max(2, period // 2)) % 3 == 0
    elif d.pattern == "dots":
        m = ((x % period - period / 2) ** 2 + (y % period - period / 2) ** 2) < (period / 5) ** 2
    elif d.pattern == "waves":
        m = np.abs(np.sin(x * 2 * math.pi / (3 * period)) * period / 2 + period / 2 - y % period) < period / 8
    elif d.pattern == "checks":
        m = ((x // period) + (y // period)) % 2 == 0
    else:
        m = np.zeros((h, w), bool)
    m = np.broadcast_to(m, (h, w))
    img[m] = img[m] * 0.55 + acc * 0.45
    noise = cv2.resize(rng.standard_normal((max(2, h // 6), max(2, w // 6))).astype(np.float32), (w, h),
                       interpolation=cv2.INTER_LINEAR)
    img += noise[..., None] * 5.0
    return img


def _photo(img: np.ndarray, box: tuple[int, int, int, int], rng: np.random.Generator) -> None:
    """A blurry "product photo": overlapping shaded blobs in natural colours."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if w < 8 or h < 8:
        return
    patch = np.ascontiguousarray(img[y0:y1, x0:x1]).astype(np.float32)
    hue = float(rng.uniform(0, 1))
    rows = np.arange(h, dtype=np.float32)[:, None]
    sigma = max(0.8, min(w, h) / 60)
    for _ in range(int(rng.integers(3, 7))):
        c = np.array(_rgb(hue + float(rng.normal(0, 0.08)), float(rng.uniform(0.4, 0.9)),
                          float(rng.uniform(0.4, 0.95))), np.float32)
        cx, cy = float(rng.uniform(0.2, 0.8)) * w, float(rng.uniform(0.3, 0.8)) * h
        ax, ay = float(rng.uniform(0.12, 0.3)) * w, float(rng.uniform(0.12, 0.3)) * h
        blob = np.zeros((h, w), np.float32)
        cv2.ellipse(blob, (int(cx), int(cy)), (max(1, int(ax)), max(1, int(ay))), float(rng.uniform(0, 180)), 0, 360,
                    1.0, -1, cv2.LINE_AA)
        blob = cv2.GaussianBlur(blob, (0, 0), sigma)[..., None]
        shade = 1.0 - 0.35 * ((rows - (cy - ay)) / max(1.0, 2 * ay)).clip(0, 1)  # darker towards the bottom
        patch += blob * (c * shade[..., None] - patch)
    img[y0:y1, x0:x1] = np.clip(np.round(patch), 0, 255)


def _small_print(img: np.ndarray, box: tuple[int, int, int, int], colour: RGB, rng: np.random.Generator,
                 lines: int = 6) -> None:
    x0, y0, x1, y1 = box
    if x1 - x0 < 20 or y1 - y0 < 10:
        return
    lh = (y1 - y0) / lines
    scale = max(0.2, lh / 30)
    patch = np.ascontiguousarray(img[y0:y1, x0:x1])  # text is clipped to the box
    for k in range(lines):
        n = int(rng.integers(12, 40))
        txt = "".join(chr(int(c)) for c in rng.integers(97, 123, n))
        txt = " ".join(txt[i:i + int(rng.integers(3, 8))] for i in range(0, n, 6))
        cv2.putText(patch, txt, (2, int((k + 0.8) * lh)), 0, scale, colour, 1, cv2.LINE_AA)
    img[y0:y1, x0:x1] = patch


def _barcode(img: np.ndarray, box: tuple[int, int, int, int], rng: np.random.Generator) -> None:
    """An EAN-13-like barcode: 95 modules of random bars with guard bars, digits underneath."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if w < 30 or h < 12:
        return
    img[y0:y1, x0:x1] = 255
    modules = rng.integers(0, 2, 95)
    modules[:3] = modules[45:50] = modules[92:] = (1, 0, 1)[0]
    modules[[0, 2, 46, 48, 92, 94]] = 1
    modules[[1, 45, 47, 49, 93]] = 0
    mw = (w - 4) / 95
    for i, m in enumerate(modules):
        if m:
            xa = int(x0 + 2 + i * mw)
            xb = max(xa + 1, int(x0 + 2 + (i + 1) * mw))
            img[y0 + 2:int(y0 + h * 0.78), xa:xb] = 0
    digits = "".join(str(int(c)) for c in rng.integers(0, 10, 13))
    cv2.putText(img, digits, (x0 + 2, y1 - 2), 0, max(0.2, h * 0.18 / 22), (0, 0, 0), 1, cv2.LINE_AA)


def _front_panel(img: np.ndarray, box: tuple[int, int, int, int], d: PackagingDesign,
                 rng: np.random.Generator) -> None:
    """Brand band at the top, logo, product photo, variant band at the bottom."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if w < 8 or h < 8:
        return
    top = int(h * 0.24)
    cv2.rectangle(img, (x0, y0), (x1 - 1, y0 + top), d.accent, -1)
    _put_text_fit(img, d.brand, (x0 + int(w * 0.05), y0 + 2, x1 - int(w * 0.05), y0 + top - 2), d.text, font=2,
                  outline=d.base)
    _photo(img, (x0 + int(w * 0.1), y0 + int(h * 0.3), x1 - int(w * 0.1), y0 + int(h * 0.74)), rng)
    r = min(w, h) * 0.11
    _draw_logo(img, d, x0 + w * 0.2, y0 + top + r * 1.3, r)
    band0 = y0 + int(h * 0.76)
    cv2.rectangle(img, (x0, band0), (x1 - 1, y0 + int(h * 0.92)), d.band, -1)
    _put_text_fit(img, d.variant, (x0 + int(w * 0.1), band0 + 1, x1 - int(w * 0.1), y0 + int(h * 0.92) - 1),
                  (255, 255, 255), font=0, outline=(30, 30, 30))
    _put_text_fit(img, f"{int(rng.integers(1, 10)) * 50} g", (x0 + int(w * 0.6), y0 + int(h * 0.93), x1 - 2, y1 - 1),
                  d.text, font=0)


def _back_panel(img: np.ndarray, box: tuple[int, int, int, int], d: PackagingDesign,
                rng: np.random.Generator) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if w < 8 or h < 8:
        return
    _put_text_fit(img, d.brand, (x0 + 4, y0 + 2, x1 - 4, y0 + int(h * 0.14)), d.text, font=2)
    table = (x0 + int(w * 0.08), y0 + int(h * 0.18), x1 - int(w * 0.08), y0 + int(h * 0.55))
    cv2.rectangle(img, table[:2], table[2:], (255, 255, 255), -1)
    for k in range(1, 6):
        yy = int(table[1] + k * (table[3] - table[1]) / 6)
        cv2.line(img, (table[0], yy), (table[2], yy), (60, 60, 60), 1)
    _small_print(img, table, (40, 40, 40), rng, lines=6)
    _small_print(img, (x0 + 4, y0 + int(h * 0.58), x1 - 4, y0 + int(h * 0.78)), d.text, rng, lines=4)
    cv2.rectangle(img, (x0, y0 + int(h * 0.8)), (x1 - 1, y0 + int(h * 0.84)), d.band, -1)
    _barcode(img, (x0 + int(w * 0.45), y0 + int(h * 0.86), x1 - int(w * 0.06), y1 - int(h * 0.02)), rng)


def _side_panel(img: np.ndarray, box: tuple[int, int, int, int], d: PackagingDesign,
                rng: np.random.Generator) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if w < 4 or h < 8:
        return
    cv2.rectangle(img, (x0, y0), (x1 - 1, y0 + int(h * 0.12)), d.accent, -1)
    _put_text_fit(img, d.brand, (x0 + 1, y0 + int(h * 0.15), x1 - 1, y0 + int(h * 0.75)), d.text, font=2,
                  rotate=h > 2 * w)
    cv2.rectangle(img, (x0, y0 + int(h * 0.8)), (x1 - 1, y0 + int(h * 0.86)), d.band, -1)
    _small_print(img, (x0 + 1, y0 + int(h * 0.87), x1 - 1, y1 - 1), d.text, rng, lines=3)


def _atlas_px(d: PackagingDesign, wm: float, hm: float) -> float:
    return d.max_px / max(wm, hm)


def box_atlas_layout(dims: tuple[float, float, float]) -> dict[str, tuple[float, float, float, float]]:
    """UV rectangles ``(u0, v0, u1, v1)`` of a box's faces in its atlas (OpenGL v: 0 at the bottom row).

    The atlas is ``[front a | right b | back a | left b]`` (height c) above ``[top a x b | bottom a x b]``,
    in metres, so every face keeps its proportions (a = x width, b = y depth, c = height).
    """
    a, b, c = dims
    wm, hm = 2 * a + 2 * b, c + b

    def rect(xm0: float, ym0: float, xm1: float, ym1: float) -> tuple[float, float, float, float]:
        # ym measured from the top row of the image; v runs upwards
        return (xm0 / wm, 1.0 - ym1 / hm, xm1 / wm, 1.0 - ym0 / hm)

    return {"front": rect(0, 0, a, c), "right": rect(a, 0, a + b, c), "back": rect(a + b, 0, 2 * a + b, c),
            "left": rect(2 * a + b, 0, 2 * a + 2 * b, c), "top": rect(0, c, a, c + b),
            "bottom": rect(a, c, 2 * a, c + b)}


def _uv_box_px(uv: tuple[float, float, float, float], w: int, h: int) -> tuple[int, int, int, int]:
    u0, v0, u1, v1 = uv
    return (int(round(u0 * w)), int(round((1 - v1) * h)), int(round(u1 * w)), int(round((1 - v0) * h)))


def _draw_box_atlas(d: PackagingDesign) -> np.ndarray:
    a, b, c = d.dims
    wm, hm = 2 * a + 2 * b, c + b
    ppm = _atlas_px(d, wm, hm)
    w, h = max(8, int(round(wm * ppm))), max(8, int(round(hm * ppm)))
    rng = np.random.default_rng([d.seed, 0xB0])
    img = _background(d, h, w, rng)
    rects = {k: _uv_box_px(v, w, h) for k, v in box_atlas_layout(d.dims).items()}
    img = _clip_u8(img)
    _front_panel(img, rects["front"], d, np.random.default_rng([d.seed, 1]))
    _back_panel(img, rects["back"], d, np.random.default_rng([d.seed, 2]))
    _side_panel(img, rects["right"], d, np.random.default_rng([d.seed, 3]))
    _side_panel(img, rects["left"], d, np.random.default_rng([d.seed, 4]))
    x0, y0, x1, y1 = rects["top"]
    _put_text_fit(img, d.brand, (x0 + 2, y0 + 2, x1 - 2, y1 - 2), d.text, font=0)
    return img


def wrap_label_rows(layout: str) -> tuple[float, float]:
    """Vertical extent (v0, v1) of the printed label on a can or bottle (OpenGL v, 0 at the bottom)."""
    return (0.08, 0.92) if layout == "can" else (0.12, 0.55)


def _draw_wrap_label(d: PackagingDesign) -> np.ndarray:
    """A label wrapped around a cylinder: u runs around (circumference), v up the height."""
    r, _, height = d.dims
    circ = 2 * math.pi * r
    v0, v1 = wrap_label_rows(d.layout)
    ppm = _atlas_px(d, circ, height)
    w, h = max(16, int(round(circ * ppm))), max(16, int(round(height * ppm)))
    rng = np.random.default_rng([d.seed, 0xCA])
    img = _background(d, h, w, rng)
    if d.layout == "bottle":  # plastic body above and below the label, cap colour at the top
        body = np.array(d.accent, np.float32) * 0.35 + 150
        y_label0, y_label1 = int((1 - v1) * h), int((1 - v0) * h)
        img[:y_label0] = body
        img[y_label1:] = body
        img[: int(h * 0.08)] = np.array(d.logo_colour, np.float32) * 0.8
    img = _clip_u8(img)
    y0, y1 = int((1 - v1) * h), int((1 - v0) * h)
    # the front half carries the front panel, the back half small print and the barcode
    _front_panel(img, (0, y0, w // 2, y1), d, np.random.default_rng([d.seed, 1]))
    _back_panel(img, (w // 2, y0, w, y1), d, np.random.default_rng([d.seed, 2]))
    if d.layout == "can":  # metallic rims
        rim = max(1, int(h * 0.04))
        img[:rim] = 190
        img[-rim:] = 170
        cv2.line(img, (0, rim), (w - 1, rim), (120, 120, 120), 1)
    return img


def _draw_book_atlas(d: PackagingDesign) -> np.ndarray:
    """A book lying flat: cover on top, title on the spine, pages on the other sides (box atlas)."""
    a, b, c = d.dims
    wm, hm = 2 * a + 2 * b, c + b
    ppm = _atlas_px(d, wm, hm)
    w, h = max(8, int(round(wm * ppm))), max(8, int(round(hm * ppm)))
    rng = np.random.default_rng([d.seed, 0xB00C])
    img = _clip_u8(_background(d, h, w, rng))
    rects = {k: _uv_box_px(v, w, h) for k, v in box_atlas_layout(d.dims).items()}
    for k in ("front", "back", "right"):  # page edges: off-white with fine lines
        x0, y0, x1, y1 = rects[k]
        img[y0:y1, x0:x1] = 236
        img[y0:y1:3, x0:x1] = 215
    x0, y0, x1, y1 = rects["top"]
    _put_text_fit(img, d.brand.title(), (x0 + (x1 - x0) // 10, y0 + (y1 - y0) // 8, x1 - (x1 - x0) // 10,
                                         y0 + (y1 - y0) * 3 // 8), d.text, font=4)
    _photo(img, (x0 + (x1 - x0) // 6, y0 + (y1 - y0) * 4 // 9, x1 - (x1 - x0) // 6, y1 - (y1 - y0) // 6),
           np.random.default_rng([d.seed, 5]))
    _draw_logo(img, d, x1 - (x1 - x0) * 0.12, y1 - (y1 - y0) * 0.1, min(x1 - x0, y1 - y0) * 0.06)
    x0, y0, x1, y1 = rects["left"]  # spine
    _put_text_fit(img, d.brand, (x0, y0, x1, y1), d.text, font=2, rotate=True)
    return img


def _draw_plate(d: PackagingDesign) -> np.ndarray:
    """A plate or coaster seen from above (planar UVs): a rim band and a centre motif."""
    n = min(d.max_px, 512)
    rng = np.random.default_rng([d.seed, 0x9A])
    img = np.empty((n, n, 3), np.float32)
    img[:] = np.array(d.base, np.float32)
    img = _clip_u8(img + periodic_noise(rng, n, n, 10)[..., None] * 2.0)
    c = n // 2
    cv2.circle(img, (c, c), int(n * 0.46), d.band, max(2, n // 30), cv2.LINE_AA)
    cv2.circle(img, (c, c), int(n * 0.36), d.accent, max(1, n // 80), cv2.LINE_AA)
    if d.pattern != "none":
        _draw_logo(img, d, c, c, n * 0.14)
    return img


def _draw_plain(d: PackagingDesign) -> np.ndarray:
    """A printed solid: the base colour with the pattern and print noise (pens, dice, erasers)."""
    n = min(d.max_px, 256)
    return _clip_u8(_background(d, n, n, np.random.default_rng([d.seed, 0x91])))


# ------------------------------------------------------------------------------------------ images and files

Texture = SurfaceTexture | PackagingDesign | DataTexture


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(asdict(obj), sort_keys=True).encode()).hexdigest()[:12]


@functools.lru_cache(maxsize=128)
def texture_image(tex: Texture) -> np.ndarray:
    """The RGB uint8 image of a texture (cached; do not modify the returned array)."""
    img = tex.draw()
    img.setflags(write=False)
    return img


@dataclass
class TextureFiles:
    """PNG files of textures for ``pybullet.loadTexture``, in a private temporary directory.

    ``pybullet_data`` textures are used in place; procedural ones are written once per key.
    :meth:`cleanup` removes the directory (the simulator calls it when it closes).
    """

    root: Path | None = None
    _paths: dict[str, str] = field(default_factory=dict)

    def path(self, tex: Texture) -> str:
        if isinstance(tex, DataTexture):
            from ssl_nav.sim.data import resolve_data_file

            return str(resolve_data_file(tex.path))
        key = tex.key()
        if key not in self._paths:
            if self.root is None:
                self.root = Path(tempfile.mkdtemp(prefix="ssl_nav_textures_"))
            p = self.root / f"{key}.png"
            ok, buf = cv2.imencode(".png", cv2.cvtColor(texture_image(tex), cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_PNG_COMPRESSION, 1])  # private, read once: fast over small
            if not ok:
                raise DependencyError(f"{p}: cannot encode texture")
            p.write_bytes(buf.tobytes())
            self._paths[key] = os.fspath(p)
        return self._paths[key]

    def cleanup(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            self._paths.clear()
