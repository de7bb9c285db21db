"""torchvision backbones as pooled feature extractors, their weights, and partial fine-tuning.

The retrieval embedding of SimView (arXiv 2404.09647) is the backbone output *before* the SimSiam projector,
L2-normalised by the caller. :class:`Backbone` maps an ImageNet-normalised (B, 3, H, W) float tensor to
(B, dim) pooled features.

Weights:

- ``mobilenet_v2`` starts from torchvision's ImageNet weights, the file ``mobilenet_v2-b0353104.pth`` in the
  models directory. The models directory is, first match wins: the ``models_dir`` argument, the
  ``SSL_NAV_MODELS_DIR`` environment variable, ``models/`` in the source tree (next to ``ssl_nav/``), and
  ``<prefix>/share/ssl_nav/models`` of the Python installation (colcon / ament install space).
- An official SimSiam checkpoint (``checkpoint_0099.pth.tar``: ``state_dict`` with ``module.encoder.*`` =
  torchvision ResNet + projector as ``module.encoder.fc.*``, and ``module.predictor.*``) loads into the
  backbone, the projector and the predictor (:func:`load_official_simsiam`).
- Our own ``model.pt`` (written by :mod:`ssl_nav.learning.trainer`, see :func:`save_model`).

Every file is read with ``torch.load(..., weights_only=True)``.

Partial fine-tuning (CrossIA, arXiv 2404.09645, trains only the last backbone stage): ``trainable`` is
``last`` (the modules after the backbone's last stride-2 downsampling, i.e. ResNet ``layer4`` or the
stride-32 MobileNet blocks plus the final 1x1 conv), ``all``, or ``heads`` (the backbone is frozen). Frozen
modules are kept in eval mode, so their BatchNorm statistics do not move either, and they run under
``torch.no_grad`` so no activations are stored for them.
"""

from __future__ import annotations

import copy
import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssl_nav.errors import CheckpointError, ConfigError

BACKBONES: tuple[str, ...] = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "resnet18", "resnet50")
FEATURE_DIMS: dict[str, int] = {"mobilenet_v2": 1280, "mobilenet_v3_small": 576, "mobilenet_v3_large": 960,
                                "resnet18": 512, "resnet50": 2048}
#: ImageNet weight files (torchvision format) looked up in the models directory
WEIGHT_FILES: dict[str, str] = {"mobilenet_v2": "mobilenet_v2-b0353104.pth"}
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
TRAINABLE_MODES: tuple[str, ...] = ("last", "all", "heads")
MODEL_FORMAT = "ssl_nav.model/1"


def models_dir(explicit: str | Path | None = None) -> Path | None:
    """The directory holding weight files (see the module docstring for the search order); None if none exists."""
    candidates: list[Path] = []
    if explicit is not None:
        return Path(explicit)
    if os.environ.get("SSL_NAV_MODELS_DIR"):
        candidates.append(Path(os.environ["SSL_NAV_MODELS_DIR"]))
    candidates.append(Path(__file__).resolve().parents[2] / "models")
    candidates.append(Path(sys.prefix) / "share" / "ssl_nav" / "models")
    for c in candidates:
        if c.is_dir():
            return c
    return None


def imagenet_weights_path(name: str, models: str | Path | None = None) -> Path | None:
    """Path of the ImageNet weight file of backbone ``name``, or None when there is none."""
    fname = WEIGHT_FILES.get(name)
    d = models_dir(models)
    if fname is None or d is None or not (d / fname).is_file():
        return None
    return d / fname


def _torchvision_model(name: str) -> nn.Module:
    import torchvision.models as tvm

    if name not in BACKBONES:
        raise ConfigError(f"learning.backbone: unknown backbone {name!r} (known: {', '.join(BACKBONES)})")
    return getattr(tvm, name)(weights=None)


def _last_stride2_index(seq: nn.Sequential) -> int:
    """Index of the last block of ``seq`` that contains a stride-2 convolution."""
    last = 0
    for i, block in enumerate(seq):
        if any(isinstance(m, nn.Conv2d) and tuple(m.stride) == (2, 2) for m in block.modules()):
            last = i
    return last


