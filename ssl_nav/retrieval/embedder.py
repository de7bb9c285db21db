"""Image → retrieval embedding: the backbone's pooled features before the projector, L2-normalised (SimView,
arXiv 2404.09647, retrieves with the SimSiam encoder output, not the projector output).

Images (uint8 RGB, any size) are resized to
``RetrievalConfig.image_size`` squared (the stored views are already square crops; a query photo is squashed,
as the CrossIA evaluation resize does), scaled to [0, 1] and normalised with the encoder's mean/std. The model
runs in eval mode under ``torch.inference_mode`` in batches of ``RetrievalConfig.batch_size`` on
``RetrievalConfig.device`` (``auto``: CUDA when available; :func:`ssl_nav.device.resolve_device`). With
``flip_tta`` the unit embeddings of the image and of its horizontal mirror are averaged, then normalised.

:meth:`Embedder.encode` also returns the raw pooled features (before normalisation; with ``flip_tta`` the
mean of both), which the open-set scores that need them read: their norm (Draganov et al., ICML 2025, arXiv
2502.09252) and, through the CrossIA instance classifier stored in ``model.pt``, max-logit / energy / max
softmax (:mod:`ssl_nav.retrieval.openset`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ssl_nav.config import RetrievalConfig
from ssl_nav.errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    from ssl_nav.learning.backbones import LoadedEncoder
    from ssl_nav.views.store import ViewStore


@dataclass
class InstanceClassifierHead:
    """CrossIA's linear instance classifier over the raw pooled features (``logits = f·Wᵀ + b``).

    Read from ``model.pt`` (``state_dict`` keys ``classifier.weight`` / ``classifier.bias``; row ``k`` is the
    instance ``class_ids[k]`` of the store the model was fine-tuned on).
    """

    weight: np.ndarray  #: (n_classes, dim) float32
    bias: np.ndarray  #: (n_classes,) float32
    class_ids: list[str]

    def logits(self, features: np.ndarray) -> np.ndarray:
        """(N, n_classes) logits of raw (un-normalised) features (N, dim)."""
        return np.asarray(features, dtype=np.float32) @ self.weight.T + self.bias


def read_classifier(path: str | os.PathLike, expected_hash: str | None = None) -> InstanceClassifierHead | None:
    """The instance classifier stored in a ``model.pt``, or ``None`` when it has none (e.g. a backbone name,
    an official SimSiam checkpoint, or a model trained without CrossIA)."""
    from ssl_nav.learning.backbones import BACKBONES, is_model_file, safe_load

    if str(path) in BACKBONES or not Path(path).is_file():
        return None
    obj = safe_load(path, "model")
    if not is_model_file(obj):
        return None
    if expected_hash is not None and obj.get("content_hash") != expected_hash:
        raise CheckpointError(f"{path}: changed while it was being loaded (content hash differs); load it again")
    state = obj.get("state_dict") or {}
    w, b = state.get("classifier.weight"), state.get("classifier.bias")
    if w is None or b is None:
        return None
    ids = obj.get("class_ids", (obj.get("extra") or {}).get("class_ids"))
    if ids is None:
        ids = [str(i) for i in range(int(w.shape[0]))]
    if w.ndim != 2 or b.shape != (w.shape[0],) or len(ids) != w.shape[0]:
        raise CheckpointError(f"{path}: 'classifier.weight' {tuple(w.shape)}, 'classifier.bias' {tuple(b.shape)} "
                              f"and {len(ids)} class_ids do not agree")
    return InstanceClassifierHead(w.float().numpy().astype(np.float32), b.float().numpy().astype(np.float32),
                                  [str(i) for i in ids])


def read_self_calibration(path: str | os.PathLike) -> dict | None:
    """The open-set thresholds fitted at fine-tune time and stored in a ``model.pt``
    (:mod:`ssl_nav.learning.selfcalib`), or None (a backbone name, an older model.pt)."""
    from ssl_nav.learning.backbones import BACKBONES, is_model_file, safe_load
    from ssl_nav.learning.selfcalib import read_self_calibration as read_record

    if str(path) in BACKBONES or not Path(path).is_file():
        return None
    obj = safe_load(path, "model")
    return read_record(obj) if is_model_file(obj) else None


class Embedder:
    """Batched, L2-normalised embeddings of RGB images with a :class:`LoadedEncoder` (and its classifier)."""

    def __init__(self, encoder: "LoadedEncoder", cfg: RetrievalConfig | None = None,
                 classifier: InstanceClassifierHead | None = None, spec: str | None = None) -> None:
        import torch

        from ssl_nav.device import resolve_device

        self.cfg = cfg or RetrievalConfig()
        self.encoder = encoder
        self.device = resolve_device(self.cfg.device, "retrieval.device")
        self.model = encoder.backbone.to(self.device).eval()
        self.dim = int(encoder.dim)
        self.model_hash = encoder.model_hash
        self.image_size = int(self.cfg.image_size)
        self.classifier = classifier
        #: open-set thresholds fitted at fine-tune time (``model.pt`` ``self_calibration``), or None
        self.self_calibration: dict | None = None
        #: the model as recorded in an index's meta.json: a backbone name or an absolute model path
        self.spec = spec if spec is not None else (
            encoder.name if encoder.source.startswith(("imagenet", "random")) else None)
        self._mean = torch.tensor(encoder.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(encoder.std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    @classmethod
    def load(cls, model: str | os.PathLike, cfg: RetrievalConfig | None = None,
             models_dir: Path | None = None) -> "Embedder":
        """The embedder of ``model`` (a ``model.pt``, an official SimSiam checkpoint, or a backbone name: the
        ImageNet baseline) on ``cfg.device``, with the model's instance classifier when it carries one."""
        from ssl_nav.device import resolve_device
        from ssl_nav.learning.backbones import BACKBONES, load_encoder

        cfg = cfg or RetrievalConfig()
        spec = str(model) if str(model) in BACKBONES else str(Path(model).resolve())
        device = resolve_device(cfg.device, "retrieval.device")
        encoder = load_encoder(spec, device=device, models_dir=models_dir)
        classifier = read_classifier(spec, encoder.model_hash) if encoder.source == "model.pt" else None
        out = cls(encoder, cfg, classifier, spec=spec)
        if encoder.source == "model.pt":
            out.self_calibration = read_self_calibration(spec)
        return out

    def check_image(self, img: np.ndarray, what: str = "image", min_px: int = 1) -> np.ndarray:
        """``img`` as a uint8 HxWx3 array, or a ValueError naming ``what`` (wrong type, shorter side below
        ``min_px``)."""
        a = np.asarray(img)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise ValueError(f"{what}: expected uint8 HxWx3 RGB, got {a.dtype} {a.shape}")
        if min(a.shape[:2]) < max(1, int(min_px)):
            raise ValueError(f"{what}: {a.shape[1]}x{a.shape[0]} px is smaller than retrieval.min_query_px "
                             f"({min_px} px on the shorter side)")
        return a

    def preprocess(self, images: Sequence[np.ndarray]):
        """uint8 RGB images -> normalised (B, 3, S, S) float tensor on the device."""
        import cv2
        import torch

        s = self.image_size
        batch = np.empty((len(images), s, s, 3), dtype=np.uint8)
        for i, img in enumerate(images):
            a = self.check_image(img, f"image {i}")
            interp = cv2.INTER_AREA if min(a.shape[:2]) > s else cv2.INTER_LINEAR
            batch[i] = a if a.shape[:2] == (s, s) else cv2.resize(a, (s, s), interpolation=interp)
        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        return (x - self._mean) / self._std

    def encode(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(unit, raw)``: (N, dim) float32 unit-norm embeddings and the raw pooled features they came from."""
        import torch

        if len(images) == 0:
            empty = np.zeros((0, self.dim), dtype=np.float32)
            return empty, empty.copy()
        units, raws = [], []
        bs = max(1, int(self.cfg.batch_size))
        self.model.eval()
        with torch.inference_mode():
            for i in range(0, len(images), bs):
                x = self.preprocess(images[i:i + bs])
                raw = self.model(x).float()
                f = torch.nn.functional.normalize(raw, dim=1)
                if self.cfg.flip_tta:
                    raw_flip = self.model(torch.flip(x, dims=[3])).float()
                    f = torch.nn.functional.normalize(f + torch.nn.functional.normalize(raw_flip, dim=1), dim=1)
                    raw = (raw + raw_flip) / 2
                units.append(f.cpu().numpy())
                raws.append(raw.cpu().numpy())
        return (np.ascontiguousarray(np.concatenate(units), dtype=np.float32),
                np.ascontiguousarray(np.concatenate(raws), dtype=np.float32))

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(N, dim) float32 unit-norm embeddings of ``images``."""
        return self.encode(images)[0]


def embed_store(store: "ViewStore", embedder: Embedder, progress: bool = True, quality: str | None = None
                ) -> tuple[np.ndarray, list[dict]]:
    """Embed every view of a store (or only those of ``quality``); returns (embeddings, views) in store order."""
    from ssl_nav.progress import tqdm

    views = store.views(quality=quality)
    bs = max(1, int(embedder.cfg.batch_size))
    chunks = []
    with tqdm(total=len(views), desc="embed views", unit="view", disable=not progress, leave=False) as bar:
        for i in range(0, len(views), bs):
            part = views[i:i + bs]
            chunks.append(embedder.embed([store.load_image(v) for v in part]))
            bar.update(len(part))
    emb = np.concatenate(chunks) if chunks else np.zeros((0, embedder.dim), dtype=np.float32)
    return emb, views
