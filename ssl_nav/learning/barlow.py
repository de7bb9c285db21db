"""Barlow Twins loss (Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy Reduction",
arXiv 2103.03230): the cross-correlation of the batch-standardised projections of the two views is pushed to the
identity; off-diagonal terms weigh ``lambd``. Under DDP it is computed per rank.
"""

from __future__ import annotations

import torch


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 0.005, eps: float = 1e-5,
                      scale: float = 1.0) -> torch.Tensor:
    """``scale`` * (sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2), with C the cross-correlation of standardised
    z (the paper's eq. 1 at ``scale`` 1; solo-learn exposes the same factor as ``scale_loss``)."""
    n = z1.shape[0]
    a = z1.float()
    b = z2.float()
    a = (a - a.mean(0)) / torch.sqrt(a.var(0, unbiased=False) + eps)
    b = (b - b.mean(0)) / torch.sqrt(b.var(0, unbiased=False) + eps)
    c = a.t() @ b / n
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return scale * (on_diag + lambd * off_diag)
