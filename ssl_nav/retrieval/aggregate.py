"""From view similarities to ranked instances, and the open-set ("not in the map") decision.

SimView (arXiv 2404.09647) scores each instance by its best view: the maximum cosine similarity between the
query embedding and any stored view of that instance (``aggregation="max"``). ``mean_top_m`` averages the
instance's ``m`` best view scores instead (fewer views count as they are), which is less sensitive to one
lucky view.

The open-set decision ("not in the map") reads these instance scores, among others:
:mod:`ssl_nav.retrieval.openset`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ssl_nav.retrieval.index import ViewHit


@dataclass
class InstanceScore:
    """An instance's aggregated score, with its best view."""

    instance_id: str
    score: float
    best_view_id: str
    n_views: int


def aggregate(hits: Iterable[ViewHit], method: str = "max", top_m: int = 3) -> list[InstanceScore]:
    """Ranked instances (best first) from the view hits of one query.

    Ties are broken by instance id so that the ranking is deterministic.
    """
    if method not in ("max", "mean_top_m"):
        raise ValueError(f"retrieval.aggregation must be 'max' or 'mean_top_m', got {method!r}")
    per: dict[str, list[ViewHit]] = {}
    for h in hits:
        per.setdefault(h.instance_id, []).append(h)
    out = []
    for inst, hs in per.items():
        hs.sort(key=lambda h: -h.score)
        if method == "max":
            score = hs[0].score
        else:
            score = float(np.mean([h.score for h in hs[:max(1, top_m)]]))
        out.append(InstanceScore(inst, float(score), hs[0].view_id, len(hs)))
    out.sort(key=lambda s: (-s.score, s.instance_id))
    return out


def best_and_margin(ranked: list[InstanceScore]) -> tuple[float | None, float | None]:
    """Best instance score and its margin over the second (second = 0 when there is only one)."""
    if not ranked:
        return None, None
    best = ranked[0].score
    second = ranked[1].score if len(ranked) > 1 else 0.0
    return best, best - second
