"""Quality of a candidate view: sharpness, box size, visible fraction, truncation.

Sharpness is the variance of the Laplacian (Pech-Pacheco et al., ICPR 2000), the
usual blur measure; CrossIA (Sakaguchi et al., IRC 2024, arXiv 2404.09645)
stresses that robot views are blurred and low-resolution, so blurred, tiny,
mostly hidden or mostly truncated views are filtered before selection.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ssl_nav.config import ViewsConfig


def laplacian_variance(image: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image (higher = sharper)."""
    if image.size == 0:
        return 0.0
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    return float(cv2.Laplacian(gray, cv2.CV_32F).var())


def sharpness_in_square(image: np.ndarray, square: tuple[int, int, int, int]) -> float:
    """Laplacian variance of the part of ``square`` inside the image (padding excluded)."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = square
    return laplacian_variance(image[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)])


@dataclass
class ViewQuality:
    """Quality figures of one candidate view."""

    sharpness: float
    box_px: float  #: longer side of the instance box (px)
    visible_fraction: float
    truncation: float  #: fraction of the square crop outside the image
    n_visible: int
    purity: float = 1.0  #: share of the crop's instance pixels that belong to this instance

    def failure(self, cfg: ViewsConfig) -> str | None:
        """The first threshold this view fails, or ``None`` when it passes."""
        if self.n_visible < cfg.min_visible_points:
            return "few visible points"
        if self.box_px < cfg.min_box_px:
            return "box too small"
        if self.visible_fraction < cfg.min_visible_fraction:
            return "mostly hidden"
        if self.truncation > cfg.max_truncation:
            return "truncated"
        if self.purity < cfg.min_purity:
            return "crowded by other objects"
        if self.sharpness < cfg.min_sharpness:
            return "blurred"
        return None

    def score(self) -> float:
        """Scalar used to pick the first view of farthest-point sampling (larger is better)."""
        return float(self.visible_fraction * self.purity * (1.0 - self.truncation) * np.log1p(max(self.sharpness, 0.0))
                     * min(1.0, self.box_px / 128.0))
