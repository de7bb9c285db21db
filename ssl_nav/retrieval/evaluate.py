"""Retrieval metrics for instance-image-goal queries, and the calibration of the open-set thresholds.

A query is a photo with its ground-truth instance id, or ``None`` when its object is not in the map
(DESIGN.md queries format). For each query the retriever ranks every stored view by cosine similarity and
every instance by its aggregated score (:mod:`ssl_nav.retrieval.aggregate`). Definitions, exactly as
implemented (``n_in`` = number of in-map queries, ``n_open`` = number of not-in-map queries):

- **top-1 / top-5 accuracy**: fraction of the in-map queries whose ground-truth instance is the first / among
  the first five of the ranked *instance* list (the open-set thresholds play no part).
- **AP of a query, and mAP**: the ranked list is every stored *view* of the index, sorted by decreasing cosine
  similarity (ties by view id); a view is relevant when it belongs to the ground-truth instance. With ``R``
  relevant views and ``rel_k`` ∈ {0, 1} at rank ``k``::

      AP = (1 / R) · Σ_k rel_k · P@k,    P@k = (Σ_{j ≤ k} rel_j) / k

  and **mAP** = the mean AP over the in-map queries of one scene (one index). A query whose instance has no
  view in the index (``R = 0``: the map missed the object) scores AP = 0 and is counted in
  ``n_gt_not_indexed``. Why this definition: SimView (arXiv 2404.09647) retrieves *views* and reports mAP
  over a scene's queries; the standard instance-level image-retrieval AP (as in Oxford/Paris buildings) over
  the ranked view list rewards ranking *all* views of the right instance above other instances' views, so it
  measures the embedding (what fine-tuning changes) rather than just the single best view, which top-1
  already measures. A single-relevant-item AP over instances would reduce to the reciprocal rank, reported
  separately as ``mrr``.
- **open-set AUROC**: the area under the ROC curve separating in-map queries (positives) from not-in-map
  queries (negatives) by their best instance score, = P(score_in > score_open) + ½ P(equal) (Mann–Whitney).
  ``None`` unless both kinds of queries exist.
- **goal-distance error**: for each in-map query, the Euclidean distance (m) between the goal target of the
  top-1 instance (its map centroid, the SimView goal) and the ground-truth object's centroid; reported as mean
  and median, and as ``goal_success_1m``, the fraction within 1 m. ``None`` without ground-truth centroids.
- **open-set accuracy**: with the thresholds in force, an in-map query is right when it is accepted and its
  top-1 is correct, a not-in-map query when it is rejected; the mean over all queries.

:func:`calibrate` picks ``(reject_score, reject_margin)`` maximising the balanced accuracy of the in-map /
not-in-map decision on held-out queries.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ssl_nav.errors import FormatError


@dataclass
class QueryResult:
    """What the retriever answered for one query, with what is needed to score it."""

    query_id: str
    gt_instance_id: str | None
    ranked_instances: list[str]
    instance_scores: list[float]
    view_relevance: list[bool] = field(default_factory=list)  #: over the full ranked view list
    n_relevant: int = 0
    best_score: float | None = None
    margin: float | None = None
    accepted: bool = True
    pred_centroid: list[float] | None = None
    gt_centroid: list[float] | None = None


# ------------------------------------------------------------------------------------------------ primitives

def average_precision(relevance: Sequence[bool], n_relevant: int | None = None) -> float:
    """AP of one ranked list: ``(1/R) Σ_k rel_k · P@k``; ``R`` defaults to the relevant items in the list."""
    rel = np.asarray(relevance, dtype=bool)
    r = int(rel.sum()) if n_relevant is None else int(n_relevant)
    if r == 0:
        return 0.0
    hits = np.cumsum(rel)
    ranks = np.arange(1, len(rel) + 1)
    return float(np.sum((hits / ranks)[rel]) / r)


def auroc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """P(pos > neg) + ½ P(pos = neg) over all pairs; ``None`` when a class is empty."""
    pos = np.asarray(positive, dtype=np.float64)
    neg = np.asarray(negative, dtype=np.float64)
    if len(pos) == 0 or len(neg) == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum()
    equal = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * equal) / (len(pos) * len(neg)))


# ------------------------------------------------------------------------------------------------ metrics

def compute_metrics(results: Iterable[QueryResult]) -> dict:
    """Every metric of the module docstring from per-query results."""
    results = list(results)
    inmap = [r for r in results if r.gt_instance_id is not None]
    openq = [r for r in results if r.gt_instance_id is None]
    out: dict = {"n_queries": len(results), "n_in_map": len(inmap), "n_open_set": len(openq)}

    def rank_of(r: QueryResult) -> int | None:
        try:
            return r.ranked_instances.index(r.gt_instance_id) + 1
        except ValueError:
            return None

    if inmap:
        ranks = [rank_of(r) for r in inmap]
        out["top1"] = float(np.mean([rk == 1 for rk in ranks]))
        out["top5"] = float(np.mean([rk is not None and rk <= 5 for rk in ranks]))
        out["mrr"] = float(np.mean([0.0 if rk is None else 1.0 / rk for rk in ranks]))
        aps = [average_precision(r.view_relevance, r.n_relevant) for r in inmap]
        out["mAP"] = float(np.mean(aps))
        out["n_gt_not_indexed"] = sum(1 for r in inmap if r.n_relevant == 0)
        errs = [float(np.linalg.norm(np.asarray(r.pred_centroid) - np.asarray(r.gt_centroid)))
                for r in inmap if r.pred_centroid is not None and r.gt_centroid is not None]
        if errs and len(errs) == len(inmap):
            out["goal_error_mean_m"] = float(np.mean(errs))
            out["goal_error_median_m"] = float(np.median(errs))
            out["goal_success_1m"] = float(np.mean([e <= 1.0 for e in errs]))
        else:
            out["goal_error_mean_m"] = out["goal_error_median_m"] = out["goal_success_1m"] = None
    else:
        out.update(top1=None, top5=None, mrr=None, mAP=None, n_gt_not_indexed=0, goal_error_mean_m=None,
                   goal_error_median_m=None, goal_success_1m=None)
    out["auroc"] = auroc([r.best_score for r in inmap if r.best_score is not None],
                         [r.best_score for r in openq if r.best_score is not None])
    if results:
        right = [(r.accepted and rank_of(r) == 1) if r.gt_instance_id is not None else (not r.accepted)
                 for r in results]
        out["open_set_accuracy"] = float(np.mean(right))
    else:
        out["open_set_accuracy"] = None
    return out


def query_result(retriever, embedding: np.ndarray, query_id: str, gt_instance_id: str | None,
                 gt_centroid: Sequence[float] | None = None) -> QueryResult:
    """Rank every view and instance of ``retriever``'s index for one query embedding."""
    from ssl_nav.retrieval.aggregate import open_set_decision

    index = retriever.index
    ranked, hits = retriever.rank(embedding, k_views=max(1, index.ntotal))
    hits = sorted(hits, key=lambda h: (-h.score, h.view_id))
    gt = None if gt_instance_id is None else str(gt_instance_id)
    relevance = [h.instance_id == gt for h in hits]
    n_rel = len(index.view_ids(gt)) if gt is not None else 0
    reject_score, reject_margin = retriever.thresholds
    decision = open_set_decision(ranked, reject_score, reject_margin)
    pred_c = None
    if ranked:
        c = index.instances.get(ranked[0].instance_id, {}).get("centroid")
        pred_c = None if c is None else [float(x) for x in c]
    return QueryResult(query_id=query_id, gt_instance_id=gt, ranked_instances=[r.instance_id for r in ranked],
                       instance_scores=[r.score for r in ranked], view_relevance=relevance, n_relevant=n_rel,
                       best_score=decision.best_score, margin=decision.margin, accepted=decision.in_map,
                       pred_centroid=pred_c, gt_centroid=None if gt_centroid is None else list(map(float, gt_centroid)))


