"""sync_index: new store views are embedded and added without re-embedding the store, and the grown index
answers like a full rebuild; removed views leave it; a foreign model is refused."""

import numpy as np
import pytest

from ssl_nav.config import RetrievalConfig
from ssl_nav.errors import RetrievalIndexError
from ssl_nav.retrieval.build import build_index
from ssl_nav.retrieval.embedder import Embedder
from ssl_nav.retrieval.index import InstanceIndex
from ssl_nav.retrieval.update import sync_index
from ssl_nav.views.store import ViewStore

CFG = RetrievalConfig(image_size=32, device="cpu")


def _image(rng):
    return rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def embedder():
    return Embedder.load("mobilenet_v2", CFG)


class CountingEmbedder:
    """The real embedder, counting the images it embeds (to show the store is not re-embedded)."""

    def __init__(self, inner):
        self.inner, self.n = inner, 0
        self.model_hash, self.cfg = inner.model_hash, inner.cfg

    def embed(self, images):
        self.n += len(images)
        return self.inner.embed(images)


def test_new_views_are_added_and_answer_like_a_full_rebuild(tmp_path, embedder):
    rng = np.random.default_rng(0)
    store = ViewStore(tmp_path / "store", create=True)
    store.set_instances({"1": {"category": "c", "centroid": [0.0, 0.0, 0.0]}})
    for _ in range(3):
        store.add_view("1", _image(rng), "low")
    index = build_index(store, embedder, CFG, tmp_path / "idx", progress=False)
    # the collector writes more views (and a new instance) into the store, from another process
    other = ViewStore(tmp_path / "store")
    other.set_instances({"1": {"category": "c", "centroid": [0.0, 0.0, 0.0]},
                         "2": {"category": "d", "centroid": [1.0, 2.0, 0.0]}})
    new = [other.add_view("2", _image(rng), "low") for _ in range(2)] + [other.add_view("1", _image(rng), "low")]
    other.add_view("2", _image(rng), "high")  # a user photo: not indexed (retrieval.index_quality: low)
    counting = CountingEmbedder(embedder)
    res = sync_index(store, index, counting)
    assert (res.added, res.removed, res.instances_changed) == (3, 0, True) and counting.n == 3
    assert index.instances["2"]["centroid"] == [1.0, 2.0, 0.0]
    new_ids = [v["view_id"] for v in new]
    full = build_index(ViewStore(tmp_path / "store"), embedder, CFG, progress=False)
    assert sorted(index.view_ids()) == sorted(full.view_ids())
    views = {v["view_id"]: v for v in store.views()}
    q = embedder.embed([store.load_image(views[v]) for v in new_ids])
    for a, b, vid in zip(index.search(q, 10), full.search(q, 10), new_ids):
        assert a[0].view_id == vid
        assert [h.view_id for h in a] == [h.view_id for h in b]
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)
    assert sync_index(store, index, counting).changed is False and counting.n == 3  # nothing new: no work
    index.save(tmp_path / "idx")
    assert InstanceIndex.load(tmp_path / "idx").ntotal == 6
    # views removed from the store leave the index
    other.remove_views(new_ids[:2])
    res = sync_index(store, index, counting)
    assert res.removed == 2 and not index.has_view(new_ids[0]) and index.ntotal == 4 and counting.n == 3


def test_an_index_of_another_model_is_not_synced(tmp_path, embedder):
    rng = np.random.default_rng(1)
    store = ViewStore(tmp_path / "store", create=True)
    store.set_instances({"1": {}})
    store.add_view("1", _image(rng), "low")
    index = build_index(store, embedder, CFG, progress=False)
    index.model_hash = "another"
    with pytest.raises(RetrievalIndexError, match="rebuild"):
        sync_index(store, index, embedder)
