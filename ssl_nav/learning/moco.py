"""MoCo v2 (He et al., arXiv 1911.05722; Chen et al., arXiv 2003.04297): a momentum key encoder and a queue
of negative keys, sharing the backbone, data and schedule of the other objectives.

- :class:`MoCoProjectionHead`: MoCo v2's MLP head, ``Linear(dim, dim) - ReLU - Linear(dim, 128)``.
- The key encoder is a copy of the backbone and head, updated only as an exponential moving average of the
  query encoder after each step (:func:`momentum_update`, ``learning.moco_momentum``) and run without gradient.
  Under partial fine-tuning the frozen stem is shared: the key encoder runs only the last stage and the head.
- :class:`KeyQueue`: a ring buffer of L2-normalised keys (and the map instance of each), 65536 in the paper;
  here ``min(learning.moco_queue, number of training views)`` rounded up to one enqueue (two views per pair),
  so the queue holds about one key per view of the store rather than many stale copies of each.
- :func:`info_nce_per_sample`: InfoNCE with temperature ``learning.moco_temperature`` (0.2 in MoCo v2): the
  positive logit ``q.k+ / t`` against ``q.queue / t``. Queue entries of the anchor's own map instance are
  masked out of the negatives: on an instance store most queue entries would otherwise be other views of a
  few dozen instances, i.e. false negatives (map instance ids are free labels, as CrossIA's classifier uses).
- The loss is symmetrised over the two views (q1 with k2, q2 with k1), since both views already pass the query
  encoder for the instance classifier; both views' keys are enqueued.

DDP: every rank gathers the keys of all ranks before enqueueing (:func:`gather_from_ranks`), so the queues
stay identical. Batch statistics are per rank and there is no Shuffle BN (MoCo §3.3): each key batch holds
the positives of its query batch, the single-device setting in which MoCo reports that BatchNorm can leak
information between them. Here the head has no BatchNorm and, with ``trainable: last``, only the backbone's
last stage has BatchNorm layers that see batch statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MoCoProjectionHead(nn.Sequential):
    """MoCo v2's 2-layer MLP head: in_dim -> hidden_dim (ReLU) -> out_dim (128 in the paper)."""

    def __init__(self, in_dim: int, out_dim: int = 128, hidden_dim: int | None = None) -> None:
        hidden = hidden_dim or in_dim
        super().__init__(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))
        self.out_dim = out_dim


class KeyQueue(nn.Module):
    """Ring buffer of ``size`` L2-normalised keys with their labels (-1: none), kept as module buffers so the
    model's state_dict (and so ``checkpoint.pt``) carries it."""

    def __init__(self, size: int, dim: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("keys", F.normalize(torch.randn(size, dim, generator=g), dim=1))
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.keys.shape[0]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, labels: torch.Tensor) -> None:
        """Overwrite the oldest entries with ``keys`` (N, dim) and ``labels`` (N,), N <= size."""
        n = keys.shape[0]
        if n > self.size:
            raise ValueError(f"cannot enqueue {n} keys into a queue of {self.size}")
        idx = (int(self.ptr) + torch.arange(n, device=self.keys.device)) % self.size
        self.keys[idx] = F.normalize(keys.detach().to(self.keys.dtype), dim=1)
        self.labels[idx] = labels.to(self.labels.device)
        self.ptr.fill_((int(self.ptr) + n) % self.size)


def info_nce_per_sample(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float,
                        labels: torch.Tensor | None = None, queue_labels: torch.Tensor | None = None
                        ) -> torch.Tensor:
    """Per-sample InfoNCE: -log softmax([q.k, q.queue] / t)[0]; q and k are normalised here, k is detached.
    With ``labels``, queue entries of the same label are not negatives."""
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.detach().float(), dim=1)
    pos = (q * k).sum(1, keepdim=True)
    neg = q @ queue.detach().float().t()
    if labels is not None and queue_labels is not None:
        neg = neg.masked_fill(labels[:, None] == queue_labels[None, :], float("-inf"))
    logits = torch.cat([pos, neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device), reduction="none")


@torch.no_grad()
def momentum_update(key: nn.Module, query: nn.Module, momentum: float) -> None:
    """key <- m * key + (1 - m) * query for every trainable query parameter (buffers are the key encoder's own;
    frozen parameters are equal in both and stay exactly so)."""
    for pk, pq in zip(key.parameters(), query.parameters()):
        if pq.requires_grad:
            pk.mul_(momentum).add_(pq.detach(), alpha=1.0 - momentum)


@torch.no_grad()
def gather_from_ranks(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` over the DDP ranks (rank order); ``x`` itself when not distributed."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def queue_size(requested: int, n_train_views: int, enqueue: int) -> int:
    """The queue scaled to the store: at most ``requested``, about one key per training view, and at least one
    enqueue (``enqueue`` keys per step)."""
    return max(enqueue, min(requested, n_train_views))
