"""build_index: the protocol (robot views only by default), the meta.json it records, an Embedder reused."""

import json

import numpy as np
import pytest
from testkit.locks import lock_held_elsewhere

from ssl_nav.config import RetrievalConfig
from ssl_nav.errors import RetrievalIndexError
from ssl_nav.retrieval.build import build_index
from ssl_nav.retrieval.embedder import Embedder
from ssl_nav.retrieval.index import InstanceIndex
from ssl_nav.views.store import ViewStore

CFG = RetrievalConfig(image_size=32, device="cpu")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(0)
    s = ViewStore(tmp_path_factory.mktemp("b") / "store", create=True)
    s.set_instances({i: {"category": "c", "centroid": [0.0, 0.0, 0.0]} for i in ("1", "2")})
    for i in ("1", "2"):
        for _ in range(2):
            s.add_view(i, rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), "low")
        s.add_view(i, rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), "high")
    return s


@pytest.fixture(scope="module")
def embedder():
    return Embedder.load("mobilenet_v2", CFG)


def test_robot_views_by_default_user_photos_on_request(store, embedder, tmp_path):
    idx = build_index(store, embedder, CFG, tmp_path / "idx", progress=False)
    low = {v["view_id"] for v in store.views(quality="low")}
    assert set(idx.view_ids()) == low and idx.ntotal == 4
    meta = json.loads((tmp_path / "idx" / "meta.json").read_text())
    assert meta["extra"]["embedding"] == {"image_size": 32, "flip_tta": True, "quality": "low"}
    assert meta["extra"]["store"] == str(store.root.resolve()) and meta["model_spec"] == "mobilenet_v2"
    assert InstanceIndex.load(tmp_path / "idx").ntotal == 4
    every = build_index(store, embedder, CFG, quality="all", progress=False)  # in memory
    assert every.ntotal == 6 and every.extra["embedding"]["quality"] == "all"
    assert not (tmp_path / "idx-all").exists()


def test_the_index_returns_its_own_views(store, embedder):
    idx = build_index(store, embedder, CFG, progress=False)
    views = store.views(quality="low")
    emb = embedder.embed([store.load_image(v) for v in views])
    assert [hits[0].view_id for hits in idx.search(emb, k=1)] == [v["view_id"] for v in views]


def test_model_pt_path_is_recorded_relative(store, tmp_path):
    from ssl_nav.learning.backbones import load_encoder, save_model

    enc = load_encoder("mobilenet_v2")
    state = {f"backbone.net.{k}": v for k, v in enc.backbone.net.state_dict().items()}
    save_model(tmp_path / "run" / "model.pt", state, backbone="mobilenet_v2", embedding_dim=1280, image_size=32,
               config={})
    build_index(store.root, tmp_path / "run" / "model.pt", CFG, tmp_path / "idx", progress=False)
    meta = json.loads((tmp_path / "idx" / "meta.json").read_text())
    assert meta["model_spec"] == str((tmp_path / "run" / "model.pt").resolve())
    assert meta["extra"]["model_spec_relative"] == "../run/model.pt"


def test_a_store_without_robot_views_is_an_error(tmp_path, embedder):
    s = ViewStore(tmp_path / "store", create=True)
    s.add_view("1", np.zeros((40, 40, 3), np.uint8), "high")
    with pytest.raises(RetrievalIndexError, match="no robot .* views to index.*index_quality: low"):
        build_index(s, embedder, CFG, progress=False)
    assert build_index(s, embedder, CFG, quality="all", progress=False).ntotal == 1
    with pytest.raises(RetrievalIndexError, match="index_quality must be one of low, all"):
        build_index(s, embedder, CFG, quality="high", progress=False)


def test_out_that_is_not_an_index_is_refused_and_kept(store, embedder, tmp_path, monkeypatch):
    """``index --out STORE`` and ``--out .`` deleted what they held."""
    before = {p: p.read_bytes() for p in store.root.rglob("*") if p.is_file()}
    with pytest.raises(RetrievalIndexError, match="not an index that ssl_nav wrote"):
        build_index(store, embedder, CFG, store.root, progress=False)
    assert {p: p.read_bytes() for p in store.root.rglob("*") if p.is_file()} == before
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    with pytest.raises(RetrievalIndexError):
        build_index(store, embedder, CFG, ".", progress=False)
    assert (work / "notes.txt").read_text() == "mine"
    # an index ssl_nav wrote is replaced; an empty directory is used
    (tmp_path / "empty").mkdir()
    build_index(store, embedder, CFG, tmp_path / "empty", progress=False)
    build_index(store, embedder, CFG, tmp_path / "empty", progress=False)
    assert InstanceIndex.load(tmp_path / "empty").ntotal == 4


def test_a_second_writer_of_the_same_index_is_refused_with_the_holders_pid(store, embedder, tmp_path):
    """Two writers at once never both succeed (index --out IDX)."""
    from ssl_nav.locking import LockedError

    out = tmp_path / "idx"
    with lock_held_elsewhere("from ssl_nav.retrieval.index import index_lock",
                             f"l = index_lock({str(out)!r}).acquire()", "l.release()") as holder:
        with pytest.raises(LockedError, match=f"PID {holder.pid}"):
            build_index(store, embedder, CFG, out, progress=False)
        assert not out.exists()
    build_index(store, embedder, CFG, out, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # no lock file left behind
