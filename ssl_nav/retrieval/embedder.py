"""Image → retrieval embedding: the backbone's pooled features before the projector, L2-normalised (SimView,
arXiv 2404.09647, retrieves with the SimSiam encoder output, not the projector output).

Images (uint8 RGB, any size) are resized to ``RetrievalConfig.image_size`` squared (the stored views are
already square crops; a query photo is squashed, as the CrossIA evaluation resize does), scaled to [0, 1] and
normalised with the encoder's mean/std. The model runs in eval mode under ``torch.inference_mode`` in batches
of ``RetrievalConfig.batch_size`` on ``RetrievalConfig.device`` (``auto``: CUDA when available). With
``flip_tta`` the unit embeddings of the image and of its horizontal mirror are averaged, then normalised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ssl_nav.config import RetrievalConfig

if TYPE_CHECKING:  # pragma: no cover
    from ssl_nav.learning.backbones import LoadedEncoder
    from ssl_nav.views.store import ViewStore


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class Embedder:
    """Batched, L2-normalised embeddings of RGB images with a :class:`LoadedEncoder`."""

    def __init__(self, encoder: "LoadedEncoder", cfg: RetrievalConfig | None = None) -> None:
        import torch

        self.cfg = cfg or RetrievalConfig()
        self.encoder = encoder
        self.device = torch.device(resolve_device(self.cfg.device))
        self.model = encoder.backbone.to(self.device).eval()
        self.dim = int(encoder.dim)
        self.model_hash = encoder.model_hash
        self.image_size = int(self.cfg.image_size)
        self._mean = torch.tensor(encoder.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(encoder.std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    def preprocess(self, images: Sequence[np.ndarray]):
        """uint8 RGB images -> normalised (B, 3, S, S) float tensor on the device."""
        import cv2
        import torch

        s = self.image_size
        batch = np.empty((len(images), s, s, 3), dtype=np.uint8)
        for i, img in enumerate(images):
            a = np.asarray(img)
            if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
                raise ValueError(f"image {i}: expected uint8 HxWx3 RGB, got {a.dtype} {a.shape}")
            interp = cv2.INTER_AREA if min(a.shape[:2]) > s else cv2.INTER_LINEAR
            batch[i] = a if a.shape[:2] == (s, s) else cv2.resize(a, (s, s), interpolation=interp)
        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        return (x - self._mean) / self._std

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(N, dim) float32 unit-norm embeddings of ``images``."""
        import torch

        if len(images) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        bs = max(1, int(self.cfg.batch_size))
        self.model.eval()
        with torch.inference_mode():
            for i in range(0, len(images), bs):
                x = self.preprocess(images[i:i + bs])
                f = torch.nn.functional.normalize(self.model(x).float(), dim=1)
                if self.cfg.flip_tta:
                    flipped = torch.nn.functional.normalize(self.model(torch.flip(x, dims=[3])).float(), dim=1)
                    f = torch.nn.functional.normalize(f + flipped, dim=1)
                out.append(f.cpu().numpy())
        return np.ascontiguousarray(np.concatenate(out).astype(np.float32))


def embed_store(store: "ViewStore", embedder: Embedder, progress: bool = True, quality: str | None = None
                ) -> tuple[np.ndarray, list[dict]]:
    """Embed every view of a store (or only those of ``quality``); returns (embeddings, views) in store order."""
    from tqdm import tqdm

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
