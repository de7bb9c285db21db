"""InstanceIndex: self-retrieval, add/remove without rebuild, persistence, hash check, corruption."""

import json

import numpy as np
import pytest

from ssl_nav.config import RetrievalConfig
from ssl_nav.errors import RetrievalIndexError
from ssl_nav.retrieval.index import InstanceIndex
from ssl_nav.retrieval.structures import KINDS


def unit_rows(n, d, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_index(kind="flat", n=60, d=16, n_inst=6):
    emb = unit_rows(n, d)
    views = [f"v{i}" for i in range(n)]
    insts = [str(i % n_inst) for i in range(n)]
    cfg = RetrievalConfig(index_type=kind, pq_m=4)  # few PQ sub-quantisers: fast training
    instances = {str(i): {"category": f"c{i}", "centroid": [float(i), 0.0, 0.5]} for i in range(n_inst)}
    return InstanceIndex.build(emb, views, insts, model_hash="hashA", cfg=cfg, model_spec="mobilenet_v2",
                               instances=instances), emb, views, insts


@pytest.mark.parametrize("kind", KINDS)
def test_each_vector_retrieves_itself_first(kind):
    idx, emb, views, insts = make_index(kind)
    assert idx.index_type == kind
    res = idx.search(emb, k=5)
    for i, hits in enumerate(res):
        assert hits[0].view_id == views[i] and hits[0].instance_id == insts[i]
        # compressed codes (8-bit scalar quantiser, PQ re-ranked by SQ8) give scores within ~1e-3
        assert hits[0].score == pytest.approx(1.0, abs=1e-5 if kind in ("flat", "ivf_flat", "hnsw") else 5e-3)
        assert [h.score for h in hits] == sorted([h.score for h in hits], reverse=True)


def test_auto_type_by_threshold():
    emb = unit_rows(10, 8)
    ids = [str(i) for i in range(10)]
    for threshold, kind in ((11, "flat"), (10, "hnsw")):
        cfg = RetrievalConfig(approximate_from=threshold, auto_approximate="hnsw")
        assert InstanceIndex.build(emb, ids, ids, model_hash="h", cfg=cfg).index_type == kind


def test_k_larger_than_index_drops_minus_one():
    idx, emb, _, _ = make_index(n=4, n_inst=2)
    hits = idx._index.search(emb[:1], 10)[1]
    assert (hits == -1).any()  # FAISS pads with -1 ...
    res = idx.search(emb[:1], k=10)[0]  # ... which we filter
    assert len(res) == 4 and all(h.view_id.startswith("v") for h in res)


@pytest.mark.parametrize("kind", KINDS)
def test_add_and_remove_instance_without_rebuild(kind, tmp_path):
    idx, emb, views, insts = make_index(kind)
    faiss_obj = idx._index
    n = idx.ntotal
    assert idx.remove_instance("2") == 10
    assert idx.ntotal == n - 10 and "2" not in idx.instance_ids()
    assert all(h.instance_id != "2" for hits in idx.search(emb, k=n) for h in hits)
    new = unit_rows(3, 16, seed=5)
    assert idx.add_instance("99", new, ["n0", "n1", "n2"], info={"centroid": [9, 9, 0]}) == 3
    assert idx.remove_views(["v1", "v7", "unknown"]) == 2 and not idx.has_view("v1") and idx.ntotal == n - 9
    assert "v7" not in idx.view_ids("1") and all(h.view_id not in ("v1", "v7") for r in idx.search(emb, k=n) for h in r)
    assert idx._index is faiss_obj  # same FAISS object: no rebuild
    assert idx.search(new[1], k=1)[0][0].view_id == "n1"
    with pytest.raises(RetrievalIndexError, match="n0"):
        idx.add_instance("99", new[:1], ["n0"])
    idx.save(tmp_path / "idx")
    back = InstanceIndex.load(tmp_path / "idx", expected_model_hash="hashA")
    assert back.ntotal == idx.ntotal and "2" not in back.instance_ids() and not back.has_view("v7")
    assert back.search(new[2], k=1)[0][0].view_id == "n2"


@pytest.mark.parametrize("kind", KINDS)
def test_persistence_round_trip(kind, tmp_path):
    idx, emb, views, insts = make_index(kind)
    idx.thresholds = {"reject_score": 0.4, "reject_margin": 0.05}
    out = idx.save(tmp_path / "idx")
    assert sorted(p.name for p in out.iterdir()) == ["index.faiss", "instances.json", "meta.json"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["ntotal"] == len(meta["vectors"]) == 60 and meta["model_hash"] == "hashA"
    assert meta["metric"] == "inner_product" and meta["index_type"] == kind and meta["dim"] == 16
    assert json.loads((out / "instances.json").read_text())["3"]["category"] == "c3"
    back = InstanceIndex.load(out, expected_model_hash="hashA")
    assert back.index_type == kind and back.model_spec == "mobilenet_v2" and back.thresholds["reject_score"] == 0.4
    a = idx.search(emb, k=3)
    b = back.search(emb, k=3)
    assert [[h.view_id for h in r] for r in a] == [[h.view_id for h in r] for r in b]
    # saving again swaps the directory atomically and leaves no temporary directories behind
    back.remove_instance("0")
    back.save(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]
    assert InstanceIndex.load(out).ntotal == 50


def test_hash_mismatch_is_an_error(tmp_path):
    idx, *_ = make_index()
    idx.save(tmp_path / "idx")
    with pytest.raises(RetrievalIndexError, match="meta.json.*built by model"):
        InstanceIndex.load(tmp_path / "idx", expected_model_hash="another")


def test_sidecar_checked_against_ntotal(tmp_path):
    idx, *_ = make_index()
    out = idx.save(tmp_path / "idx")
    meta = json.loads((out / "meta.json").read_text())
    meta["vectors"] = meta["vectors"][:-1]
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(RetrievalIndexError, match="ntotal=60"):
        InstanceIndex.load(out)


def test_corrupted_index_file_names_the_file(tmp_path):
    idx, *_ = make_index()
    out = idx.save(tmp_path / "idx")
    data = (out / "index.faiss").read_bytes()
    (out / "index.faiss").write_bytes(data[: len(data) // 3])
    with pytest.raises(RetrievalIndexError, match="index.faiss"):
        InstanceIndex.load(out)


def test_missing_directory(tmp_path):
    with pytest.raises(RetrievalIndexError, match="not found"):
        InstanceIndex.load(tmp_path / "nope")


def test_crash_between_the_renames_of_save_is_recovered(tmp_path, monkeypatch, caplog):
    """Save renames IDX to IDX.old-X, then IDX.tmp-Y to IDX; a crash in between leaves no IDX. The next
    load puts back the new index (complete: save fsyncs it before the first rename) and says so."""
    import os
    import shutil

    import ssl_nav.retrieval.index as index_mod

    monkeypatch.setattr(index_mod, "SAVE_IN_PROGRESS_S", 0.0)
    idx, emb, *_ = make_index()
    out = idx.save(tmp_path / "idx")
    idx.remove_instance("1")
    new = idx.save(tmp_path / "new")
    os.replace(out, tmp_path / "idx.old-aaaa")  # the first rename happened ...
    os.replace(new, tmp_path / "idx.tmp-bbbb")  # ... the second did not
    with caplog.at_level("WARNING"):
        back = InstanceIndex.load(tmp_path / "idx")
    assert back.ntotal == 50 and "1" not in back.instance_ids()
    assert "recovered the index from idx.tmp-bbbb" in caplog.text and "idx.old-aaaa" in caplog.text
    # only the previous index left (the crash came before the new one was complete): that one comes back
    shutil.rmtree(tmp_path / "idx")
    (tmp_path / "idx.tmp-cccc").mkdir()  # an incomplete new index
    (tmp_path / "idx.tmp-cccc" / "meta.json").write_text("{")
    assert InstanceIndex.load(tmp_path / "idx").ntotal == 60


def test_recovery_waits_for_a_save_in_progress(tmp_path, monkeypatch):
    """A leftover changed within SAVE_IN_PROGRESS_S may belong to a running save: not touched, and the error
    says how to recover by hand when the directory is there but broken."""
    idx, *_ = make_index()
    out = idx.save(tmp_path / "idx")
    import os

    os.replace(out, tmp_path / "idx.old-aaaa")
    with pytest.raises(RetrievalIndexError, match="not found"):
        InstanceIndex.load(tmp_path / "idx")
    assert (tmp_path / "idx.old-aaaa").is_dir()
    (tmp_path / "idx").mkdir()
    with pytest.raises(RetrievalIndexError, match=r"meta.json: missing.*idx.old-aaaa.*mv "):
        InstanceIndex.load(tmp_path / "idx")


def test_malformed_meta_fields_name_the_key(tmp_path):
    idx, *_ = make_index()
    out = idx.save(tmp_path / "idx")
    good = json.loads((out / "meta.json").read_text())
    for key, value, match in (("vectors", {"a": 1}, "key 'vectors' must be a list"),
                              ("vectors", good["vectors"][:-1] + [[0, "v0", "0"]], "faiss_id twice"),
                              ("removed", ["x"], "key 'removed'"), ("next_id", 3, "key 'next_id'"),
                              ("thresholds", [1], "key 'thresholds'"), ("extra", 5, "key 'extra'")):
        meta = dict(good, **{key: value})
        (out / "meta.json").write_text(json.dumps(meta))
        with pytest.raises(RetrievalIndexError, match=match):
            InstanceIndex.load(out)


def test_meta_types_are_checked_like_the_configuration(tmp_path, capsys):
    """A bad meta.json: "dim": "big" and a faiss_id of 10^30 ended in tracebacks; flip_tta "no" was
    taken as true; image_size -5 was reported against the query image; threshold "x" warned about another
    score. Every reader (load, read_meta, so `ssl-nav query`) refuses them naming the key."""
    from ssl_nav.cli import main
    from ssl_nav.retrieval.index import IndexMeta, read_meta

    idx, *_ = make_index()
    out = idx.save(tmp_path / "idx")
    good = json.loads((out / "meta.json").read_text())
    assert IndexMeta.from_json(good, "m").to_json() == good  # the one writer and the one reader agree
    big_id = [[10**30, "v0", "0"]] + good["vectors"][1:]
    emb = {"image_size": 32, "flip_tta": True, "quality": "low"}
    for change, match in (({"dim": "big"}, "key 'dim' must be an integer"),
                          ({"vectors": big_id}, r"key 'vectors'\[0\]"),
                          ({"extra": {"embedding": {**emb, "flip_tta": "no"}}}, "key 'flip_tta' must be true or false"),
                          ({"extra": {"embedding": {**emb, "image_size": -5}}}, "key 'image_size' must be an integer"),
                          ({"thresholds": {"score": "best", "threshold": "x"}}, "key 'thresholds.threshold'"),
                          ({"model_hash": 5}, "key 'model_hash'"), ({"index_type": "cube"}, "key 'index_type'")):
        (out / "meta.json").write_text(json.dumps({**good, **change}))
        for read in (InstanceIndex.load, read_meta):
            with pytest.raises(RetrievalIndexError, match=match) as e:
                read(out)
            assert "meta.json" in str(e.value)
        photo = tmp_path / "q.png"
        from ssl_nav.frames import write_png

        write_png(photo, np.zeros((64, 64, 3), np.uint8))
        assert main(["query", "--index", str(out), str(photo)]) == 2
        assert "meta.json" in capsys.readouterr().err
