"""Square crops: geometry, centring, black padding."""

import numpy as np

from ssl_nav.crops import crop_square, square_box, truncation


def test_square_is_centred_on_the_longer_side_with_margin():
    sq = square_box((10, 20, 50, 40), margin=0.1)
    x0, y0, x1, y1 = sq
    assert x1 - x0 == y1 - y0 == 48  # 40 * 1.2
    assert abs((x0 + x1) / 2 - 30) <= 1 and abs((y0 + y1) / 2 - 30) <= 1


def test_padding_is_black_where_the_square_leaves_the_image():
    img = np.full((60, 80, 3), 200, np.uint8)
    sq = square_box((60, 10, 80, 50), margin=0.0)  # 40 px square centred at x=70: 10 px leave the image
    assert sq[2] > 80
    assert abs(truncation(sq, (60, 80)) - 0.25) < 0.03
    crop = crop_square(img, sq, 40)
    out_cols = sq[2] - 80
    assert np.all(crop[:, 40 - out_cols:] == 0)
    assert np.all(crop[:, :40 - out_cols] == 200)
    resized = crop_square(img, sq, 16)
    assert resized.shape == (16, 16, 3)
    assert np.all(resized[:, -2:] == 0) and np.all(resized[:, :10] == 200)


def test_top_left_padding_and_label_crops():
    lab = np.arange(100, dtype=np.int32).reshape(10, 10)
    crop = crop_square(lab, (-2, -3, 4, 3), 6)
    assert np.all(crop[:3] == 0) and np.all(crop[:, :2] == 0)
    assert crop[3, 2] == lab[0, 0] and crop[5, 5] == lab[2, 3]
    assert truncation((-5, -5, 5, 5), (10, 10)) == 0.75
