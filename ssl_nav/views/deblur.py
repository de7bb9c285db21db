"""Optional deblurring of robot (low-quality) frames before their views are cut (``views.deblur``).

CrossIA (Sakaguchi et al., IRC 2024, arXiv 2404.09645) restores blurry robot frames with a pre-trained
deblurring network before it cuts crops. This stage does the same, with a choice of method:

- ``none``: frames are cropped as they are (the default: see BENCHMARKS.md for the measurement);
- ``unsharp``: unsharp masking, ``out = img + amount * (img - G_sigma * img)``;
- ``wiener``: Wiener deconvolution with a Gaussian point-spread function of ``deblur_sigma`` px and the
  noise-to-signal ratio ``deblur_nsr``, in the Fourier domain (Gonzalez & Woods, *Digital Image Processing*,
  ch. 5): ``F = conj(H) / (|H|^2 + nsr) * G``, scaled by ``1 + nsr`` so that flat areas keep their
  brightness; the frame is mirror-padded so the FFT sees no seam;
- ``model``: a deblurring network the user supplies (``views.deblur_model``): a ``torch.export`` program
  (``.pt2``, ``torch.export.save(torch.export.export(net, (x,), dynamic_shapes=...), "deblur.pt2")`` with
  dynamic height and width) or a TorchScript file (``torch.jit.script(net).save("deblur.pt")``). It takes a
  float tensor (1, 3, H, W) in [0, 1] and returns one of the same shape. It is loaded with
  ``torch.export.load`` / ``torch.jit.load`` (serialised programs, never a pickle of arbitrary Python
  objects), checked on a small input (shape, finite values) and run on the CPU or CUDA.

The first two need no weights, so the stage can be measured here. Only frames with ``quality: low`` are
deblurred; user photos are sharp already.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ssl_nav.config import ViewsConfig
from ssl_nav.errors import CheckpointError, ConfigError

METHODS = ("none", "unsharp", "wiener", "model")
#: mirror padding around a frame before the FFT, as a multiple of the PSF's sigma
_PAD_SIGMAS = 4.0


def unsharp_mask(rgb: np.ndarray, sigma: float, amount: float) -> np.ndarray:
    """Unsharp masking of a uint8 RGB image."""
    img = rgb.astype(np.float32)
    blurred = cv2.GaussianBlur(img, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT)
    return np.clip(np.round(img + float(amount) * (img - blurred)), 0, 255).astype(np.uint8)


def gaussian_otf(shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Optical transfer function of a Gaussian PSF of ``sigma`` px on an ``shape`` grid (for ``rfft2``)."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    return np.exp(-2.0 * np.pi ** 2 * sigma ** 2 * (fx ** 2 + fy ** 2))


def wiener_deconvolve(rgb: np.ndarray, sigma: float, nsr: float) -> np.ndarray:
    """Wiener deconvolution of a uint8 RGB image blurred by a Gaussian PSF of ``sigma`` px."""
    pad = int(np.ceil(_PAD_SIGMAS * sigma)) + 2
    img = cv2.copyMakeBorder(rgb.astype(np.float32), pad, pad, pad, pad, cv2.BORDER_REFLECT)
    h, w = img.shape[:2]
    H = gaussian_otf((h, w), sigma)
    gain = (H * (1.0 + float(nsr)) / (H ** 2 + float(nsr))).astype(np.complex64)  # unit gain at DC
    out = np.empty_like(img)
    for c in range(img.shape[2]):
        out[..., c] = np.fft.irfft2(np.fft.rfft2(img[..., c]) * gain, s=(h, w))
    return np.clip(np.round(out[pad:-pad, pad:-pad]), 0, 255).astype(np.uint8)


class TorchScriptDeblur:
    """A user-supplied deblurring network (``torch.export`` ``.pt2`` or TorchScript): (1, 3, H, W) in [0, 1] ->
    the same shape."""

    def __init__(self, path: str | os.PathLike, device: str = "auto"):
        import torch

        p = Path(path).expanduser()
        if not p.is_file():
            raise CheckpointError(f"{p}: deblurring model not found (views.deblur_model)")
        dev = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
        try:
            with warnings.catch_warnings():  # torch >= 2.9 marks TorchScript deprecated; it still loads
                warnings.simplefilter("ignore", FutureWarning)
                if p.suffix == ".pt2":
                    self.net = torch.export.load(str(p)).module().to(dev)
                else:
                    self.net = torch.jit.load(str(p), map_location=dev).eval()
        except Exception as e:  # a zip that is not a program, a pickle, garbage: all unusable
            raise CheckpointError(f"{p}: not a TorchScript or torch.export (.pt2) model ({type(e).__name__}: "
                                  f"{str(e)[:200]}); export one with torch.export.save or torch.jit.script(net).save"
                                  ) from None
        self.path, self.device = p, dev
        probe = np.zeros((32, 48, 3), np.uint8)
        probe[8:24, 12:36] = 200
        try:
            out = self._run(probe)
        except Exception as e:
            raise CheckpointError(f"{p}: the model fails on a (1, 3, 32, 48) float input in [0, 1] "
                                  f"({type(e).__name__}: {str(e)[:200]})") from None
        if out is None:
            raise CheckpointError(f"{p}: the model must return a tensor of the input's shape (1, 3, H, W) with "
                                  "finite values")

    def _run(self, rgb: np.ndarray) -> np.ndarray | None:
        import torch

        x = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        with torch.no_grad():
            y = self.net(x)
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != tuple(x.shape) or not torch.isfinite(y).all():
            return None
        return (y[0].permute(1, 2, 0).clamp(0, 1) * 255.0).round().byte().cpu().numpy()

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        out = self._run(rgb)
        if out is None:
            raise CheckpointError(f"{self.path}: the model returned a tensor of the wrong shape or non-finite values "
                                  f"for a {rgb.shape[1]}x{rgb.shape[0]} frame")
        return out


def make_deblur(cfg: ViewsConfig, device: str = "auto") -> Callable[[np.ndarray], np.ndarray] | None:
    """The deblurring function of ``views.deblur`` (uint8 RGB in and out), or ``None`` for ``none``."""
    method = cfg.deblur
    if method not in METHODS:
        raise ConfigError(f"views.deblur: unknown method {method!r} ({', '.join(METHODS)})")
    if method == "none":
        return None
    if method == "unsharp":
        return lambda rgb: unsharp_mask(rgb, cfg.deblur_sigma, cfg.deblur_amount)
    if method == "wiener":
        return lambda rgb: wiener_deconvolve(rgb, cfg.deblur_sigma, cfg.deblur_nsr)
    if not cfg.deblur_model:
        raise ConfigError("views.deblur_model: name a TorchScript file to use views.deblur: model")
    return TorchScriptDeblur(cfg.deblur_model, device)
