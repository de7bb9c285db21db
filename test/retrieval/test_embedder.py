"""Embedder: unit-norm backbone features, batch-size invariant, flip TTA, baseline MobileNetV2."""

import numpy as np
import pytest

from ssl_nav.config import RetrievalConfig
from ssl_nav.learning.backbones import load_encoder
from ssl_nav.retrieval.embedder import Embedder


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("mobilenet_v2", device="cpu")


def images(n, seed=0, size=40):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size + 8 * i, 3), dtype=np.uint8) for i in range(n)]


def test_unit_norm_and_batch_invariant(encoder):
    imgs = images(5)
    e1 = Embedder(encoder, RetrievalConfig(image_size=32, batch_size=1, device="cpu")).embed(imgs)
    e4 = Embedder(encoder, RetrievalConfig(image_size=32, batch_size=4, device="cpu")).embed(imgs)
    assert e1.shape == (5, 1280) and e1.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e1, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(e1, e4, atol=1e-4)
    assert not encoder.backbone.training
    assert Embedder(encoder, RetrievalConfig(image_size=32)).embed([]).shape == (0, 1280)


def test_flip_tta(encoder):
    img = images(1, seed=1)[0][:, :40]
    sym = np.concatenate([img[:, :20], img[:, :20][:, ::-1]], axis=1)  # mirror-symmetric image
    plain = Embedder(encoder, RetrievalConfig(image_size=32, device="cpu"))
    tta = Embedder(encoder, RetrievalConfig(image_size=32, device="cpu", flip_tta=True))
    np.testing.assert_allclose(plain.embed([sym]), tta.embed([sym]), atol=1e-4)
    a, b = plain.embed([img]), tta.embed([img])
    flipped = plain.embed([np.ascontiguousarray(img[:, ::-1])])
    expected = (a + flipped) / np.linalg.norm(a + flipped)
    np.testing.assert_allclose(b, expected, atol=1e-4)


def test_rejects_non_rgb(encoder):
    with pytest.raises(ValueError, match="image 0"):
        Embedder(encoder, RetrievalConfig(image_size=32)).embed([np.zeros((8, 8), np.uint8)])