def evaluate(retriever, images: Sequence[np.ndarray], gt_instance_ids: Sequence[str | None],
             query_ids: Sequence[str] | None = None, gt_centroids: dict[str, Sequence[float]] | None = None
             ) -> tuple[dict, list[QueryResult]]:
    """Embed the query images, rank, and compute the metrics. Returns (metrics, per-query results)."""
    query_ids = list(query_ids) if query_ids is not None else [str(i) for i in range(len(images))]
    emb = retriever.embedder.embed(list(images))
    results = []
    for e, qid, gt in zip(emb, query_ids, gt_instance_ids):
        gtc = None if gt is None or gt_centroids is None else gt_centroids.get(str(gt))
        results.append(query_result(retriever, e, qid, gt, gtc))
    return compute_metrics(results), results


def result_summary(r: QueryResult, k: int = 5) -> dict:
    """A compact JSON record of one query's result (for report.json)."""
    d = asdict(r)
    d.pop("view_relevance")
    d["ranked_instances"] = r.ranked_instances[:k]
    d["instance_scores"] = [round(s, 4) for s in r.instance_scores[:k]]
    d["ap"] = round(average_precision(r.view_relevance, r.n_relevant), 4) if r.gt_instance_id is not None else None
    return d


# ------------------------------------------------------------------------------------------------ calibration

