import torch
from testkit.training import sgd_steps

from ssl_nav.learning.crossia import DomainDiscriminator, InstanceClassifier, grad_reverse


def test_instance_classifier_init_follows_crossia():
    torch.manual_seed(0)
    clf = InstanceClassifier(512, 40)
    assert clf.weight.shape == (40, 512)
    assert abs(clf.weight.std().item() - 0.01) < 0.001 and torch.all(clf.bias == 0)


def test_gradient_reversal_flips_and_scales_the_gradient():
    x = torch.randn(4, 3, requires_grad=True)
    grad_reverse(x, 0.5).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, -0.5))
    feats = torch.randn(6, 8, requires_grad=True)
    disc = DomainDiscriminator(8, 4)
    loss = torch.nn.functional.cross_entropy(disc(feats), torch.tensor([0, 1] * 3))
    loss.backward()
    # the discriminator descends its loss, the features get the reversed gradient: ascend it
    feats2 = feats.detach().clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(disc.net(feats2), torch.tensor([0, 1] * 3)).backward()
    assert torch.allclose(feats.grad, -feats2.grad)


def test_domain_adversarial_run(tiny_store, tmp_path, learning_config):
    from ssl_nav.learning.trainer import finetune

    res = finetune(tiny_store, tmp_path / "run", learning_config(epochs=1, domain_adversarial=True), progress=False)
    assert "loss_domain" in res.metrics[-1] and res.model.discriminator is not None


def _domain_accuracy(model, x: torch.Tensor, dom: torch.Tensor) -> float:
    """On the batch as the trainer sees it (train mode: BatchNorm on batch statistics)."""
    with torch.no_grad():
        return float((model.discriminator(model.backbone(x)).argmax(1) == dom).float().mean())


def test_the_discriminator_learns_the_domain_and_the_backbone_unlearns_it(learning_config):
    """The adversarial game of CrossIA's domain loss on one fixed batch of sharp (HQ) and blurred (LQ) images:
    trained alone, the discriminator's accuracy rises above chance; trained alone through the gradient
    reversal, the backbone makes the domains harder to tell apart (the domain loss rises)."""
    from ssl_nav.learning.backbones import Backbone
    from ssl_nav.learning.trainer import FinetuneModel

    lc = learning_config(objective="none", ce_weight=0.0, domain_adversarial=True, domain_weight=1.0).learning
    torch.manual_seed(0)
    model = FinetuneModel(Backbone("resnet18"), lc, n_classes=1).train()
    g = torch.Generator().manual_seed(0)
    sharp = torch.rand(8, 3, 32, 32, generator=g)
    blurred = torch.nn.functional.avg_pool2d(torch.rand(8, 3, 32, 32, generator=g), 5, 1, 2)
    x = torch.cat([blurred, sharp])
    dom = torch.tensor([0] * 8 + [1] * 8)  # 0 = LQ robot view, 1 = HQ user photo
    batch = {"label": torch.zeros(16, dtype=torch.long), "dom1": dom, "dom2": dom}
    before = _domain_accuracy(model, x, dom)
    model.backbone.requires_grad_(False)
    d_losses = [p["loss_domain"] for p in sgd_steps(model, lc, x, x, batch, 6)]
    learned = _domain_accuracy(model, x, dom)
    assert d_losses[-1] < 0.5 * d_losses[0] and learned >= 0.9 and learned > before, (d_losses, before, learned)
    model.backbone.requires_grad_(True)
    model.discriminator.requires_grad_(False)
    b_losses = [p["loss_domain"] for p in sgd_steps(model, lc, x, x, batch, 5, lr=0.01)]
    assert b_losses[-1] > b_losses[0], b_losses  # the reversed gradient ascends the discriminator's loss
