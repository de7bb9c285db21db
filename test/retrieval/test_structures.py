"""Index structures: the auto choice by size, the parameters recorded in meta.json and checked on load, and
approximate search that finds what exact search finds."""

import json

import numpy as np
import pytest

from ssl_nav.config import RetrievalConfig
from ssl_nav.errors import RetrievalIndexError
from ssl_nav.retrieval.index import InstanceIndex
from ssl_nav.retrieval.structures import IVF_KINDS, KINDS, IndexStructure, auto_nlist, choose_structure, describe


def clustered(n, d, n_clusters, seed=0, noise=0.3):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((n_clusters, d)).astype(np.float32)
    x = c[np.arange(n) % n_clusters] + noise * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_auto_picks_exact_below_the_threshold_and_the_configured_structure_above():
    cfg = RetrievalConfig(approximate_from=1000)
    assert choose_structure(999, 64, cfg).kind == "flat"
    s = choose_structure(100_000, 1280, cfg)
    assert s.kind == cfg.auto_approximate == "ivf_pq"
    assert s.nlist == 256 and s.nprobe == cfg.ivf_nprobe and s.pq_m == 64 and s.refine == "sq8"
    assert choose_structure(1_000_000, 1280, cfg).nlist == 1024
    assert choose_structure(5000, 100, RetrievalConfig(index_type="ivf_pq", pq_m=64)).pq_m == 50  # divides d
    assert choose_structure(50, 8, RetrievalConfig(index_type="ivf_sq8")).nlist == 1  # k-means needs 39 per cell
    assert choose_structure(10_000, 8, RetrievalConfig(index_type="ivf_flat", ivf_nlist=64)).nlist == 64
    assert auto_nlist(4_000_000) == 2048 and auto_nlist(0) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_structure_is_recorded_and_read_back_from_faiss(kind, tmp_path):
    x = clustered(400, 32, 20)
    ids = [f"v{i}" for i in range(len(x))]
    idx = InstanceIndex.build(x, ids, [str(i % 20) for i in range(len(x))], model_hash="h",
                              cfg=RetrievalConfig(index_type=kind, pq_m=8))
    meta = json.loads((idx.save(tmp_path / "idx") / "meta.json").read_text())
    assert meta["index_type"] == kind and meta["structure"]["kind"] == kind
    assert describe(idx._index.index) == IndexStructure.from_json(meta["structure"], "m").build_fields()
    if kind in IVF_KINDS:
        assert meta["structure"]["nlist"] >= 1 and meta["structure"]["trained_on"] == 400
    back = InstanceIndex.load(tmp_path / "idx")
    assert back.structure == idx.structure
    first = [r[0].view_id for r in back.search(x[:50], 1)]
    assert first == [r[0].view_id for r in idx.search(x[:50], 1)]  # the same answers after the round trip
    assert np.mean([a == b for a, b in zip(first, ids)]) >= 0.9


def test_a_structure_that_does_not_match_index_faiss_is_refused(tmp_path):
    x = clustered(400, 32, 20)
    idx = InstanceIndex.build(x, [str(i) for i in range(400)], ["0"] * 400, model_hash="h",
                              cfg=RetrievalConfig(index_type="ivf_pq", pq_m=8))
    out = idx.save(tmp_path / "idx")
    good = json.loads((out / "meta.json").read_text())
    for change, match in (({"nlist": good["structure"]["nlist"] + 1}, "holds a ivf_pq nlist="),
                          ({"kind": "ivf_sq8"}, "'index_type' is 'ivf_pq' but 'structure.kind' is 'ivf_sq8'"),
                          ({"nprobe": "many"}, "structure.nprobe' must be a non-negative integer"),
                          ({"refine": "fast"}, "structure.refine"),
                          ({"colour": 1}, "unknown key 'structure.colour'")):
        (out / "meta.json").write_text(json.dumps(dict(good, structure=dict(good["structure"], **change))))
        with pytest.raises(RetrievalIndexError, match=match):
            InstanceIndex.load(out)
    no_nprobe = {k: v for k, v in good["structure"].items() if k != "nprobe"}
    (out / "meta.json").write_text(json.dumps(dict(good, structure=no_nprobe)))
    with pytest.raises(RetrievalIndexError, match="structure.nprobe' is required"):
        InstanceIndex.load(out)


@pytest.mark.parametrize("kind", ["ivf_flat", "ivf_sq8", "ivf_pq", "hnsw"])
def test_approximate_search_finds_the_exact_top_10(kind):
    x = clustered(3000, 64, 300, seed=1)
    q = clustered(50, 64, 300, seed=1, noise=0.35)  # same centres (same seed), new noise
    ids = [str(i) for i in range(len(x))]
    insts = [str(i % 300) for i in range(len(x))]
    exact = InstanceIndex.build(x, ids, insts, model_hash="h", cfg=RetrievalConfig(index_type="flat"))
    cfg = RetrievalConfig(index_type=kind, ivf_nprobe=8, pq_m=16)
    approx = InstanceIndex.build(x, ids, insts, model_hash="h", cfg=cfg)
    truth = [{h.view_id for h in r} for r in exact.search(q, 10)]
    found = [{h.view_id for h in r} for r in approx.search(q, 10)]
    recall = np.mean([len(a & b) / 10 for a, b in zip(truth, found)])
    assert recall >= 0.9, recall


def test_views_added_to_a_trained_ivf_match_a_full_rebuild():
    x = clustered(2000, 32, 100, seed=2)
    ids, insts = [str(i) for i in range(2000)], [str(i % 100) for i in range(2000)]
    cfg = RetrievalConfig(index_type="ivf_sq8", ivf_nprobe=64)
    grown = InstanceIndex.build(x[:1500], ids[:1500], insts[:1500], model_hash="h", cfg=cfg)
    assert grown.add(x[1500:], ids[1500:], insts[1500:]) == 500 and grown.structure.trained_on == 1500
    full = InstanceIndex.build(x, ids, insts, model_hash="h", cfg=cfg)
    a = [[h.view_id for h in r] for r in grown.search(x[1500:1600], 5)]
    b = [[h.view_id for h in r] for r in full.search(x[1500:1600], 5)]
    assert [r[0] for r in a] == ids[1500:1600]  # every added view is found first
    assert np.mean([len(set(p) & set(r)) / 5 for p, r in zip(a, b)]) >= 0.95


def test_a_grown_flat_index_is_restructured_without_re_embedding():
    x = clustered(600, 32, 60, seed=3)
    ids, insts = [str(i) for i in range(600)], [str(i % 60) for i in range(600)]
    cfg = RetrievalConfig(approximate_from=500, pq_m=8)
    idx = InstanceIndex.build(x[:400], ids[:400], insts[:400], model_hash="h", cfg=cfg)
    idx.extra["store"] = "/s"
    assert idx.index_type == "flat" and not idx.wants_restructure()
    idx.add(x[400:], ids[400:], insts[400:])
    assert idx.wants_restructure()
    new = idx.restructured()
    assert new.index_type == "ivf_pq" and new.ntotal == 600 and new.extra == {"store": "/s"}
    assert not new.wants_restructure()
    assert np.mean([r[0].view_id == v for r, v in zip(new.search(x, 1), ids)]) >= 0.95
