"""SimCLR's NT-Xent loss (Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
arXiv 2002.05709): each of the 2B projections must pick its partner among the other 2B-1 by temperature-scaled
cosine similarity. Under DDP it is computed per rank (no all-gather of negatives).
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
