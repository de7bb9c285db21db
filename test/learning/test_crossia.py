import torch

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
