"""FAISS index structures of an :class:`~ssl_nav.retrieval.index.InstanceIndex`, their parameters, and the
``auto`` choice by size.

Every structure indexes unit vectors under inner product (cosine similarity) and sits inside an
``IndexIDMap2`` (the view bookkeeping lives in :mod:`ssl_nav.retrieval.index`):

=============  ==================================================================  =====================
kind           FAISS                                                               bytes per vector
=============  ==================================================================  =====================
``flat``       ``IndexFlatIP``: exact                                             ``4·d``
``ivf_flat``   ``IndexIVFFlat``: inverted file over ``nlist`` k-means cells,       ``4·d + 8``
               ``nprobe`` cells scanned exactly (Jégou et al., TPAMI 2011)
``ivf_sq8``    ``IndexIVFScalarQuantizer`` (8-bit per dimension)                   ``d + 8``
``ivf_pq``     ``IndexIVFPQ`` (``pq_m`` sub-quantisers of 8 bits), re-ranked by    ``pq_m + 8`` (+ ``d``
               an ``IndexRefine`` over SQ8 codes of the ``k·k_factor`` candidates   with ``refine: sq8``)
``hnsw``       ``IndexHNSWFlat`` (Malkov & Yashunin, TPAMI 2018)                   ``4·d + 8·M``
=============  ==================================================================  =====================

``RetrievalConfig.index_type: auto`` takes ``flat`` below ``retrieval.approximate_from`` vectors and
``retrieval.auto_approximate`` (``ivf_pq`` by default) from there on. The default and its parameters were
chosen by measurement (``benchmarks/bench_retrieval.py``, "index structures at scale" in BENCHMARKS.md):
at 1M × 1280 only the IVF structures meet p50 ≤ 5 ms at recall@10 ≥ 0.95 with a build of minutes on 2
cores; HNSW's build grows to hours there, and a flat scan reads 5 GB per query.

``nlist`` is ``retrieval.ivf_nlist`` or, when that is 0, ``√n`` rounded to a power of two and capped so
that every cell gets ~39 training vectors (k-means needs them); it is fixed when the index is built and
recorded, with ``nprobe``, ``pq_m``, ``refine``, ``k_factor`` and the training size, in ``meta.json``
(``structure``). :func:`describe` reads the same fields back from a FAISS object, and loading compares the
two, so an ``index.faiss`` that does not match its sidecar is refused. Views added later are assigned to the
trained cells without retraining; ``trained_on`` says how many vectors the cells were fitted to, and a
rebuild (a new model, ``~/reload``, ``ssl-nav index``) chooses again for the new size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ssl_nav.config import RetrievalConfig
from ssl_nav.errors import RetrievalIndexError

KINDS: tuple[str, ...] = ("flat", "ivf_flat", "ivf_sq8", "ivf_pq", "hnsw")
IVF_KINDS: tuple[str, ...] = ("ivf_flat", "ivf_sq8", "ivf_pq")
REFINES: tuple[str, ...] = ("none", "sq8", "flat")
MIN_POINTS_PER_CELL = 39  #: FAISS's k-means warns below this many training vectors per centroid
TRAIN_POINTS_PER_CELL = 40  #: training vectors per cell (a seeded random sample of the data)
MIN_TRAIN_POINTS = 256 * 40  #: at least this many (or all): PQ codebooks have 256 centroids, SQ8 needs ranges
KMEANS_ITERATIONS = 10  #: k-means iterations of the coarse cells (FAISS's Clustering default is 25)


def _faiss():
    import faiss

    return faiss


@dataclass
class IndexStructure:
    """The FAISS structure of an index and its build and search parameters (``meta.json`` ``structure``)."""

    kind: str
    nlist: int | None = None
    nprobe: int | None = None
    pq_m: int | None = None
    pq_nbits: int | None = None
    refine: str | None = None
    k_factor: int | None = None
    hnsw_m: int | None = None
    ef_search: int | None = None
    ef_construction: int | None = None
    trained_on: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, d: Any, where: str) -> "IndexStructure":
        """Parse and check ``meta.json``'s ``structure`` (``where`` names the file in errors)."""
        if not isinstance(d, dict):
            raise RetrievalIndexError(f"{where}: key 'structure' must be an object")
        kind = d.get("kind")
        if kind not in KINDS:
            raise RetrievalIndexError(f"{where}: key 'structure.kind' must be one of {', '.join(KINDS)}, got {kind!r}")
        names = {f for f in cls.__dataclass_fields__} - {"kind"}
        unknown = sorted(set(d) - names - {"kind"})
        if unknown:
            raise RetrievalIndexError(f"{where}: unknown key 'structure.{unknown[0]}'")
        vals: dict[str, Any] = {}
        for k in names:
            v = d.get(k)
            if k == "refine":
                if v is not None and v not in REFINES:
                    raise RetrievalIndexError(f"{where}: key 'structure.refine' must be one of {', '.join(REFINES)}")
            elif v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise RetrievalIndexError(f"{where}: key 'structure.{k}' must be a non-negative integer, got {v!r}")
            vals[k] = v
        s = cls(kind=kind, **vals)
        missing = [k for k in s.required() if getattr(s, k) is None]
        if missing:
            raise RetrievalIndexError(f"{where}: key 'structure.{missing[0]}' is required for a {kind} index")
        return s

    def required(self) -> tuple[str, ...]:
        if self.kind in IVF_KINDS:
            base = ("nlist", "nprobe", "trained_on")
            return base + (("pq_m", "pq_nbits", "refine", "k_factor") if self.kind == "ivf_pq" else ())
        if self.kind == "hnsw":
            return ("hnsw_m", "ef_search", "ef_construction")
        return ()

    def build_fields(self) -> dict[str, Any]:
        """The fields fixed in the FAISS object (those :func:`describe` reads back)."""
        keep = {"kind", "nlist", "pq_m", "pq_nbits", "refine", "hnsw_m"}
        return {k: v for k, v in asdict(self).items() if k in keep and v is not None}

    @property
    def exact(self) -> bool:
        return self.kind == "flat"

    @property
    def needs_training(self) -> bool:
        return self.kind in IVF_KINDS

    def bytes_per_vector(self, dim: int) -> int:
        """Approximate memory of one stored vector (codes, ids and the IDMap2 entry)."""
        ids = 8 + 8  # IVF list id / IDMap2 id
        if self.kind == "flat":
            return 4 * dim + 8
        if self.kind == "ivf_flat":
            return 4 * dim + ids
        if self.kind == "ivf_sq8":
            return dim + ids
        if self.kind == "ivf_pq":
            extra = {"none": 0, "sq8": dim, "flat": 4 * dim}[self.refine or "none"]
            return int(self.pq_m or 0) + ids + extra
        return 4 * dim + 8 * 2 * int(self.hnsw_m or 32) + 8

    # ------------------------------------------------------------------------------ FAISS objects
    def create(self, dim: int):
        """A new (untrained) FAISS index of this structure, without the IDMap2 wrapper."""
        faiss = _faiss()
        ip = faiss.METRIC_INNER_PRODUCT
        if self.kind == "flat":
            return faiss.IndexFlatIP(dim)
        if self.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(dim, int(self.hnsw_m), ip)
            inner.hnsw.efConstruction = int(self.ef_construction)
            inner.hnsw.efSearch = int(self.ef_search)
            return inner
        quantizer = faiss.IndexFlatIP(dim)
        if self.kind == "ivf_flat":
            ivf = faiss.IndexIVFFlat(quantizer, dim, int(self.nlist), ip)
        elif self.kind == "ivf_sq8":
            ivf = faiss.IndexIVFScalarQuantizer(quantizer, dim, int(self.nlist), faiss.ScalarQuantizer.QT_8bit, ip)
        else:
            ivf = faiss.IndexIVFPQ(quantizer, dim, int(self.nlist), int(self.pq_m), int(self.pq_nbits), ip)
        ivf.own_fields = True
        quantizer.this.disown()
        if self.kind == "ivf_pq" and self.refine != "none":
            refine = faiss.IndexFlatIP(dim) if self.refine == "flat" else \
                faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, ip)
            out = faiss.IndexRefine(ivf, refine)
            out.own_fields = out.own_refine_index = True
            ivf.this.disown()
            refine.this.disown()
            return out
        return ivf

    def train(self, inner, x: np.ndarray, seed: int = 0) -> None:
        """Fit the coarse cells (and PQ / SQ codebooks) on a seeded sample of ``x``."""
        if not self.needs_training and inner.is_trained:
            return
        n_train = min(len(x), max(self.nlist * TRAIN_POINTS_PER_CELL, MIN_TRAIN_POINTS))
        sample = x if n_train >= len(x) else x[np.sort(np.random.default_rng(seed).choice(len(x), n_train,
                                                                                           replace=False))]
        faiss = _faiss()
        ivf = faiss.downcast_index(faiss.extract_index_ivf(inner))
        ivf.cp.seed = seed
        ivf.cp.niter = KMEANS_ITERATIONS
        ivf.cp.max_points_per_centroid = max(TRAIN_POINTS_PER_CELL, 256)
        ivf.cp.min_points_per_centroid = 1  # tiny test indexes: no warnings
        if self.kind == "ivf_pq":
            ivf.pq.cp.seed = seed
            ivf.pq.cp.min_points_per_centroid = 1
        inner.train(np.ascontiguousarray(sample, dtype=np.float32))
        self.trained_on = int(len(sample))

    def configure(self, inner) -> None:
        """Set the search parameters (``nprobe``, ``k_factor``, ``efSearch``) on a FAISS object of this structure."""
        faiss = _faiss()
        if self.kind in IVF_KINDS:
            ivf = faiss.extract_index_ivf(inner)
            ivf.nprobe = int(self.nprobe)
            if self.kind == "ivf_pq" and self.refine != "none":
                faiss.downcast_index(inner).k_factor = float(self.k_factor)
            else:
                ivf.make_direct_map()  # reconstruct() (InstanceIndex.vectors) needs it; refine indexes do not
        elif self.kind == "hnsw":
            faiss.downcast_index(inner).hnsw.efSearch = int(self.ef_search)


