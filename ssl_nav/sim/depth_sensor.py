"""Low-quality robot depth like an active-stereo camera (Intel RealSense D4xx), from ideal rendered depth.

A stereo camera measures disparity ``d = fx * B / z`` (baseline ``B``) and matches with sub-pixel precision,
so its errors live in disparity space (Keselman et al., "Intel RealSense Stereoscopic Depth Cameras", CVPR-W
2017; Ahn et al., "Analysis and Noise Modeling of the Intel RealSense D435", 2019):

- **noise growing with distance**: Gaussian disparity noise of ``sigma_d`` px gives a depth std of
  ``z^2 * sigma_d / (fx * B)``; half of it is spatially correlated over ~4 px patches (the matching window);
- **quantisation**: disparity in steps of 1/32 px (the D4xx sub-pixel resolution), then millimetres;
- **stereo shadows**: depth is registered to the left imager; background just left of a nearer object is
  hidden from the right imager and has no depth;
- **holes at depth edges**: matching fails across discontinuities (ragged invalid bands of a few pixels);
- **dark and specular surfaces**: too little (or saturated) signal: blobby holes on dark surfaces, holes on
  highlights;
- **range limits and speckle**: no depth nearer than ``depth_min_m`` or farther than ``depth_max_m``; isolated
  dropouts, more of them far away.

Invalid pixels read 0, as in the frames-directory format. The instance mask stays the exact ground truth. All
randomness comes from the generator passed in (the frame's), so a frame is reproducible on its own.
"""

from __future__ import annotations

import cv2
import numpy as np

from ssl_nav.config import SimConfig
from ssl_nav.sim.degrade import gaussian_noise


def stereo_shadow(disparity: np.ndarray, tolerance_px: float = 0.5) -> np.ndarray:
    """Pixels of the left image that the right imager cannot see (a nearer surface to their right covers them).

    A left pixel ``x`` with disparity ``d`` appears at column ``x - d`` in the right image; it is hidden when
    some pixel ``x' > x`` lands at or left of it: ``min_{x' > x} (x' - d(x')) <= x - d(x)``.
    """
    h, w = disparity.shape
    valid = disparity > 0
    col = np.where(valid, np.arange(w, dtype=np.float32)[None, :] - disparity, np.inf).astype(np.float32)
    right_min = np.minimum.accumulate(col[:, ::-1], axis=1)[:, ::-1]
    right_min = np.concatenate([right_min[:, 1:], np.full((h, 1), np.inf, np.float32)], axis=1)
    return valid & (right_min <= col - tolerance_px)


def depth_edges(depth: np.ndarray, relative_jump: float = 0.05) -> np.ndarray:
    """Pixels next to a depth discontinuity: a 4-neighbour differs by more than ``relative_jump`` of the depth."""
    z = depth.astype(np.float32)
    edge = np.zeros(z.shape, bool)
    for dz, sl_a, sl_b in ((np.abs(np.diff(z, axis=0)), np.s_[:-1, :], np.s_[1:, :]),
                           (np.abs(np.diff(z, axis=1)), np.s_[:, :-1], np.s_[:, 1:])):
        near = np.minimum(z[sl_a], z[sl_b])
        jump = (dz > relative_jump * np.maximum(near, 1e-3)) | ((z[sl_a] > 0) != (z[sl_b] > 0))
        edge[sl_a] |= jump
        edge[sl_b] |= jump
    return edge


def _upsampled(rng: np.random.Generator, h: int, w: int, cell: int, normal: bool) -> np.ndarray:
    gh, gw = max(2, h // cell + 1), max(2, w // cell + 1)
    g = rng.standard_normal((gh, gw), dtype=np.float32) if normal else rng.random((gh, gw), dtype=np.float32)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_LINEAR)


def realsense_depth(depth: np.ndarray, rgb: np.ndarray, fx: float, cfg: SimConfig,
                    rng: np.random.Generator) -> np.ndarray:
    """Degrade ideal metric depth (0 = invalid) like an active-stereo camera; float32 metres, 0 = no depth.

    ``rgb`` is the sharp rendered colour image (its grey level stands in for the infrared return).
    """
    z = depth.astype(np.float32)
    h, w = z.shape
    valid = z > 0
    fb = np.float32(fx * cfg.depth_baseline_m)
    disp = np.zeros_like(z)
    disp[valid] = fb / z[valid]
    invalid = stereo_shadow(disp)
    # noise in disparity: half correlated over ~4 px (the matching window), half per pixel
    sigma = np.float32(cfg.depth_disparity_noise_px)
    if sigma > 0:
        noise = _upsampled(rng, h, w, 4, True) * np.float32(0.7071) \
            + gaussian_noise(rng, (h, w)) * np.float32(0.7071)
        disp = disp + noise * sigma
    step = np.float32(cfg.depth_disparity_step_px)
    if step > 0:
        disp = np.round(disp / step) * step
    ok = valid & (disp > 0)
    out = np.zeros_like(z)
    out[ok] = fb / disp[ok]
    # holes at depth edges: ragged bands around discontinuities
    if cfg.depth_edge_px > 0:
        k = 2 * int(cfg.depth_edge_px) + 1
        band = cv2.dilate(depth_edges(z).astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
        invalid |= band & (rng.random((h, w), dtype=np.float32) < 0.6)
    # dark (low IR return) and specular (saturated) surfaces
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    if cfg.depth_dark_level > 0:
        dark = grey < np.float32(cfg.depth_dark_level)
        invalid |= dark & (_upsampled(rng, h, w, 8, False) < 0.6)
    if cfg.depth_specular_level < 256:
        spec = (grey >= np.float32(cfg.depth_specular_level)).astype(np.uint8)
        invalid |= cv2.dilate(spec, np.ones((3, 3), np.uint8)).astype(bool)
    # speckle, more of it far away; range limits
    if cfg.depth_dropout > 0:
        p = np.float32(cfg.depth_dropout) * (1 + (out / np.float32(3.0)) ** 2)
        invalid |= rng.random((h, w), dtype=np.float32) < p
    invalid |= (out < np.float32(cfg.depth_min_m)) | (out > np.float32(cfg.depth_max_m))
    out[invalid] = 0.0
    return out
