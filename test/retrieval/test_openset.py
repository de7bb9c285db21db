"""Open-set scores by hand, the decision rule, per-instance statistics, and the classifier read from model.pt."""

import math

import numpy as np
import pytest
import torch

from ssl_nav.config import RetrievalConfig
from ssl_nav.retrieval.aggregate import InstanceScore, aggregate
from ssl_nav.retrieval.embedder import InstanceClassifierHead, read_classifier
from ssl_nav.retrieval.index import InstanceIndex
from ssl_nav.retrieval.openset import (OPEN_SET_SCORES, decide, instance_stats, open_set_scores, resolve_score)


def ranked(*scores):
    return [InstanceScore(str(i), s, f"v{i}", 1) for i, s in enumerate(scores)]


def test_scores_by_hand():
    r = ranked(0.9, 0.5, 0.3, 0.1)
    head = InstanceClassifierHead(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], np.float32),
                                  np.array([0.0, 0.0, 1.0], np.float32), ["a", "b", "c"])
    s = open_set_scores(r, features=np.array([3.0, 4.0]), classifier=head, stats={"0": (0.5, 0.2)},
                        temperature=0.1)
    assert set(s) == set(OPEN_SET_SCORES)
    assert s["best"] == pytest.approx(0.9) and s["margin"] == pytest.approx(0.4)
    rest = np.array([0.5, 0.3, 0.1])
    assert s["query_z"] == pytest.approx((0.9 - rest.mean()) / rest.std())
    assert s["instance_z"] == pytest.approx((0.9 - 0.5) / 0.2)
    z = np.array([9.0, 5.0, 3.0, 1.0])
    assert s["sim_softmax"] == pytest.approx(math.exp(9) / np.exp(z).sum())
    assert s["norm"] == pytest.approx(5.0)
    # logits (3, 4, 1)
    lse = math.log(math.exp(3) + math.exp(4) + math.exp(1))
    assert s["max_logit"] == pytest.approx(4.0) and s["energy"] == pytest.approx(lse)
    assert s["max_softmax"] == pytest.approx(math.exp(4 - lse))
    # without features / classifier / stats those scores are None; one instance: margin = best, no query_z
    s = open_set_scores(ranked(0.7))
    assert s["margin"] == pytest.approx(0.7) and s["query_z"] is None and s["norm"] is None
    assert s["max_softmax"] is None and s["instance_z"] is None
    assert all(v is None for v in open_set_scores([]).values())


def test_resolve_score():
    assert resolve_score("auto", has_classifier=True) == "max_softmax"
    assert resolve_score("auto", has_classifier=False) == "sim_softmax"
    assert resolve_score("query_z", has_classifier=False) == "query_z"
    with pytest.raises(ValueError, match="retrieval.open_set_score.*classifier"):
        resolve_score("energy", has_classifier=False)
    with pytest.raises(ValueError, match="retrieval.open_set_score"):
        resolve_score("nope", has_classifier=True)


def test_decide_threshold_and_margin():
    r = ranked(0.8, 0.78)
    s = open_set_scores(r)
    assert decide(r, s, "best", 0.5).in_map
    d = decide(r, s, "best", 0.9)
    assert not d.in_map and "best 0.800 < threshold 0.900 (uncalibrated)" in d.reason
    d = decide(r, s, "best", 0.5, reject_margin=0.1, calibrated=True)
    assert not d.in_map and "margin" in d.reason and d.calibrated
    assert not decide(r, s, "max_softmax", 0.5).in_map  # unavailable score: never accepted
    assert decide([], {}, "best", 0.0).reason == "empty index"


def synthetic_index(seed=0, d=32, n_inst=8, per=5):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_inst, d))
    emb, views, insts = [], [], []
    for i in range(n_inst):
        emb.append(centres[i] + 0.15 * rng.standard_normal((per, d)))
        views += [f"{i}_{j}" for j in range(per)]
        insts += [str(i)] * per
    emb = np.concatenate(emb).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return InstanceIndex.build(emb, views, insts, model_hash="h", cfg=RetrievalConfig()), centres, emb, rng


