"""Retrieval metrics for instance-image-goal queries, and the calibration of the open-set threshold.

A query is a photo with its ground-truth instance id, or ``None`` when its object is not in the map (the
queries format, below). For each query the retriever ranks every stored view by cosine similarity and every
instance by its aggregated score (:mod:`ssl_nav.retrieval.aggregate`).

Ground truth of a map instance: its ``gt_instance_id`` in the index's ``instances.json`` (a map built without
simulator ids records which simulated object each instance is, or ``null``), else its own id (a map built
with the simulator's ids). A stored view is *relevant* to a query when its instance's ground truth equals the
query's ``instance_id``, and a ranked instance is *correct* on the same rule.

Definitions, exactly as implemented:

- **top-1 / top-5 accuracy**: fraction of the in-map queries with a correct instance first / among the first
  five of the ranked *instance* list (the open-set decision plays no part).
- **AP of a query, and mAP**: the ranked list is every stored *view* of the index, sorted by decreasing cosine
  similarity (ties by view id). With ``R`` relevant views and ``rel_k`` ∈ {0, 1} at rank ``k``::

      AP = (1 / R) · Σ_k rel_k · P@k,    P@k = (Σ_{j ≤ k} rel_j) / k

  and **mAP** = the mean AP over the in-map queries of one scene (one index). A query with no relevant view in
  the index (``R = 0``: the map missed the object) scores AP = 0 and is counted in ``n_gt_not_indexed``. Why
  this definition: SimView (arXiv 2404.09647) retrieves *views* and reports mAP over a scene's queries; the
  standard instance-level image-retrieval AP (as in Oxford/Paris buildings) over the ranked view list rewards
  ranking *all* views of the right instance above other instances' views, so it measures the embedding (what
  fine-tuning changes) rather than just the single best view, which top-1 already measures. A
  single-relevant-item AP over instances would reduce to the reciprocal rank, reported as ``mrr``.
- **open-set AUROC** (``auroc``): the area under the ROC curve separating in-map queries (positives) from
  not-in-map queries (negatives) by the open-set score in force (``open_set_score``; see
  :mod:`ssl_nav.retrieval.openset`), = P(score_in > score_open) + ½ P(equal) (Mann–Whitney). ``None`` unless
  both kinds of queries exist. ``auroc_by_score`` gives it for every score the model supports, and
  ``auroc_best_view`` for the best-view similarity (the score every model has).
- **goal-distance error**: for each in-map query, the Euclidean distance (m) between the goal target of the
  top-1 instance (its map centroid, the SimView goal) and the ground-truth object's centroid; reported as mean
  and median, and as ``goal_success_1m``, the fraction within 1 m. ``None`` without ground-truth centroids.
- **open-set accuracy**: with the threshold in force, an in-map query is right when it is accepted and its
  top-1 is correct, a not-in-map query when it is rejected; the mean over all queries. ``calibrated`` says
  whether that threshold was fitted by ``ssl-nav calibrate``.

:func:`calibrate` picks the threshold on the score in force maximising the balanced accuracy of the in-map /
not-in-map decision on a calibration split (``calibration.jsonl``, apart from the test queries).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ssl_nav.errors import FormatError, FrameError, SslNavError
from ssl_nav.frames import read_image_rgb, read_jsonl
from ssl_nav.paths import resolve_inside
from ssl_nav.progress import tqdm
from ssl_nav.retrieval.openset import OPEN_SET_SCORES
from ssl_nav.retrieval.query import Retriever, baseline_retriever


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
    ranked_gt: list[str | None] | None = None  #: ground truth of each ranked instance (None: same as its id)
    open_set_score: str = "best"  #: the score the decision used
    open_set_value: float | None = None  #: its value (default: ``best_score``)
    scores: dict[str, float | None] = field(default_factory=dict)  #: every open-set score of the query

    def __post_init__(self) -> None:
        if self.open_set_value is None and self.open_set_score == "best":
            self.open_set_value = self.best_score


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
    names = sorted({r.open_set_score for r in results})
    out["open_set_score"] = names[0] if len(names) == 1 else (names or None)
    out["auroc"] = auroc([r.open_set_value for r in inmap if r.open_set_value is not None],
                         [r.open_set_value for r in openq if r.open_set_value is not None])
    out["auroc_best_view"] = auroc([r.best_score for r in inmap if r.best_score is not None],
                                   [r.best_score for r in openq if r.best_score is not None])
    by_score = {}
    for name in OPEN_SET_SCORES:
        pos = [r.scores.get(name) for r in inmap]
        neg = [r.scores.get(name) for r in openq]
        if results and all(v is not None for v in pos + neg):
            by_score[name] = auroc(pos, neg)
    out["auroc_by_score"] = by_score
    out["calibrated"] = None
    if results:
        right = [(r.accepted and rank_of(r) == 1) if r.gt_instance_id is not None else (not r.accepted)
                 for r in results]
        out["open_set_accuracy"] = float(np.mean(right))
    else:
        out["open_set_accuracy"] = None
    return out


def rank_of(r: QueryResult) -> int | None:
    """1-based rank of the first correct instance in a query's ranked list (None: not ranked)."""
    gts = r.ranked_gt if r.ranked_gt is not None else r.ranked_instances
    try:
        return gts.index(r.gt_instance_id) + 1
    except ValueError:
        return None


