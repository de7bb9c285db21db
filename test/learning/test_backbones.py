from pathlib import Path

import pytest
import torch

from ssl_nav.config import LearningConfig
from ssl_nav.errors import CheckpointError
from ssl_nav.learning.backbones import (Backbone, imagenet_weights_path, load_encoder, read_model, save_model,
                                        state_dict_hash)
from ssl_nav.learning.trainer import FinetuneModel, load_init_checkpoint


def _official_resnet18_checkpoint(path: Path, proj_dim: int = 64, pred_hidden: int = 16) -> dict:
    """A file in the official SimSiam format: {'state_dict': {'module.encoder.*', 'module.predictor.*'}}."""
    from ssl_nav.learning.simsiam import SimSiamPredictionHead, SimSiamProjectionHead

    torch.manual_seed(123)
    bb = Backbone("resnet18")
    proj, pred = SimSiamProjectionHead(512, proj_dim), SimSiamPredictionHead(proj_dim, pred_hidden)
    state = {f"module.encoder.{k}": v for k, v in bb.net.state_dict().items()}
    state.update({f"module.encoder.fc.{k}": v for k, v in proj.state_dict().items()})
    state.update({f"module.predictor.{k}": v for k, v in pred.state_dict().items()})
    torch.save({"epoch": 100, "arch": "resnet18", "state_dict": state}, path)
    return state


def test_official_simsiam_checkpoint_loads_into_backbone_projector_and_predictor(tmp_path):
    ckpt = tmp_path / "checkpoint_0099.pth.tar"
    state = _official_resnet18_checkpoint(ckpt)
    lc = LearningConfig(backbone="resnet18", objective="simsiam", proj_dim=64, pred_hidden_dim=16)
    torch.manual_seed(0)
    model = FinetuneModel(Backbone("resnet18"), lc, n_classes=3)
    info = load_init_checkpoint(model, str(ckpt))
    assert "projector" in info and "predictor" in info
    assert torch.equal(model.backbone.net.layer4[1].conv2.weight, state["module.encoder.layer4.1.conv2.weight"])
    assert torch.equal(model.projector[6].weight, state["module.encoder.fc.6.weight"])
    assert torch.equal(model.predictor[3].weight, state["module.predictor.3.weight"])
    # the retrieval encoder of the same file is the backbone, recognised as resnet18
    enc = load_encoder(ckpt)
    assert enc.name == "resnet18" and enc.dim == 512 and not enc.backbone.training
    assert torch.equal(enc.backbone.net.conv1.weight, state["module.encoder.conv1.weight"])


def test_model_file_round_trip_with_weights_only_and_hash_check(tmp_path):
    torch.manual_seed(0)
    bb = Backbone("mobilenet_v3_small")
    state = {f"backbone.net.{k}": v for k, v in bb.net.state_dict().items()}
    path = tmp_path / "model.pt"
    digest = save_model(path, state, backbone="mobilenet_v3_small", embedding_dim=576, image_size=64,
                        config={"epochs": 1})
    obj = torch.load(path, weights_only=True)  # plain tensors and JSON-able values only
    assert obj["content_hash"] == digest == state_dict_hash(obj["state_dict"])
    enc = load_encoder(path)
    assert enc.model_hash == digest and enc.dim == 576 and enc.image_size == 64
    with torch.no_grad():
        out = enc.backbone(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 576)
    obj["state_dict"]["backbone.net.features.0.0.weight"] += 1.0
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="content hash"):
        read_model(path)


def test_corrupt_model_file_names_the_file(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match=str(bad)):
        load_encoder(bad)


@pytest.mark.parametrize("name,stage_param", [("resnet18", "layer4.0.conv1.weight"),
                                              ("mobilenet_v2", "features.14.conv.0.0.weight")])
def test_last_stage_mode_trains_only_the_last_stage(name, stage_param):
    bb = Backbone(name)
    bb.set_trainable("last")
    trainable = {k for k, p in bb.net.named_parameters() if p.requires_grad}
    assert stage_param in trainable
    assert not any(k.startswith(("conv1", "layer1", "layer3", "features.0.", "features.13.")) for k in trainable)
    bb.set_trainable("heads")
    assert not any(p.requires_grad for p in bb.parameters())
    bb.set_trainable("all")
    assert all(p.requires_grad for p in bb.parameters())


