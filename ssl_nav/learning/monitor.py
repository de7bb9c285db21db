"""Label-free health metrics of a fine-tune, written once per epoch to ``metrics.jsonl``.

- ``z_std``: the mean over dimensions of the std of the L2-normalised projections z (SimSiam §4.1), averaged
  over the epoch's training batches as in the paper. A healthy run sits near 1/sqrt(d); a collapsed one goes
  to 0. :func:`check_collapse` warns when
  ``z_std * sqrt(d) < learning.collapse_threshold``.
- Embedding-norm statistics (mean, p5, p95) of the backbone features: norms as a confidence signal
  (arXiv 2502.09252).
- kNN top-1 over held-out views with map instance ids as free pseudo-labels (label-free monitoring,
  arXiv 2409.06612): 1-nearest-neighbour by cosine on the L2-normalised retrieval embedding, the same best-view
  rule SimView retrieval uses.
- k-means ARI on the L2-normalised embeddings against the instance ids, as the CrossIA trainer logs.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import nn


class CollapseWarning(UserWarning):
    """The projections have (nearly) collapsed to a constant."""


@torch.no_grad()
def embed(backbone: nn.Module, loader, device: torch.device, channels_last: bool = False) -> np.ndarray:
    """Backbone features (N, dim) of every batch of ``loader``, in eval mode."""
    was = backbone.training
    backbone.eval()
    feats = []
    try:
        for x in loader:
            x = x.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            feats.append(backbone(x).float().cpu())
    finally:
        backbone.train(was)
    return torch.cat(feats).numpy() if feats else np.zeros((0, 0), np.float32)


def _l2n(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def z_std(z: np.ndarray) -> float:
    """Mean over dimensions of the std of the L2-normalised rows of ``z``."""
    return float(_l2n(z.astype(np.float64)).std(axis=0).mean())


def check_collapse(zstd: float, dim: int, threshold: float) -> bool:
    """True (and a :class:`CollapseWarning`) when ``zstd * sqrt(dim) < threshold``."""
    collapsed = zstd * math.sqrt(dim) < threshold
    if collapsed:
        warnings.warn(f"representation collapse: z_std*sqrt(d) = {zstd * math.sqrt(dim):.3f} < {threshold} "
                      f"(healthy is about 1); check the augmentations, batch size and learning rate",
                      CollapseWarning, stacklevel=2)
    return collapsed


def norm_stats(feats: np.ndarray) -> dict[str, float]:
    """Mean, 5th and 95th percentile of the embedding norms."""
    n = np.linalg.norm(feats.astype(np.float64), axis=1)
    return {"emb_norm_mean": float(n.mean()), "emb_norm_p5": float(np.percentile(n, 5)),
            "emb_norm_p95": float(np.percentile(n, 95))}


def knn_top1(ref: np.ndarray, ref_labels: np.ndarray, query: np.ndarray, query_labels: np.ndarray) -> float | None:
    """Top-1 accuracy of cosine 1-NN: each query takes the label of its most similar reference."""
    if len(ref) == 0 or len(query) == 0:
        return None
    sim = _l2n(query) @ _l2n(ref).T
    pred = ref_labels[np.argmax(sim, axis=1)]
    return float(np.mean(pred == query_labels))


def kmeans_ari(feats: np.ndarray, labels: np.ndarray, seed: int = 0) -> float | None:
    """Adjusted Rand index between k-means (k = number of instances) on L2-normalised features and the labels."""
    k = len(np.unique(labels))
    if k < 2 or len(feats) <= k:
        return None
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    with warnings.catch_warnings():  # a collapsed encoder has fewer distinct points than clusters: ARI 0
        warnings.simplefilter("ignore")
        km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(_l2n(feats.astype(np.float64)))
    return float(adjusted_rand_score(labels, km.labels_))


def z_std_torch(z: torch.Tensor) -> float:
    """:func:`z_std` of one batch of projections (a tensor), as the SimSiam paper tracks it during training."""
    zn = torch.nn.functional.normalize(z.detach().float(), dim=1)
    return float(zn.std(dim=0).mean()) if z.shape[0] > 1 else float("nan")


def epoch_metrics(feats: np.ndarray, labels: np.ndarray, is_holdout: np.ndarray, zstd: float | None, z_dim: int,
                  collapse_threshold: float, seed: int = 0) -> dict:
    """All monitor figures of one epoch: ``zstd`` is the epoch's mean training-batch z_std; ``feats`` are the
    backbone embeddings of the monitored views (eval mode), ``labels`` their instance classes."""
    out: dict = {}
    if zstd is not None and math.isfinite(zstd):
        out["z_std"] = zstd
        out["z_std_sqrt_d"] = zstd * math.sqrt(z_dim)
        out["collapse_warning"] = check_collapse(zstd, z_dim, collapse_threshold)
    else:
        out.update(z_std=None, z_std_sqrt_d=None, collapse_warning=False)
    out.update(norm_stats(feats) if len(feats) else {"emb_norm_mean": None, "emb_norm_p5": None, "emb_norm_p95": None})
    tr = ~is_holdout
    out["knn_top1"] = knn_top1(feats[tr], labels[tr], feats[is_holdout], labels[is_holdout])
    out["kmeans_ari"] = kmeans_ari(feats, labels, seed)
    return out