def ground_truth_of(index, instance_id: str) -> str | None:
    """The simulator id a map instance stands for: ``gt_instance_id`` in instances.json, else its own id."""
    info = index.instances.get(instance_id) or {}
    if "gt_instance_id" not in info:
        return instance_id
    gt = info["gt_instance_id"]
    return None if gt is None else str(gt)


def query_result(retriever, embedding: np.ndarray, query_id: str, gt_instance_id: str | None,
                 gt_centroid: Sequence[float] | None = None, features: np.ndarray | None = None,
                 image: np.ndarray | None = None) -> QueryResult:
    """Rank every view and instance of ``retriever``'s index for one query embedding (and its raw features,
    for the scores that need them; its image, for the verification), score the open set and decide."""
    index = retriever.index
    ranked, hits, scores, decision, _ = retriever.answer(embedding, features, image, k_views=max(1, index.ntotal))
    hits = sorted(hits, key=lambda h: (-h.score, h.view_id))
    gt = None if gt_instance_id is None else str(gt_instance_id)
    gt_of = {i: ground_truth_of(index, i) for i in index.instance_ids()}
    relevance = [gt is not None and gt_of.get(h.instance_id, h.instance_id) == gt for h in hits]
    n_rel = sum(len(index.view_ids(i)) for i, g in gt_of.items() if gt is not None and g == gt)
    pred_c = None
    if ranked:
        c = (index.instances.get(ranked[0].instance_id) or {}).get("centroid")
        pred_c = None if c is None else [float(x) for x in c]
    return QueryResult(query_id=query_id, gt_instance_id=gt, ranked_instances=[r.instance_id for r in ranked],
                       instance_scores=[r.score for r in ranked], view_relevance=relevance, n_relevant=n_rel,
                       best_score=scores["best"], margin=scores["margin"], accepted=decision.in_map,
                       pred_centroid=pred_c, gt_centroid=None if gt_centroid is None else list(map(float, gt_centroid)),
                       ranked_gt=[gt_of.get(r.instance_id, r.instance_id) for r in ranked],
                       open_set_score=decision.score, open_set_value=decision.value, scores=scores)


def evaluate(retriever, images: Sequence[np.ndarray], gt_instance_ids: Sequence[str | None],
             query_ids: Sequence[str] | None = None, gt_centroids: dict[str, Sequence[float]] | None = None
             ) -> tuple[dict, list[QueryResult]]:
    """Embed the query images, rank, and compute the metrics. Returns (metrics, per-query results)."""
    query_ids = list(query_ids) if query_ids is not None else [str(i) for i in range(len(images))]
    unit, raw = retriever.embedder.encode(list(images))
    results = []
    for e, f, img, qid, gt in zip(unit, raw, images, query_ids, gt_instance_ids):
        gtc = None if gt is None or gt_centroids is None else gt_centroids.get(str(gt))
        results.append(query_result(retriever, e, qid, gt, gtc, features=f, image=img))
    metrics = compute_metrics(results)
    metrics["calibrated"] = retriever.thresholds.calibrated
    return metrics, results


def result_summary(r: QueryResult, k: int = 5) -> dict:
    """A compact JSON record of one query's result (for report.json)."""
    d = asdict(r)
    d.pop("view_relevance")
    d["ranked_instances"] = r.ranked_instances[:k]
    d["ranked_gt"] = None if r.ranked_gt is None else r.ranked_gt[:k]
    d["instance_scores"] = [round(s, 4) for s in r.instance_scores[:k]]
    d["scores"] = {n: None if v is None else round(v, 4) for n, v in r.scores.items()}
    d["ap"] = round(average_precision(r.view_relevance, r.n_relevant), 4) if r.gt_instance_id is not None else None
    return d