@pytest.mark.parametrize("score, threshold", [("best", 0.6), ("query_z", 3.6), ("instance_z", 14.0)])
def test_open_set_rejection_on_synthetic_embeddings(score, threshold):
    idx, centres, _, rng = synthetic_index()
    stats = instance_stats(idx)
    d = centres.shape[1]

    def decision(q):
        q = (q / np.linalg.norm(q)).astype(np.float32)
        r = aggregate(idx.search(q, 40)[0])
        return decide(r, open_set_scores(r, stats=stats), score, threshold), r

    for i in range(len(centres)):  # a new view of a mapped instance: accepted, right instance first
        dec, r = decision(centres[i] + 0.15 * rng.standard_normal(d))
        assert dec.in_map, dec.reason
        assert r[0].instance_id == str(i)
    for _ in range(8):  # an object never mapped: a random direction, far from every instance
        dec, _ = decision(rng.standard_normal(d))
        assert not dec.in_map and score in dec.reason
    # ambiguous: halfway between two instances -> high score but no margin
    dec, _ = decision(centres[0] + centres[1])
    r = aggregate(idx.search(((centres[0] + centres[1]) / np.linalg.norm(centres[0] + centres[1]))
                             .astype(np.float32), 40)[0])
    dec = decide(r, open_set_scores(r), "best", -1.0, reject_margin=0.5)
    assert not dec.in_map and "margin" in dec.reason


def test_instance_stats_by_hand():
    x = np.array([[1, 0, 0], [0.8, 0.6, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    idx = InstanceIndex.build(x, ["a0", "a1", "b0", "c0"], ["A", "A", "B", "C"], model_hash="h")
    st = instance_stats(idx)
    # A's views: best similarity to another instance's view: a0 -> 0 (b0, c0), a1 -> 0.6 (b0)
    assert st["A"][0] == pytest.approx(0.3) and st["A"][1] == pytest.approx(0.3)
    assert st["B"] == (pytest.approx(0.6), pytest.approx(1e-3))  # one view: std floored
    idx.remove_instance("B")
    st = instance_stats(idx)
    assert "B" not in st and st["A"][0] == pytest.approx(0.0)
    solo = InstanceIndex.build(x[:2], ["a0", "a1"], ["A", "A"], model_hash="h")
    assert instance_stats(solo) == {"A": (0.0, 1.0)}


def test_read_classifier_from_model_pt(tmp_path):
    from ssl_nav.learning.backbones import save_model

    w = torch.randn(3, 8)
    state = {"backbone.net.x": torch.zeros(2), "classifier.weight": w, "classifier.bias": torch.ones(3)}
    path = tmp_path / "model.pt"
    digest = save_model(path, state, backbone="mobilenet_v2", embedding_dim=8, image_size=32, config={},
                        extra={"class_ids": ["3", "5", "9"]})
    head = read_classifier(path, digest)
    assert head.class_ids == ["3", "5", "9"] and head.weight.shape == (3, 8)
    f = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    np.testing.assert_allclose(head.logits(f), f @ w.numpy().T + 1.0, rtol=1e-5)
    # no classifier keys: None (the score falls back); a backbone name: None
    save_model(tmp_path / "plain.pt", {"backbone.net.x": torch.zeros(2)}, backbone="mobilenet_v2", embedding_dim=8,
               image_size=32, config={})
    assert read_classifier(tmp_path / "plain.pt") is None and read_classifier("mobilenet_v2") is None


def test_a_single_instance_index_falls_back_to_a_score_that_works_with_one(tmp_path):
    """An index of a single instance answered every query "in map" (a softmax over one
    instance is 1.0)."""
    r = ranked(0.2)
    s = open_set_scores(r, temperature=0.05)
    assert s["sim_softmax"] == 1.0
    assert decide(r, s, "sim_softmax", 0.5).in_map  # the trap
    d = decide(r, s, "sim_softmax", 0.9, n_instances=1, fallback_threshold=0.5)
    assert not d.in_map and d.score == "best" and "single-instance index: best instead of sim_softmax" in d.reason
    assert decide(ranked(0.8), open_set_scores(ranked(0.8)), "sim_softmax", 0.9, n_instances=1,
                  fallback_threshold=0.5).in_map
    assert decide(r, s, "sim_softmax", 0.5, n_instances=3).in_map  # several instances: the score in force
    # the Retriever passes the index's instance count and warns
    from ssl_nav.retrieval.embedder import Embedder
    from ssl_nav.retrieval.query import Retriever

    cfg = RetrievalConfig(image_size=32, device="cpu")
    emb = Embedder.load("mobilenet_v2", cfg)
    rng = np.random.default_rng(0)
    x = emb.encode([rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)])[0]
    idx = InstanceIndex.build(x, ["a", "b", "c"], ["7"] * 3, model_hash=emb.model_hash, cfg=cfg,
                              model_spec="mobilenet_v2", instances={"7": {"centroid": [0, 0, 0]}})
    ret = Retriever(idx, emb, cfg)
    assert any("single instance" in w for w in ret.warnings)
    ans = ret.query_embedding(-x[0])  # the opposite direction: cosine -1
    assert not ans["in_map"] and "single-instance index" in ans["reason"]
