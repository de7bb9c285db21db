"""Low-quality (LQ) robot-camera degradation: motion blur, down-and-up scaling, sensor noise.

CrossIA (Sakaguchi et al., IRC 2024, arXiv 2404.09645) pairs blurred,
low-resolution robot crops (LQ) with sharp user photos (HQ). The simulator
renders every frame sharp and then degrades robot frames with this module. All
randomness comes from the ``numpy.random.Generator`` passed in, so a seeded
generator gives byte-identical images.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.special import ndtri

from ssl_nav.config import SimConfig

#: bits of the uniform integer behind each Gaussian sample (see :func:`gaussian_noise`)
NOISE_BITS = 16


@dataclass(frozen=True)
class Degradation:
    """The parameters drawn for one frame (kept for the record and the tests)."""

    blur_length: int  #: motion-blur kernel length (px); <= 1 means no blur
    blur_angle_deg: float
    scale: float  #: down-and-up scale factor (1 = none)
    noise_std: float  #: Gaussian noise (uint8 levels)

    def to_json(self) -> dict:
        return {"blur_length": self.blur_length, "blur_angle_deg": round(self.blur_angle_deg, 3),
                "scale": round(self.scale, 4), "noise_std": round(self.noise_std, 4)}


def motion_blur_kernel(length: int, angle_deg: float) -> np.ndarray:
    """A normalised line kernel of ``length`` px at ``angle_deg`` (linear camera motion during exposure)."""
    length = max(1, int(length))
    size = length if length % 2 == 1 else length + 1
    k = np.zeros((size, size), dtype=np.float32)
    c = size // 2
    dx, dy = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    half = (length - 1) / 2.0
    p0 = (int(round(c - dx * half)), int(round(c - dy * half)))
    p1 = (int(round(c + dx * half)), int(round(c + dy * half)))
    cv2.line(k, p0, p1, 1.0, thickness=1)
    return k / k.sum()


def draw_degradation(cfg: SimConfig, rng: np.random.Generator) -> Degradation:
    """Random LQ parameters: blur length in [max/3, max] px, any angle; scale in [lq_downscale, sqrt(lq_downscale)]."""
    bmax = int(cfg.lq_blur_max_px)
    length = int(rng.integers(max(1, bmax // 3), bmax + 1)) if bmax > 1 else 1
    angle = float(rng.uniform(0.0, 180.0))
    lo = float(cfg.lq_downscale)
    scale = float(rng.uniform(lo, math.sqrt(lo))) if lo < 1.0 else 1.0
    noise = float(rng.uniform(0.5, 1.0) * cfg.lq_noise_std)
    return Degradation(length, angle, scale, noise)


@functools.lru_cache(maxsize=1)
def _normal_quantiles() -> np.ndarray:
    n = 1 << NOISE_BITS
    table = ndtri((np.arange(n, dtype=np.float64) + 0.5) / n).astype(np.float32)
    table.setflags(write=False)
    return table


def gaussian_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 samples by inverse-transform sampling of 16-bit uniform integers.

    The 65536 equiprobable quantiles reach +-4.3 sigma (nothing beyond matters for sensor noise) and cost about
    a fifth of ``rng.standard_normal`` for an image; the samples depend only on ``rng``'s stream.
    """
    return _normal_quantiles()[rng.integers(0, 1 << NOISE_BITS, size=shape, dtype=np.uint16)]


def blur_and_rescale(rgb: np.ndarray, d: Degradation) -> np.ndarray:
    """Motion blur, then scale down and back up (float32 HxWx3, the size of ``rgb``): the noise-free part of
    :func:`apply_degradation`."""
    img = rgb.astype(np.float32)
    if d.blur_length > 1:
        img = cv2.filter2D(img, -1, motion_blur_kernel(d.blur_length, d.blur_angle_deg), borderType=cv2.BORDER_REFLECT)
    if d.scale < 1.0:
        h, w = rgb.shape[:2]
        sw, sh = max(1, int(round(w * d.scale))), max(1, int(round(h * d.scale)))
        img = cv2.resize(cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA), (w, h),
                         interpolation=cv2.INTER_LINEAR)
    return img


def apply_degradation(rgb: np.ndarray, d: Degradation, rng: np.random.Generator) -> np.ndarray:
    """Blur, scale down and back up, add noise; uint8 HxWx3 in and out (same size)."""
    img = blur_and_rescale(rgb, d)
    noise_std = float(d.noise_std) if d.noise_std > 0 else 0.0
    noise = gaussian_noise(rng, img.shape) if noise_std > 0 else img
    # img + noise_std * noise, rounded half to even and saturated to uint8 in one pass
    out = cv2.addWeighted(img, 1.0, noise, noise_std, 0.0, dtype=cv2.CV_8U)
    return out.reshape(rgb.shape)


def degrade(rgb: np.ndarray, cfg: SimConfig, rng: np.random.Generator) -> tuple[np.ndarray, Degradation]:
    """Draw LQ parameters from ``rng`` and apply them; returns the degraded image and the parameters."""
    d = draw_degradation(cfg, rng)
    return apply_degradation(rgb, d, rng), d


def laplacian_variance(rgb: np.ndarray) -> float:
    """Sharpness: variance of the Laplacian of the grey image (higher = sharper)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    return float(cv2.Laplacian(grey.astype(np.float64), cv2.CV_64F).var())
