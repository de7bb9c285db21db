"""Deblurring of robot frames: weight-free methods undo a known blur, a user TorchScript model is checked and run."""

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from ssl_nav.config import ViewsConfig
from ssl_nav.errors import CheckpointError, ConfigError
from ssl_nav.views.deblur import TorchScriptDeblur, make_deblur, unsharp_mask, wiener_deconvolve


def _sharp(h=96, w=128):
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    cv2.putText(img, "ssl", (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 3)
    return img


def _err(a, b):
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64))[8:-8, 8:-8].mean())


def test_weight_free_methods_bring_a_gaussian_blur_closer_to_the_sharp_image():
    sharp = _sharp()
    blurred = cv2.GaussianBlur(sharp, (0, 0), 1.5, borderType=cv2.BORDER_REFLECT)
    for method in (lambda x: wiener_deconvolve(x, 1.5, 0.005), lambda x: unsharp_mask(x, 1.5, 1.0)):
        out = method(blurred)
        assert out.dtype == np.uint8 and out.shape == sharp.shape
        assert _err(out, sharp) < 0.8 * _err(blurred, sharp)
    # the right PSF and little regularisation restore most of it
    assert _err(wiener_deconvolve(blurred, 1.5, 0.001), sharp) < 0.65 * _err(blurred, sharp)


def test_make_deblur_follows_the_config(tmp_path):
    assert make_deblur(ViewsConfig()) is None  # the default: none
    img = _sharp()
    assert make_deblur(ViewsConfig(deblur="unsharp"))(img).shape == img.shape
    with pytest.raises(ConfigError, match="views.deblur_model"):
        make_deblur(ViewsConfig(deblur="model"))


class _Sharpen(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (2.0 * x - torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)).clamp(0.0, 1.0)


class _Shrink(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, ::2, ::2]


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_a_user_model_is_checked_and_run(tmp_path):
    good = tmp_path / "sharpen.pt"
    torch.jit.script(_Sharpen()).save(str(good))
    deblur = make_deblur(ViewsConfig(deblur="model", deblur_model=str(good)), device="cpu")
    img = cv2.GaussianBlur(_sharp(), (0, 0), 1.0)
    out = deblur(img)
    assert out.shape == img.shape and out.dtype == np.uint8 and not np.array_equal(out, img)
    bad_shape = tmp_path / "shrink.pt"
    torch.jit.script(_Shrink()).save(str(bad_shape))
    with pytest.raises(CheckpointError, match="shrink.pt.*shape"):
        TorchScriptDeblur(bad_shape, "cpu")
    pickle = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(3)}, pickle)  # a state_dict, not a TorchScript program
    with pytest.raises(CheckpointError, match="weights.pt: not a TorchScript"):
        TorchScriptDeblur(pickle, "cpu")
    with pytest.raises(CheckpointError, match="not found"):
        TorchScriptDeblur(tmp_path / "missing.pt", "cpu")
    # a torch.export program with dynamic height and width
    x = torch.rand(1, 3, 32, 48)
    dims = {2: torch.export.Dim("H", min=8, max=4096), 3: torch.export.Dim("W", min=8, max=4096)}
    exported = tmp_path / "sharpen.pt2"
    torch.export.save(torch.export.export(_Sharpen(), (x,), dynamic_shapes=(dims,)), str(exported))
    assert np.array_equal(TorchScriptDeblur(exported, "cpu")(img), out)


def test_collect_deblurs_robot_views_only(tmp_path):
    from ssl_nav.config import PipelineConfig
    from ssl_nav.views.collect import collect_frames
    from ssl_nav.views.store import ViewStore

    from testkit import scenes  # test/ is on sys.path (test/conftest.py)

    frames = [scenes.render(scenes.default_boxes(), T, frame_id=f"f{i}") for i, T in enumerate(scenes.orbit_poses(4))]
    frames[0] = dataclasses.replace(frames[0], quality="high")
    out = {}
    for method in ("none", "unsharp"):
        cfg = PipelineConfig()
        cfg.views = ViewsConfig(crop_size=32, min_box_px=8, min_visible_points=10, deblur=method)
        store = ViewStore(tmp_path / method, create=True)
        summary = collect_frames(frames, store, cfg, progress=False)
        out[method] = {(v["frame_id"], v["instance_id"]): (v, store.load_image(v)) for v in store.views()}
        assert summary["deblur"] == method and summary["deblurred_frames"] == (0 if method == "none" else 3)
    assert out["none"].keys() == out["unsharp"].keys()
    for key, (v, img) in out["unsharp"].items():
        same = np.array_equal(img, out["none"][key][1])
        assert same == (v["quality"] == "high") and (v.get("deblur") == "unsharp") == (v["quality"] == "low")
