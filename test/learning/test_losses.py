import math

import numpy as np
import pytest
import torch

from ssl_nav.learning.barlow import barlow_twins_loss
from ssl_nav.learning.simclr import nt_xent_loss


def test_nt_xent_matches_a_hand_computation():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z2 = torch.tensor([[1.0, 1.0], [-1.0, 1.0]])
    t = 0.5
    z = [np.array(v) / np.linalg.norm(v) for v in ([1, 0], [0, 1], [1, 1], [-1, 1])]
    partner = {0: 2, 1: 3, 2: 0, 3: 1}
    losses = []
    for i in range(4):
        logits = {j: float(z[i] @ z[j]) / t for j in range(4) if j != i}
        denom = sum(math.exp(v) for v in logits.values())
        losses.append(-math.log(math.exp(logits[partner[i]]) / denom))
    assert nt_xent_loss(z1, z2, t).item() == pytest.approx(sum(losses) / 4, rel=1e-5)


def test_barlow_twins_matches_a_hand_computation():
    z1 = torch.tensor([[1.0, 2.0], [3.0, 0.0], [2.0, 1.0]])
    z2 = torch.tensor([[0.0, 1.0], [2.0, 2.0], [1.0, 0.0]])
    lam = 0.1

    def std(a):
        a = np.asarray(a, dtype=np.float64)
        return (a - a.mean(0)) / np.sqrt(a.var(0) + 1e-5)

    a, b = std(z1.numpy()), std(z2.numpy())
    c = np.zeros((2, 2))
    for i in range(2):
        for j in range(2):
            c[i, j] = sum(a[n, i] * b[n, j] for n in range(3)) / 3
    expected = (1 - c[0, 0]) ** 2 + (1 - c[1, 1]) ** 2 + lam * (c[0, 1] ** 2 + c[1, 0] ** 2)
    assert barlow_twins_loss(z1, z2, lam).item() == pytest.approx(expected, rel=1e-5)
    assert barlow_twins_loss(z1, z2, lam, scale=0.5).item() == pytest.approx(expected / 2, rel=1e-5)


def test_barlow_twins_is_zero_for_identical_decorrelated_views():
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert barlow_twins_loss(z, z, 0.005).item() == pytest.approx(0.0, abs=1e-4)
