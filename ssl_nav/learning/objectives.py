"""Alternative self-supervised objectives that share everything else with SimSiam (backbone, projector,
data, schedule), for the edge-energy comparison (Famá et al., arXiv 2510.08374).

- SimCLR's NT-Xent (Chen et al., arXiv 2002.05709): each of the 2B projections must pick its partner among
  the other 2B-1 by temperature-scaled cosine similarity.
- Barlow Twins (Zbontar et al., arXiv 2103.03230): the cross-correlation of the batch-standardised
  projections of the two views is pushed to the identity; off-diagonal terms weigh ``lambd``.

Neither uses the SimSiam predictor. Under DDP both are computed per rank (no all-gather of negatives).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent over 2B samples: mean of -log softmax(sim/τ)[i, partner(i)], self-similarity excluded."""
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0).float(), dim=1)
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, target)


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
