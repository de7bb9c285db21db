"""Local-feature verification of the shortlist: inliers between a view and a warped copy of it, few
against an unrelated image; the Retriever's verified answers on a real small store and index."""

import json

import cv2
import numpy as np
import pytest

from ssl_nav.config import RetrievalConfig
from ssl_nav.retrieval.build import build_index
from ssl_nav.retrieval.evaluate import calibrate_verified, evaluate
from ssl_nav.retrieval.query import Retriever
from ssl_nav.retrieval.verify import MATCHERS, LocalFeatureVerifier, evidence
from ssl_nav.views.store import ViewStore

SIZE = 160


def textured(seed: int) -> np.ndarray:
    """A picture with corners and blobs at random places: plenty of keypoints."""
    rng = np.random.default_rng(seed)
    img = np.full((SIZE, SIZE, 3), 120, np.uint8)
    for _ in range(40):
        x, y = (int(v) for v in rng.integers(0, SIZE, 2))
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(5, 25)), y + int(rng.integers(5, 25))), c, -1)
        else:
            cv2.circle(img, (x, y), int(rng.integers(3, 12)), c, -1)
    return img


def warped(img: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    src = np.float32([[0, 0], [SIZE, 0], [SIZE, SIZE], [0, SIZE]])
    dst = (src + rng.uniform(-12, 12, src.shape)).astype(np.float32)
    return cv2.warpPerspective(img, cv2.getPerspectiveTransform(src, dst), (SIZE, SIZE), borderValue=(120, 120, 120))


@pytest.mark.parametrize("matcher", MATCHERS)
def test_a_warped_copy_has_many_inliers_an_unrelated_image_few(matcher):
    v = LocalFeatureVerifier(matcher)
    a = textured(0)
    same = v.match(v.features(warped(a, 1)), v.features(a))
    other = v.match(v.features(textured(2)), v.features(a))
    assert same[1] >= 20 and same[1] > 3 * max(other[1], 1), (same, other)


def test_verify_picks_the_best_view_and_caches_features():
    v = LocalFeatureVerifier("sift")
    views = {"a0": textured(0), "a1": textured(5), "b0": textured(9)}
    loads = []

    def load(vid):
        loads.append(vid)
        return views[vid]

    out = v.verify(warped(views["a0"], 3), [("a", ["a1", "a0"]), ("b", ["b0"])], load)
    assert out[0].instance_id == "a" and out[0].view_id == "a0" and out[0].inliers > out[1].inliers
    v.verify(textured(0), [("a", ["a1", "a0"])], load)
    assert sorted(loads) == ["a0", "a1", "b0"]  # second call: from the cache
    assert evidence(0, 30) == 0.0 and evidence(30, 30) == 1.0 and evidence(300, 30) == 1.0
    with pytest.raises(ValueError, match="verify_matcher"):
        LocalFeatureVerifier("superglue")


def textured_store(root, n_instances: int, views: int) -> ViewStore:
    """A store of ``n_instances`` textured objects, each seen in ``views`` warped robot views."""
    store = ViewStore(root, create=True)
    store.set_instances({str(i): {"category": "thing", "centroid": [float(i), 0.0, 0.5]}
                         for i in range(n_instances)})
    for i in range(n_instances):
        for k in range(views):
            store.add_view(str(i), warped(textured(10 * i), 100 + k), "low")
    return store


def test_retriever_with_verification_end_to_end(tmp_path):
    store = textured_store(tmp_path / "store", n_instances=3, views=3)
    cfg = RetrievalConfig(image_size=64, device="cpu", verify=True, verify_top_k=2, verify_views=2)
    build_index(store, "mobilenet_v2", cfg, tmp_path / "idx", progress=False)
    r = Retriever.open(tmp_path / "idx", cfg)
    a = r.query(warped(textured(10), 7))
    assert a["matches"][0]["instance_id"] == "1"
    assert a["matches"][0]["verification"]["inliers"] >= 10
    assert "verification" in a["matches"][1] and "verification" not in a["matches"][2]
    assert a["verification"]["matcher"] == "sift" and a["verification"]["evidence"] > 0
    json.dumps(a)
    images = [warped(textured(0), 8), warped(textured(20), 9), textured(77), textured(78)]
    m, res = evaluate(r, images, ["0", "2", None, None])
    assert m["top1"] == 1.0 and all("verify_evidence" in q.scores for q in res)
    assert res[0].scores["verify_evidence"] > res[2].scores["verify_evidence"]
    t = calibrate_verified(res, r.score_name, [True, True, False, False])
    assert t["balanced_accuracy"] == 1.0 and "verify_weight" in t
    off = Retriever.open(tmp_path / "idx", RetrievalConfig(image_size=64, device="cpu"))
    assert "verification" not in off.query(textured(10))["matches"][0]


def test_calibrate_with_verification_stores_the_weight(tmp_path):
    from ssl_nav.frames import write_png
    from ssl_nav.retrieval.evaluate import calibrate_index
    from ssl_nav.retrieval.index import read_meta

    store = textured_store(tmp_path / "store", n_instances=2, views=2)
    cfg = RetrievalConfig(image_size=64, device="cpu", verify=True, verify_top_k=2, verify_views=2)
    build_index(store, "mobilenet_v2", cfg, tmp_path / "idx", progress=False)
    lines = []
    for n, (img, gt) in enumerate([(warped(textured(0), 5), "0"), (warped(textured(10), 6), "1"),
                                   (warped(textured(0), 7), "0"), (textured(91), None), (textured(92), None),
                                   (textured(93), None)]):  # calibrate needs 3 queries of each side
        write_png(tmp_path / f"q{n}.png", img)
        lines.append(json.dumps({"image": f"q{n}.png", "instance_id": gt}) + "\n")
    (tmp_path / "cal.jsonl").write_text("".join(lines))
    score, t = calibrate_index(tmp_path / "idx", tmp_path / "cal.jsonl", cfg, progress=False)
    stored = read_meta(tmp_path / "idx")["thresholds"]
    assert stored["verify"] == {"matcher": "sift", "weight": t["verify_weight"]} and stored["score"] == score
    r = Retriever.open(tmp_path / "idx", cfg)
    assert r.verify_weight == t["verify_weight"] and r.thresholds.calibrated
    assert Retriever.open(tmp_path / "idx", RetrievalConfig(image_size=64, device="cpu", verify=True,
                                                            verify_matcher="orb")).verify_weight == 0.2