class Backbone(nn.Module):
    """A torchvision classifier with its head removed: (B,3,H,W) -> (B, dim) pooled features.

    ``net`` is the torchvision model itself (classifier / fc replaced by Identity), so its state_dict keys are
    torchvision's and official checkpoints map onto it directly.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.dim = FEATURE_DIMS[name]
        net = _torchvision_model(name)
        if name.startswith("resnet"):
            net.fc = nn.Identity()
            self._prefix = [net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3]
            self._last = [net.layer4]
        else:
            net.classifier = nn.Identity()
            cut = _last_stride2_index(net.features)
            self._prefix = list(net.features[:cut])
            self._last = list(net.features[cut:])
        self.net = net
        self.trainable = "all"

    # -- forward ---------------------------------------------------------------------------------------------
    def _run(self, modules: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
        for m in modules:
            x = m(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stem(x))

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """The modules before the last stage; without gradient when they are frozen (``last``, ``heads``)."""
        if self.trainable == "all":
            return self._run(self._prefix, x)
        with torch.no_grad():
            return self._run(self._prefix, x)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """The last stage and global average pooling; without gradient when frozen (``heads``)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.trainable != "heads"):
            h = self._run(self._last, h)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1)

    # -- partial fine-tuning ----------------------------------------------------------------------------------
    def frozen_modules(self) -> list[nn.Module]:
        """The modules whose parameters do not train under the current ``trainable`` mode."""
        if self.trainable == "all":
            return []
        if self.trainable == "last":
            return list(self._prefix)
        return list(self._prefix) + list(self._last)

    def set_trainable(self, mode: str) -> None:
        """``last`` | ``all`` | ``heads``: set ``requires_grad`` and keep frozen modules in eval mode."""
        if mode not in TRAINABLE_MODES:
            raise ConfigError(f"learning.trainable: must be one of {', '.join(TRAINABLE_MODES)}; got {mode!r}")
        self.trainable = mode
        for p in self.parameters():
            p.requires_grad_(True)
        for m in self.frozen_modules():
            for p in m.parameters():
                p.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> "Backbone":
        super().train(mode)
        for m in self.frozen_modules():
            m.eval()
        return self


