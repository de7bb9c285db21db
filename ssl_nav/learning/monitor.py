"""Label-free health metrics of a fine-tune, computed in eval mode and written to ``metrics.jsonl``.

Everything is measured on the retrieval embedding itself: the backbone features of a fixed set of store views
(held-out views first), L2-normalised, with the model in eval mode. (The SimSiam paper's z_std is measured on
the projector output in train mode; our projector ends in a BatchNorm without affine, so that figure sits at
1/sqrt(d) by construction and cannot show a collapse.)

Collapse (the run warns with :class:`CollapseWarning` and logs ``collapse_warning: true``):

- ``emb_std``: the mean over dimensions of the per-dimension std of the L2-normalised embeddings (SimSiam
  §4.1's statistic, on the embedding); ``emb_std_sqrt_d`` = ``emb_std * sqrt(d)``. Embeddings squeezed into
  k of d dimensions score about sqrt(k/d) of a spread-out encoder.
- ``eff_rank``: the effective rank of the L2-normalised, centred embedding matrix, exp of the entropy of its
  normalised singular values (RankMe, Garrido et al., arXiv 2210.02885). Embeddings spread over k directions
  have at most k; a constant encoder has none (its centred matrix is 0: rank reported as 1).
- :func:`collapse_check` compares both with the starting encoder, measured before the first step: a collapse
  is falling below ``learning.collapse_threshold`` times the start, or an effective rank below 2. For the rank
  the reference is the start's or, when smaller, k - 1 for k map instances: k instances are told apart in
  k - 1 directions (the simplex the instance classifier's cross-entropy drives the class means towards), so an
  encoder that gathers each instance's views into a tight cluster loses rank without collapsing.

Clustering signals of label-free monitoring (Xu, Lowe & Trappenberg, arXiv 2409.06612), with k = the number of
map instances (known without labels):

- ``silhouette``: the silhouette score (cosine) of a k-means clustering of the embeddings;
- ``cluster_agreement``: the adjusted mutual information between two k-means runs with different seeds;
- ``entropy``: the Kozachenko-Leonenko nearest-neighbour estimate of the differential entropy of the
  embedding distribution, in nats per dimension (comparable across epochs of one run).

With the map's instance ids as free pseudo-labels (as CrossIA's trainer logs them):

- ``knn_top1``: 1-nearest-neighbour (cosine) top-1 of the held-out views against the training views;
- ``kmeans_ari``: the adjusted Rand index between the k-means clusters and the instance ids.

Embedding-norm statistics (mean, p5, p95) of the raw features are logged as a confidence signal
(arXiv 2502.09252).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import nn

#: the metrics :func:`collapse_check` compares with the starting encoder
COLLAPSE_METRICS = ("emb_std_sqrt_d", "eff_rank")
#: an effective rank below this is a collapse whatever the start (when at least MIN_VIEWS views are monitored:
#: n centred points span at most n - 1 directions)
MIN_EFF_RANK = 2.0
MIN_VIEWS = 8


class CollapseWarning(UserWarning):
    """The embeddings have (partly) collapsed."""


@torch.no_grad()
def embed(backbone: nn.Module, loader, device: torch.device, channels_last: bool = False) -> np.ndarray:
    """Backbone features (N, dim) of every batch of ``loader``, in eval mode (the caller's mode is restored)."""
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


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# ---------------------------------------------------------------------------------------------------------
# collapse


def embedding_std(feats: np.ndarray) -> float:
    """Mean over dimensions of the std of the L2-normalised rows of ``feats`` (healthy: about 1/sqrt(d))."""
    return float(l2_normalise(feats).std(axis=0).mean())


def effective_rank(feats: np.ndarray) -> float:
    """RankMe's exp(-sum p_i log p_i), p = singular values / their sum, of the L2-normalised rows, centred (the
    features of a ReLU network share a large mean direction that would otherwise dominate the spectrum)."""
    x = l2_normalise(feats)
    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    if float(s.sum()) <= 1e-9 * len(x):
        return 1.0
    p = s / float(s.sum())
    p = p[p > 1e-12]
    return float(np.exp(-(p * np.log(p)).sum()))


def collapse_check(metrics: dict, start: dict | None, threshold: float) -> bool:
    """True (and a :class:`CollapseWarning`) when ``metrics`` fall below ``threshold`` x the ``start`` on any of
    :data:`COLLAPSE_METRICS` (for the rank: x min(start, instances - 1)), or the effective rank is below
    :data:`MIN_EFF_RANK` (of at least :data:`MIN_VIEWS` views)."""
    reasons = []
    rank = metrics.get("eff_rank")
    if rank is not None and rank < MIN_EFF_RANK and metrics.get("n_views", MIN_VIEWS) >= MIN_VIEWS:
        reasons.append(f"effective rank {rank:.2f} < {MIN_EFF_RANK}")
    for key in COLLAPSE_METRICS:
        now, ref = metrics.get(key), (start or {}).get(key)
        if key == "eff_rank" and ref and metrics.get("n_instances", 0) > 1:
            ref = min(ref, metrics["n_instances"] - 1)  # k instances need only k - 1 directions (see module doc)
        if now is not None and ref and now < threshold * ref:
            reasons.append(f"{key} {now:.3g} < {threshold} x {ref:.3g}")
    if reasons:
        warnings.warn(f"representation collapse: {'; '.join(reasons)}; check the augmentations, the batch size "
                      f"and the learning rate", CollapseWarning, stacklevel=2)
    return bool(reasons)


# ---------------------------------------------------------------------------------------------------------
# clustering (arXiv 2409.06612)


def _kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    with warnings.catch_warnings():  # a collapsed encoder has fewer distinct points than clusters
        warnings.simplefilter("ignore")
        return KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(x)


def cluster_signals(feats: np.ndarray, k: int, seed: int = 0) -> dict[str, float | None]:
    """``silhouette`` and ``cluster_agreement`` (AMI of two seeded k-means runs) of the L2-normalised
    embeddings with ``k`` clusters; None when there are too few points."""
    if k < 2 or len(feats) <= k:
        return {"silhouette": None, "cluster_agreement": None}
    from sklearn.metrics import adjusted_mutual_info_score, silhouette_score

    x = l2_normalise(feats)
    a, b = _kmeans(x, k, seed), _kmeans(x, k, seed + 1)
    sil = float(silhouette_score(x, a, metric="cosine")) if len(np.unique(a)) > 1 else 0.0
    return {"silhouette": sil, "cluster_agreement": float(adjusted_mutual_info_score(a, b))}


def knn_entropy(feats: np.ndarray) -> float | None:
    """Kozachenko-Leonenko 1-NN differential entropy of the L2-normalised embeddings, nats per dimension:
    (1/d) [d mean_i log r_i + log V_d + log(N-1) + gamma], r_i the distance to the nearest other point and
    V_d the volume of the unit d-ball. Coincident points count at distance 1e-6."""
    n, d = feats.shape if feats.ndim == 2 else (0, 0)
    if n < 3 or d < 1:
        return None
    from scipy.special import gammaln

    x = l2_normalise(feats)
    sq = (x * x).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
    np.fill_diagonal(d2, np.inf)
    r = np.sqrt(d2.min(axis=1))
    log_vd = 0.5 * d * math.log(math.pi) - gammaln(0.5 * d + 1)
    h = d * np.log(np.maximum(r, 1e-6)).mean() + log_vd + math.log(n - 1) + np.euler_gamma
    return float(h / d)


# ---------------------------------------------------------------------------------------------------------
# pseudo-labels (map instance ids)


def knn_top1(ref: np.ndarray, ref_labels: np.ndarray, query: np.ndarray, query_labels: np.ndarray) -> float | None:
    """Top-1 accuracy of cosine 1-NN: each query takes the label of its most similar reference."""
    if len(ref) == 0 or len(query) == 0:
        return None
    sim = l2_normalise(query) @ l2_normalise(ref).T
    pred = ref_labels[np.argmax(sim, axis=1)]
    return float(np.mean(pred == query_labels))


def kmeans_ari(feats: np.ndarray, labels: np.ndarray, seed: int = 0) -> float | None:
    """Adjusted Rand index between k-means (k = number of instances) on L2-normalised features and the labels."""
    k = len(np.unique(labels))
    if k < 2 or len(feats) <= k:
        return None
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(labels, _kmeans(l2_normalise(feats), k, seed)))