# ------------------------------------------------------------------------------------------------ calibration

def calibrate(values: Sequence[float], in_map: Sequence[bool], max_candidates: int = 400) -> dict:
    """Fit the open-set threshold on a calibration split: maximise the balanced accuracy of accept/reject.

    A query is accepted when ``value >= threshold``; in-map queries should be accepted, not-in-map ones
    rejected. Candidates are the midpoints between sorted observed values (at most ``max_candidates``
    quantiles of them) and one below / above all; ties prefer the lowest threshold.
    """
    v = np.asarray(values, dtype=np.float64)
    y = np.asarray(in_map, dtype=bool)
    if len(v) != len(y):
        raise ValueError("values and in_map must have the same length")
    if not np.isfinite(v).all():
        raise ValueError("open-set scores must be finite")
    if y.all() or (~y).all():
        raise ValueError("calibration needs both in-map and not-in-map queries (instance_id null)")
    u = np.unique(v)
    mids = (u[:-1] + u[1:]) / 2 if len(u) > 1 else np.zeros(0)
    if len(mids) > max_candidates:
        mids = np.quantile(mids, np.linspace(0, 1, max_candidates))
    cands = np.unique(np.concatenate([[u[0] - 1e-6], mids, [u[-1] + 1e-6]]))
    best = (-1.0, 0.0)
    for t in cands:
        acc = v >= t
        bal = (acc[y].mean() + (~acc[~y]).mean()) / 2
        if bal > best[0] + 1e-12:
            best = (float(bal), float(t))
    bal, t = best
    return {"threshold": round(t, 6), "balanced_accuracy": round(bal, 6), "n_in_map": int(y.sum()),
            "n_open_set": int((~y).sum())}


#: ``calibrate`` refuses to store a threshold fitted on fewer queries than this on either side (in map / not)
MIN_CALIBRATION_QUERIES = 3
#: and warns below this many per side: the threshold then moves with every query added
FEW_CALIBRATION_QUERIES = 10


def check_calibration(t: dict, queries_file: str | os.PathLike, index_dir: str | os.PathLike) -> list[str]:
    """Refuse a fit that cannot mean anything (:class:`SslNavError`; the index keeps its threshold): fewer than
    :data:`MIN_CALIBRATION_QUERIES` queries on a side, or a balanced accuracy at chance level (0.5). Returns
    warnings for a fit on fewer than :data:`FEW_CALIBRATION_QUERIES` queries per side."""
    n_in, n_out = t["n_in_map"], t["n_open_set"]
    keep = f"{index_dir} keeps its previous threshold"
    if min(n_in, n_out) < MIN_CALIBRATION_QUERIES:
        raise SslNavError(f"{queries_file}: {n_in} in-map + {n_out} not-in-map queries; calibration needs at least "
                          f"{MIN_CALIBRATION_QUERIES} of each (better {FEW_CALIBRATION_QUERIES}+): a threshold "
                          f"fitted on fewer is chance. {keep}")
    if t["balanced_accuracy"] <= 0.5 + 1e-9:
        raise SslNavError(f"{queries_file}: the best threshold separates in-map from not-in-map queries no better "
                          f"than chance (balanced accuracy {t['balanced_accuracy']:.3f}); {keep}")
    if min(n_in, n_out) < FEW_CALIBRATION_QUERIES:
        return [f"{queries_file}: only {n_in} in-map + {n_out} not-in-map queries: the threshold is unreliable; "
                f"calibrate on {FEW_CALIBRATION_QUERIES}+ of each"]
    return []


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (which calibration file the thresholds were fitted on)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fitted_on(index, queries_file: str | os.PathLike) -> bool:
    """Whether the index's calibrated threshold was fitted on ``queries_file`` (same path or same bytes)."""
    fit = ((index.thresholds or {}).get("fit_on") or {})
    p = Path(queries_file)
    if not fit or not p.is_file():
        return False
    return str(p.resolve()) == fit.get("path") or file_sha256(p) == fit.get("sha256")


# ------------------------------------------------------------------------------------------------ query files