def test_mobilenet_v2_imagenet_baseline_encoder():
    if imagenet_weights_path("mobilenet_v2") is None:
        pytest.skip("models/mobilenet_v2-b0353104.pth not installed (scripts/setup.sh places it)")
    enc = load_encoder("mobilenet_v2")
    assert enc.source == "imagenet" and enc.dim == 1280 and not enc.backbone.training
    ref = torch.load(imagenet_weights_path("mobilenet_v2"), weights_only=True)
    assert torch.equal(enc.backbone.net.features[0][0].weight, ref["features.0.0.weight"])
    assert enc.model_hash == load_encoder("mobilenet_v2").model_hash


def test_safe_load_names_an_empty_file_and_explains_a_refused_pickle(tmp_path):
    """A 0-byte file is a CheckpointError, not an IndexError; a pickle refused for safety says so in full."""
    import pickle

    from ssl_nav.errors import CheckpointError
    from ssl_nav.learning.backbones import safe_load

    (tmp_path / "model.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"model.pt: cannot load model: the file is empty"):
        safe_load(tmp_path / "model.pt", "model")
    torch.save({"w": torch.zeros(2), "opt": pickle.PickleError("x")}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError) as e:
        safe_load(tmp_path / "checkpoint.pt")
    msg = str(e.value)
    assert "refused for safety" in msg and "pickle.PickleError" in msg and "torch.save(model.state_dict()" in msg
    assert "weights_only` set to `False`" not in msg
    (tmp_path / "cut.pt").write_bytes((tmp_path / "checkpoint.pt").read_bytes()[:50])
    with pytest.raises(CheckpointError, match="cut.pt: cannot load checkpoint"):
        safe_load(tmp_path / "cut.pt")


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18"])
def test_frozen_stem_is_the_same_function_and_refuses_stale_weights(name):
    from ssl_nav.learning.backbones import Backbone, FrozenStem

    torch.manual_seed(0)
    bb = Backbone(name)
    for m in bb.modules():  # non-trivial BatchNorm statistics, so that folding them matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    bb.set_trainable("last")
    bb.train()
    x = torch.randn(2, 3, 64, 64)
    stem = FrozenStem(bb)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in stem.fused.modules())
    assert torch.allclose(stem(x), bb.stem(x), atol=1e-4, rtol=1e-4)
    assert bb._prefix[0].training is False and bb._last[0].training is True  # modes untouched
    with torch.no_grad():
        next(bb._prefix[0].parameters()).mul_(2.0)  # e.g. a checkpoint loaded after fusing
    with pytest.raises(RuntimeError, match="changed"):
        stem(x)
    bb.set_trainable("all")
    with pytest.raises(ValueError):
        FrozenStem(bb)


def test_frozen_stem_does_not_disturb_models_running_in_other_threads():
    """ros-stack runs the retrieval server's encoder next to a fine-tune; building the folded stem must not
    patch ``nn.Module.__call__`` (torch.fx tracing does, process-wide)."""
    import threading

    from ssl_nav.learning.backbones import Backbone, FrozenStem

    bb = Backbone("resnet18")
    bb.set_trainable("last")
    other = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
    errors: list[BaseException] = []
    done = threading.Event()

    def serve():
        while not done.is_set():
            try:
                other(torch.randn(1, 4))
            except BaseException as e:  # noqa: BLE001 - collected and asserted below
                errors.append(e)
                return

    t = threading.Thread(target=serve)
    t.start()
    try:
        for _ in range(5):
            FrozenStem(bb)
    finally:
        done.set()
        t.join()
    assert errors == []


def test_fold_batchnorm_refuses_a_pairing_that_forward_does_not_follow():
    from ssl_nav.learning.backbones import fold_batchnorm

    class Crossed(torch.nn.Module):  # the BatchNorm is registered after the conv but normalises the input
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(3)

        def forward(self, x):
            return self.conv(self.bn(x))

    m = Crossed()
    m.bn.running_mean.uniform_(-1, 1)
    with pytest.raises(ValueError, match="same function"):
        fold_batchnorm(m)
