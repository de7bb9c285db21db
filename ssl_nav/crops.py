"""SimView square crops: the instance box squared on its longer side, plus a margin, black outside the image.

SimView (Sakaguchi et al., IROS 2024, arXiv 2404.09647) crops each instance as a
square on the longer side of its box, padding with black where the square leaves
the image, so the object keeps its aspect ratio and stays centred.
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def square_box(bbox: tuple[float, float, float, float], margin: float) -> tuple[int, int, int, int]:
    """Integer square ``[x0, y0, x1, y1)`` centred on ``bbox``, side = longer side * (1 + 2 * margin).

    The square may extend outside the image.
    """
    x0, y0, x1, y1 = (float(v) for v in bbox)
    side = max(x1 - x0, y1 - y0, 1.0) * (1.0 + 2.0 * margin)
    s = max(1, int(math.ceil(side)))
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    sx0 = int(math.floor(cx - s / 2.0))
    sy0 = int(math.floor(cy - s / 2.0))
    return sx0, sy0, sx0 + s, sy0 + s


def truncation(square: tuple[int, int, int, int], shape: tuple[int, int]) -> float:
    """Fraction of the square's area outside an image of ``shape`` (h, w)."""
    h, w = shape
    x0, y0, x1, y1 = square
    iw = max(0, min(x1, w) - max(x0, 0))
    ih = max(0, min(y1, h) - max(y0, 0))
    area = max(1, (x1 - x0) * (y1 - y0))
    return 1.0 - (iw * ih) / area


def crop_square(image: np.ndarray, square: tuple[int, int, int, int], size: int,
                interpolation: int | None = None) -> np.ndarray:
    """Cut ``square`` out of ``image`` (black where it leaves the image) and resize it to ``size`` x ``size``.

    Works for HxWxC and HxW arrays; pass ``cv2.INTER_NEAREST`` for label images.
    """
    h, w = image.shape[:2]
    x0, y0, x1, y1 = square
    s = x1 - x0
    canvas = np.zeros((s, s) + image.shape[2:], dtype=image.dtype)
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if ix1 > ix0 and iy1 > iy0:
        canvas[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = image[iy0:iy1, ix0:ix1]
    if s == size:
        return canvas
    if interpolation is None:
        interpolation = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    return cv2.resize(canvas, (size, size), interpolation=interpolation)