def fold_batchnorm(module: nn.Module, check_size: int = 64) -> nn.Module:
    """An eval-mode copy of ``module`` with every ``BatchNorm2d`` that directly follows a ``Conv2d`` among
    its parent's children (torchvision's ``Conv2dNormActivation``, ResNet blocks' ``convN``/``bnN``, the
    ``downsample`` pair) folded into that convolution, and the BatchNorm replaced by ``nn.Identity``.

    No tracing: ``torch.fx`` patches ``nn.Module.__call__`` process-wide while it traces, which breaks a
    model running in another thread (the retrieval server next to a fine-tune in ``ros-stack``). Pairing by
    registration order is a guess about ``forward``, so the copy is checked against the original on a random
    ``(1, 3, check_size, check_size)`` input, and a mismatch raises ``ValueError``.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(module).eval()
    for parent in list(fused.modules()):
        children = list(parent.named_children())
        for (name_a, a), (name_b, b) in zip(children, children[1:]):
            if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) and b.track_running_stats:
                setattr(parent, name_a, fuse_conv_bn_eval(a, b))
                setattr(parent, name_b, nn.Identity())
    was = module.training
    module.eval()
    try:
        with torch.no_grad():
            p = next(module.parameters(), None)
            x = torch.randn(1, 3, check_size, check_size, generator=torch.Generator().manual_seed(0))
            x = x.to(p.device) if p is not None else x
            ref, out = module(x), fused(x)
    finally:
        module.train(was)
    if not torch.allclose(out, ref, rtol=1e-3, atol=1e-3 * float(ref.abs().max().clamp(min=1.0))):
        raise ValueError("fold_batchnorm: the folded copy does not compute the same function (a BatchNorm "
                         "registered after a Conv2d it does not follow in forward)")
    return fused


class FrozenStem:
    """The frozen stem of a partially fine-tuned backbone (``trainable: last`` or ``heads``) as an inference
    copy with each BatchNorm folded into the convolution before it: the same function (frozen modules run in
    eval mode, so BatchNorm is a fixed affine map), one pass over the activations fewer per layer.

    The copy is only valid while the stem's weights are those it was made from: every parameter and buffer's
    ``_version`` (bumped by any in-place write: ``load_state_dict``, ``copy_``, an optimiser) is recorded, and a
    call after a change raises instead of computing with stale weights. Build it after the weights are final
    (after ``init_checkpoint`` and ``resume``). The copy is not part of any state_dict: checkpoints and
    ``model.pt`` keep the unfused weights.
    """

    def __init__(self, backbone: Backbone) -> None:
        if backbone.trainable == "all":
            raise ValueError("FrozenStem: the stem of a backbone with trainable 'all' trains")
        self.backbone = backbone
        stem = nn.Sequential(*backbone._prefix)
        was = [m.training for m in backbone._prefix]
        stem.eval()
        try:
            self.fused = fold_batchnorm(stem)
        finally:
            for m, t in zip(backbone._prefix, was):
                m.train(t)
        self.fused.requires_grad_(False)
        self._versions = self._state_versions()

    def _state_versions(self) -> list[int]:
        return [t._version for m in self.backbone._prefix for t in (*m.parameters(), *m.buffers())]

    def to(self, *args: Any, **kwargs: Any) -> "FrozenStem":
        self.fused.to(*args, **kwargs)
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._state_versions() != self._versions:
            raise RuntimeError("FrozenStem: the backbone's frozen stem changed after the fused copy was made; "
                               "build a new FrozenStem")
        with torch.no_grad():
            return self.fused(x)


# ---------------------------------------------------------------------------------------------------------
# files


def safe_load(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on CPU; any failure becomes a CheckpointError naming the file."""
    import pickle

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: {what} not found")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: cannot load {what}: the file is empty (0 bytes; a copy or a save that was cut "
                              f"short?)")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        if "weights_only" in text or "Weights only load failed" in text:
            detail = next((ln.strip() for ln in text.splitlines() if "Unsupported global" in ln), "")
            detail = detail.split(" was not an allowed global")[0].replace("WeightsUnpickler error: ", "")
            raise CheckpointError(
                f"{p}: {what} refused for safety: it holds pickled Python objects"
                + (f" ({detail})" if detail else "") + ", and ssl_nav only loads tensors and plain containers "
                "(torch.load with weights_only=True), since unpickling can run arbitrary code. To get a safe file, "
                "re-save only the weights from a Python session you trust, e.g. "
                "torch.save(model.state_dict(), 'weights.pt'), or write model.pt with `ssl-nav finetune`") from None
        raise CheckpointError(f"{p}: cannot load {what} ({type(e).__name__}: {_first_line(e)})") from None
    except Exception as e:  # corrupt zip, truncated file, ...
        raise CheckpointError(f"{p}: cannot load {what} ({type(e).__name__}: {_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return lines[0][:200] if lines else "truncated or corrupt file"


def state_dict_hash(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the sorted keys, dtypes, shapes and raw bytes of a state_dict: the model's content hash."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().to("cpu").contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def load_imagenet_weights(backbone: Backbone, models: str | Path | None = None) -> bool:
    """Load the backbone's ImageNet weights from the models directory; False when there is no file for it."""
    path = imagenet_weights_path(backbone.name, models)
    if path is None:
        return False
    state = safe_load(path, "ImageNet weights")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state_dict, got {type(state).__name__}")
    state = {k: v for k, v in state.items() if not k.startswith(("classifier.", "fc."))}
    load_into(backbone.net, state, path, "backbone")
    return True


def load_into(module: nn.Module, state: dict[str, torch.Tensor], path: Path | str, part: str) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{path}: {part} keys do not match: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(f"{path}: {part} key '{k}' has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
    module.load_state_dict(state)


def official_simsiam_parts(state: dict[str, torch.Tensor], path: str | Path) -> tuple[dict, dict, dict]:
    """Split an official SimSiam state_dict into (backbone, projector, predictor) dicts with our key names."""
    backbone, projector, predictor = {}, {}, {}
    for k, v in state.items():
        if k.startswith("module.encoder.fc."):
            projector[k[len("module.encoder.fc."):]] = v
        elif k.startswith("module.encoder."):
            backbone[k[len("module.encoder."):]] = v
        elif k.startswith("module.predictor."):
            predictor[k[len("module.predictor."):]] = v
        else:
            raise CheckpointError(f"{path}: unexpected key '{k}' in an official SimSiam checkpoint")
    if not backbone:
        raise CheckpointError(f"{path}: no 'module.encoder.*' keys: not an official SimSiam checkpoint")
    return backbone, projector, predictor


def guess_backbone_name(backbone_state: dict[str, torch.Tensor]) -> str | None:
    """Which torchvision backbone a state_dict (torchvision keys) belongs to, by its keys and shapes."""
    for name in BACKBONES:
        own = Backbone(name).net.state_dict()
        if set(own) == set(backbone_state) and all(tuple(own[k].shape) == tuple(v.shape)
                                                     for k, v in backbone_state.items()):
            return name
    return None


def read_official_simsiam(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of an official SimSiam checkpoint file (or a bare state_dict with those keys), or of a
    plain torchvision backbone (``torch.save(model.state_dict())``, the advice :func:`safe_load` gives for a
    pickled model), whose ImageNet head (``classifier.*``, ``fc.*``) is dropped and whose keys are put under
    ``module.encoder.``; the caller then checks them against the backbone."""
    ckpt = safe_load(path, "SimSiam checkpoint")
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values()) \
            and not any(str(k).startswith("module.") for k in state):
        return {f"module.encoder.{k}": v for k, v in state.items() if not str(k).startswith(("classifier.", "fc."))}
    if not isinstance(state, dict) or not any(str(k).startswith("module.encoder.") for k in state):
        raise CheckpointError(f"{path}: neither an official SimSiam checkpoint (a state_dict with 'module.encoder.*' "
                              f"keys) nor a backbone's state_dict (torch.save(model.state_dict()) of a torchvision "
                              f"{' / '.join(BACKBONES)}), nor a model.pt of `ssl-nav finetune`")
    return state


def is_model_file(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == MODEL_FORMAT


# ---------------------------------------------------------------------------------------------------------
# our model.pt


def save_model(path: str | Path, state_dict: dict[str, torch.Tensor], *, backbone: str, embedding_dim: int,
               image_size: int, config: dict, extra: dict | None = None) -> str:
    """Write ``model.pt`` atomically: plain tensors and JSON-able values only; returns the content hash.

    ``state_dict`` holds ``backbone.net.*`` (the encoder) and optionally ``projector.*`` / ``predictor.*`` and the
    instance classifier ``classifier.weight`` / ``classifier.bias`` (with ``extra["class_ids"]``, see
    :func:`read_classifier`).
    """
    import io

    from ssl_nav.atomic import atomic_write_bytes

    state = {k: v.detach().to("cpu").clone() for k, v in state_dict.items()}
    digest = state_dict_hash(state)
    obj = {"format": MODEL_FORMAT, "backbone": backbone, "embedding_dim": int(embedding_dim),
           "image_size": int(image_size), "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
           "config": config, "content_hash": digest, "state_dict": state, **(extra or {})}
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())
    return digest


def read_model(path: str | Path, verify: bool = True) -> dict:
    """Read and check a ``model.pt``; the content hash is recomputed when ``verify``."""
    obj = safe_load(path, "model")
    if not is_model_file(obj):
        raise CheckpointError(f"{path}: not an ssl_nav model.pt (missing format '{MODEL_FORMAT}')")
    for key in ("backbone", "embedding_dim", "state_dict", "content_hash"):
        if key not in obj:
            raise CheckpointError(f"{path}: missing key '{key}'")
    if verify and state_dict_hash(obj["state_dict"]) != obj["content_hash"]:
        raise CheckpointError(f"{path}: content hash mismatch: the weights were modified or the file is corrupt")
    return obj


def backbone_state_from_model(obj: dict) -> dict[str, torch.Tensor]:
    prefix = "backbone.net."
    return {k[len(prefix):]: v for k, v in obj["state_dict"].items() if k.startswith(prefix)}


def read_classifier(model_obj: dict, path: str | Path = "model.pt"
                    ) -> tuple[torch.Tensor, torch.Tensor, list[str]] | None:
    """The CrossIA instance classifier of a ``model.pt`` (as :func:`read_model` returns it): ``(weight, bias,
    class_ids)`` with weight (n_instances, embedding_dim) over the raw backbone features, bias (n_instances,)
    and the instance id of each row; None when the run trained no classifier (``learning.ce_weight: 0``, a
    single-instance store, or a model.pt from before the classifier was exported).

    Raises CheckpointError naming ``path`` when the classifier is there but its shapes or ``class_ids`` do not fit.
    """
    state = model_obj.get("state_dict", {})
    weight, bias = state.get("classifier.weight"), state.get("classifier.bias")
    if weight is None and bias is None:
        return None
    ids = model_obj.get("class_ids")
    dim = model_obj.get("embedding_dim")
    if weight is None or bias is None or weight.ndim != 2 or tuple(bias.shape) != (weight.shape[0],):
        raise CheckpointError(f"{path}: classifier.weight / classifier.bias missing or of mismatched shapes")
    if dim is not None and weight.shape[1] != int(dim):
        raise CheckpointError(f"{path}: classifier.weight has {weight.shape[1]} inputs, the embedding has {dim}")
    if not isinstance(ids, list) or len(ids) != weight.shape[0]:
        raise CheckpointError(f"{path}: class_ids must list the instance id of each of the {weight.shape[0]} "
                              f"classifier rows")
    return weight, bias, [str(i) for i in ids]


# ---------------------------------------------------------------------------------------------------------
# the encoder for retrieval


@dataclass
class LoadedEncoder:
    """A backbone ready to embed: ImageNet-normalised (B,3,H,W) float -> (B, dim) features (eval mode)."""

    backbone: nn.Module
    name: str
    dim: int
    model_hash: str
    image_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    source: str = ""
    info: dict = field(default_factory=dict)


def build_backbone(name: str, pretrained: bool = True, models: str | Path | None = None) -> tuple[Backbone, bool]:
    """A fresh backbone; with ImageNet weights when ``pretrained`` and the file exists. Returns (backbone, loaded)."""
    bb = Backbone(name)
    loaded = load_imagenet_weights(bb, models) if pretrained else False
    return bb, loaded


def load_encoder(spec: str | Path, device: str | torch.device = "cpu",
                 models_dir: Path | None = None) -> LoadedEncoder:
    """The retrieval encoder named by ``spec``, in eval mode on ``device``.

    ``spec`` is a bare backbone name (ImageNet weights when available, else random weights with seed 0: the
    baseline), a ``model.pt`` of ours (content hash verified), or an official SimSiam checkpoint (its encoder
    minus the projector). ``model_hash`` identifies the weights (sha256 of the backbone state_dict for names and
    official checkpoints, the file's content hash for ``model.pt``).
    """
    spec_s = str(spec)
    if spec_s in BACKBONES:
        with torch.random.fork_rng(devices=[]):  # the caller's RNG stream is left alone
            torch.manual_seed(0)
            bb, loaded = build_backbone(spec_s, pretrained=True, models=models_dir)
        digest = state_dict_hash(bb.net.state_dict())
        enc = LoadedEncoder(bb, spec_s, bb.dim, digest, source="imagenet" if loaded else "random(seed=0)")
    else:
        path = Path(spec_s)
        if not path.is_file():
            raise CheckpointError(f"{path}: no such model file, and not a backbone name ({', '.join(BACKBONES)})")
        obj = safe_load(path, "model")
        if is_model_file(obj):
            obj = read_model(path)
            bb = Backbone(obj["backbone"])
            load_into(bb.net, backbone_state_from_model(obj), path, "backbone")
            enc = LoadedEncoder(bb, obj["backbone"], int(obj["embedding_dim"]), obj["content_hash"],
                                image_size=int(obj.get("image_size", 224)),
                                mean=tuple(obj.get("mean", IMAGENET_MEAN)), std=tuple(obj.get("std", IMAGENET_STD)),
                                source="model.pt", info={"config": obj.get("config", {})})
        else:
            state = read_official_simsiam(path)
            bstate, _, _ = official_simsiam_parts(state, path)
            name = guess_backbone_name(bstate)
            if name is None:
                raise CheckpointError(f"{path}: encoder keys match none of the backbones {', '.join(BACKBONES)}")
            bb = Backbone(name)
            load_into(bb.net, bstate, path, "backbone")
            enc = LoadedEncoder(bb, name, bb.dim, state_dict_hash(bb.net.state_dict()), source="simsiam-official")
    enc.backbone.to(device).eval()
    for p in enc.backbone.parameters():
        p.requires_grad_(False)
    return enc
