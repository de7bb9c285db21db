"""Instance scores from view hits."""

import pytest

from ssl_nav.retrieval.aggregate import aggregate, best_and_margin
from ssl_nav.retrieval.index import ViewHit


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