def norm_stats(feats: np.ndarray) -> dict[str, float]:
    """Mean, 5th and 95th percentile of the embedding norms."""
    n = np.linalg.norm(feats.astype(np.float64), axis=1)
    return {"emb_norm_mean": float(n.mean()), "emb_norm_p5": float(np.percentile(n, 5)),
            "emb_norm_p95": float(np.percentile(n, 95))}


# ---------------------------------------------------------------------------------------------------------
# one epoch


def embedding_metrics(feats: np.ndarray, labels: np.ndarray, is_holdout: np.ndarray, seed: int = 0) -> dict:
    """Every monitor figure of one set of embeddings (see the module docstring), without the collapse verdict."""
    if len(feats) == 0:
        return {}
    bad = ~np.isfinite(feats).all(axis=1)
    if bad.any():  # a diverged encoder: nothing to measure (the training step stops on the non-finite loss)
        return {"nonfinite_embeddings": int(bad.sum())}
    d = feats.shape[1]
    out = {"n_views": len(feats), "n_instances": int(len(np.unique(labels))), "emb_std": embedding_std(feats)}
    out["emb_std_sqrt_d"] = out["emb_std"] * math.sqrt(d)
    out["eff_rank"] = effective_rank(feats)
    out.update(cluster_signals(feats, len(np.unique(labels)), seed))
    out["entropy"] = knn_entropy(feats)
    tr = ~is_holdout
    out["knn_top1"] = knn_top1(feats[tr], labels[tr], feats[is_holdout], labels[is_holdout])
    out["kmeans_ari"] = kmeans_ari(feats, labels, seed)
    out.update(norm_stats(feats))
    return out


def epoch_metrics(feats: np.ndarray, labels: np.ndarray, is_holdout: np.ndarray, start: dict | None,
                  collapse_threshold: float, seed: int = 0) -> dict:
    """:func:`embedding_metrics` plus ``collapse_warning`` against the starting encoder's figures ``start``."""
    out = embedding_metrics(feats, labels, is_holdout, seed)
    out["collapse_warning"] = collapse_check(out, start, collapse_threshold) if out else False
    return out
