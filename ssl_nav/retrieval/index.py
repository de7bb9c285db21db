"""``InstanceIndex``: a FAISS index over the L2-normalised embeddings of every stored view.

Each vector is one view (a robot crop or a user photo) of one map instance; the inner product of unit
vectors is their cosine similarity, the score SimView (arXiv 2404.09647) ranks views by. Instance-level
scores are made from these view scores by :mod:`ssl_nav.retrieval.aggregate`.

Index types (``RetrievalConfig.index_type``):

- ``flat``: ``IndexIDMap2(IndexFlatIP)``, exact search. Views are removed in place with ``remove_ids``.
- ``ivf_flat``, ``ivf_sq8``, ``ivf_pq`` (re-ranked against 8-bit codes), ``hnsw``: approximate structures for
  large maps (:mod:`ssl_nav.retrieval.structures`; their parameters are recorded in ``meta.json``
  ``structure`` and checked against ``index.faiss`` on load). Structures that cannot delete in place (HNSW)
  keep a removed view as a *tombstone*: its id is listed in ``meta.json`` (``removed``) and filtered out of
  every result; searches over-fetch by the number of tombstones.
- ``auto``: ``flat`` below ``approximate_from`` vectors, ``auto_approximate`` (``ivf_pq``) from there on
  (decided when the index is built; :func:`ssl_nav.retrieval.update.sync_index` restructures a grown index
  from its stored vectors).

Directory format (docs/retrieval.md, "Index directory")::

    IDX/index.faiss     faiss.write_index of the IDMap2 index
    IDX/meta.json       {"format": "ssl_nav.index/1", "model_hash", "model_spec", "model_name", "dim",
                         "metric": "inner_product", "index_type", "structure", "ntotal",
                         "vectors": [[faiss_id, view_id, instance_id], ...]  (one per vector in the index),
                         "removed": [faiss_id, ...], "next_id", "hnsw": {...}, "thresholds": {...}|null}
    IDX/instances.json  a copy of the store's instances.json

``meta.json`` must list exactly ``ntotal`` vectors whose ids are the index's ids, else loading fails; each
field is checked and a bad one is named (``key 'vectors'[3]``).
:meth:`InstanceIndex.save` writes everything into ``IDX.tmp-XXXX`` (fsynced), renames an existing ``IDX`` to
``IDX.old-XXXX``, renames the new directory to ``IDX`` and deletes the old one, so a reader sees either the
old or the new index, never a half-written one. After a crash between the two renames the next load puts
the newest complete leftover back (:func:`recover_interrupted_save`). Every error is a
:class:`RetrievalIndexError` naming the file; an index built by another model (hash mismatch) is an error,
not silent garbage.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ssl_nav.config import RetrievalConfig
from ssl_nav.errors import RetrievalIndexError
from ssl_nav.locking import DirLock
from ssl_nav.retrieval.structures import KINDS, IndexStructure, choose_structure, describe

log = logging.getLogger(__name__)

INDEX_FORMAT = "ssl_nav.index/1"
METRIC = "inner_product"
INDEX_FILE = "index.faiss"
META_FILE = "meta.json"
INSTANCES_FILE = "instances.json"
#: batches smaller than this search on one OpenMP thread (FAISS's own switch to BLAS is at 20 queries)
SINGLE_THREAD_BELOW = 20


@dataclass
class ViewHit:
    """One search result: a stored view and its cosine similarity to the query."""

    view_id: str
    instance_id: str
    score: float


def _faiss():
    import faiss

    return faiss


def choose_index_type(n_vectors: int, cfg: RetrievalConfig, dim: int = 1280) -> str:
    """The structure kind (:data:`ssl_nav.retrieval.structures.KINDS`) for ``n_vectors`` under ``cfg``."""
    return choose_structure(n_vectors, dim, cfg).kind


class InstanceIndex:
    """FAISS inner-product index over unit view embeddings, with view → instance bookkeeping.

    Searches, adds and removals take one lock, so the ROS server can add new views while it answers queries.
    """

    def __init__(self, dim: int, model_hash: str, cfg: RetrievalConfig | None = None, *,
                 structure: IndexStructure | str = "flat", model_spec: str | None = None,
                 model_name: str | None = None, instances: dict[str, dict] | None = None) -> None:
        self.cfg = cfg or RetrievalConfig()
        self.dim = int(dim)
        if isinstance(structure, str):
            if structure not in KINDS:
                raise RetrievalIndexError(f"index_type must be one of {', '.join(KINDS)}, got {structure!r}")
            structure = choose_structure(0, self.dim, replace(self.cfg, index_type=structure))
        self.structure = structure
        self.model_hash = str(model_hash)
        self.model_spec = model_spec
        self.model_name = model_name
        self.instances: dict[str, dict] = dict(instances or {})
        self.thresholds: dict[str, float] | None = None
        self.extra: dict[str, Any] = {}
        self.instances_file: Path | None = None  #: the instances.json it was loaded from (None: built in memory)
        self._lock = threading.RLock()
        self._index = _idmap(structure.create(self.dim))
        if not structure.needs_training:
            structure.configure(self._index.index)
        self._meta: dict[int, tuple[str, str]] = {}  # faiss id -> (view_id, instance_id)
        self._by_instance: dict[str, list[int]] = {}
        self._view_ids: set[str] = set()
        self._removed: set[int] = set()
        self._next_id = 0

    @property
    def index_type(self) -> str:
        """The structure kind: ``flat``, ``ivf_flat``, ``ivf_sq8``, ``ivf_pq`` or ``hnsw``."""
        return self.structure.kind

    # ------------------------------------------------------------------------------------------ construction
    @classmethod
    def empty(cls, dim: int, n_expected: int, *, model_hash: str, cfg: RetrievalConfig | None = None,
              **kwargs: Any) -> "InstanceIndex":
        """An empty index whose structure is chosen for ``n_expected`` vectors (train it before adding, when
        :attr:`needs_training`)."""
        cfg = cfg or RetrievalConfig()
        return cls(dim, model_hash, cfg, structure=choose_structure(n_expected, dim, cfg), **kwargs)

    @classmethod
    def build(cls, embeddings: np.ndarray, view_ids: Iterable[str], instance_ids: Iterable[str], *, model_hash: str,
              cfg: RetrievalConfig | None = None, model_spec: str | None = None, model_name: str | None = None,
              instances: dict[str, dict] | None = None, seed: int = 0) -> "InstanceIndex":
        """An index over ``embeddings`` (N, dim), one view id and one instance id per row; the structure is
        chosen for N (:func:`~ssl_nav.retrieval.structures.choose_structure`) and trained on them."""
        emb = _as_matrix(embeddings)
        idx = cls.empty(emb.shape[1], len(emb), model_hash=model_hash, cfg=cfg, model_spec=model_spec,
                        model_name=model_name, instances=instances)
        if idx.needs_training:
            idx.train(emb, seed=seed)
        idx.add(emb, list(view_ids), list(instance_ids))
        return idx

    @property
    def needs_training(self) -> bool:
        return not self._index.index.is_trained

    def train(self, sample: np.ndarray, seed: int = 0) -> None:
        """Fit an IVF structure's cells and codebooks on ``sample`` (a seeded subset is used); once, before adds."""
        if not self.needs_training:
            raise RetrievalIndexError(f"the {self.index_type} index is already trained")
        sample = _as_matrix(sample, self.dim)
        if not len(sample):
            raise RetrievalIndexError(f"cannot train a {self.index_type} index on 0 vectors")
        self.structure.train(self._index.index, sample, seed=seed)
        self.structure.configure(self._index.index)
        self._index.is_trained = True

    def add(self, embeddings: np.ndarray, view_ids: Iterable[str], instance_ids: Iterable[str]) -> int:
        """Add views (one row, view id and instance id each) without a rebuild; returns how many were added.

        IVF structures assign the new vectors to their trained cells; nothing stored is re-embedded.
        """
        view_ids, instance_ids = [str(v) for v in view_ids], [str(i) for i in instance_ids]
        emb = _as_matrix(embeddings, self.dim)
        if not (len(emb) == len(view_ids) == len(instance_ids)):
            raise RetrievalIndexError(f"{len(emb)} embeddings but {len(view_ids)} view ids and "
                                      f"{len(instance_ids)} instance ids")
        if self.needs_training:
            raise RetrievalIndexError(f"the {self.index_type} index must be trained before views are added")
        with self._lock:
            dup = [v for v in view_ids if v in self._view_ids]
            if dup or len(set(view_ids)) != len(view_ids):
                raise RetrievalIndexError(f"view id {dup[0] if dup else view_ids[0]!r} is already in the index")
            if not len(emb):
                return 0
            ids = np.arange(self._next_id, self._next_id + len(emb), dtype=np.int64)
            self._index.add_with_ids(emb, ids)
            for i, v, inst in zip(ids.tolist(), view_ids, instance_ids):
                self._meta[i] = (v, inst)
                self._by_instance.setdefault(inst, []).append(i)
            self._view_ids.update(view_ids)
            self._next_id += len(emb)
        return len(emb)

    def wants_restructure(self) -> bool:
        """Whether ``retrieval.index_type: auto`` would now choose another structure for this many vectors: a
        grown ``flat`` index past ``approximate_from``, or IVF cells (``nlist``) a quarter of what the size
        calls for."""
        if self.cfg.index_type != "auto":
            return False
        want = choose_structure(self.ntotal, self.dim, self.cfg)
        if want.kind != self.index_type:
            return True
        return bool(want.nlist and self.structure.nlist and want.nlist >= 4 * self.structure.nlist)

    def restructured(self, cfg: RetrievalConfig | None = None, seed: int = 0) -> "InstanceIndex":
        """The same views in the structure chosen for their number now, without re-embedding: the vectors are
        read back from this index (exact for ``flat``, ``ivf_flat``, ``hnsw``; decoded codes otherwise)."""
        ids, x = self.vectors()
        views = [self._meta[i] for i in ids.tolist()]
        new = InstanceIndex.build(x, [v for v, _ in views], [inst for _, inst in views], model_hash=self.model_hash,
                                  cfg=cfg or self.cfg, model_spec=self.model_spec, model_name=self.model_name,
                                  instances=self.instances, seed=seed)
        new.thresholds, new.extra = self.thresholds, dict(self.extra)
        return new

    # ------------------------------------------------------------------------------------------ updates
    def add_instance(self, instance_id: str, embeddings: np.ndarray, view_ids: Iterable[str],
                     info: dict | None = None) -> int:
        """Add the views of one instance (new or existing) without a rebuild; returns how many were added."""
        view_ids = [str(v) for v in view_ids]
        n = self.add(embeddings, view_ids, [str(instance_id)] * len(view_ids))
        if info is not None:
            self.instances[str(instance_id)] = info
        return n

    def remove_instance(self, instance_id: str) -> int:
        """Remove every view of an instance without a rebuild; returns how many views were removed."""
        with self._lock:
            n = self._remove_ids(list(self._by_instance.get(str(instance_id), [])))
            self.instances.pop(str(instance_id), None)
        return n

    def remove_views(self, view_ids: Iterable[str]) -> int:
        """Remove views by id without a rebuild (unknown ids are ignored); returns how many were removed."""
        wanted = {str(v) for v in view_ids}
        with self._lock:
            ids = [i for i, (v, _) in self._meta.items() if v in wanted and i not in self._removed]
            return self._remove_ids(ids)

    def _remove_ids(self, ids: list[int]) -> int:
        """``flat`` removes the vectors in place; the other structures keep them as tombstones (listed in
        ``meta.json`` ``removed`` and filtered out of every result), since HNSW graphs cannot delete nodes and
        an IDMap2 over an IVF cannot renumber its lists. Call under the lock."""
        if not ids:
            return 0
        if self.index_type == "flat":
            n = self._index.remove_ids(np.asarray(ids, dtype=np.int64))
            if n != len(ids):
                raise RetrievalIndexError(f"FAISS removed {n} of {len(ids)} views")
        else:
            self._removed.update(ids)
        gone = set(ids)
        for i in ids:
            v, inst = self._meta[i]
            self._view_ids.discard(v)
            if self.index_type == "flat":
                del self._meta[i]
            left = [j for j in self._by_instance.get(inst, []) if j not in gone]
            if left:
                self._by_instance[inst] = left
            else:
                self._by_instance.pop(inst, None)
        return len(ids)

    # ------------------------------------------------------------------------------------------ queries
    @property
    def ntotal(self) -> int:
        """Live vectors (tombstoned vectors excluded)."""
        return int(self._index.ntotal) - len(self._removed)

    def __len__(self) -> int:
        return self.ntotal

    def view_instances(self) -> dict[str, str]:
        """``{view_id: instance_id}`` of every live view."""
        with self._lock:
            return {v: inst for i, (v, inst) in self._meta.items() if i not in self._removed}

    def has_view(self, view_id: str) -> bool:
        """Whether a live vector of this view is in the index."""
        return str(view_id) in self._view_ids

    def instance_ids(self) -> list[str]:
        """Instances that have at least one live view."""
        return sorted(self._by_instance, key=_id_sort_key)

    def view_ids(self, instance_id: str | None = None) -> list[str]:
        ids = self._by_instance.get(str(instance_id), []) if instance_id is not None else sorted(
            i for i in self._meta if i not in self._removed)
        return [self._meta[i][0] for i in ids]

    def instance_of(self, faiss_id: int) -> str:
        """The instance id of a stored vector."""
        return self._meta[int(faiss_id)][1]

    def memory_bytes(self) -> int:
        """Approximate memory of the FAISS structure (codes, ids, graph), from its size per vector."""
        return int(self._index.ntotal) * self.structure.bytes_per_vector(self.dim)

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(faiss_ids, unit vectors)`` of every live view, read back from FAISS's storage (decoded codes for
        the compressed structures)."""
        faiss = _faiss()
        with self._lock:
            n = int(self._index.ntotal)
            if n == 0:
                return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
            x = self._index.index.reconstruct_n(0, n)
            ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        live = np.asarray([i not in self._removed for i in ids.tolist()], dtype=bool)
        return ids[live], np.ascontiguousarray(x[live], dtype=np.float32)

    def search(self, queries: np.ndarray, k: int | None = None) -> list[list[ViewHit]]:
        """The ``k`` most similar live views of each query (rows of ``queries``, unit vectors), best first.

        Fewer than :data:`SINGLE_THREAD_BELOW` queries run on one OpenMP thread (set for the calling thread
        only): a single query has little to split, and on a loaded machine a second thread's scheduling delay
        made FAISS 3-4x slower than numpy (``benchmarks/bench_retrieval.py``); larger batches take FAISS's
        multi-threaded BLAS path. Non-flat structures over-fetch by the number of tombstones. FAISS pads
        missing results with id ``-1``; they are dropped, as are tombstoned views.
        """
        q = _as_matrix(queries, self.dim)
        with self._lock:
            n = self.ntotal
            k = n if k is None else min(int(k), n)
            if k <= 0 or len(q) == 0:
                return [[] for _ in range(len(q))]
            k_fetch = min(k + len(self._removed), int(self._index.ntotal))
            with _omp_threads(1 if len(q) < SINGLE_THREAD_BELOW else None):
                if self.index_type == "hnsw":
                    params = _faiss().SearchParametersHNSW()
                    params.efSearch = max(int(self.structure.ef_search), k_fetch)
                    scores, ids = self._index.search(q, k_fetch, params=params)
                else:
                    scores, ids = self._index.search(q, k_fetch)
            return [self._hits(srow, irow, k) for srow, irow in zip(scores, ids)]

    def _hits(self, srow: np.ndarray, irow: np.ndarray, k: int) -> list[ViewHit]:
        hits = []
        for s, i in zip(srow.tolist(), irow.tolist()):
            if i < 0 or i in self._removed or i not in self._meta:
                continue
            v, inst = self._meta[i]
            hits.append(ViewHit(v, inst, float(s)))
            if len(hits) == k:
                break
        return hits

    # ------------------------------------------------------------------------------------------ persistence
    def meta(self) -> dict:
        """``meta.json`` of this index (:class:`IndexMeta`)."""
        with self._lock:
            return IndexMeta(
                model_hash=self.model_hash, dim=self.dim, structure=self.structure, model_spec=self.model_spec,
                model_name=self.model_name, ntotal=int(self._index.ntotal), next_id=self._next_id,
                vectors=[(i, v, inst) for i, (v, inst) in sorted(self._meta.items())], removed=sorted(self._removed),
                thresholds=self.thresholds, extra=self.extra).to_json()

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the index directory with an atomic directory swap (see the module docstring)."""
        faiss = _faiss()
        dest = Path(directory).absolute()
        check_replaceable(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with index_lock(dest):
            return self._save_locked(dest, faiss)

    def _save_locked(self, dest: Path, faiss) -> Path:
        tmp = Path(tempfile.mkdtemp(prefix=f"{dest.name}.tmp-", dir=dest.parent))
        try:
            with self._lock:  # index.faiss and meta.json from the same moment
                faiss.write_index(self._index, str(tmp / INDEX_FILE))
                meta, instances = self.meta(), dict(self.instances)
            for name, obj in ((META_FILE, meta), (INSTANCES_FILE, instances)):
                with open(tmp / name, "w") as fh:
                    json.dump(obj, fh, indent=1 if name == INSTANCES_FILE else None)
                    fh.write("\n")
            for name in (INDEX_FILE, META_FILE, INSTANCES_FILE):
                with open(tmp / name, "rb") as fh:
                    os.fsync(fh.fileno())
            _fsync_dir(tmp)
            old = None
            if dest.exists():
                old = dest.parent / f"{dest.name}.old-{secrets.token_hex(4)}"
                os.replace(dest, old)
            os.replace(tmp, dest)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            _fsync_dir(dest.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return dest

    @classmethod
    def load(cls, directory: str | os.PathLike, expected_model_hash: str | None = None,
             cfg: RetrievalConfig | None = None) -> "InstanceIndex":
        """Read an index directory; check ``meta.json`` (:meth:`IndexMeta.from_json`), the FAISS file against it
        (:func:`_read_faiss`) and, when given, the model hash."""
        d = Path(directory)
        cfg = cfg or RetrievalConfig()
        meta = IndexMeta.read(d, cfg)
        if expected_model_hash is not None and meta.model_hash != expected_model_hash:
            raise RetrievalIndexError(
                f"{d / META_FILE}: index was built by model {meta.model_hash[:12]}… ({meta.model_spec}), not by the "
                f"loaded model {expected_model_hash[:12]}…; rebuild it with `ssl-nav index`")
        raw = _read_faiss(d, meta)
        obj = cls(meta.dim, meta.model_hash, cfg, structure=meta.structure, model_spec=meta.model_spec,
                  model_name=meta.model_name)
        obj.instances_file, obj.instances = _read_instances(d / INSTANCES_FILE)
        obj._index = raw
        if raw.index.is_trained:
            meta.structure.configure(raw.index)
        obj._removed = set(meta.removed)
        for i, v, inst in meta.vectors:
            obj._meta[i] = (v, inst)
            if i not in obj._removed:
                obj._by_instance.setdefault(inst, []).append(i)
                obj._view_ids.add(v)
        obj._next_id, obj.thresholds, obj.extra = meta.next_id, meta.thresholds, meta.extra
        return obj


#: the largest FAISS id (an int64)
MAX_FAISS_ID = 2**63 - 1
#: ``extra.embedding.quality`` values (:data:`ssl_nav.retrieval.build.INDEX_QUALITIES`)
EMBEDDING_QUALITIES = ("low", "all")


def _bad(where: str, key: str, want: str, got: Any) -> RetrievalIndexError:
    return RetrievalIndexError(f"{where}: key {key!r} must be {want}, got {json.dumps(got, default=str)[:80]}")


def _int(d: dict, key: str, where: str, lo: int = 0, hi: int = MAX_FAISS_ID, *, default: Any = ...) -> Any:
    v = d.get(key, default)
    if v is ...:
        raise RetrievalIndexError(f"{where}: missing key '{key}'")
    if v is None and default is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise _bad(where, key, f"an integer in [{lo}, {hi}]", v)
    return v


def _str(d: dict, key: str, where: str, *, optional: bool = False) -> str | None:
    v = d.get(key)
    if v is None and optional:
        return None
    if not isinstance(v, str) or not v:
        raise _bad(where, key, "a non-empty string" + (" or null" if optional else ""), v)
    return v


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class IndexMeta:
    """``IDX/meta.json``, checked field by field with the strictness of the configuration: the one place that
    writes it (:meth:`to_json`, :meth:`InstanceIndex.save`) and reads it (:meth:`from_json`, :meth:`InstanceIndex.load`,
    :func:`read_meta`). A wrong type or range is a :class:`RetrievalIndexError` naming the key (``extra.embedding.
    flip_tta`` must be true or false: the string ``"no"`` is not taken as true)."""

    model_hash: str
    dim: int
    structure: IndexStructure
    model_spec: str | None = None
    model_name: str | None = None
    ntotal: int | None = None
    next_id: int = 0
    vectors: list[tuple[int, str, str]] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    thresholds: dict | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"format": INDEX_FORMAT, "model_hash": self.model_hash, "model_spec": self.model_spec,
                "model_name": self.model_name, "dim": self.dim, "metric": METRIC, "index_type": self.structure.kind,
                "structure": self.structure.to_json(), "ntotal": self.ntotal, "next_id": self.next_id,
                "vectors": [list(v) for v in self.vectors], "removed": list(self.removed),
                "thresholds": self.thresholds, "extra": self.extra}

    @classmethod
    def read(cls, directory: Path, cfg: RetrievalConfig | None = None) -> "IndexMeta":
        """``directory/meta.json`` parsed and checked (a missing directory or file is named)."""
        _wait_for_swap(directory)
        p = directory / META_FILE
        if not p.is_file():
            if not directory.is_dir():
                raise RetrievalIndexError(f"{directory}: index directory not found")
            raise RetrievalIndexError(f"{p}: missing (not an index directory){_leftovers_hint(directory)}")
        try:
            d = json.loads(p.read_bytes())
        except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise RetrievalIndexError(f"{p}: malformed JSON ({e})") from None
        return cls.from_json(d, str(p), cfg)

    @classmethod
    def from_json(cls, d: Any, where: str, cfg: RetrievalConfig | None = None) -> "IndexMeta":
        """Parse and check every field (``where`` names the file in errors)."""
        if not isinstance(d, dict) or d.get("format") != INDEX_FORMAT:
            raise RetrievalIndexError(f"{where}: not an ssl_nav index (format must be {INDEX_FORMAT!r})")
        for key in ("model_hash", "dim", "metric", "index_type", "vectors"):
            if key not in d:
                raise RetrievalIndexError(f"{where}: missing key '{key}'")
        if d["metric"] != METRIC:
            raise RetrievalIndexError(f"{where}: key 'metric' must be {METRIC!r}, got {d['metric']!r}")
        if d["index_type"] not in KINDS:
            raise _bad(where, "index_type", f"one of {', '.join(KINDS)}", d["index_type"])
        vectors = _check_vectors(d["vectors"], where)
        removed = d.get("removed", [])
        if not isinstance(removed, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in removed):
            raise RetrievalIndexError(f"{where}: key 'removed' must be a list of integer vector ids")
        top = max((v[0] for v in vectors), default=-1)
        next_id = _int(d, "next_id", where, top + 1, default=top + 1)
        return cls(model_hash=_str(d, "model_hash", where), dim=_int(d, "dim", where, 1, 65536),
                   structure=_structure_of(d, where, cfg or RetrievalConfig()),
                   model_spec=_str(d, "model_spec", where, optional=True),
                   model_name=_str(d, "model_name", where, optional=True),
                   ntotal=_int(d, "ntotal", where, default=None), next_id=next_id, vectors=vectors,
                   removed=removed, thresholds=_check_thresholds(d.get("thresholds"), where),
                   extra=_check_extra(d.get("extra"), where))


def _check_thresholds(t: Any, where: str) -> dict | None:
    """``thresholds``: null, or the calibrated rule (``score``, a finite ``threshold``, ``reject_margin``)."""
    if t is None:
        return None
    if not isinstance(t, dict):
        raise _bad(where, "thresholds", "an object or null", t)
    if "score" in t and (not isinstance(t["score"], str) or not t["score"]):
        raise _bad(where, "thresholds.score", "the name of an open-set score", t["score"])
    key = "threshold" if "threshold" in t or "reject_score" not in t else "reject_score"
    if not _number(t.get(key)):
        raise _bad(where, f"thresholds.{key}", "a finite number", t.get(key))
    if "reject_margin" in t and not _number(t["reject_margin"]):
        raise _bad(where, "thresholds.reject_margin", "a finite number", t["reject_margin"])
    if t.get("fit_on") is not None and not isinstance(t["fit_on"], dict):
        raise _bad(where, "thresholds.fit_on", "an object", t["fit_on"])
    return t


def _check_extra(extra: Any, where: str) -> dict:
    """``extra``: how the index was built; the embedding settings are checked like the configuration's."""
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise _bad(where, "extra", "an object", extra)
    emb = extra.get("embedding")
    if emb is not None:
        if not isinstance(emb, dict):
            raise _bad(where, "extra.embedding", "an object", emb)
        lo, hi = RetrievalConfig.__dataclass_fields__["image_size"].metadata["range"]
        if "image_size" in emb:
            _int(emb, "image_size", f"{where}: extra.embedding", lo, hi)
        if "flip_tta" in emb and not isinstance(emb["flip_tta"], bool):
            raise _bad(f"{where}: extra.embedding", "flip_tta", "true or false", emb["flip_tta"])
        if emb.get("quality") is not None and emb["quality"] not in EMBEDDING_QUALITIES:
            raise _bad(f"{where}: extra.embedding", "quality", f"one of {', '.join(EMBEDDING_QUALITIES)}",
                       emb["quality"])
    for key in ("store", "model_spec_relative"):
        if extra.get(key) is not None:
            _str(extra, key, f"{where}: extra")
    return extra


def _read_faiss(d: Path, meta: IndexMeta):
    """``index.faiss``, checked against ``meta.json``: dimension, vector count and ids, structure."""
    faiss = _faiss()
    index_path = d / INDEX_FILE
    if not index_path.is_file():
        raise RetrievalIndexError(f"{index_path}: missing")
    try:
        raw = faiss.read_index(str(index_path))
    except Exception as e:  # faiss raises RuntimeError on truncated / corrupt files
        raise RetrievalIndexError(f"{index_path}: cannot read FAISS index ({str(e).splitlines()[0][:200]})") \
            from None
    if raw.d != meta.dim:
        raise RetrievalIndexError(f"{index_path}: dimension {raw.d} does not match meta.json dim {meta.dim}")
    if len(meta.vectors) != raw.ntotal:
        raise RetrievalIndexError(f"{d / META_FILE}: key 'vectors' lists {len(meta.vectors)} vectors but "
                                  f"{index_path.name} holds ntotal={raw.ntotal}")
    try:
        ids = faiss.vector_to_array(raw.id_map).astype(np.int64) if hasattr(raw, "id_map") else None
    except Exception:
        ids = None
    if ids is None:
        raise RetrievalIndexError(f"{index_path}: not an IndexIDMap2 index")
    found = describe(raw.index)
    if found != meta.structure.build_fields():
        raise RetrievalIndexError(f"{index_path}: holds a {_fmt_structure(found)} index but {META_FILE} key "
                                  f"'structure' says {_fmt_structure(meta.structure.build_fields())}")
    listed = np.asarray([v[0] for v in meta.vectors], dtype=np.int64)
    if not np.array_equal(np.sort(ids), np.sort(listed)):
        raise RetrievalIndexError(f"{d / META_FILE}: vector ids do not match the ids stored in {index_path.name}")
    return raw


def _read_instances(p: Path) -> tuple[Path | None, dict[str, dict]]:
    """``IDX/instances.json`` (None and no instances when absent)."""
    if not p.is_file():
        return None, {}
    try:
        instances = json.loads(p.read_bytes())
    except (OSError, ValueError) as e:
        raise RetrievalIndexError(f"{p}: malformed JSON ({e})") from None
    if not isinstance(instances, dict) or not all(isinstance(v, dict) for v in instances.values()):
        raise RetrievalIndexError(f"{p}: must map instance ids to objects")
    return p, {str(k): v for k, v in instances.items()}


@contextmanager
def _omp_threads(n: int | None):
    """Run FAISS on ``n`` OpenMP threads in the calling thread (``omp_set_num_threads`` is per thread)."""
    if n is None:
        yield
        return
    faiss = _faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _idmap(inner):
    """``IndexIDMap2(inner)`` that owns (and frees) ``inner``."""
    out = _faiss().IndexIDMap2(inner)
    inner.this.disown()
    out.own_fields = True
    return out


def _structure_of(meta: dict, where: str, cfg: RetrievalConfig) -> IndexStructure:
    """``meta.json``'s ``structure`` (indexes written before it existed: flat, or HNSW with its ``hnsw`` key)."""
    if "structure" in meta:
        s = IndexStructure.from_json(meta["structure"], where)
        if s.kind != meta["index_type"]:
            raise RetrievalIndexError(f"{where}: key 'index_type' is {meta['index_type']!r} but 'structure.kind' "
                                      f"is {s.kind!r}")
        return s
    kind = meta["index_type"]
    if kind == "flat":
        return IndexStructure("flat")
    if kind == "hnsw":
        h = meta.get("hnsw") if isinstance(meta.get("hnsw"), dict) else {}
        return IndexStructure.from_json({"kind": "hnsw", "hnsw_m": h.get("m", cfg.hnsw_m),
                                         "ef_search": h.get("ef_search", cfg.hnsw_ef_search),
                                         "ef_construction": h.get("ef_construction", cfg.hnsw_ef_construction)},
                                        where)
    raise RetrievalIndexError(f"{where}: key 'structure' is missing (required for a {kind!r} index)")


def _fmt_structure(d: dict) -> str:
    return d.get("kind", "?") + "".join(f" {k}={v}" for k, v in d.items() if k != "kind")


#: a leftover changed this recently may belong to a save in progress: never recover it then
SAVE_IN_PROGRESS_S = 2.0


def _wait_for_swap(d: Path) -> None:
    """Wait out the few microseconds in which a save's directory swap leaves no ``d``; then, when ``d`` is
    still missing, recover it from an interrupted save (:func:`recover_interrupted_save`)."""
    for _ in range(20):
        if d.is_dir() or not _leftovers(d):
            break
        time.sleep(0.01)
    if not d.is_dir():
        recover_interrupted_save(d)


def _leftovers(d: Path) -> list[Path]:
    """Directories an interrupted :meth:`InstanceIndex.save` of ``d`` left behind: the new index (``.tmp-``,
    newest first), then the previous one (``.old-``)."""
    out = []
    for pat in (f"{d.name}.tmp-*", f"{d.name}.old-*"):
        found = [p for p in d.parent.glob(pat) if p.is_dir()]
        out += sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
    return out


def _complete(p: Path) -> bool:
    """Whether ``p`` holds every file of an index directory and a readable meta.json (save fsyncs them all
    before its first rename, so a complete ``.tmp-`` directory is a whole new index)."""
    if not all((p / n).is_file() for n in (INDEX_FILE, META_FILE, INSTANCES_FILE)):
        return False
    try:
        meta = json.loads((p / META_FILE).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(meta, dict) and meta.get("format") == INDEX_FORMAT


def _leftovers_hint(d: Path) -> str:
    left = [p for p in _leftovers(d) if _complete(p)]
    if not left:
        return ""
    return (f"; {left[0].name} next to it holds a complete index left by an interrupted save: recover it with "
            f"`rm -r {d} && mv {left[0]} {d}`")


def recover_interrupted_save(d: str | os.PathLike) -> Path | None:
    """Put back the index of ``d`` after a crash between the two renames of :meth:`InstanceIndex.save`.

    A crash there leaves no ``d`` but ``d.old-XXXX`` (the previous index) and a complete ``d.tmp-XXXX`` (the
    new one). The newest complete one is renamed to ``d`` (another process recovering at the same time is
    harmless: one rename wins); the others are left for the user to delete. Returns the directory recovered,
    or None.
    """
    d = Path(d)
    left = _leftovers(d)
    now = time.time()
    if d.exists() or any(now - p.stat().st_ctime < SAVE_IN_PROGRESS_S for p in left):
        return None
    for cand in left:
        if d.exists():
            return None
        if not _complete(cand):
            continue
        try:
            os.rename(cand, d)
        except OSError:
            continue  # another reader recovered it first, or d appeared
        _fsync_dir(d.parent)
        rest = ", ".join(p.name for p in _leftovers(d))
        log.warning(f"{d}: recovered the index from {cand.name}, left by an interrupted save"
                    + (f"; these leftovers can be deleted: {rest}" if rest else ""))
        return d
    return None


_INDEX_LOCKS: dict[Path, DirLock] = {}
_INDEX_LOCKS_LOCK = threading.Lock()


def index_lock(dest: str | os.PathLike) -> DirLock:
    """The writer's lock of the index directory ``dest``: ``.<name>.lock`` next to it (the directory itself is
    swapped whole). One per process and path, re-entrant (``build_index`` holds it from the first embedding to
    the save); another process gets a :class:`~ssl_nav.locking.LockedError` naming the holder's PID."""
    d = Path(dest).absolute()
    with _INDEX_LOCKS_LOCK:
        if d not in _INDEX_LOCKS:
            _INDEX_LOCKS[d] = DirLock(d.parent, "index writer", name=f".{d.name}.lock")
        return _INDEX_LOCKS[d]


#: what an index directory holds (besides hidden files)
INDEX_ENTRIES = (INDEX_FILE, META_FILE, INSTANCES_FILE)


def check_replaceable(dest: str | os.PathLike) -> None:
    """Refuse to replace ``dest`` unless it is missing, an empty directory, or an index that ssl_nav wrote
    (a ``meta.json`` of :data:`INDEX_FORMAT` and nothing but index files): ``--out STORE`` or ``--out .`` must
    never delete a view store or a working directory."""
    d = Path(dest)
    if d.is_symlink():
        raise RetrievalIndexError(f"{d}: is a symbolic link; give the index directory itself")
    if not d.exists():
        return
    if not d.is_dir():
        raise RetrievalIndexError(f"{d}: exists and is not a directory; not replaced")
    if d.resolve() == Path.cwd().resolve() or Path.cwd().resolve().is_relative_to(d.resolve()):
        raise RetrievalIndexError(f"{d}: is the current directory (or holds it); give a new directory for the index")
    entries = sorted(p.name for p in d.iterdir() if not p.name.startswith("."))
    if not entries:
        return
    other = [n for n in entries if n not in INDEX_ENTRIES]
    if other or not _complete(d):
        what = f"holds {other[0]!r}" if other else "holds no complete ssl_nav index (meta.json)"
        raise RetrievalIndexError(f"{d}: is not an index that ssl_nav wrote ({what}); an index directory is "
                                  f"replaced as a whole, so nothing else is deleted: give a new or empty directory")


def read_meta(directory: str | os.PathLike) -> dict:
    """``meta.json`` of an index directory, checked (:meth:`IndexMeta.from_json`), as a dict (to learn its model
    before loading the model)."""
    d = Path(directory)
    meta = IndexMeta.read(d)
    return {**meta.to_json(), "structure": meta.structure.to_json()}


def _check_vectors(vectors: Any, meta_path: str) -> list[tuple[int, str, str]]:
    """``meta.json``'s ``vectors`` as (faiss_id, view_id, instance_id) triples, or an error naming the entry."""
    if not isinstance(vectors, list):
        raise RetrievalIndexError(f"{meta_path}: key 'vectors' must be a list of [faiss_id, view_id, instance_id]")
    out = []
    for n, v in enumerate(vectors):
        if (not isinstance(v, list) or len(v) != 3 or not isinstance(v[0], int) or isinstance(v[0], bool)
                or not 0 <= v[0] <= MAX_FAISS_ID
                or not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in v[1:])):
            raise RetrievalIndexError(f"{meta_path}: key 'vectors'[{n}] must be [faiss_id (int64 >= 0), view_id, "
                                      f"instance_id], got {json.dumps(v)[:80]}")
        out.append((v[0], str(v[1]), str(v[2])))
    if len({v[0] for v in out}) != len(out):
        raise RetrievalIndexError(f"{meta_path}: key 'vectors' lists a faiss_id twice")
    return out


def _as_matrix(x: np.ndarray, dim: int | None = None) -> np.ndarray:
    a = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise RetrievalIndexError(f"embeddings must be a (N, dim) matrix, got shape {a.shape}")
    if dim is not None and a.shape[1] != dim:
        raise RetrievalIndexError(f"embeddings have dimension {a.shape[1]}, the index has {dim}")
    if not np.isfinite(a).all():
        raise RetrievalIndexError("embeddings contain NaN or infinite values")
    return a


def _id_sort_key(s: str) -> tuple:
    return (0, int(s), "") if s.lstrip("-").isdigit() else (1, 0, s)


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
