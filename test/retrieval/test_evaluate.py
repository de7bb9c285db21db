"""Metrics on hand-computed examples, calibration, and the queries file."""

import json

import numpy as np
import pytest

from ssl_nav.errors import FormatError
from ssl_nav.retrieval.evaluate import (QueryResult, auroc, average_precision, calibrate, compute_metrics,
                                        format_table, load_queries)


def test_average_precision_by_hand():
    # relevant at ranks 1, 3, 4 of 5: AP = (1/1 + 2/3 + 3/4) / 3
    assert average_precision([1, 0, 1, 1, 0]) == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert average_precision([0, 1]) == pytest.approx(0.5)
    assert average_precision([0, 0]) == 0.0
    # R larger than the relevant items listed (a truncated list): divide by R
    assert average_precision([1, 0], n_relevant=2) == pytest.approx(0.5)


def test_auroc_by_hand():
    # pairs (pos, neg): (0.9>0.3) (0.9>0.5) (0.5=0.5 -> 1/2) (0.5>0.3) -> 3.5 / 4
    assert auroc([0.9, 0.5], [0.3, 0.5]) == pytest.approx(0.875)
    assert auroc([0.9], []) is None


def test_compute_metrics_by_hand():
    q1 = QueryResult("q1", "A", ["A", "B", "C"], [0.9, 0.5, 0.1], [True, False, True, False], 2, 0.9, 0.4, True,
                     [0, 0, 0], [0, 0, 0.5])
    q2 = QueryResult("q2", "B", ["A", "B", "C"], [0.7, 0.6, 0.1], [False, True, False, False], 1, 0.7, 0.1, True,
                     [0, 0, 0], [3, 4, 0])
    q3 = QueryResult("q3", None, ["C", "A"], [0.6, 0.2], [], 0, 0.6, 0.4, False)
    m = compute_metrics([q1, q2, q3])
    assert (m["n_in_map"], m["n_open_set"]) == (2, 1)
    assert m["top1"] == 0.5 and m["top5"] == 1.0 and m["mrr"] == pytest.approx(0.75)
    # AP(q1) = (1 + 2/3) / 2 = 5/6; AP(q2) = 1/2
    assert m["mAP"] == pytest.approx((5 / 6 + 0.5) / 2)
    # in-map best scores 0.9, 0.7 vs open 0.6 -> AUROC 1 (the best-view score is in force by default)
    assert m["auroc"] == 1.0 and m["auroc_best_view"] == 1.0 and m["open_set_score"] == "best"
    # goal errors 0.5 and 5.0
    assert m["goal_error_mean_m"] == pytest.approx(2.75) and m["goal_error_median_m"] == pytest.approx(2.75)
    assert m["goal_success_1m"] == 0.5
    # q1 accepted and right, q2 accepted but wrong, q3 rejected (right) -> 2/3
    assert m["open_set_accuracy"] == pytest.approx(2 / 3)
    table = format_table({"baseline": m, "fine-tuned": m})
    assert "mAP" in table and "0.667" in table


def test_calibrate_separates_in_map_from_open_set():
    values = [0.9, 0.85, 0.8, 0.75, 0.5, 0.45, 0.7]
    in_map = [True, True, True, True, False, False, False]
    t = calibrate(values, in_map)
    assert t["balanced_accuracy"] == 1.0 and 0.7 < t["threshold"] <= 0.75
    assert (t["n_in_map"], t["n_open_set"]) == (4, 3)
    # overlapping classes: the best balanced accuracy (0.9 accepted, the rest rejected: (1/2 + 1) / 2)
    t = calibrate([0.9, 0.6, 0.8, 0.7], [True, True, False, False])
    assert t["balanced_accuracy"] == 0.75 and 0.8 < t["threshold"] < 0.9
    # ties prefer the lowest threshold: accepting everything and rejecting everything both score 1/2
    t = calibrate([0.5, 0.5], [True, False])
    assert t["balanced_accuracy"] == 0.5 and t["threshold"] < 0.5
    with pytest.raises(ValueError, match="both"):
        calibrate([0.5], [True])
    with pytest.raises(ValueError, match="finite"):
        calibrate([float("nan"), 0.2], [True, False])


