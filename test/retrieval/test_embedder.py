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
    plain = Embedder(encoder, RetrievalConfig(image_size=32, device="cpu", flip_tta=False))
    tta = Embedder(encoder, RetrievalConfig(image_size=32, device="cpu", flip_tta=True))
    np.testing.assert_allclose(plain.embed([sym]), tta.embed([sym]), atol=1e-4)
    a, b = plain.embed([img]), tta.embed([img])
    flipped = plain.embed([np.ascontiguousarray(img[:, ::-1])])
    expected = (a + flipped) / np.linalg.norm(a + flipped)
    np.testing.assert_allclose(b, expected, atol=1e-4)


def test_rejects_non_rgb(encoder):
    with pytest.raises(ValueError, match="image 0"):
        Embedder(encoder, RetrievalConfig(image_size=32)).embed([np.zeros((8, 8), np.uint8)])


def test_encode_returns_the_raw_features_behind_the_unit_embedding(encoder):
    imgs = images(3, seed=2)
    emb = Embedder(encoder, RetrievalConfig(image_size=32, device="cpu", flip_tta=False))
    unit, raw = emb.encode(imgs)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-5)
    assert (np.linalg.norm(raw, axis=1) > 1.0).all()  # pooled ReLU features, not unit vectors
    tta_unit, tta_raw = Embedder(encoder, RetrievalConfig(image_size=32, device="cpu", flip_tta=True)).encode(imgs)
    _, flipped = emb.encode([np.ascontiguousarray(i[:, ::-1]) for i in imgs])
    np.testing.assert_allclose(tta_raw, (raw + flipped) / 2, rtol=1e-4, atol=1e-4)


def test_check_image_minimum_size(encoder):
    emb = Embedder(encoder, RetrievalConfig(image_size=32))
    with pytest.raises(ValueError, match="photo: 1x1 px is smaller than retrieval.min_query_px"):
        emb.check_image(np.zeros((1, 1, 3), np.uint8), "photo", min_px=32)
    assert emb.check_image(np.zeros((32, 40, 3), np.uint8), "photo", min_px=32).shape == (32, 40, 3)