def calibrate(best_scores: Sequence[float], margins: Sequence[float], in_map: Sequence[bool],
              max_candidates: int = 200) -> dict:
    """Fit ``(reject_score, reject_margin)`` on held-out queries: maximise balanced accuracy of accept/reject.

    A query is accepted when ``best >= reject_score and margin >= reject_margin``; in-map queries should be
    accepted, not-in-map ones rejected. Candidate thresholds are midpoints between sorted observed values
    (at most ``max_candidates`` quantiles each) plus "never reject"; ties prefer the loosest thresholds.
    """
    s = np.asarray(best_scores, dtype=np.float64)
    m = np.asarray(margins, dtype=np.float64)
    y = np.asarray(in_map, dtype=bool)
    if not (len(s) == len(m) == len(y)):
        raise ValueError("best_scores, margins and in_map must have the same length")
    if y.all() or (~y).all():
        raise ValueError("calibration needs both in-map and not-in-map queries")

    def candidates(v: np.ndarray, floor: float) -> np.ndarray:
        u = np.unique(v)
        mids = (u[:-1] + u[1:]) / 2 if len(u) > 1 else np.zeros(0)
        if len(mids) > max_candidates:
            mids = np.quantile(mids, np.linspace(0, 1, max_candidates))
        return np.unique(np.concatenate([[floor], mids, [u[-1] + 1e-6]]))

    best = (-1.0, 0.0, 0.0)
    for ts in candidates(s, -1.0):
        for tm in candidates(m, 0.0):
            acc = (s >= ts) & (m >= tm)
            tpr = acc[y].mean()
            tnr = (~acc[~y]).mean()
            bal = (tpr + tnr) / 2
            if bal > best[0] + 1e-12:
                best = (bal, float(ts), float(tm))
    bal, ts, tm = best
    return {"reject_score": round(max(-1.0, min(1.0, ts)), 6), "reject_margin": round(max(0.0, min(2.0, tm)), 6),
            "balanced_accuracy": round(float(bal), 6), "n_in_map": int(y.sum()), "n_open_set": int((~y).sum())}


# ------------------------------------------------------------------------------------------------ query files

def load_queries(path: str | os.PathLike) -> list[dict]:
    """Read a DESIGN.md ``queries.jsonl``: ``{"image": path relative to the file, "instance_id": str|null}``.

    Returns dicts with ``image_path`` (resolved), ``instance_id`` (str or None), ``line`` and the record's
    other keys. Errors name the file and line.
    """
    from ssl_nav.frames import read_jsonl
    from ssl_nav.paths import resolve_inside

    p = Path(path)
    out = []
    for n, rec in read_jsonl(p):
        if "image" not in rec or not isinstance(rec["image"], str):
            raise FormatError(f"{p}:{n}: missing key 'image' (a path relative to the file)")
        if "instance_id" not in rec:
            raise FormatError(f"{p}:{n}: missing key 'instance_id' (a string, or null for not-in-map)")
        inst = rec["instance_id"]
        if inst is not None and not isinstance(inst, (str, int)):
            raise FormatError(f"{p}:{n}: key 'instance_id' must be a string or null, got {inst!r}")
        img = resolve_inside(p.parent, rec["image"], f"{p}:{n}: key 'image'").resolve()
        if not img.is_file():
            raise FormatError(f"{p}:{n}: image {rec['image']!r} not found ({img})")
        out.append({**rec, "image_path": img, "instance_id": None if inst is None else str(inst), "line": n})
    if not out:
        raise FormatError(f"{p}: no queries")
    return out


def scene_centroids(queries_file: str | os.PathLike) -> dict[str, list[float]] | None:
    """Ground-truth object centroids from the ``scene.json`` next to a queries file (simulated scenes)."""
    import json

    sj = Path(queries_file).parent / "scene.json"
    if not sj.is_file():
        return None
    try:
        objs = json.loads(sj.read_text()).get("objects", [])
        return {str(o["instance_id"]): [float(x) for x in o["centroid"]] for o in objs if "centroid" in o}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise FormatError(f"{sj}: cannot read object centroids ({e})") from None


# ------------------------------------------------------------------------------------------------ tables

METRIC_ROWS: tuple[tuple[str, str], ...] = (("top1", "top-1"), ("top5", "top-5"), ("mAP", "mAP"), ("mrr", "MRR"),
                                          ("auroc", "open-set AUROC"), ("goal_error_median_m", "goal error median (m)"),
                                          ("goal_success_1m", "goal within 1 m"))


def format_table(columns: dict[str, dict]) -> str:
    """A plain-text table of metrics, one column per model (e.g. baseline, fine-tuned)."""
    names = list(columns)
    width = max(len(label) for _, label in METRIC_ROWS) + 2
    lines = ["metric".ljust(width) + "".join(n.rjust(14) for n in names)]
    for key, label in METRIC_ROWS:
        row = label.ljust(width)
        for n in names:
            v = columns[n].get(key)
            row += ("–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}").rjust(14)
        lines.append(row)
    return "\n".join(lines)


def evaluate_queries_file(retriever, queries_file: str | os.PathLike, progress: bool = True,
                          gt_centroids: dict[str, Sequence[float]] | None = None) -> tuple[dict, list[QueryResult]]:
    """Evaluate a retriever on a DESIGN.md ``queries.jsonl`` (ground-truth centroids from ``scene.json`` if any)."""
    from tqdm import tqdm

    from ssl_nav.frames import read_image_rgb

    queries = load_queries(queries_file)
    if gt_centroids is None:
        gt_centroids = scene_centroids(queries_file)
    results = []
    for q in tqdm(queries, desc="queries", unit="query", disable=not progress, leave=False):
        emb = retriever.embedder.embed([read_image_rgb(q["image_path"])])[0]
        gt = q["instance_id"]
        gtc = None if gt is None or gt_centroids is None else gt_centroids.get(gt)
        qid = str(q.get("episode_id", Path(q["image"]).stem))
        results.append(query_result(retriever, emb, qid, gt, gtc))
    return compute_metrics(results), results
