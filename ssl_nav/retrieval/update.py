"""Keep an :class:`~ssl_nav.retrieval.index.InstanceIndex` in step with a growing view store without a rebuild.

While the robot explores, the view collector appends views to ``STORE/views.jsonl`` and rewrites
``instances.json``. :func:`sync_index` compares the store with the index by view id and

- embeds only the views the index does not hold yet (of the quality the index was built over,
  ``extra.embedding.quality``) and adds them (:meth:`InstanceIndex.add`: IVF structures assign them to their
  trained cells, nothing is re-embedded or retrained);
- removes the views the store no longer has (or that moved to another instance);
- copies the store's ``instances.json`` (centroids move as the map grows).

It must be given the :class:`~ssl_nav.retrieval.embedder.Embedder` of the model that built the index (the
model hash is checked). The index is updated in place under its lock, so a server keeps answering queries
while it grows; :meth:`InstanceIndex.save` then writes it atomically. A new model is not an update: its
index is rebuilt from the store (:func:`ssl_nav.retrieval.build.build_index`), see ``retrieval_server``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ssl_nav.errors import RetrievalIndexError
from ssl_nav.retrieval.embedder import Embedder
from ssl_nav.retrieval.index import InstanceIndex


@dataclass
class SyncResult:
    """What :func:`sync_index` changed."""

    added: int = 0
    removed: int = 0
    instances_changed: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.instances_changed)


def indexed_quality(index: InstanceIndex) -> str | None:
    """The store quality the index holds (``low``), or ``None`` for every view (``quality: all``)."""
    q = (index.extra.get("embedding") or {}).get("quality", "low")
    return "low" if q == "low" else None


def sync_index(store, index: InstanceIndex, embedder: Embedder, *, reload: bool = True,
               batch_size: int | None = None) -> SyncResult:
    """Bring ``index`` in line with ``store`` (a ViewStore): embed and add new views, drop removed ones.

    ``reload`` re-reads the store's files first. Raises :class:`RetrievalIndexError` when ``embedder`` is not
    the model that built the index.
    """
    if embedder.model_hash != index.model_hash:
        raise RetrievalIndexError(f"sync_index: the embedder's model {embedder.model_hash[:12]}… did not build "
                                  f"this index ({index.model_hash[:12]}…); rebuild it instead")
    if reload:
        store.reload()
    views = store.views(quality=indexed_quality(index))
    in_store = {v["view_id"]: str(v["instance_id"]) for v in views}
    in_index = index.view_instances()
    stale = [vid for vid, inst in in_index.items() if in_store.get(vid) != inst]
    result = SyncResult()
    if stale:
        result.removed = index.remove_views(stale)
    new = [v for v in views if not index.has_view(v["view_id"])]
    bs = max(1, int(batch_size or embedder.cfg.batch_size))
    for i in range(0, len(new), bs):
        part = new[i:i + bs]
        emb = embedder.embed([store.load_image(v) for v in part])
        result.added += index.add(emb, [v["view_id"] for v in part], [str(v["instance_id"]) for v in part])
    instances = store.instances()
    if instances != index.instances:
        index.instances = instances
        result.instances_changed = True
    return result
