"""Query photo → ranked map instances → navigation goal, or "not in the map" (SimView, arXiv 2404.09647).

:class:`Retriever` ties an :class:`InstanceIndex` to the :class:`Embedder` of the model that built it (the
model hash must match), aggregates view hits per instance (:mod:`ssl_nav.retrieval.aggregate`), scores and
decides the open set (:mod:`ssl_nav.retrieval.openset`) and computes a goal pose per match
(:mod:`ssl_nav.retrieval.goals`). Indexes are built by :func:`ssl_nav.retrieval.build.build_index`.

Open-set threshold in force: the one ``ssl-nav calibrate`` stored in the index's ``meta.json`` when it was
fitted for the score in force (``retrieval.open_set_score``); else the one fitted at fine-tune time and stored
in ``model.pt`` (:mod:`ssl_nav.learning.selfcalib`; ``retrieval.self_calibration``) when it was fitted for that
score with the same embedding settings; else ``retrieval.reject_threshold``. With ``use_index_thresholds=False``
(an explicit ``--reject-threshold``) always the configuration's.

With ``retrieval.verify`` the top ``verify_top_k`` instances are verified with local features
(:mod:`ssl_nav.retrieval.verify`) against their best stored views (read from the index's store), and
``w · evidence(inliers)`` is added to each verified instance's score (re-ranking them) and to the open-set
score in force; ``w`` is the weight ``ssl-nav calibrate`` fitted with verification, else
``retrieval.verify_weight``. Every match then carries its ``verification`` (inliers, matches, view).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ssl_nav.config import RetrievalConfig
from ssl_nav.errors import ConfigError, RetrievalIndexError
from ssl_nav.retrieval.aggregate import InstanceScore, aggregate
from ssl_nav.retrieval.build import build_index  # build imports embedder/index only: no cycle
from ssl_nav.retrieval.embedder import Embedder
from ssl_nav.retrieval.goals import goal_pose
from ssl_nav.retrieval.index import InstanceIndex, ViewHit, read_meta
from ssl_nav.retrieval.openset import (OpenSetDecision, decide, instance_stats, open_set_scores, resolve_score,
                                       single_instance_note)
from ssl_nav.retrieval.verify import InstanceVerification, LocalFeatureVerifier, evidence

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Thresholds:
    """The open-set decision rule in force."""

    score: str
    threshold: float
    reject_margin: float
    calibrated: bool  #: fitted by ``ssl-nav calibrate``
    source: str  #: where the threshold comes from (the calibration file, the model's self-calibration, the config)
    self_calibrated: bool = False  #: fitted at fine-tune time (``model.pt`` ``self_calibration``)

    def to_json(self) -> dict:
        return {"score": self.score, "threshold": self.threshold, "reject_margin": self.reject_margin,
                "calibrated": self.calibrated, "self_calibrated": self.self_calibrated, "source": self.source}

    @property
    def origin(self) -> str | None:
        """How an uncalibrated threshold came about, for the reason of a rejection."""
        return "self-calibrated at fine-tune" if self.self_calibrated else None


class Retriever:
    """Answers query photos against one loaded index; :meth:`reload` swaps indexes only on success.

    ``warnings`` lists what makes the answers less useful than they could be (e.g. no instance centroids, so
    no goals; a calibration fitted for another score); the CLI prints them, the ROS server logs them.
    """

    def __init__(self, index: InstanceIndex, embedder: Embedder, cfg: RetrievalConfig | None = None,
                 is_navigable: Callable[[np.ndarray], bool] | None = None, *, use_index_thresholds: bool = True,
                 frame_id: str = "map", index_dir: str | os.PathLike | None = None) -> None:
        self.cfg = cfg or RetrievalConfig()
        if index.model_hash != embedder.model_hash:
            raise RetrievalIndexError(f"index was built by model {index.model_hash[:12]}… but the embedder's model "
                                      f"is {embedder.model_hash[:12]}…")
        try:
            self.score_name = resolve_score(self.cfg.open_set_score, embedder.classifier is not None)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.embedder = embedder
        self.is_navigable = is_navigable
        self.use_index_thresholds = use_index_thresholds
        self.frame_id = frame_id
        self._lock = threading.Lock()
        self._verifier: LocalFeatureVerifier | None = None
        self._store = None
        self._store_views: dict[str, dict] = {}
        self._set_index(index, index_dir)

    def _set_index(self, index: InstanceIndex, index_dir: str | os.PathLike | None) -> None:
        where = str(index_dir) if index_dir is not None else "the index"
        warnings = []
        missing = [i for i in index.instance_ids() if (index.instances.get(i) or {}).get("centroid") is None]
        if missing:
            src = index.instances_file or (Path(index_dir) / "instances.json" if index_dir is not None else None)
            why = (f"{src} is missing" if index_dir is not None and index.instances_file is None
                   else f"{src or 'its instances'} gives no centroid for instance(s) {', '.join(missing[:5])}"
                   + ("…" if len(missing) > 5 else ""))
            warnings.append(f"{where}: {why}: those matches carry no goal (goal: null); rebuild the index with "
                            f"`ssl-nav index` from a store whose instances.json has centroids")
        t = index.thresholds or {}
        if self.use_index_thresholds and t and _threshold_score(t) != self.score_name:
            warnings.append(f"{where}: its calibrated threshold is for the open-set score "
                            f"{_threshold_score(t)!r}, not {self.score_name!r} (retrieval.open_set_score): using "
                            f"retrieval.reject_threshold {self.cfg.reject_threshold}; run `ssl-nav calibrate` again")
        single = single_instance_note(self.score_name, len(index.instance_ids()))
        if single:
            warnings.append(f"{where}: {single}")
        stats = instance_stats(index)  # bounded: at most INSTANCE_STATS_MAX_VIEWS views
        with self._lock:
            self.index, self.warnings, self._stats = index, warnings, stats

    @classmethod
    def open(cls, index_dir: str | os.PathLike, cfg: RetrievalConfig | None = None, *, model: str | None = None,
             is_navigable: Callable[[np.ndarray], bool] | None = None, models_dir: Path | None = None,
             use_index_thresholds: bool = True) -> "Retriever":
        """Load an index directory and the model recorded in its ``meta.json`` (or ``model``); hashes must match."""
        meta = read_meta(index_dir)
        cfg = embedding_config(cfg or RetrievalConfig(), meta)
        spec = model or resolve_model_spec(index_dir, meta)
        embedder = Embedder.load(spec, cfg, models_dir=models_dir)
        index = InstanceIndex.load(index_dir, expected_model_hash=embedder.model_hash, cfg=cfg)
        return cls(index, embedder, cfg, is_navigable, use_index_thresholds=use_index_thresholds,
                   index_dir=index_dir)

    def reload(self, index_dir: str | os.PathLike) -> InstanceIndex:
        """Load another index built by the same model; the current index stays in use if loading fails."""
        new = InstanceIndex.load(index_dir, expected_model_hash=self.embedder.model_hash, cfg=self.cfg)
        self._set_index(new, index_dir)
        return new

    # ------------------------------------------------------------------------------------------ thresholds
    @property
    def thresholds(self) -> Thresholds:
        """The open-set rule in force: the index's calibrated threshold for this score, else the configuration's."""
        t = self.index.thresholds if self.use_index_thresholds else None
        if t and _threshold_score(t) == self.score_name:
            fit = t.get("fit_on") or {}
            return Thresholds(self.score_name, float(t.get("threshold", t.get("reject_score"))),
                              float(t.get("reject_margin", self.cfg.reject_margin)), True,
                              f"calibrated on {fit.get('path', t.get('queries', '?'))}")
        own = self.self_threshold() if self.use_index_thresholds else None
        if own is not None:
            return Thresholds(self.score_name, own, float(self.cfg.reject_margin), False,
                              "self-calibrated at fine-tune (model.pt self_calibration)", self_calibrated=True)
        return Thresholds(self.score_name, float(self.cfg.reject_threshold), float(self.cfg.reject_margin), False,
                          "retrieval.reject_threshold")

    def self_threshold(self) -> float | None:
        """The model's self-calibrated threshold for the score in force (:mod:`ssl_nav.learning.selfcalib`), when
        ``retrieval.self_calibration`` is on and it was fitted with this embedder's image size and flip TTA."""
        rec = self.embedder.self_calibration
        if not rec or not getattr(self.cfg, "self_calibration", True):
            return None
        if (int(rec.get("image_size", -1)) != self.embedder.image_size
                or bool(rec.get("flip_tta")) != bool(self.embedder.cfg.flip_tta)):
            return None
        if self.score_name == "sim_softmax" and abs(float(rec.get("softmax_temperature", -1))
                                                   - float(self.cfg.softmax_temperature)) > 1e-9:
            return None
        t = (rec.get("thresholds") or {}).get(self.score_name)
        return None if t is None else float(t)

    # ------------------------------------------------------------------------------------------ queries
    def rank(self, embedding: np.ndarray, k_views: int | None = None) -> tuple[list[InstanceScore], list[ViewHit]]:
        """Ranked instances and the view hits (``k_views``, default ``search_k``) of one query embedding."""
        index = self.index
        hits = index.search(np.asarray(embedding, dtype=np.float32).reshape(1, -1),
                            k_views or self.cfg.search_k)[0]
        return aggregate(hits, self.cfg.aggregation, self.cfg.top_m), hits

    def scores(self, ranked: list[InstanceScore], features: np.ndarray | None) -> dict[str, float | None]:
        """Every open-set score of one query (:func:`ssl_nav.retrieval.openset.open_set_scores`)."""
        return open_set_scores(ranked, features, self.embedder.classifier, self._stats, self.cfg.softmax_temperature)

    def decide(self, ranked: list[InstanceScore], scores: dict[str, float | None]) -> OpenSetDecision:
        """The open-set decision for one query under the thresholds in force (with verification, on the score in
        force plus its weighted evidence, ``scores["verified"]``)."""
        t = self.thresholds
        if scores.get("verified") is not None:
            scores = {**scores, t.score: scores["verified"]}
        return decide(ranked, scores, t.score, t.threshold, t.reject_margin, t.calibrated, origin=t.origin,
                      n_instances=len(self.index.instance_ids()), fallback_threshold=self.cfg.reject_threshold)

    # ------------------------------------------------------------------------------------------ verification
    @property
    def verify_weight(self) -> float:
        """The weight of the verification evidence: the one ``calibrate`` fitted with this matcher, else the
        configuration's."""
        t = self.index.thresholds if self.use_index_thresholds else None
        v = (t or {}).get("verify") or {}
        if t and _threshold_score(t) == self.score_name and v.get("matcher") == self.cfg.verify_matcher:
            return float(v.get("weight", self.cfg.verify_weight))
        return float(self.cfg.verify_weight)

    def verifier(self) -> LocalFeatureVerifier:
        if self._verifier is None or self._verifier.matcher != self.cfg.verify_matcher:
            self._verifier = LocalFeatureVerifier(self.cfg.verify_matcher)
        return self._verifier

    def load_view(self, view_id: str) -> np.ndarray:
        """A stored view's image, from the store the index was built from (re-read once when it is unknown)."""
        from ssl_nav.views.store import ViewStore

        rec = self._store_views.get(view_id)
        if rec is None:
            root = (self.index.extra or {}).get("store")
            if not root:
                raise RetrievalIndexError("retrieval.verify: the index records no store (meta.json extra.store) to "
                                          "read its views from")
            self._store = ViewStore(root)
            self._store_views = {v["view_id"]: v for v in self._store.views()}
            rec = self._store_views.get(view_id)
            if rec is None:
                raise RetrievalIndexError(f"retrieval.verify: view {view_id!r} is not in the store {root}")
        return self._store.load_image(rec)

    def verify(self, image: np.ndarray, ranked: list[InstanceScore], hits: list[ViewHit]
               ) -> dict[str, InstanceVerification]:
        """Local-feature evidence for the top ``verify_top_k`` instances (each against its ``verify_views`` best
        views among ``hits``)."""
        top = ranked[:self.cfg.verify_top_k]
        want = {r.instance_id for r in top}
        views: dict[str, list[ViewHit]] = {}
        for h in hits:
            if h.instance_id in want:
                views.setdefault(h.instance_id, []).append(h)
        cands = [(r.instance_id, [h.view_id for h in sorted(views.get(r.instance_id, []),
                                                             key=lambda h: (-h.score, h.view_id))][
                                                                 :self.cfg.verify_views]) for r in top]
        return {v.instance_id: v for v in self.verifier().verify(image, cands, self.load_view)}

    def rerank(self, ranked: list[InstanceScore], ver: dict[str, InstanceVerification]) -> list[InstanceScore]:
        """``ranked`` with ``w · evidence`` added to the verified instances' scores, re-sorted."""
        w, scale = self.verify_weight, self.cfg.verify_inlier_scale
        out = [InstanceScore(r.instance_id, r.score + (w * evidence(ver[r.instance_id].inliers, scale)
                                                         if r.instance_id in ver else 0.0), r.best_view_id, r.n_views)
               for r in ranked]
        out.sort(key=lambda s: (-s.score, s.instance_id))
        return out

    def answer(self, embedding: np.ndarray, features: np.ndarray | None = None, image: np.ndarray | None = None,
               k_views: int | None = None) -> tuple[list[InstanceScore], list[ViewHit], dict[str, float | None],
                                                   OpenSetDecision, dict[str, InstanceVerification]]:
        """Rank, score, verify (``retrieval.verify`` and an ``image``) and decide one query: the one path of
        ``query``, ``eval``, the demo and the ROS server. Returns (ranked, hits, scores, decision, verification);
        with verification, ``scores`` also holds ``verify_evidence`` (of the top instance) and ``verified``."""
        ranked, hits = self.rank(embedding, k_views)
        scores = self.scores(ranked, features)
        ver: dict[str, InstanceVerification] = {}
        if self.cfg.verify and image is not None and ranked:
            ver = self.verify(image, ranked, hits)
            ranked = self.rerank(ranked, ver)
            top = ver.get(ranked[0].instance_id)
            ev = evidence(top.inliers, self.cfg.verify_inlier_scale) if top is not None else 0.0
            base = scores.get(self.score_name)
            scores["verify_evidence"] = ev
            scores["verified"] = None if base is None else base + self.verify_weight * ev
        return ranked, hits, scores, self.decide(ranked, scores), ver

    def check_image(self, image: np.ndarray, what: str = "query") -> np.ndarray:
        """``image`` as uint8 RGB of at least ``retrieval.min_query_px``, or a ValueError naming ``what``."""
        return self.embedder.check_image(image, what, self.cfg.min_query_px)

    def query(self, image: np.ndarray, robot_position: np.ndarray | None = None, what: str = "query") -> dict:
        """Answer one RGB uint8 photo (see :meth:`query_embedding`); a ValueError naming ``what`` for an
        unusable image."""
        image = self.check_image(image, what)
        unit, raw = self.embedder.encode([image])
        return self.query_embedding(unit[0], robot_position, features=raw[0], image=image)

    def query_embedding(self, embedding: np.ndarray, robot_position: np.ndarray | None = None,
                        features: np.ndarray | None = None, image: np.ndarray | None = None) -> dict:
        """``{"in_map", "reason", "best_score", "margin", "open_set", "matches": [...]}``; matches carry goals.

        ``features`` are the query's raw pooled features, needed by the ``norm`` and classifier scores;
        ``image`` (the query photo) is needed by the verification (``retrieval.verify``).
        """
        with self._lock:
            index = self.index
        ranked, _, scores, decision, ver = self.answer(embedding, features, image)
        matches = []
        for r in ranked[:self.cfg.top_k]:
            info = index.instances.get(r.instance_id) or {}
            centroid = info.get("centroid")
            goal = None
            if centroid is not None:
                goal = goal_pose(np.asarray(centroid, dtype=np.float64), standoff=self.cfg.standoff,
                                 is_navigable=self.is_navigable, robot_position=robot_position,
                                 frame_id=self.frame_id)
            m = {"instance_id": r.instance_id, "score": round(r.score, 6), "category": info.get("category"),
                 "centroid": centroid, "best_view_id": r.best_view_id, "goal": goal}
            if r.instance_id in ver:
                m["verification"] = ver[r.instance_id].to_json()
            matches.append(m)
        out = {"in_map": decision.in_map, "reason": decision.reason,
               "best_score": _round(scores["best"]), "margin": _round(scores["margin"]),
               "open_set": {**self.thresholds.to_json(), "value": _round(decision.value)},
               "matches": matches}
        if self.cfg.verify:
            out["verification"] = {"matcher": self.cfg.verify_matcher, "weight": self.verify_weight,
                                   "evidence": _round(scores.get("verify_evidence"))}
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 6)