def test_relevance_follows_gt_instance_id():
    """A map built without simulator ids: instance "m7" is simulated object "3", "m8" is nothing known."""
    from types import SimpleNamespace

    from ssl_nav.retrieval.evaluate import query_result
    from ssl_nav.retrieval.index import InstanceIndex

    x = np.eye(4, dtype=np.float32)
    index = InstanceIndex.build(x, ["a", "b", "c", "d"], ["m7", "m7", "m8", "m9"], model_hash="h",
                                instances={"m7": {"gt_instance_id": "3", "centroid": [1, 0, 0]},
                                           "m8": {"gt_instance_id": None, "centroid": [2, 0, 0]},
                                           "m9": {"centroid": [3, 0, 0]}})

    class Stub(SimpleNamespace):
        def rank(self, e, k_views=None):
            from ssl_nav.retrieval.aggregate import aggregate

            hits = index.search(e, k_views)[0]
            return aggregate(hits), hits

        def scores(self, ranked, features):
            from ssl_nav.retrieval.openset import open_set_scores

            return open_set_scores(ranked, features)

        def decide(self, ranked, scores):
            from ssl_nav.retrieval.openset import decide

            return decide(ranked, scores, "best", 0.0)

        def answer(self, e, features=None, image=None, k_views=None):  # Retriever.answer without verification
            ranked, hits = self.rank(e.reshape(1, -1), k_views)
            scores = self.scores(ranked, features)
            return ranked, hits, scores, self.decide(ranked, scores), {}

    r = Stub(index=index)
    q = np.array([0.1, 0.9, 0.2, 0.0], np.float32)  # closest to view b of m7
    res = query_result(r, q / np.linalg.norm(q), "q", "3")
    assert res.n_relevant == 2 and res.view_relevance[:2] == [True, False]
    assert res.ranked_gt[0] == "3" and compute_metrics([res])["top1"] == 1.0
    # "m9" has no gt_instance_id key: its own id is its ground truth; "m8" (null) is never relevant
    q9 = query_result(r, np.array([0, 0, 0, 1], np.float32), "q9", "m9")
    assert q9.n_relevant == 1 and compute_metrics([q9])["top1"] == 1.0
    q8 = query_result(r, np.array([0, 0, 1, 0], np.float32), "q8", "m8")
    assert q8.n_relevant == 0 and compute_metrics([q8])["top1"] == 0.0


def test_load_queries(tmp_path):
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "a.png").write_bytes(b"x")
    (tmp_path / "queries.jsonl").write_text(json.dumps({"image": "q/a.png", "instance_id": 3}) + "\n\n"
                                            + json.dumps({"image": "q/a.png", "instance_id": None}) + "\n")
    qs = load_queries(tmp_path / "queries.jsonl")
    assert [q["instance_id"] for q in qs] == ["3", None] and qs[1]["line"] == 3
    (tmp_path / "bad.jsonl").write_text(json.dumps({"image": "q/missing.png", "instance_id": "1"}) + "\n")
    with pytest.raises(FormatError, match="bad.jsonl:1"):
        load_queries(tmp_path / "bad.jsonl")


def test_load_queries_refuses_images_outside_its_directory(tmp_path):
    """The queries.jsonl paths resolve inside the directory that holds the file."""
    import json

    from ssl_nav.errors import FormatError
    from ssl_nav.frames import write_png
    from ssl_nav.retrieval.evaluate import load_queries

    d = tmp_path / "frames"
    d.mkdir()
    write_png(tmp_path / "outside.png", np.zeros((4, 4, 3), np.uint8))
    (d / "queries.jsonl").write_text(json.dumps({"image": "../outside.png", "instance_id": "1"}) + "\n")
    with pytest.raises(FormatError, match=r"queries.jsonl:1: key 'image': path '../outside.png' leaves"):
        load_queries(d / "queries.jsonl")
