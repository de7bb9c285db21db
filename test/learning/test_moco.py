import math

import pytest
import torch
import torch.nn.functional as F

from ssl_nav.learning.moco import KeyQueue, MoCoProjectionHead, info_nce_per_sample, momentum_update, queue_size


def test_queue_is_a_ring_buffer_of_normalised_keys_with_labels():
    q = KeyQueue(5, 3, seed=0)
    assert torch.allclose(q.keys.norm(dim=1), torch.ones(5)) and (q.labels == -1).all()
    q.enqueue(torch.tensor([[2.0, 0, 0], [0, 3.0, 0], [0, 0, 4.0]]), torch.tensor([7, 8, 9]))
    assert q.labels.tolist() == [7, 8, 9, -1, -1] and int(q.ptr) == 3
    assert torch.equal(q.keys[:3], torch.eye(3))
    q.enqueue(torch.ones(3, 3), torch.tensor([1, 2, 3]))  # wraps around: the oldest entries go first
    assert q.labels.tolist() == [3, 8, 9, 1, 2] and int(q.ptr) == 1
    assert "keys" in q.state_dict() and "ptr" in q.state_dict()  # travels with the model's checkpoint
    with pytest.raises(ValueError):
        q.enqueue(torch.ones(6, 3), torch.zeros(6, dtype=torch.long))


def test_info_nce_matches_a_hand_computation_and_masks_same_instance_keys():
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[1.0, 1.0]])
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0], [1.0, 0.0]])
    t = 0.5
    pos, negs = 1 / math.sqrt(2), [0.0, -1.0, 1.0]
    expected = -math.log(math.exp(pos / t) / (math.exp(pos / t) + sum(math.exp(n / t) for n in negs)))
    assert info_nce_per_sample(q, k, queue, t).item() == pytest.approx(expected, rel=1e-5)
    # the third queue entry is a view of the anchor's own instance: not a negative
    masked = -math.log(math.exp(pos / t) / (math.exp(pos / t) + sum(math.exp(n / t) for n in negs[:2])))
    got = info_nce_per_sample(q, k, queue, t, torch.tensor([4]), torch.tensor([1, 2, 4]))
    assert got.item() == pytest.approx(masked, rel=1e-5)
    # gradient reaches the query only
    qq, kk = q.clone().requires_grad_(True), k.clone().requires_grad_(True)
    info_nce_per_sample(qq, kk, queue, t).sum().backward()
    assert qq.grad is not None and kk.grad is None


def test_momentum_update_is_an_exponential_moving_average():
    torch.manual_seed(0)
    query, key = MoCoProjectionHead(4, 2), MoCoProjectionHead(4, 2)
    k0 = [p.clone() for p in key.parameters()]
    momentum_update(key, query, 0.9)
    for p0, pk, pq in zip(k0, key.parameters(), query.parameters()):
        assert torch.allclose(pk, 0.9 * p0 + 0.1 * pq)
    assert [tuple(m.weight.shape) for m in query if isinstance(m, torch.nn.Linear)] == [(4, 4), (2, 4)]


def test_queue_is_scaled_to_the_store():
    assert queue_size(65536, 300, 64) == 300
    assert queue_size(65536, 20, 64) == 64  # at least one enqueue
    assert queue_size(128, 300, 64) == 128


def test_moco_run_trains_the_query_encoder_and_follows_it_with_the_key_encoder(tiny_store, tmp_path,
                                                                                learning_config):
    from ssl_nav.learning.trainer import finetune

    cfg = learning_config(epochs=2, objective="moco", moco_dim=16, moco_momentum=0.5, holdout_fraction=0.0)
    res = finetune(tiny_store, tmp_path / "run", cfg, progress=False)
    m = res.model
    assert m.queue.size == 16 and (m.queue.labels >= 0).all()  # 16 views; every entry now a real key
    assert not any(p.requires_grad for p in m.key_encoder.parameters())
    kq = m.key_encoder[1][2].weight
    assert not torch.equal(kq, m.projector[2].weight)  # a moving average, not a copy
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert {"queue.keys", "queue.labels", "queue.ptr", "key_encoder.1.2.weight"} <= set(ckpt["model"])
    assert all(math.isfinite(x["loss"]) and "loss_ssl" in x and "loss_ce" in x for x in res.metrics)
    assert F.normalize(m.queue.keys, dim=1).norm(dim=1).allclose(torch.ones(16))


def test_keys_from_the_shared_frozen_stem_equal_a_full_key_encoder_pass(learning_config):
    from ssl_nav.learning.backbones import Backbone
    from ssl_nav.learning.trainer import FinetuneModel

    lc = learning_config(objective="moco", moco_dim=16, trainable="last").learning
    torch.manual_seed(0)
    model = FinetuneModel(Backbone("resnet18"), lc, n_classes=3, n_train_views=8)
    model.backbone.set_trainable("last")
    model.sync_key_encoder()
    model.key_encoder[0].set_trainable("last")
    model.key_encoder.requires_grad_(False)
    with torch.no_grad():
        for p in model.backbone.net.layer4.parameters():
            p.add_(0.1)  # the query's last stage moves; the EMA moves the key's; the frozen stem stays equal
    momentum_update(model.key_encoder, torch.nn.Sequential(model.backbone, model.projector), 0.5)
    assert torch.equal(model.key_encoder[0].net.conv1.weight, model.backbone.net.conv1.weight)
    model.eval()
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        shared = model.keys(x, model.backbone.stem(x))
        full = model.key_encoder(x)
    assert torch.allclose(shared, full, atol=1e-6)
    assert not torch.allclose(full, model.projector(model.backbone(x)), atol=1e-3)  # a different encoder
