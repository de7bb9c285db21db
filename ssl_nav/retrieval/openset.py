"""Open-set scores: how sure is the retriever that a query's object is in the map at all?

Every score is "higher = more likely in the map"; a query is answered "not in the map" when the score in
force (``retrieval.open_set_score``) is below the threshold (the one ``ssl-nav calibrate`` fitted on a
calibration split and stored in the index, else ``retrieval.reject_threshold``), or when the margin is below
``retrieval.reject_margin`` (off by default) (:func:`decide`). ``benchmarks/bench_openset.py`` measures the
scores side by side.

Scores from the instance ranking (any model, including the ImageNet baseline). ``s_1 ≥ s_2 ≥ …`` are the
query's instance scores (best view, :mod:`ssl_nav.retrieval.aggregate`):

- ``best``: ``s_1``, the best-view cosine similarity (SimView, arXiv 2404.09647).
- ``margin``: ``s_1 − s_2`` (``s_2 = 0`` with one instance), a ratio-test-like ambiguity measure.
- ``query_z``: ``(s_1 − mean(s_2..n)) / std(s_2..n)``, the best score in units of the query's spread over the
  other instances (test normalisation, "T-norm", of score normalisation in verification).
- ``instance_z``: per-instance normalisation (Z-norm): ``(s_1 − μ_i) / σ_i``, where for the top instance
  ``i``, ``μ_i, σ_i`` are the mean and std over its stored views of each view's best similarity to any other
  instance's views; an instance with close look-alikes in the map must score higher.
- ``sim_softmax``: ``max_i softmax(s / τ)``, ``τ = retrieval.softmax_temperature``: the instance scores as
  the logits of a nearest-view classifier.

Scores from the raw pooled features of the query (before L2 normalisation):

- ``norm``: the embedding norm ``‖f‖``; SSL embedding norms encode confidence, smaller for unexpected
  samples (Draganov et al., ICML 2025, arXiv 2502.09252).

Scores from CrossIA's instance classifier (arXiv 2404.09645; ``logits = f·Wᵀ + b``, stored in ``model.pt``;
``None`` for models without one, e.g. the ImageNet baseline):

- ``max_logit``: ``max_k logit_k`` (Hendrycks et al., "Scaling OOD detection", ICML 2022).
- ``energy``: ``logsumexp_k logit_k``, the negative free energy (Liu et al., NeurIPS 2020).
- ``max_softmax``: ``max_k softmax(logits)_k`` (Hendrycks & Gimpel, ICLR 2017).

``auto`` (the default) is ``max_softmax`` when the model carries a classifier, else ``sim_softmax``: the choice
``benchmarks/bench_openset.py`` supports (BENCHMARKS.md, "Open-set scores"). On the demo scenes (3 seeds, 10
not-in-map objects each, robot views indexed) the fine-tuned model's ``max_softmax`` had the highest AUROC of
all scores; without a classifier, ``sim_softmax`` is within noise of the best ranking score (``query_z``) and
well above ``best``, and it is a probability like ``max_softmax``, so one default threshold
(``retrieval.reject_threshold``) serves both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ssl_nav.retrieval.aggregate import InstanceScore
    from ssl_nav.retrieval.embedder import InstanceClassifierHead
    from ssl_nav.retrieval.index import InstanceIndex

RANKING_SCORES: tuple[str, ...] = ("best", "margin", "query_z", "instance_z", "sim_softmax")
FEATURE_SCORES: tuple[str, ...] = ("norm",)
CLASSIFIER_SCORES: tuple[str, ...] = ("max_logit", "energy", "max_softmax")
#: every score; ``auto`` resolves to one of them per model (:func:`resolve_score`)
OPEN_SET_SCORES: tuple[str, ...] = RANKING_SCORES + FEATURE_SCORES + CLASSIFIER_SCORES
SCORE_CHOICES: tuple[str, ...] = ("auto",) + OPEN_SET_SCORES

#: scores that compare the top instance with the others: with a single instance in the index they are constant
#: (a softmax over one class is 1.0) or undefined, and :func:`decide` falls back to :data:`SINGLE_INSTANCE_SCORE`
NEEDS_SEVERAL_INSTANCES: tuple[str, ...] = ("sim_softmax", "max_softmax", "query_z", "instance_z")
SINGLE_INSTANCE_SCORE = "best"

#: views sampled per index for the per-instance statistics of ``instance_z``
INSTANCE_STATS_MAX_VIEWS = 4000


def resolve_score(name: str, has_classifier: bool) -> str:
    """The score ``name`` stands for with this model (``auto``: ``max_softmax`` with a classifier, else
    ``sim_softmax``); a classifier score without a classifier is a ValueError naming the setting."""
    if name == "auto":
        return "max_softmax" if has_classifier else "sim_softmax"
    if name not in OPEN_SET_SCORES:
        raise ValueError(f"retrieval.open_set_score must be one of {', '.join(SCORE_CHOICES)}, got {name!r}")
    if name in CLASSIFIER_SCORES and not has_classifier:
        raise ValueError(f"retrieval.open_set_score: {name!r} needs the model's instance classifier "
                         f"(classifier.weight in model.pt), and this model has none; use 'auto'")
    return name


def _logsumexp(x: np.ndarray) -> float:
    m = float(np.max(x))
    return m + math.log(float(np.sum(np.exp(x - m))))


def instance_stats(index: "InstanceIndex", seed: int = 0) -> dict[str, tuple[float, float]]:
    """``{instance_id: (μ_i, σ_i)}`` for ``instance_z``: over the instance's views, each view's best cosine
    similarity to another instance's views (at most :data:`INSTANCE_STATS_MAX_VIEWS` views, sampled with
    ``seed``). Instances alone in the index get (0, 1)."""
    ids, x = index.vectors()
    if len(ids) == 0:
        return {}
    insts = np.asarray([index.instance_of(int(i)) for i in ids])
    if len(ids) > INSTANCE_STATS_MAX_VIEWS:
        keep = np.sort(np.random.default_rng(seed).choice(len(ids), INSTANCE_STATS_MAX_VIEWS, replace=False))
        insts, x = insts[keep], x[keep]
    sims = x @ x.T
    out: dict[str, tuple[float, float]] = {}
    for inst in np.unique(insts):
        own = insts == inst
        if own.all():
            out[str(inst)] = (0.0, 1.0)
            continue
        best_other = sims[own][:, ~own].max(axis=1)
        out[str(inst)] = (float(best_other.mean()), float(max(best_other.std(), 1e-3)))
    return out


def open_set_scores(ranked: Sequence["InstanceScore"], features: np.ndarray | None = None,
                    classifier: "InstanceClassifierHead | None" = None,
                    stats: dict[str, tuple[float, float]] | None = None,
                    temperature: float = 0.05) -> dict[str, float | None]:
    """Every score of the module docstring for one query (``None`` where an input is missing).

    ``ranked``: the query's instances, best first; ``features``: its raw pooled features (dim,);
    ``classifier``: the model's instance classifier; ``stats``: :func:`instance_stats` of the index.
    """
    out: dict[str, float | None] = {k: None for k in OPEN_SET_SCORES}
    if ranked:
        s = np.asarray([r.score for r in ranked], dtype=np.float64)
        out["best"] = float(s[0])
        out["margin"] = float(s[0] - (s[1] if len(s) > 1 else 0.0))
        rest = s[1:]
        if len(rest) >= 2:
            out["query_z"] = float((s[0] - rest.mean()) / max(rest.std(), 1e-3))
        if stats is not None:
            mu, sd = stats.get(ranked[0].instance_id, (0.0, 1.0))
            out["instance_z"] = float((s[0] - mu) / sd)
        z = s / max(float(temperature), 1e-6)
        out["sim_softmax"] = float(math.exp(z[0] - _logsumexp(z)))
    if features is not None:
        f = np.asarray(features, dtype=np.float64).reshape(-1)
        out["norm"] = float(np.linalg.norm(f))
        if classifier is not None:
            logits = classifier.logits(f[None, :].astype(np.float32))[0].astype(np.float64)
            lse = _logsumexp(logits)
            out["max_logit"] = float(logits.max())
            out["energy"] = float(lse)
            out["max_softmax"] = float(math.exp(logits.max() - lse))
    return out


@dataclass
class OpenSetDecision:
    """Accept or reject one query, and why."""

    in_map: bool
    reason: str
    score: str  #: the score in force
    value: float | None  #: its value for this query
    threshold: float
    calibrated: bool  #: whether the threshold was fitted by ``ssl-nav calibrate``


def single_instance_note(score: str, n_instances: int) -> str | None:
    """Why :func:`decide` does not use ``score`` on an index of ``n_instances`` (None when it does)."""
    if n_instances != 1 or score not in NEEDS_SEVERAL_INSTANCES:
        return None
    return (f"the index holds a single instance: the open-set score {score!r} compares instances (it is constant "
            f"with one), so {SINGLE_INSTANCE_SCORE!r} (the best-view cosine similarity) decides, against "
            f"retrieval.reject_threshold")


def decide(ranked: Sequence["InstanceScore"], scores: dict[str, float | None], score: str, threshold: float,
           reject_margin: float = 0.0, calibrated: bool = False, *, n_instances: int | None = None,
           fallback_threshold: float | None = None, origin: str | None = None) -> OpenSetDecision:
    """Accept the top instance when ``scores[score] >= threshold`` and the margin ``>= reject_margin``.

    ``origin`` says where an uncalibrated threshold comes from in the reason (default ``uncalibrated``; e.g.
    ``self-calibrated at fine-tune``). On an index of ``n_instances == 1`` a score of
    :data:`NEEDS_SEVERAL_INSTANCES` would accept every query; :data:`SINGLE_INSTANCE_SCORE` decides instead,
    against ``fallback_threshold`` (uncalibrated), and the reason says so."""
    note = single_instance_note(score, n_instances or 0)
    if note is not None:
        d = decide(ranked, scores, SINGLE_INSTANCE_SCORE, threshold if fallback_threshold is None
                   else fallback_threshold, reject_margin, False)
        d.reason = f"{d.reason} (single-instance index: {SINGLE_INSTANCE_SCORE} instead of {score})"
        return d
    value = scores.get(score)
    if not ranked:
        return OpenSetDecision(False, "empty index", score, value, threshold, calibrated)
    if value is None:
        return OpenSetDecision(False, f"open-set score {score!r} unavailable for this query", score, None, threshold,
                               calibrated)
    if value < threshold:
        return OpenSetDecision(False, f"{score} {value:.3f} < threshold {threshold:.3f}"
                               + ("" if calibrated else f" ({origin or 'uncalibrated'})"), score, value, threshold,
                               calibrated)
    margin = scores.get("margin")
    if reject_margin > 0 and margin is not None and margin < reject_margin:
        return OpenSetDecision(False, f"margin {margin:.3f} < reject_margin {reject_margin:.3f}", score, value,
                               threshold, calibrated)
    return OpenSetDecision(True, "accepted", score, value, threshold, calibrated)
