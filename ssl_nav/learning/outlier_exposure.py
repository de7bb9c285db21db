"""Outlier exposure with recoloured views: look-alikes that are not in the map must not look in-map.

The instance classifier is trained on the map's instances only, so its max-softmax says nothing about an object
it never saw; a recoloured copy of a mapped object (the same mesh in another colour) gets that object's class
with near-certainty. Outlier Exposure (Hendrycks, Mazeika and Dietterich, "Deep Anomaly Detection with Outlier
Exposure", ICLR 2019, arXiv 1812.04606) adds a term that pulls the classifier's output on known outliers
towards the uniform distribution:

    L_OE = E_x~outliers [ -1/K Σ_k log softmax(f(x))_k ] = E [ logsumexp(f(x)) - mean_k f(x)_k ]

Here the outliers are synthesised from the batch itself (:func:`recolour`): every anchor view with its
colours changed far beyond lighting and white balance (a hue turn of 60-300° and a saturated tint), its
shape, texture and layout kept. The positive pairs keep colour (the ``instance`` augmentation has no hue
jitter and no grayscale), so the encoder learns that colour is part of an instance's identity and the
open-set score (``max_softmax``) falls on recoloured look-alikes. ``learning.recolour_oe_weight`` weighs the
term (0 turns it off); BENCHMARKS.md's recipe ablation measures it.
"""

from __future__ import annotations

import colorsys
import math

import torch

from ssl_nav.learning.backbones import IMAGENET_MEAN, IMAGENET_STD
from ssl_nav.learning.data import RGB2YIQ, hue_matrix

#: hue turn of a recoloured outlier, in turns: far from 0 (a lighting change) on both sides
HUE_TURN = (1 / 6, 5 / 6)
#: weight of the saturated tint multiplied in (0 = hue turn only)
TINT_STRENGTH = (0.4, 0.8)


def _colour_matrices(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 3, 3) per-sample colour maps on RGB in [0, 1]: a YIQ hue rotation, then a saturated tint."""
    turn = torch.empty(n).uniform_(*HUE_TURN, generator=generator)
    strength = torch.empty(n).uniform_(*TINT_STRENGTH, generator=generator)
    hue = torch.rand(n, generator=generator)
    sat = torch.empty(n).uniform_(0.5, 1.0, generator=generator)
    out = torch.empty(n, 3, 3)
    for i in range(n):
        rot = hue_matrix(float(turn[i]))
        tint = torch.tensor(colorsys.hsv_to_rgb(float(hue[i]), float(sat[i]), 1.0))
        gain = (1 - strength[i]) + strength[i] * tint
        out[i] = torch.diag(gain / (RGB2YIQ[0] @ gain)) @ rot  # the tint keeps luma: a colour change, not a dimming
    return out


def recolour(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Recoloured copies of a batch of ImageNet-normalised images (B, 3, H, W): each image gets its own hue turn
    and tint (drawn from ``generator``, a CPU generator), luma kept, clipped to [0, 1] before re-normalising."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    m = _colour_matrices(x.shape[0], generator).to(device=x.device, dtype=x.dtype)
    rgb = (x * std + mean).clamp(0.0, 1.0)
    out = torch.einsum("bij,bjhw->bihw", m, rgb).clamp_(0.0, 1.0)
    out = (out - mean) / std
    return out.contiguous(memory_format=torch.channels_last) if x.is_contiguous(memory_format=torch.channels_last) \
        else out


def outlier_exposure_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy from the uniform distribution over the K classes to softmax(logits), minus its minimum
    log K: ``mean_b [logsumexp(l_b) - mean_k l_bk] - log K`` (0 when the classifier is uniform on outliers)."""
    logits = logits.float()
    return (torch.logsumexp(logits, dim=1) - logits.mean(dim=1)).mean() - math.log(logits.shape[1])
