"""ViewStore → :class:`InstanceIndex`: the one function that builds an index (``ssl-nav index``, ``ssl-nav eval``'s
in-memory baseline, the demo, the benchmarks and the ROS ``retrieval_server`` all call :func:`build_index`).

Which views are indexed is the evaluation protocol (``retrieval.index_quality``):

- ``low`` (the default): the robot's own views only. The robot retrieves against what it observed; the
  sharp user photos (``quality: high``) are training data for CrossIA (arXiv 2404.09645), as in SimView
  (arXiv 2404.09647) and CrossIA, whose galleries are the robot's observations.
- ``all``: the user photos are indexed too. A query photo of a goal object then usually matches its own
  user photos best, which says little about the robot's map; the demo reports it as a separate row.

The index records how it was built in ``meta.json`` (``extra.embedding``: image size, flip TTA, the views
indexed; ``extra.store``; the model spec, absolute and relative to the index), so that queries are embedded
exactly like the indexed views and ``ssl-nav eval`` can rebuild the baseline over the same views.
"""

from __future__ import annotations

import os
from pathlib import Path

from ssl_nav.config import RetrievalConfig
from ssl_nav.errors import RetrievalIndexError
from ssl_nav.retrieval.embedder import Embedder, embed_store
from ssl_nav.retrieval.index import InstanceIndex, check_replaceable, index_lock

INDEX_QUALITIES: tuple[str, ...] = ("low", "all")


def build_index(store, model: "str | os.PathLike | Embedder", cfg: RetrievalConfig | None = None,
                out: str | os.PathLike | None = None, *, quality: str | None = None, progress: bool = True,
                models_dir: Path | None = None) -> InstanceIndex:
    """Embed the views of ``store`` (a ViewStore or its directory) and build an :class:`InstanceIndex`.

    ``model`` is a ``model.pt``, a backbone name (the ImageNet baseline), or an :class:`Embedder` already
    loaded (the ROS server and ``ssl-nav eval`` keep it to answer queries). ``quality`` (``low`` | ``all``)
    overrides ``cfg.index_quality``. With ``out`` the index directory is written there (atomic swap) and the
    returned index is the one on disk.
    """
    cfg = cfg or RetrievalConfig()
    quality = quality or cfg.index_quality
    if quality not in INDEX_QUALITIES:
        raise RetrievalIndexError(f"retrieval.index_quality must be one of {', '.join(INDEX_QUALITIES)}, "
                                  f"got {quality!r}")
    if out is None:
        return _build(store, model, cfg, None, quality, progress, models_dir)
    check_replaceable(out)  # before the minutes of embedding: never a store, '.', or a foreign directory
    Path(out).absolute().parent.mkdir(parents=True, exist_ok=True)
    with index_lock(out):  # one writer of OUT at a time, from the first embedding to the save
        return _build(store, model, cfg, out, quality, progress, models_dir)


def _build(store, model, cfg, out, quality, progress, models_dir) -> InstanceIndex:
    from ssl_nav.learning.backbones import BACKBONES
    from ssl_nav.views.store import ViewStore

    if not hasattr(store, "views"):
        store = ViewStore(store)
    embedder = model if isinstance(model, Embedder) else Embedder.load(model, cfg, models_dir=models_dir)
    spec = embedder.spec
    if spec is None:
        raise RetrievalIndexError("build_index: the embedder does not say which model it holds; load it with "
                                  "Embedder.load")
    emb, views = embed_store(store, embedder, progress=progress, quality="low" if quality == "low" else None)
    if not views:
        what = "robot (quality: low) views" if quality == "low" else "views"
        raise RetrievalIndexError(f"{store.root}: the store has no {what} to index"
                                  + (" (retrieval.index_quality: low; user photos are training data)"
                                     if quality == "low" else ""))
    index = InstanceIndex.build(emb, [v["view_id"] for v in views], [str(v["instance_id"]) for v in views],
                                model_hash=embedder.model_hash, cfg=cfg, model_spec=spec,
                                model_name=embedder.encoder.name, instances=store.instances())
    index.extra["embedding"] = {"image_size": embedder.image_size, "flip_tta": bool(embedder.cfg.flip_tta),
                                "quality": quality}
    index.extra["store"] = str(Path(store.root).resolve())
    if out is None:
        return index
    out = Path(out).absolute()
    if spec not in BACKBONES:
        index.extra["model_spec_relative"] = os.path.relpath(spec, out)
    index.save(out)
    return index
