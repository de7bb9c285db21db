import numpy as np
import torch

from ssl_nav.learning.crossia import choose_partner
from ssl_nav.learning.data import Augment, ImageCache, PairDataset, PairSampler, open_store, split_views


def test_crossia_pairs_lq_anchors_with_hq_views(store_factory):
    st = open_store(store_factory(n_instances=3, views_per_instance=5, n_hq=1))
    sv = split_views(st.views(), holdout_fraction=0.0, seed=0, crossia=True)
    rng = np.random.default_rng(0)
    for c, anchors in sv.anchors_by_class.items():
        assert all(sv.qualities[a] == "low" for a in anchors)
        for a in anchors:
            p = choose_partner(a, sv.train_by_class[c], sv.qualities, rng, crossia=True)
            assert sv.qualities[p] == "high" and sv.labels[p] == c
    # SimView without CrossIA: a different view of the same instance
    for a in sv.train_by_class[0]:
        p = choose_partner(a, sv.train_by_class[0], sv.qualities, rng, crossia=False)
        assert p != a and sv.labels[p] == sv.labels[a]
    # no HQ view: another LQ view
    assert choose_partner(1, [1, 2], ["low", "low", "low"], rng, crossia=True) == 2


def test_holdout_split_is_seeded_and_keeps_training_views(store_factory):
    st = open_store(store_factory(n_instances=4, views_per_instance=6))
    a = split_views(st.views(), 0.3, seed=1, crossia=True)
    b = split_views(st.views(), 0.3, seed=1, crossia=True)
    assert np.array_equal(a.holdout, b.holdout) and len(a.holdout) > 0
    assert set(a.holdout).isdisjoint(a.train)
    assert all(len(v) >= 1 for v in a.anchors_by_class.values())


def test_sampler_is_instance_balanced_deterministic_and_sharded(store_factory):
    st = open_store(store_factory(n_instances=4, views_per_instance=8))
    sv = split_views(st.views(), 0.0, seed=0, crossia=False)
    s0 = PairSampler(sv, 8, seed=3, crossia=False, rank=0, world_size=2)
    s1 = PairSampler(sv, 8, seed=3, crossia=False, rank=1, world_size=2)
    k0, k1 = list(s0), list(s1)
    assert len(k0) == len(k1) == len(s0) == s0.steps_per_epoch * 4
    assert set(k0).isdisjoint(k1)
    assert k0 == list(PairSampler(sv, 8, seed=3, crossia=False, rank=0, world_size=2))
    s0.set_epoch(1)
    assert list(s0) != k0
    big = PairSampler(sv, 8, seed=0, crossia=False)
    counts = np.bincount([sv.labels[a] for e in range(40) for a, _, _ in (big.set_epoch(e) or big.epoch_keys())])
    assert counts.min() > 0.7 * counts.mean()


def test_pairs_are_reproducible_and_shaped(store_factory):
    st = open_store(store_factory(n_instances=2, views_per_instance=3, size=40))
    sv = split_views(st.views(), 0.0, seed=0, crossia=True)
    cache = ImageCache(st, sv.views, enabled=True)
    cache.fill()
    assert cache.enabled and cache.get(0).dtype == torch.uint8
    for recipe in ("simsiam", "crossia"):
        ds = PairDataset(sv, cache, Augment(recipe, 32))
        key = (1, (0, 2), 12345)
        a, b = ds[key], ds[key]
        assert a["x1"].shape == (2, 3, 32, 32) and torch.equal(a["x1"], b["x1"]) and torch.equal(a["x2"], b["x2"])
        assert not torch.equal(ds[(1, (0, 2), 999)]["x1"], a["x1"])
        assert a["dom2"].tolist() == [int(sv.qualities[0] == "high"), int(sv.qualities[2] == "high")]


def test_fast_blur_equals_torchvision_and_hue_rotation_keeps_luma():
    import torchvision.transforms.v2.functional as TF

    from ssl_nav.learning.data import gaussian_blur, hue_rotate

    x = torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(gaussian_blur(x, 1.5), TF.gaussian_blur(x, [11, 11], [1.5, 1.5]), atol=1e-5)
    assert torch.allclose(hue_rotate(x, 0.0), x, atol=1e-5)
    grey = torch.full((3, 4, 4), 0.5)
    assert torch.allclose(hue_rotate(grey, 0.1), grey, atol=1e-5)  # no chroma, nothing to rotate
    red = torch.tensor([0.8, 0.2, 0.2]).view(3, 1, 1)
    r, g, b = hue_rotate(red, 0.1).flatten().tolist()
    assert g > 0.2 and b < 0.2  # red turns towards yellow, like torchvision's HSV shift
    luma = torch.tensor([0.299, 0.587, 0.114])
    y = hue_rotate(x * 0.5 + 0.25, 0.07)  # mid-range pixels: no clamping
    assert torch.allclose(torch.einsum("c,chw->hw", luma, y), torch.einsum("c,chw->hw", luma, x * 0.5 + 0.25), atol=1e-4)


def test_instance_recipe_keeps_colour_identity_and_crossia_does_not():
    red = torch.zeros(3, 24, 24, dtype=torch.uint8)
    red[0], red[1], red[2] = 200, 40, 40
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)

    def chroma_kept(recipe: str) -> float:
        aug = Augment(recipe, 16)
        kept = 0
        for s in range(200):
            rgb = (aug(red, np.random.default_rng(s)) * std + mean).mean(dim=(1, 2))
            kept += int(rgb[0] > rgb[1] + 0.2 and rgb[0] > rgb[2] + 0.2)  # still clearly red
        return kept / 200

    assert chroma_kept("instance") == 1.0
    assert chroma_kept("crossia") < 0.9  # grayscale (p 0.2) and hue rotation lose it


def test_view_fraction_keeps_a_nested_seed_stable_subset_of_robot_views():
    from ssl_nav.learning.data import subsample_views

    views = [{"view_id": f"v{i}_{k}", "instance_id": str(i), "quality": "high" if k == 0 else "low"}
             for i in range(3) for k in range(9)]
    half = subsample_views(views, 0.5, seed=1)
    quarter = subsample_views(views, 0.25, seed=1)
    for i in range(3):
        mine = [v for v in half if v["instance_id"] == str(i)]
        assert sum(v["quality"] == "low" for v in mine) == 4 and sum(v["quality"] == "high" for v in mine) == 1
        assert sum(v["instance_id"] == str(i) and v["quality"] == "low" for v in quarter) == 2
    ids = lambda vs: {v["view_id"] for v in vs}  # noqa: E731
    assert ids(quarter) < ids(half) < ids(views)
    assert ids(subsample_views(list(reversed(views)), 0.5, seed=1)) == ids(half)  # order does not matter
    assert ids(subsample_views(views, 0.5, seed=2)) != ids(half)
    assert subsample_views(views, 1.0, seed=1) == views
    assert len(subsample_views(views, 0.01, seed=1)) == 3 * 2  # one robot view and the photo per instance
