"""Query photo → ranked map instances → navigation goal, or "not in the map" (SimView, arXiv 2404.09647).

:class:`Retriever` ties an :class:`InstanceIndex` to the :class:`Embedder` of the model that built it (the
model hash must match), aggregates view hits per instance (:mod:`ssl_nav.retrieval.aggregate`), applies the
open-set thresholds and computes a goal pose per match (:mod:`ssl_nav.retrieval.goals`).

Thresholds: those stored in the index's ``meta.json`` by ``ssl-nav calibrate`` take precedence over
``RetrievalConfig.reject_score`` / ``reject_margin`` (which apply to uncalibrated indexes), unless
``use_index_thresholds=False``.

:func:`build_index_from_store` embeds a :class:`ViewStore` with a model (a ``model.pt`` or a bare backbone
name: the ImageNet baseline) and writes the index directory, recording the model spec so that
``ssl-nav query`` can load the right model.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable

import numpy as np

from ssl_nav.config import RetrievalConfig
from ssl_nav.errors import RetrievalIndexError
from ssl_nav.retrieval.aggregate import InstanceScore, aggregate, open_set_decision
from ssl_nav.retrieval.embedder import Embedder, embed_store, resolve_device
from ssl_nav.retrieval.goals import goal_pose
from ssl_nav.retrieval.index import InstanceIndex, ViewHit, read_meta


class Retriever:
    """Answers query photos against one loaded index; :meth:`reload` swaps indexes only on success."""

    def __init__(self, index: InstanceIndex, embedder: Embedder, cfg: RetrievalConfig | None = None,
                 is_navigable: Callable[[np.ndarray], bool] | None = None, *, use_index_thresholds: bool = True,
                 frame_id: str = "map") -> None:
        self.cfg = cfg or RetrievalConfig()
        if index.model_hash != embedder.model_hash:
            raise RetrievalIndexError(f"index was built by model {index.model_hash[:12]}… but the embedder's model "
                                      f"is {embedder.model_hash[:12]}…")
        self.index = index
        self.embedder = embedder
        self.is_navigable = is_navigable
        self.use_index_thresholds = use_index_thresholds
        self.frame_id = frame_id
        self._lock = threading.Lock()

    @classmethod
    def open(cls, index_dir: str | os.PathLike, cfg: RetrievalConfig | None = None, *, model: str | None = None,
             is_navigable: Callable[[np.ndarray], bool] | None = None, models_dir: Path | None = None,
             use_index_thresholds: bool = True) -> "Retriever":
        """Load an index directory and the model recorded in its ``meta.json`` (or ``model``); hashes must match."""
        from ssl_nav.learning.backbones import load_encoder

        meta = read_meta(index_dir)
        cfg = embedding_config(cfg or RetrievalConfig(), meta)
        spec = model or resolve_model_spec(index_dir, meta)
        encoder = load_encoder(spec, device=resolve_device(cfg.device), models_dir=models_dir)
        index = InstanceIndex.load(index_dir, expected_model_hash=encoder.model_hash, cfg=cfg)
        return cls(index, Embedder(encoder, cfg), cfg, is_navigable, use_index_thresholds=use_index_thresholds)

    def reload(self, index_dir: str | os.PathLike) -> InstanceIndex:
        """Load another index built by the same model; the current index stays in use if loading fails."""
        new = InstanceIndex.load(index_dir, expected_model_hash=self.embedder.model_hash, cfg=self.cfg)
        with self._lock:
            self.index = new
        return new

    # ------------------------------------------------------------------------------------------ thresholds
    @property
    def thresholds(self) -> tuple[float, float]:
        """(reject_score, reject_margin) in force."""
        t = self.index.thresholds if self.use_index_thresholds else None
        if t:
            return float(t["reject_score"]), float(t["reject_margin"])
        return float(self.cfg.reject_score), float(self.cfg.reject_margin)

    # ------------------------------------------------------------------------------------------ queries
    def rank(self, embedding: np.ndarray, k_views: int | None = None) -> tuple[list[InstanceScore], list[ViewHit]]:
        """Ranked instances and the view hits (``k_views``, default ``search_k``) of one query embedding."""
        index = self.index
        hits = index.search(np.asarray(embedding, dtype=np.float32).reshape(1, -1),
                            k_views or self.cfg.search_k)[0]
        return aggregate(hits, self.cfg.aggregation, self.cfg.top_m), hits

    def query(self, image: np.ndarray, robot_position: np.ndarray | None = None) -> dict:
        """Answer one RGB uint8 photo (see :meth:`query_embedding`)."""
        return self.query_embedding(self.embedder.embed([image])[0], robot_position)

    def query_embedding(self, embedding: np.ndarray, robot_position: np.ndarray | None = None) -> dict:
        """``{"in_map", "reason", "best_score", "margin", "matches": [...]}``; matches carry goal poses."""
        with self._lock:
            index = self.index
        ranked, _ = self.rank(embedding)
        reject_score, reject_margin = self.thresholds
        decision = open_set_decision(ranked, reject_score, reject_margin)
        matches = []
        for r in ranked[:self.cfg.top_k]:
            info = index.instances.get(r.instance_id, {})
            centroid = info.get("centroid")
            goal = None
            if centroid is not None:
                goal = goal_pose(np.asarray(centroid, dtype=np.float64), standoff=self.cfg.standoff,
                                 is_navigable=self.is_navigable, robot_position=robot_position,
                                 frame_id=self.frame_id)
            matches.append({"instance_id": r.instance_id, "score": round(r.score, 6), "category": info.get("category"),
                            "centroid": centroid, "best_view_id": r.best_view_id, "goal": goal})
        return {"in_map": decision.in_map, "reason": decision.reason,
                "best_score": None if decision.best_score is None else round(decision.best_score, 6),
                "margin": None if decision.margin is None else round(decision.margin, 6),
                "thresholds": {"reject_score": reject_score, "reject_margin": reject_margin},
                "matches": matches}


def embedding_config(cfg: RetrievalConfig, meta: dict) -> RetrievalConfig:
    """``cfg`` with the embedding settings the index was built with (image size, flip TTA), so that queries
    are embedded exactly like the indexed views whatever config the caller loaded."""
    import dataclasses

    built = (meta.get("extra") or {}).get("embedding") or {}
    keep = {k: built[k] for k in ("image_size", "flip_tta") if k in built}
    return dataclasses.replace(cfg, **keep) if keep else cfg


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


def index_from_store(store, encoder, cfg: RetrievalConfig, model_spec: str, progress: bool = True,
                     quality: str | None = None, embedder: Embedder | None = None) -> InstanceIndex:
    """Embed a store's views (all, or only ``quality``) and build an :class:`InstanceIndex` in memory."""
    embedder = embedder or Embedder(encoder, cfg)
    emb, views = embed_store(store, embedder, progress=progress, quality=quality)
    if not views:
        raise RetrievalIndexError(f"{store.root}: the store has no views to index")
    index = InstanceIndex.build(emb, [v["view_id"] for v in views], [str(v["instance_id"]) for v in views],
                                model_hash=encoder.model_hash, cfg=cfg, model_spec=model_spec,
                                model_name=encoder.name, instances=store.instances())
    index.extra["embedding"] = {"image_size": embedder.image_size, "flip_tta": bool(embedder.cfg.flip_tta),
                                "quality": quality}
    return index