def load_queries(path: str | os.PathLike) -> list[dict]:
    """Read a ``queries.jsonl`` (docs/retrieval.md): ``{"image": path relative to the file, "instance_id": str|null}``.

    Returns dicts with ``image_path`` (resolved), ``instance_id`` (str or None), ``line`` and the record's
    other keys. Errors name the file and line.
    """
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
                                          ("auroc", "open-set AUROC"), ("open_set_accuracy", "open-set accuracy"),
                                          ("goal_error_median_m", "goal error median (m)"),
                                          ("goal_success_1m", "goal within 1 m"))


def format_table(columns: dict[str, dict], extra_rows: Sequence[tuple[str, dict[str, float | None]]] = ()) -> str:
    """A plain-text table of metrics, one column per model (e.g. baseline, fine-tuned), then ``extra_rows``
    (label, value per column); a footer line names the open-set score of each column."""
    names = list(columns)
    labels = [label for _, label in METRIC_ROWS] + [label for label, _ in extra_rows]
    width = max(len(x) for x in labels) + 2

    def cell(v) -> str:
        return ("–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}").rjust(14)

    lines = ["metric".ljust(width) + "".join(n.rjust(14) for n in names)]
    for key, label in METRIC_ROWS:
        lines.append(label.ljust(width) + "".join(cell(columns[n].get(key)) for n in names))
    for label, values in extra_rows:
        lines.append(label.ljust(width) + "".join(cell(values.get(n)) for n in names))
    scores = []
    for n in names:
        m = columns[n]
        if m.get("open_set_score"):
            cal = {True: "calibrated", False: "uncalibrated"}.get(m.get("calibrated"), "")
            scores.append(f"{n}: {m['open_set_score']}" + (f", {cal}" if cal else ""))
    if scores:
        lines.append("open-set score: " + "; ".join(scores))
    return "\n".join(lines)


def evaluate_queries_file(retriever, queries_file: str | os.PathLike, progress: bool = True,
                          gt_centroids: dict[str, Sequence[float]] | None = None) -> tuple[dict, list[QueryResult]]:
    """Evaluate a retriever on a ``queries.jsonl`` (ground-truth centroids from ``scene.json`` if any)."""
    queries = load_queries(queries_file)
    if gt_centroids is None:
        gt_centroids = scene_centroids(queries_file)
    results = []
    for q in tqdm(queries, desc="queries", unit="query", disable=not progress, leave=False):
        try:
            img = retriever.check_image(read_image_rgb(q["image_path"]), f"image {q['image']!r}")
        except (ValueError, FrameError) as e:
            raise FormatError(f"{queries_file}:{q['line']}: {e}") from None
        unit, raw = retriever.embedder.encode([img])
        gt = q["instance_id"]
        gtc = None if gt is None or gt_centroids is None else gt_centroids.get(gt)
        qid = str(q.get("episode_id", Path(q["image"]).stem))
        results.append(query_result(retriever, unit[0], qid, gt, gtc, features=raw[0], image=img))
    metrics = compute_metrics(results)
    metrics["calibrated"] = retriever.thresholds.calibrated
    return metrics, results


# ------------------------------------------------------------------------------------------------ the eval stage

def unknown_query_instances(index, queries_file: str | os.PathLike) -> list[str]:
    """A warning per query whose ``instance_id`` names no instance with views in ``index``: it can never be
    found (top-1 0), which says more about the queries file or the index than about the model."""
    indexed = set(index.instance_ids())
    out = []
    for q in load_queries(queries_file):
        gt = q["instance_id"]
        if gt is not None and gt not in indexed:
            why = "has no indexed view" if gt in index.instances else "is in no instance of the index"
            out.append(f"{queries_file}:{q['line']}: instance_id {gt} {why}; this query cannot be answered right "
                       f"(is the queries file of another scene or store?)")
    if len(out) > 5:
        out = out[:5] + [f"{queries_file}: {len(out) - 5} more queries name instances not in the index"]
    return out



@dataclass
class IndexEvaluation:
    """What :func:`evaluate_index` measured: one metrics column per model (``baseline`` first when there is
    one, then ``fine-tuned``, or ``model`` alone), their per-query results, the retrievers, and warnings."""

    columns: dict[str, dict]
    results: dict[str, list[QueryResult]]
    retrievers: dict
    index_quality: str
    warnings: list[str] = field(default_factory=list)

    @property
    def model(self) -> str:
        """The column of the evaluated index."""
        return list(self.columns)[-1]


