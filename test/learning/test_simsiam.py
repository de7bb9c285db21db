import pytest
import torch

from ssl_nav.learning.simsiam import (SimSiamPredictionHead, SimSiamProjectionHead, simsiam_loss,
                                      simsiam_loss_per_sample)


def test_loss_is_symmetric_and_stops_the_gradient_at_z():
    g = torch.Generator().manual_seed(0)
    p1, p2 = torch.randn(6, 8, generator=g, requires_grad=True), torch.randn(6, 8, generator=g, requires_grad=True)
    z1, z2 = torch.randn(6, 8, generator=g, requires_grad=True), torch.randn(6, 8, generator=g, requires_grad=True)
    loss = simsiam_loss(p1, p2, z1, z2)
    # swapping the two views gives the same loss
    assert torch.allclose(loss, simsiam_loss(p2, p1, z2, z1))
    loss.backward()
    assert z1.grad is None and z2.grad is None  # stop-gradient: nothing reaches z
    assert p1.grad is not None and p1.grad.abs().sum() > 0 and p2.grad.abs().sum() > 0


def test_loss_values_at_the_extremes():
    z = torch.randn(4, 5)
    assert simsiam_loss(z, z, z, z).item() == pytest.approx(-1.0, abs=1e-6)
    assert simsiam_loss(z, z, -z, -z).item() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(simsiam_loss_per_sample(z, z, z, z), torch.full((4,), -1.0))


def test_head_dimensions_follow_the_paper_and_are_configurable():
    proj = SimSiamProjectionHead(2048, 2048)
    pred = SimSiamPredictionHead(2048, 512)
    assert [tuple(m.weight.shape) for m in proj if isinstance(m, torch.nn.Linear)] == [(2048, 2048)] * 3
    assert not proj[7].affine  # last BN without affine
    assert tuple(pred[0].weight.shape) == (512, 2048) and tuple(pred[3].weight.shape) == (2048, 512)
    small = SimSiamProjectionHead(576, 128)
    assert small(torch.randn(3, 576)).shape == (3, 128)
