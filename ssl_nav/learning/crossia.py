"""CrossIA additions to SimSiam (Sakaguchi et al., IRC 2024, arXiv 2404.09645).

- :class:`InstanceClassifier`: ``Linear(feat, n_instances)`` on backbone features, initialised N(0, 0.01);
  its cross-entropy is added to the SimSiam loss with weight ``learning.ce_weight`` (1.0, as in the paper).
  Map instance ids are the free labels.
- :func:`choose_partner`: a low-quality (LQ, robot) view is paired with a high-quality (HQ, user photo) view of
  the same instance when one exists, otherwise with another LQ view of it (and with itself, under two
  augmentations, when the instance has a single view).
- :class:`DomainDiscriminator`: an optional LQ/HQ classifier behind gradient reversal (Ganin & Lempitsky,
  arXiv 1409.7495), as in the CrossIA code; off by default (``learning.domain_adversarial``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class InstanceClassifier(nn.Linear):
    """Linear(feat, n_instances), weights ~ N(0, 0.01), zero bias (CrossIA)."""

    def __init__(self, in_dim: int, n_instances: int) -> None:
        super().__init__(in_dim, n_instances)
        nn.init.normal_(self.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.bias)


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward, gradient multiplied by ``-scale`` backward."""
    return _GradientReversal.apply(x, scale)


class DomainDiscriminator(nn.Module):
    """Predicts LQ (0) vs HQ (1) from backbone features through gradient reversal, so the backbone learns
    features the discriminator cannot separate."""

    def __init__(self, in_dim: int, hidden_dim: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, 2))

    def forward(self, feats: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return self.net(grad_reverse(feats, scale))


def choose_partner(anchor: int, same_instance: list[int], qualities: list[str], rng: np.random.Generator,
                   crossia: bool) -> int:
    """Index of the view that forms a positive pair with view ``anchor``.

    ``same_instance`` lists the (training) view indices of the anchor's instance, ``qualities`` gives each
    view's quality by index. SimView: any other view of the instance. CrossIA: an HQ view when the instance has
    one (for an LQ anchor), otherwise another LQ view. A single-view instance pairs with itself.
    """
    others = [i for i in same_instance if i != anchor]
    if not others:
        return anchor
    if crossia and qualities[anchor] != "high":
        hq = [i for i in others if qualities[i] == "high"]
        if hq:
            return int(hq[rng.integers(len(hq))])
        lq = [i for i in others if qualities[i] != "high"]
        if lq:
            return int(lq[rng.integers(len(lq))])
    return int(others[rng.integers(len(others))])