def evaluate_index(index_dir: str | os.PathLike, queries_file: str | os.PathLike, cfg, *, baseline: str = "auto",
                   model: str | None = None, progress: bool = True, is_navigable=None) -> IndexEvaluation:
    """The ``eval`` stage (``ssl-nav eval``, ``ssl-nav demo``): the index ``index_dir`` and its baseline
    (:func:`ssl_nav.retrieval.query.baseline_retriever`: ``auto``, ``none`` or an index directory) on a queries
    file. ``cfg`` is the ``retrieval`` section. Warns when the queries are the calibration file of the index."""
    retriever = Retriever.open(index_dir, cfg, model=model, is_navigable=is_navigable)
    warnings = list(retriever.warnings) + unknown_query_instances(retriever.index, queries_file)
    if retriever.thresholds.calibrated and fitted_on(retriever.index, queries_file):
        warnings.append(f"{queries_file} is the file the open-set threshold of {index_dir} was calibrated on: "
                        f"open-set accuracy is optimistic; evaluate on queries apart from the calibration split "
                        f"(calibrate on FRAMES/calibration.jsonl, evaluate on FRAMES/queries.jsonl)")
    base, why_not = baseline_retriever(index_dir, cfg, baseline, is_navigable=is_navigable)
    if why_not:
        warnings.append(f"no baseline: {why_not}")
    retrievers = ({"baseline": base} if base is not None else {})
    retrievers["fine-tuned" if base is not None else "model"] = retriever
    columns, results = {}, {}
    for name, r in retrievers.items():
        columns[name], results[name] = evaluate_queries_file(r, queries_file, progress=progress)
    quality = ((retriever.index.extra.get("embedding") or {}).get("quality")) or "all"
    return IndexEvaluation(columns, results, retrievers, quality, warnings)


#: weights of the verification evidence tried by :func:`calibrate_verified`
VERIFY_WEIGHTS: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)


def calibrate_verified(results: Sequence[QueryResult], score: str, in_map: Sequence[bool]) -> dict:
    """Fit the weight of the verification evidence and the threshold together on a calibration split: for each
    weight of :data:`VERIFY_WEIGHTS`, the threshold of ``score + weight · verify_evidence`` (:func:`calibrate`);
    the best balanced accuracy wins, ties to the smaller weight. Adds ``verify_weight`` to the result."""
    best = None
    for w in VERIFY_WEIGHTS:
        vals = []
        for r in results:
            base, ev = r.scores.get(score), r.scores.get("verify_evidence")
            if base is None:
                raise ValueError(f"open-set score {score!r} unavailable for query {r.query_id}")
            vals.append(base + w * (ev or 0.0))
        t = calibrate(vals, in_map)
        if best is None or t["balanced_accuracy"] > best["balanced_accuracy"] + 1e-12:
            best = {**t, "verify_weight": w}
    return best


def calibrate_index(index_dir: str | os.PathLike, queries_file: str | os.PathLike, cfg, *, model: str | None = None,
                    write: bool = True, progress: bool = True) -> tuple[str, dict]:
    """The ``calibrate`` stage: fit the open-set threshold of the index's score in force (``cfg`` is the
    ``retrieval`` section) on a calibration file, and, with ``write``, store it in ``IDX/meta.json`` with the
    file's path and sha256 (an atomic re-save). Returns (score name, :func:`calibrate`'s result)."""
    retriever = Retriever.open(index_dir, cfg, model=model, use_index_thresholds=False)
    _, results = evaluate_queries_file(retriever, queries_file, progress=progress)
    score = retriever.score_name
    in_map = [r.gt_instance_id is not None for r in results]
    try:
        if cfg.verify:
            t = calibrate_verified(results, score, in_map)
        else:
            t = calibrate([r.open_set_value for r in results], in_map)
    except ValueError as e:
        raise SslNavError(f"{queries_file}: {e}") from None
    t["warnings"] = check_calibration(t, queries_file, index_dir)
    if write:
        index = retriever.index
        q = Path(queries_file)
        index.thresholds = {"score": score, "threshold": t["threshold"], "reject_margin": cfg.reject_margin,
                            "balanced_accuracy": t["balanced_accuracy"], "model_hash": index.model_hash,
                            "fit_on": {"path": str(q.resolve()), "sha256": file_sha256(q),
                                       "n_in_map": t["n_in_map"], "n_open_set": t["n_open_set"]}}
        if "verify_weight" in t:
            index.thresholds["verify"] = {"matcher": cfg.verify_matcher, "weight": t["verify_weight"]}
        index.save(index_dir)
    return score, t
