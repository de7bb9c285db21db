"""SimSiam heads and loss (Chen & He, "Exploring Simple Siamese Representation Learning", arXiv 2011.10566).

The projector is 3 layers (Linear-BN-ReLU, Linear-BN-ReLU, Linear-BN without affine); in the paper and the
official code its hidden width equals the backbone width (2048 for ResNet-50) and its output is 2048-d. The
predictor is a 2048 -> 512 -> 2048 bottleneck. Both keep the official ``nn.Sequential`` layout so that an
official checkpoint's ``module.encoder.fc.*`` and ``module.predictor.*`` keys load unchanged; the dimensions
are arguments so small backbones (MobileNet, 576-1280-d) get smaller heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SimSiamProjectionHead(nn.Sequential):
    """Projector g: in_dim -> hidden_dim -> hidden_dim -> out_dim; last BN without affine (SimSiam §4.1)."""

    def __init__(self, in_dim: int, out_dim: int = 2048, hidden_dim: int | None = None) -> None:
        hidden = hidden_dim or in_dim
        super().__init__(
            nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, out_dim), nn.BatchNorm1d(out_dim, affine=False),
        )
        # As in the official code: the last Linear's bias is followed by BN, so it is not trained.
        self[6].bias.requires_grad_(False)
        self.out_dim = out_dim


class SimSiamPredictionHead(nn.Sequential):
    """Predictor h: dim -> hidden_dim (BN, ReLU) -> dim; 2048 -> 512 -> 2048 in the paper."""

    def __init__(self, dim: int = 2048, hidden_dim: int = 512) -> None:
        super().__init__(nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                         nn.Linear(hidden_dim, dim))


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Per-sample negative cosine similarity D(p, z) (no stop-gradient here: the caller decides)."""
    return -F.cosine_similarity(p, z, dim=-1)


def simsiam_loss_per_sample(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Per-pair symmetric SimSiam loss, (B,); used by Hard View Selection to rank candidate pairs."""
    cos = lambda a, b: F.cosine_similarity(a, b, dim=-1)  # noqa: E731
    return -0.5 * (cos(p1, z2.detach()) + cos(p2, z1.detach()))


def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """L = -1/2 [cos(p1, sg(z2)) + cos(p2, sg(z1))], averaged over the batch (SimSiam eq. 3-4)."""
    return simsiam_loss_per_sample(p1, p2, z1, z2).mean()
