"""Checkpoints and RNG state of a fine-tune: ``checkpoint.pt`` (docs/formats.md) and the start from an
official SimSiam checkpoint or a model.pt (``learning.init_checkpoint``).

``checkpoint.pt`` is written atomically with ``torch.save`` and read with ``torch.load(weights_only=True)``
(:func:`ssl_nav.learning.backbones.safe_load`): its RNG states are plain tensors, ints and lists, so no pickle
of arbitrary objects is needed to resume exactly.
"""

from __future__ import annotations

import io
import random
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ssl_nav.atomic import atomic_write_bytes
from ssl_nav.errors import CheckpointError, ConfigError
from ssl_nav.learning.backbones import (backbone_state_from_model, is_model_file, load_into, official_simsiam_parts,
                                        read_model, read_official_simsiam, safe_load)

CHECKPOINT_FORMAT = "ssl_nav.checkpoint/1"


def rng_state() -> dict:
    np_state = np.random.get_state(legacy=False)
    py = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                      "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                      "gauss": float(np_state["gauss"])},
            "python": {"version": py[0], "state": list(py[1]), "gauss": py[2]}}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937", "state": {"key": n["key"].numpy().astype(np.uint32),
                                                               "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def save_checkpoint(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    """Read ``checkpoint.pt``; a corrupt or foreign file raises CheckpointError naming it."""
    ckpt = safe_load(path, "checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an ssl_nav checkpoint (missing format '{CHECKPOINT_FORMAT}')")
    for key in ("model", "optimizer", "epoch", "step", "rng", "sampler", "config"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: missing key '{key}'")
    return ckpt


def load_init_checkpoint(model: nn.Module, spec: str) -> str:
    """Start ``model`` (a :class:`~ssl_nav.learning.trainer.FinetuneModel`) from an official SimSiam checkpoint
    or our model.pt: the backbone always, the projector and predictor when the objective has them and their shapes
    fit (an official SimSiam ResNet-50 checkpoint carries both)."""
    path = Path(spec)
    obj = safe_load(path, "init checkpoint")
    if is_model_file(obj):
        obj = read_model(path)
        if obj["backbone"] != model.backbone.name:
            raise ConfigError(f"learning.init_checkpoint: {path} is a {obj['backbone']} model, "
                              f"but learning.backbone is {model.backbone.name}")
        bstate = backbone_state_from_model(obj)
        heads = {h: {k[len(h) + 1:]: v for k, v in obj["state_dict"].items() if k.startswith(h + ".")}
                 for h in ("projector", "predictor")}
        kind = "model.pt"
    else:
        bstate, proj, pred = official_simsiam_parts(read_official_simsiam(path), path)
        heads, kind = {"projector": proj, "predictor": pred}, "official SimSiam checkpoint"
    load_into(model.backbone.net, bstate, path, "backbone")
    loaded = ["backbone"]
    for name, state in heads.items():
        mod = getattr(model, name)
        if mod is None or not state:
            continue
        own = mod.state_dict()
        if set(own) == set(state) and all(own[k].shape == v.shape for k, v in state.items()):
            mod.load_state_dict(state)
            loaded.append(name)
        else:
            warnings.warn(f"{path}: {name} weights do not fit this objective's head; {name} starts fresh")
    return f"{kind} ({', '.join(loaded)})"
