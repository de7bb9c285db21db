"""Training steps on one fixed batch: the smallest check that a loss (and so an objective or a head) learns."""

from __future__ import annotations

import torch


def two_views(n: int = 8, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two noisy views of ``n`` random images: the positives an objective should pull together."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    return ((x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1),
            (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1))


def sgd_steps(model, lc, x1, x2, batch, n: int, lr: float = 0.05) -> list[dict]:
    """``n`` SGD steps of the trainer's total loss on one fixed batch; the loss parts before each step."""
    from ssl_nav.learning.trainer import total_loss

    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9)
    parts = []
    for _ in range(n):
        loss, p = total_loss(model, model(x1, x2), batch, lc)
        parts.append({k: float(v) for k, v in p.items()})
        opt.zero_grad()
        loss.backward()
        opt.step()
    return parts