def describe(inner) -> dict[str, Any]:
    """The build fields (:meth:`IndexStructure.build_fields`) of a FAISS object read from ``index.faiss``."""
    faiss = _faiss()
    inner = faiss.downcast_index(inner)
    refine = "none"
    if isinstance(inner, faiss.IndexRefine):
        r = faiss.downcast_index(inner.refine_index)
        refine = "flat" if isinstance(r, faiss.IndexFlat) else "sq8" if isinstance(r, faiss.IndexScalarQuantizer) \
            else type(r).__name__
        inner = faiss.downcast_index(inner.base_index)
    if isinstance(inner, faiss.IndexFlat):
        return {"kind": "flat"}
    if isinstance(inner, faiss.IndexHNSWFlat):
        return {"kind": "hnsw", "hnsw_m": int(inner.hnsw.nb_neighbors(1))}
    if isinstance(inner, faiss.IndexIVFPQ):
        return {"kind": "ivf_pq", "nlist": int(inner.nlist), "pq_m": int(inner.pq.M), "pq_nbits": int(inner.pq.nbits),
                "refine": refine}
    if isinstance(inner, faiss.IndexIVFScalarQuantizer):
        return {"kind": "ivf_sq8", "nlist": int(inner.nlist)}
    if isinstance(inner, faiss.IndexIVFFlat):
        return {"kind": "ivf_flat", "nlist": int(inner.nlist)}
    return {"kind": type(inner).__name__}