def build_index_from_store(store, model_spec: str | os.PathLike, cfg: RetrievalConfig | None,
                           out_dir: str | os.PathLike, progress: bool = True, *, quality: str | None = None,
                           models_dir: Path | None = None) -> Path:
    """Embed every view of ``store`` (a ViewStore or its path) with ``model_spec`` and write the index at ``out_dir``.

    ``model_spec`` is a ``model.pt`` or a bare backbone name (the ImageNet baseline). ``quality`` restricts the
    index to robot (``low``) or user (``high``) views; by default every view is indexed.
    """
    from ssl_nav.learning.backbones import BACKBONES, load_encoder
    from ssl_nav.views.store import ViewStore

    cfg = cfg or RetrievalConfig()
    if not hasattr(store, "views"):
        store = ViewStore(store)
    spec = str(model_spec)
    if spec not in BACKBONES:
        spec = str(Path(spec).resolve())
    encoder = load_encoder(spec, device=resolve_device(cfg.device), models_dir=models_dir)
    index = index_from_store(store, encoder, cfg, spec, progress=progress, quality=quality)
    out = Path(out_dir).absolute()
    if spec not in BACKBONES:
        index.extra["model_spec_relative"] = os.path.relpath(spec, out)
    index.extra["store"] = str(Path(store.root).resolve())
    return index.save(out)
