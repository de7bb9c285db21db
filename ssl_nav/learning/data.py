"""Training pairs from a ViewStore: SimView positives, CrossIA LQ->HQ pairing, augmentations, sampling.

- A positive pair is two *different* views of one instance (SimView, arXiv 2404.09647). With CrossIA
  (arXiv 2404.09645) the anchor is a low-quality robot view and its partner an HQ user photo of the same
  instance when one exists (:func:`ssl_nav.learning.crossia.choose_partner`).
- Augmentations (:class:`Augment`, :data:`RECIPES`): the SimSiam / MoCo-v2 recipe (RandomResizedCrop(scale
  0.2-1), ColorJitter(0.4, 0.4, 0.4, 0.1) p 0.8, grayscale p 0.2, Gaussian blur σ∈[0.1, 2] p 0.5, horizontal
  flip), CrossIA's recipe without crops (resize, ColorJitter(0.4, 0.4, 0.2, 0.1) p 0.8, grayscale p 0.2, blur
  σ∈[0.1, 2] p 0.5), or the ``instance`` recipe that keeps an object's colour (resize, ColorJitter(0.4, 0.4,
  0.1, 0) p 0.8, no grayscale, blur p 0.5): hue rotation and grayscale make the encoder colour-invariant, and a
  recoloured twin then matches its sibling.
  The hue jitter is a YIQ chroma rotation and the blur OpenCV's (:func:`hue_rotate`, :func:`gaussian_blur`):
  same parameters at a fraction of torchvision's CPU cost, since augmentation runs beside the training step.
  Every random choice comes from a per-sample seed drawn by the sampler, so a sample is the same whatever
  the number of DataLoader workers, and a resumed epoch replays exactly.
- :class:`PairSampler` is instance-balanced (instance uniformly at random, then one of its anchor views) and
  shards each epoch across DDP ranks like ``DistributedSampler`` (every rank the same number of samples).
- Decoded images are cached in memory as uint8 when they fit (``learning.cache_images``,
  ``learning.cache_max_mb``); the cache is filled before the DataLoader forks its workers, which share it.

The store is read through :class:`ssl_nav.views.store.ViewStore` (the on-disk format of docs/formats.md).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ssl_nav.errors import StoreError, TrainingError
from ssl_nav.learning.backbones import IMAGENET_MEAN, IMAGENET_STD
from ssl_nav.learning.crossia import choose_partner


def open_store(root: str | Path):
    """The ViewStore at ``root`` (StoreError when missing)."""
    from ssl_nav.views.store import ViewStore

    return ViewStore(root)


# ---------------------------------------------------------------------------------------------------------
# views, split and labels


@dataclass
class StoreViews:
    """The views of a store with integer labels, a deterministic train / held-out split and pairing lists."""

    views: list[dict]
    labels: np.ndarray  # (N,) int64 class index per view
    class_ids: list[str]  # class index -> instance id
    qualities: list[str]
    train: np.ndarray  # view indices used for training
    holdout: np.ndarray  # view indices held out for the kNN monitor
    anchors_by_class: dict[int, list[int]]  # training anchors of each class
    train_by_class: dict[int, list[int]]  # all training views of each class

    @property
    def n_classes(self) -> int:
        return len(self.class_ids)


def subsample_views(views: list[dict], fraction: float, seed: int) -> list[dict]:
    """The reduced-data setting (``learning.view_fraction``; the edge-energy study's reduced training sets):
    keep ``ceil(fraction * n)`` of each instance's ``n`` robot (low-quality) views, at least one, and every
    user photo. A view is kept by a key hashed from (seed, instance id, view id), so the subset does not depend
    on the store's order or on other instances, and a smaller fraction keeps a subset of a larger one's views.
    Returns the kept views in store order."""
    if fraction >= 1.0:
        return list(views)
    import hashlib

    def key(v: dict) -> bytes:
        return hashlib.sha256(f"{seed}/{v['instance_id']}/{v.get('view_id')}".encode()).digest()

    lq_by_inst: dict[str, list[int]] = {}
    for i, v in enumerate(views):
        if str(v.get("quality") or "low") != "high":
            lq_by_inst.setdefault(str(v["instance_id"]), []).append(i)
    drop: set[int] = set()
    for members in lq_by_inst.values():
        keep = max(1, math.ceil(fraction * len(members)))
        drop.update(sorted(members, key=lambda i: key(views[i]))[keep:])
    return [v for i, v in enumerate(views) if i not in drop]


def split_views(views: list[dict], holdout_fraction: float, seed: int, crossia: bool) -> StoreViews:
    """Label views by instance id, hold out a fraction of each instance's LQ views (instances with 3+ views),
    and list the training anchors (LQ views with CrossIA; instances with only HQ views use those)."""
    if not views:
        raise TrainingError("the view store has no views: collect views first (ssl-nav collect)")
    class_ids = sorted({str(v["instance_id"]) for v in views}, key=lambda s: (len(s), s))
    index = {c: i for i, c in enumerate(class_ids)}
    labels = np.array([index[str(v["instance_id"])] for v in views], dtype=np.int64)
    qualities = [str(v.get("quality") or "low") for v in views]
    rng = np.random.default_rng([seed, 7919])
    holdout: list[int] = []
    for c in range(len(class_ids)):
        members = np.flatnonzero(labels == c)
        lq = [int(i) for i in members if qualities[i] != "high"]
        if len(members) >= 3 and holdout_fraction > 0 and len(lq) >= 2:
            n = min(len(lq) - 1, max(1, int(round(holdout_fraction * len(members)))))
            holdout.extend(int(i) for i in rng.choice(lq, size=n, replace=False))
    hold = np.array(sorted(holdout), dtype=np.int64)
    train = np.array(sorted(set(range(len(views))) - set(holdout)), dtype=np.int64)
    train_by_class: dict[int, list[int]] = {}
    for i in train:
        train_by_class.setdefault(int(labels[i]), []).append(int(i))
    anchors_by_class: dict[int, list[int]] = {}
    for c, members in train_by_class.items():
        lq = [i for i in members if qualities[i] != "high"]
        anchors_by_class[c] = lq if (crossia and lq) else list(members)
    return StoreViews(views, labels, class_ids, qualities, train, hold, anchors_by_class, train_by_class)


# ---------------------------------------------------------------------------------------------------------
# images


class ImageCache:
    """Decoded views as uint8 (3, H, W) tensors; all of them kept in memory when they fit."""

    def __init__(self, store: Any, views: list[dict], enabled: bool = True, max_mb: int = 2048) -> None:
        self.store = store
        self.views = views
        self._cache: dict[int, torch.Tensor] = {}
        self.enabled = False
        if enabled and views:
            first = self._decode(0)
            est = first.numel() * len(views)
            budget = max_mb * 2**20
            try:
                budget = min(budget, os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4)
            except (ValueError, OSError):
                pass
            self.enabled = est <= budget
            if self.enabled:
                self._cache[0] = first

    def _decode(self, i: int) -> torch.Tensor:
        view = self.views[i]
        try:
            img = self.store.load_image(view)
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(f"{self.store.image_path(view)}: cannot read image of view "
                             f"'{view.get('view_id')}' ({e})") from None
        if img is None or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise StoreError(f"{self.store.image_path(view)}: expected an HxWx3 uint8 RGB image")
        return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).contiguous()

    def fill(self, progress: bool = False) -> None:
        """Decode every image now (before DataLoader workers fork)."""
        if not self.enabled:
            return
        it = range(len(self.views))
        if progress:
            from ssl_nav.progress import tqdm

            it = tqdm(it, desc="decode views", unit="img", leave=False)
        for i in it:
            if i not in self._cache:
                self._cache[i] = self._decode(i)

    def get(self, i: int) -> torch.Tensor:
        if self.enabled:
            t = self._cache.get(i)
            if t is None:
                t = self._cache[i] = self._decode(i)
            return t
        return self._decode(i)


# ---------------------------------------------------------------------------------------------------------
# augmentations


#: RGB <-> YIQ (NTSC); a hue shift is a rotation of the (I, Q) chroma plane
RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(RGB2YIQ)


def hue_matrix(hue: float) -> torch.Tensor:
    """The 3x3 matrix on RGB that turns hue by ``hue`` turns: a rotation of the YIQ chroma plane, luma kept."""
    a = -2 * math.pi * hue  # sign chosen so that +hue turns red towards yellow, as in HSV
    c, s = math.cos(a), math.sin(a)
    rot = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    return _YIQ2RGB @ rot @ RGB2YIQ


def hue_rotate(x: torch.Tensor, hue: float) -> torch.Tensor:
    """Shift the hue of a float RGB image (3,H,W) in [0,1] by ``hue`` turns (ColorJitter's hue factor, in
    [-0.5, 0.5]) as one 3x3 colour matrix (:func:`hue_matrix`). It is the linear counterpart of torchvision's
    HSV hue shift (same angle, luma kept) and about 50x cheaper on CPU."""
    return torch.einsum("ij,jhw->ihw", hue_matrix(hue), x).clamp_(0.0, 1.0)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of a (3,H,W) float image with OpenCV (separable, kernel 2*ceil(3σ)+1, reflect-101
    borders): the same filter as torchvision's ``gaussian_blur``, several times faster on CPU."""
    import cv2

    k = 2 * math.ceil(3 * sigma) + 1
    hwc = np.ascontiguousarray(x.permute(1, 2, 0).numpy())
    out = cv2.GaussianBlur(hwc, (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)
    return torch.from_numpy(out).permute(2, 0, 1)


@dataclass(frozen=True)
class Recipe:
    """One augmentation recipe: crop scale range (None: resize the whole view), ColorJitter (brightness,
    contrast, saturation, hue) applied with ``p_jitter``, grayscale, blur and flip probabilities."""

    crop: tuple[float, float] | None
    jitter: tuple[float, float, float, float]
    p_jitter: float = 0.8
    p_grayscale: float = 0.2
    p_blur: float = 0.5
    p_flip: float = 0.0


#: ``learning.augment`` -> recipe (docs/finetuning.md says why ``instance`` keeps colour)
RECIPES: dict[str, Recipe] = {
    # SimSiam / MoCo v2 (arXiv 2011.10566, 2003.04297)
    "simsiam": Recipe(crop=(0.2, 1.0), jitter=(0.4, 0.4, 0.4, 0.1), p_flip=0.5),
    # CrossIA (arXiv 2404.09645): no crops, weaker saturation
    "crossia": Recipe(crop=None, jitter=(0.4, 0.4, 0.2, 0.1)),
    # instance identity: colour is what tells recoloured twins apart, so no hue rotation, no grayscale and
    # little saturation jitter; brightness and contrast still vary as lighting does
    "instance": Recipe(crop=None, jitter=(0.4, 0.4, 0.1, 0.0), p_grayscale=0.0),
    "none": Recipe(crop=None, jitter=(0.0, 0.0, 0.0, 0.0), p_jitter=0.0, p_grayscale=0.0, p_blur=0.0),
}


class Augment:
    """One random view of an image under a recipe of :data:`RECIPES`; see the module docstring.

    Called with a uint8 (3,H,W) tensor and a numpy Generator; returns an ImageNet-normalised float32 tensor
    (3, size, size).
    """

    def __init__(self, recipe: str, size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> None:
        if recipe not in RECIPES:
            raise ValueError(f"unknown augmentation recipe {recipe!r} (known: {', '.join(RECIPES)})")
        self.recipe = recipe
        self.spec = RECIPES[recipe]
        self.size = size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.jitter = self.spec.jitter

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] == (self.size, self.size):
            return x
        return F.interpolate(x[None], size=(self.size, self.size), mode="bilinear", antialias=True,
                             align_corners=False)[0]

    def _random_resized_crop(self, x: torch.Tensor, rng: np.random.Generator,
                             scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
        h, w = x.shape[-2:]
        area = h * w
        for _ in range(10):
            target = area * rng.uniform(*scale)
            aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
            cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
                return self._resize(x[:, top:top + ch, left:left + cw])
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        return self._resize(x[:, top:top + side, left:left + side])

    def _color_jitter(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """ColorJitter: the non-zero ones of brightness, contrast, saturation and hue, in random order."""
        import torchvision.transforms.v2.functional as TF

        b, c, s, hue = self.jitter
        ops = [i for i, v in enumerate(self.jitter) if v > 0]
        for op in rng.permutation(ops):
            if op == 0:
                x = TF.adjust_brightness(x, float(rng.uniform(1 - b, 1 + b)))
            elif op == 1:
                x = TF.adjust_contrast(x, float(rng.uniform(1 - c, 1 + c)))
            elif op == 2:
                x = TF.adjust_saturation(x, float(rng.uniform(1 - s, 1 + s)))
            else:
                x = hue_rotate(x, float(rng.uniform(-hue, hue)))
        return x

    def __call__(self, img: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        import torchvision.transforms.v2.functional as TF

        r = self.spec
        x = img.float().div_(255.0)
        x = self._random_resized_crop(x, rng, r.crop) if r.crop else self._resize(x)
        if r.p_jitter > 0 and rng.random() < r.p_jitter:
            x = self._color_jitter(x, rng)
        if r.p_grayscale > 0 and rng.random() < r.p_grayscale:
            x = TF.rgb_to_grayscale(x, num_output_channels=3)
        if r.p_blur > 0 and rng.random() < r.p_blur:
            x = gaussian_blur(x, float(rng.uniform(0.1, 2.0)))
        if r.p_flip > 0 and rng.random() < r.p_flip:
            x = x.flip(-1)
        return (x - self.mean) / self.std


# ---------------------------------------------------------------------------------------------------------
# datasets and sampler


class PairDataset(torch.utils.data.Dataset):
    """Keys come from :class:`PairSampler`: ``(anchor, partners, seed)``. Returns ``x1``/``x2`` of shape
    (N, 3, S, S) for N candidate pairs (N = ``hard_views``; the anchor is augmented anew for each), the class
    label and the LQ(0)/HQ(1) domain of each side."""

    def __init__(self, sv: StoreViews, cache: ImageCache, augment: Augment) -> None:
        self.sv = sv
        self.cache = cache
        self.augment = augment

    def __len__(self) -> int:
        return len(self.sv.views)

    def __getitem__(self, key: tuple[int, tuple[int, ...], int]) -> dict[str, torch.Tensor]:
        anchor, partners, seed = key
        rng = np.random.default_rng(seed)
        a_img = self.cache.get(anchor)
        x1, x2 = [], []
        for p in partners:
            x1.append(self.augment(a_img, rng))
            x2.append(self.augment(self.cache.get(p), rng))
        q = self.sv.qualities
        return {"x1": torch.stack(x1), "x2": torch.stack(x2),
                "label": torch.tensor(int(self.sv.labels[anchor])),
                "dom1": torch.tensor(int(q[anchor] == "high")),
                "dom2": torch.tensor([int(q[p] == "high") for p in partners])}


class EvalDataset(torch.utils.data.Dataset):
    """Views resized to the training size and normalised (no augmentation), for the monitor."""

    def __init__(self, indices: np.ndarray, cache: ImageCache, size: int) -> None:
        self.indices = [int(i) for i in indices]
        self.cache = cache
        self.augment = Augment("none", size)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.augment(self.cache.get(self.indices[i]), np.random.default_rng(0))


class PairSampler(torch.utils.data.Sampler):
    """Instance-balanced pair keys for one epoch, sharded across ``world_size`` ranks.

    An epoch has ``steps_per_epoch = max(1, n_anchors // global_batch)`` steps; each rank gets
    ``steps_per_epoch * batch_per_rank`` keys. Keys depend only on (seed, epoch), so a resumed run replays the
    same epoch and no sampler state beyond the epoch number needs saving.
    """

    def __init__(self, sv: StoreViews, global_batch: int, seed: int, crossia: bool, hard_views: int = 1,
                 rank: int = 0, world_size: int = 1) -> None:
        super().__init__()
        if global_batch % world_size:
            raise TrainingError(f"learning.batch_size {global_batch} is not divisible by the {world_size} DDP ranks")
        self.sv = sv
        self.global_batch = global_batch
        self.batch_per_rank = global_batch // world_size
        self.seed = seed
        self.crossia = crossia
        self.hard_views = hard_views
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.classes = sorted(sv.anchors_by_class)
        n_anchors = sum(len(v) for v in sv.anchors_by_class.values())
        if not self.classes:
            raise TrainingError("no training views left after the held-out split: lower learning.holdout_fraction")
        self.steps_per_epoch = max(1, n_anchors // global_batch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])

    def epoch_keys(self) -> list[tuple[int, tuple[int, ...], int]]:
        """All ranks' keys of the current epoch (global order)."""
        rng = np.random.default_rng([self.seed, self.epoch, 104729])
        n = self.steps_per_epoch * self.global_batch
        keys = []
        for _ in range(n):
            c = self.classes[int(rng.integers(len(self.classes)))]
            anchors = self.sv.anchors_by_class[c]
            a = anchors[int(rng.integers(len(anchors)))]
            partners = tuple(choose_partner(a, self.sv.train_by_class[c], self.sv.qualities, rng, self.crossia)
                             for _ in range(self.hard_views))
            keys.append((a, partners, int(rng.integers(2**62))))
        return keys

    def __iter__(self) -> Iterator[tuple[int, tuple[int, ...], int]]:
        keys = self.epoch_keys()
        # contiguous per-step blocks: step s takes keys[s*G:(s+1)*G], rank r its r-th slice of that block
        for s in range(self.steps_per_epoch):
            block = keys[s * self.global_batch:(s + 1) * self.global_batch]
            yield from block[self.rank * self.batch_per_rank:(self.rank + 1) * self.batch_per_rank]

    def __len__(self) -> int:
        return self.steps_per_epoch * self.batch_per_rank
