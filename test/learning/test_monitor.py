import math

import numpy as np
import pytest
import torch
from torch import nn

from ssl_nav.learning.monitor import (CollapseWarning, check_collapse, embed, epoch_metrics, kmeans_ari, knn_top1,
                                      norm_stats, z_std, z_std_torch)
from ssl_nav.learning.simsiam import SimSiamProjectionHead


class ConstantEncoder(nn.Module):
    """A fully collapsed backbone: every image maps to the same feature."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.feat = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feat.expand(x.shape[0], -1) + 0 * x.mean()


def test_collapse_warning_fires_on_a_constant_encoder():
    enc, proj = ConstantEncoder(), SimSiamProjectionHead(16, 32)
    proj.train()
    z = proj(enc(torch.randn(8, 3, 8, 8)))  # training-mode BN, as during fine-tuning
    zs = z_std_torch(z)
    assert zs < 1e-3
    with pytest.warns(CollapseWarning, match="collapse"):
        m = epoch_metrics(np.ones((8, 16)), np.arange(8) % 2, np.zeros(8, bool), zs, 32, collapse_threshold=0.3)
    assert m["collapse_warning"] is True


def test_healthy_random_projections_do_not_warn():
    z = np.random.default_rng(0).normal(size=(512, 64))
    zs = z_std(z)
    assert zs * math.sqrt(64) == pytest.approx(1.0, abs=0.05)  # about 1/sqrt(d)
    assert check_collapse(zs, 64, 0.3) is False


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


def test_embed_restores_training_mode():
    bn = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(12))
    bn.train()
    f = embed(bn, [torch.randn(4, 3, 2, 2)], torch.device("cpu"))
    assert f.shape == (4, 12) and bn.training
