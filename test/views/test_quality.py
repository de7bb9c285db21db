"""Quality figures and thresholds."""

import cv2
import numpy as np

from ssl_nav.config import ViewsConfig
from ssl_nav.views.quality import ViewQuality, laplacian_variance, sharpness_in_square


def test_blur_lowers_laplacian_variance():
    rng = np.random.default_rng(0)
    img = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(img, (9, 9), 3)
    assert laplacian_variance(img) > 5 * laplacian_variance(blurred)
    assert laplacian_variance(np.full((8, 8, 3), 7, np.uint8)) == 0.0
    # the padding outside the image does not count
    assert sharpness_in_square(blurred, (-30, -30, 30, 30)) == laplacian_variance(blurred[:30, :30])


def test_thresholds_name_the_failure():
    cfg = ViewsConfig(min_visible_points=10, min_box_px=20, min_visible_fraction=0.3, max_truncation=0.4,
                      min_sharpness=5.0)
    ok = ViewQuality(sharpness=10, box_px=30, visible_fraction=0.5, truncation=0.1, n_visible=50)
    assert ok.failure(cfg) is None
    assert ViewQuality(10, 30, 0.5, 0.1, 5).failure(cfg) == "few visible points"
    assert ViewQuality(10, 10, 0.5, 0.1, 50).failure(cfg) == "box too small"
    assert ViewQuality(10, 30, 0.1, 0.1, 50).failure(cfg) == "mostly hidden"
    assert ViewQuality(10, 30, 0.5, 0.6, 50).failure(cfg) == "truncated"
    assert ViewQuality(1, 30, 0.5, 0.1, 50).failure(cfg) == "blurred"