def auto_nlist(n: int) -> int:
    """``√n`` rounded to a power of two, at most ``n / 39`` (k-means needs ~39 vectors per cell), at least 1.

    Fewer cells than the usual ``4·√n``: training and assigning 1M vectors to 4096 cells of dimension 1280 takes
    over half an hour on 2 cores, to 1024 cells minutes; the cheap PQ scan absorbs the longer lists.
    """
    if n <= 0:
        return 1
    target = math.sqrt(n)
    nlist = 2 ** int(round(math.log2(max(target, 1))))
    return int(max(1, min(nlist, n // MIN_POINTS_PER_CELL)))


def _pq_m(dim: int, want: int) -> int:
    """The largest divisor of ``dim`` not above ``want`` (PQ splits the vector into equal sub-vectors)."""
    for m in range(min(want, dim), 0, -1):
        if dim % m == 0:
            return m
    return 1


def choose_structure(n: int, dim: int, cfg: RetrievalConfig) -> IndexStructure:
    """The structure for an index of ``n`` vectors of dimension ``dim`` under ``cfg`` (``auto`` picks by size)."""
    kind = cfg.index_type
    if kind == "auto":
        kind = cfg.auto_approximate if n >= cfg.approximate_from else "flat"
    if kind not in KINDS:
        raise RetrievalIndexError(f"retrieval.index_type must be auto or one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "flat":
        return IndexStructure("flat")
    if kind == "hnsw":
        return IndexStructure("hnsw", hnsw_m=cfg.hnsw_m, ef_search=cfg.hnsw_ef_search,
                              ef_construction=cfg.hnsw_ef_construction)
    nlist = min(cfg.ivf_nlist, max(1, n)) if cfg.ivf_nlist else auto_nlist(n)
    s = IndexStructure(kind, nlist=nlist, nprobe=min(cfg.ivf_nprobe, nlist), trained_on=0)
    if kind == "ivf_pq":
        s.pq_m = _pq_m(dim, cfg.pq_m)
        s.pq_nbits = int(max(1, min(8, math.floor(math.log2(max(2, n // 4))))))  # tiny sets: fewer centroids
        s.refine = cfg.refine
        s.k_factor = cfg.refine_k_factor
    return s
