"""Instance scores from view hits, and open-set rejection on synthetic embeddings."""

import numpy as np
import pytest

from ssl_nav.config import RetrievalConfig
from ssl_nav.retrieval.aggregate import aggregate, best_and_margin, open_set_decision
from ssl_nav.retrieval.index import InstanceIndex, ViewHit


def test_max_and_mean_top_m():
    hits = [ViewHit("a1", "A", 0.9), ViewHit("b1", "B", 0.8), ViewHit("b2", "B", 0.78), ViewHit("a2", "A", 0.1),
            ViewHit("b3", "B", 0.7)]
    r = aggregate(hits, "max")
    assert [(s.instance_id, s.score, s.best_view_id) for s in r] == [("A", 0.9, "a1"), ("B", 0.8, "b1")]
    r = aggregate(hits, "mean_top_m", top_m=2)
    assert [s.instance_id for s in r] == ["B", "A"]
    assert r[0].score == pytest.approx(0.79) and r[1].score == pytest.approx(0.5)
    best, margin = best_and_margin(aggregate(hits, "max"))
    assert best == 0.9 and margin == pytest.approx(0.1)
    assert best_and_margin(aggregate([ViewHit("x", "X", 0.3)])) == (0.3, 0.3)


def test_open_set_rejection_on_synthetic_embeddings():
    rng = np.random.default_rng(0)
    d, n_inst, per = 32, 8, 5
    centres = rng.standard_normal((n_inst, d))
    emb, views, insts = [], [], []
    for i in range(n_inst):
        x = centres[i] + 0.15 * rng.standard_normal((per, d))
        emb.append(x)
        views += [f"{i}_{j}" for j in range(per)]
        insts += [str(i)] * per
    emb = np.concatenate(emb).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    idx = InstanceIndex.build(emb, views, insts, model_hash="h", cfg=RetrievalConfig())

    def decide(q):
        q = (q / np.linalg.norm(q)).astype(np.float32)
        return open_set_decision(aggregate(idx.search(q, 40)[0]), reject_score=0.6, reject_margin=0.05)

    for i in range(n_inst):  # a new view of a mapped instance: accepted, right instance first
        q = centres[i] + 0.15 * rng.standard_normal(d)
        dec = decide(q)
        assert dec.in_map, dec.reason
        assert aggregate(idx.search((q / np.linalg.norm(q)).astype(np.float32), 40)[0])[0].instance_id == str(i)
    for _ in range(8):  # an object never mapped: a random direction, far from every instance
        dec = decide(rng.standard_normal(d))
        assert not dec.in_map and "reject_score" in dec.reason
    # ambiguous: halfway between two instances -> high score but no margin
    q = centres[0] + centres[1]
    q = (q / np.linalg.norm(q)).astype(np.float32)
    ranked = aggregate(idx.search(q, 40)[0])
    dec = open_set_decision(ranked, reject_score=-1.0, reject_margin=0.5)
    assert not dec.in_map and "margin" in dec.reason
    assert open_set_decision([], 0.0, 0.0).in_map is False
