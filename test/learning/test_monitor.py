import math

import numpy as np
import pytest
import torch
from torch import nn

from ssl_nav.learning.backbones import Backbone
from ssl_nav.learning.monitor import (CollapseWarning, cluster_signals, collapse_check, effective_rank, embed,
                                      embedding_metrics, embedding_std, epoch_metrics, kmeans_ari, knn_entropy,
                                      knn_top1, norm_stats)


class PartlyCollapsed(nn.Module):
    """A real backbone whose features are squeezed onto ``k`` directions: a partial collapse, still
    input-dependent, with no constant output."""

    def __init__(self, backbone: nn.Module, dim: int, k: int) -> None:
        super().__init__()
        self.backbone = backbone
        q, _ = torch.linalg.qr(torch.randn(dim, k, generator=torch.Generator().manual_seed(1)))
        self.register_buffer("proj", q @ q.T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x) @ self.proj


def _images(n_instances: int = 8, per: int = 4, size: int = 32) -> tuple[list[torch.Tensor], np.ndarray]:
    g = torch.Generator().manual_seed(0)
    base = torch.rand(n_instances, 3, size, size, generator=g)
    x = base.repeat_interleave(per, 0) + 0.05 * torch.randn(n_instances * per, 3, size, size, generator=g)
    return list(x.split(8)), np.repeat(np.arange(n_instances), per)


def test_monitor_fires_on_a_partly_collapsed_encoder_not_on_the_healthy_one():
    torch.manual_seed(0)
    bb = Backbone("resnet18").eval()
    loader, labels = _images()
    hold = np.zeros(len(labels), bool)
    hold[::4] = True
    start = embedding_metrics(embed(bb, loader, torch.device("cpu")), labels, hold)
    healthy = epoch_metrics(embed(bb, loader, torch.device("cpu")), labels, hold, start, 0.5)
    assert healthy["collapse_warning"] is False
    partial = embed(PartlyCollapsed(bb, 512, k=3), loader, torch.device("cpu"))
    assert np.unique(partial.round(4), axis=0).shape[0] > 1  # not a constant encoder
    with pytest.warns(CollapseWarning, match="collapse"):
        m = epoch_metrics(partial, labels, hold, start, 0.5)
    assert m["collapse_warning"] is True and m["eff_rank"] < 0.5 * (m["n_instances"] - 1) < start["eff_rank"]


def test_effective_rank_and_std_follow_the_number_of_used_directions():
    rng = np.random.default_rng(0)
    d = 64
    full = rng.normal(size=(512, d))
    assert effective_rank(full) > 0.8 * d
    assert embedding_std(full) * math.sqrt(d) == pytest.approx(1.0, abs=0.05)  # about 1/sqrt(d)
    k = 4
    squeezed = np.concatenate([rng.normal(size=(512, k)), np.zeros((512, d - k))], axis=1)
    assert effective_rank(squeezed) < k + 0.5
    assert embedding_std(squeezed) * math.sqrt(d) == pytest.approx(math.sqrt(k / d), abs=0.05)
    assert effective_rank(np.ones((10, d))) == pytest.approx(1.0, abs=1e-6)  # constant: rank 1


def test_collapse_check_is_relative_to_the_start_and_has_an_absolute_floor():
    start = {"emb_std_sqrt_d": 0.6, "eff_rank": 40.0}
    assert collapse_check({"emb_std_sqrt_d": 0.5, "eff_rank": 30.0}, start, 0.5) is False
    with pytest.warns(CollapseWarning, match="eff_rank"):
        assert collapse_check({"emb_std_sqrt_d": 0.5, "eff_rank": 12.0}, start, 0.5) is True
    with pytest.warns(CollapseWarning, match="emb_std_sqrt_d"):
        assert collapse_check({"emb_std_sqrt_d": 0.2, "eff_rank": 30.0}, start, 0.5) is True
    # 10 instances: clustering each instance tightly (rank ~ 9) is not a collapse, squeezing them into 3 is
    assert collapse_check({"emb_std_sqrt_d": 0.5, "eff_rank": 8.0, "n_instances": 10}, start, 0.5) is False
    with pytest.warns(CollapseWarning, match="eff_rank"):
        assert collapse_check({"emb_std_sqrt_d": 0.5, "eff_rank": 3.0, "n_instances": 10}, start, 0.5) is True
    with pytest.warns(CollapseWarning, match="effective rank"):
        assert collapse_check({"emb_std_sqrt_d": 0.5, "eff_rank": 1.2, "n_views": 50}, None, 0.5) is True
    # two monitored views span one direction at most: no verdict from the floor
    assert collapse_check({"emb_std_sqrt_d": 0.5, "eff_rank": 1.0, "n_views": 2}, None, 0.5) is False


def test_clustering_signals_separate_clustered_from_shapeless_embeddings():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16)) * 5
    labels = np.repeat(np.arange(4), 10)
    clustered = centres[labels] + rng.normal(scale=0.1, size=(40, 16))
    noise = rng.normal(size=(40, 16))
    c, n = cluster_signals(clustered, 4), cluster_signals(noise, 4)
    assert c["silhouette"] > 0.8 > n["silhouette"]
    assert c["cluster_agreement"] == pytest.approx(1.0) and n["cluster_agreement"] < 0.9
    # tighter clusters: lower differential entropy of the embedding distribution
    assert knn_entropy(clustered) < knn_entropy(noise)


def test_knn_ari_and_norms_on_separable_embeddings():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 5
    labels = np.repeat(np.arange(3), 6)
    feats = centres[labels] + rng.normal(scale=0.1, size=(18, 8))
    hold = np.zeros(18, bool)
    hold[::6] = True
    assert knn_top1(feats[~hold], labels[~hold], feats[hold], labels[hold]) == 1.0
    assert kmeans_ari(feats, labels) == pytest.approx(1.0)
    shuffled = labels.copy()
    rng.shuffle(shuffled)
    assert knn_top1(feats[~hold], shuffled[~hold], feats[hold], shuffled[hold]) < 1.0
    s = norm_stats(feats)
    assert s["emb_norm_p5"] <= s["emb_norm_mean"] <= s["emb_norm_p95"]


def test_embed_runs_in_eval_mode_and_restores_training_mode():
    bn = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(12))
    bn.train()
    x = torch.randn(4, 3, 2, 2)
    f = embed(bn, [x], torch.device("cpu"))
    assert f.shape == (4, 12) and bn.training
    assert np.allclose(f, x.flatten(1).numpy() / math.sqrt(1 + 1e-5), atol=1e-5)  # running stats: eval mode


def test_non_finite_embeddings_are_reported_not_measured():
    feats = np.ones((6, 4))
    feats[2, 1] = np.nan
    m = epoch_metrics(feats, np.arange(6) % 2, np.zeros(6, bool), None, 0.5)
    assert m["nonfinite_embeddings"] == 1 and m["collapse_warning"] is False