def _threshold_score(t: dict) -> str:
    """The score a stored threshold was fitted for (indexes calibrated before the choice existed: ``best``)."""
    return str(t.get("score", "best"))


def embedding_config(cfg: RetrievalConfig, meta: dict) -> RetrievalConfig:
    """``cfg`` with the embedding settings the index was built with (image size, flip TTA), so that queries
    are embedded exactly like the indexed views whatever config the caller loaded."""
    built = (meta.get("extra") or {}).get("embedding") or {}
    keep = {k: built[k] for k in ("image_size", "flip_tta") if k in built}
    return dataclasses.replace(cfg, **keep) if keep else cfg


def baseline_retriever(index_dir: str | os.PathLike, cfg: RetrievalConfig, spec: str = "auto", *,
                       is_navigable: Callable[[np.ndarray], bool] | None = None) -> tuple["Retriever | None", str]:
    """The un-fine-tuned baseline of an index, for ``ssl-nav eval``: ``spec`` is ``auto`` (the ImageNet backbone
    the index's model was fine-tuned from, over the same views of the same store, built in memory with
    :func:`ssl_nav.retrieval.build.build_index`), ``none``, or a baseline index directory. Returns the retriever
    (None when there is none) and, when ``auto`` finds no baseline, why not."""
    from ssl_nav.learning.backbones import BACKBONES

    meta = read_meta(index_dir)
    if spec == "none" or meta.get("model_spec") in BACKBONES:
        return None, ""
    if spec != "auto":
        return Retriever.open(spec, cfg, is_navigable=is_navigable), ""
    extra = meta.get("extra") or {}
    store_dir = extra.get("store")
    if not store_dir or not Path(store_dir).is_dir():
        return None, f"the store of {index_dir} ({store_dir}) is not available"
    name = meta.get("model_name")
    if name not in BACKBONES:
        return None, f"{index_dir}/meta.json names no known backbone ('model_name': {name!r})"
    cfg = embedding_config(cfg, meta)  # embed like the evaluated index: same image size, TTA and views
    embedder = Embedder.load(name, cfg)
    quality = (extra.get("embedding") or {}).get("quality") or "all"  # indexes from before the protocol: all
    index = build_index(store_dir, embedder, cfg, quality="low" if quality == "low" else "all", progress=False)
    return Retriever(index, embedder, cfg, is_navigable), ""


def resolve_model_spec(index_dir: str | os.PathLike, meta: dict) -> str:
    """The model an index was built with: a backbone name, or its model.pt (absolute, else relative to the index)."""
    from ssl_nav.learning.backbones import BACKBONES

    spec = meta.get("model_spec")
    if not spec:
        raise RetrievalIndexError(f"{Path(index_dir) / 'meta.json'}: no 'model_spec'; pass --model")
    if spec in BACKBONES or Path(spec).is_file():
        return spec
    rel = (meta.get("extra") or {}).get("model_spec_relative")
    if rel and (Path(index_dir) / rel).is_file():
        return str((Path(index_dir) / rel).resolve())
    raise RetrievalIndexError(f"{Path(index_dir) / 'meta.json'}: model {spec!r} not found; pass --model")
