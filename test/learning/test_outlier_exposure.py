import pytest
import torch

from ssl_nav.learning.backbones import IMAGENET_MEAN, IMAGENET_STD
from ssl_nav.learning.outlier_exposure import outlier_exposure_loss, recolour

MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def _rgb(x):
    return x * STD + MEAN


def _chroma(rgb):  # per image: mean distance of the pixels from grey
    return (rgb - rgb.mean(dim=1, keepdim=True)).abs().mean(dim=(1, 2, 3))


def test_recolour_tints_white_turns_colours_and_keeps_luma():
    white = torch.full((8, 3, 16, 16), 0.8)
    red = torch.zeros(8, 3, 16, 16)
    red[:, 0] = 0.7
    red[:, 1:] = 0.15
    x = (torch.cat([white, red]) - MEAN) / STD
    out = _rgb(recolour(x, torch.Generator().manual_seed(0)))
    assert out.shape == x.shape
    assert torch.all(_chroma(out[:8]) > 0.05)  # a white object comes out coloured (a white ball -> a mint one)
    assert torch.all((out[8:, 0] - out[8:, 1:].max(dim=1).values).mean(dim=(1, 2)) < 0.3)  # red is red no more
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    assert torch.allclose((out * luma).sum(1), (_rgb(x) * luma).sum(1), atol=0.12)  # a colour change, not dimming
    again = _rgb(recolour(x, torch.Generator().manual_seed(0)))
    assert torch.equal(out, again)  # seeded
    assert not torch.allclose(out[0], out[1], atol=1e-3)  # each image its own colour


def test_outlier_exposure_loss_is_zero_at_uniform_and_training_makes_the_classifier_uncertain():
    assert outlier_exposure_loss(torch.zeros(4, 5)).item() == pytest.approx(0.0, abs=1e-6)
    g = torch.Generator().manual_seed(0)
    centres = 3 * torch.randn(5, 8, generator=g)
    labels = torch.arange(5).repeat(8)
    inliers = centres[labels] + 0.3 * torch.randn(40, 8, generator=g)
    outliers = centres[labels] * -1 + 0.3 * torch.randn(40, 8, generator=g)  # away from every class
    def train(oe_weight):
        torch.manual_seed(0)
        c = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 5))
        opt = torch.optim.SGD(c.parameters(), lr=0.1)
        for _ in range(300):
            loss = torch.nn.functional.cross_entropy(c(inliers), labels) + oe_weight * outlier_exposure_loss(c(outliers))
            opt.zero_grad()
            loss.backward()
            opt.step()
        return c

    with_oe, without = train(1.0), train(0.0)
    confidence = lambda c, x: c(x).softmax(1).max(1).values.mean().item()  # noqa: E731
    assert confidence(with_oe, inliers) > 0.9 and confidence(without, inliers) > 0.9
    assert confidence(with_oe, outliers) < 0.5 < confidence(without, outliers)


def test_finetune_trains_the_classifier_on_recoloured_views(tiny_store, tmp_path, learning_config):
    from ssl_nav.learning.trainer import finetune

    kw = dict(epochs=2, holdout_fraction=0.0)
    on = finetune(tiny_store, tmp_path / "on", learning_config(recolour_oe_weight=1.0, **kw), progress=False)
    off = finetune(tiny_store, tmp_path / "off", learning_config(recolour_oe_weight=0.0, **kw), progress=False)
    assert all(m["loss_oe"] >= 0 for m in on.metrics) and "loss_oe" not in off.metrics[-1]
    assert on.metrics[0]["loss"] > on.metrics[0]["loss_ce"] + on.metrics[0]["loss_ssl"] - 1e-6  # the term counts
    assert not torch.allclose(on.model.classifier.weight, off.model.classifier.weight)
    no_clf = finetune(tiny_store, tmp_path / "noclf", learning_config(ce_weight=0.0, recolour_oe_weight=1.0, epochs=1),
                      progress=False)
    assert "loss_oe" not in no_clf.metrics[-1]  # nothing to expose without an instance classifier
