"""Tiny ViewStores written directly in the on-disk format of docs/formats.md (instances.json, views.jsonl,
views/<instance_id>/<view_id>.png): the format is the contract between the view collector and the trainer.
Also the configuration for seconds-long CPU fine-tunes. Used by the tests and by benchmarks/bench_learning.py."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from ssl_nav.config import PipelineConfig, apply_overrides


def write_store(root: Path, n_instances: int = 4, views_per_instance: int = 4, size: int = 32, n_hq: int = 1,
                seed: int = 0) -> Path:
    """Each instance is a coloured shape on a textured background, seen with jitter; ``n_hq`` views per
    instance are 'high' quality (sharp), the rest 'low' (blurred)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    instances, lines = {}, []
    for i in range(1, n_instances + 1):
        iid = str(i)
        colour = rng.integers(30, 226, size=3)
        instances[iid] = {"category": f"thing{i % 3}", "centroid": [float(i), 0.0, 0.5],
                          "aabb": [[i - 0.2, -0.2, 0.3], [i + 0.2, 0.2, 0.7]], "n_points": 100}
        for k in range(views_per_instance):
            img = rng.integers(0, 60, size=(size, size, 3)).astype(np.uint8)
            c = size // 2 + rng.integers(-2, 3, size=2)
            r = size // 4 + int(rng.integers(-1, 2))
            if i % 2:
                cv2.circle(img, (int(c[0]), int(c[1])), r, tuple(int(x) for x in colour), -1)
            else:
                cv2.rectangle(img, (int(c[0] - r), int(c[1] - r)), (int(c[0] + r), int(c[1] + r)),
                              tuple(int(x) for x in colour), -1)
            quality = "high" if k < n_hq else "low"
            if quality == "low":
                img = cv2.GaussianBlur(img, (3, 3), 1.0)
            vid = f"v{i}_{k}"
            rel = f"views/{iid}/{vid}.png"
            (root / "views" / iid).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / rel), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            lines.append({"view_id": vid, "instance_id": iid, "image": rel, "quality": quality,
                          "frame_id": None if quality == "high" else f"f{k}", "T_world_cam": None,
                          "bbox": None, "visible_fraction": None, "sharpness": None})
    (root / "instances.json").write_text(json.dumps(instances))
    (root / "views.jsonl").write_text("".join(json.dumps(v) + "\n" for v in lines))
    return root


def tiny_config(**learning):
    """A PipelineConfig for seconds-long CPU runs: resnet18 at 32 px, small heads, no energy backend."""
    base = {"backbone": "resnet18", "pretrained": False, "image_size": 32, "batch_size": 8, "epochs": 2,
            "proj_dim": 64, "pred_hidden_dim": 16, "warmup_epochs": 0, "threads": 1, "holdout_fraction": 0.25,
            "device": "cpu", "trainable": "all", "monitor_every": 1, "checkpoint_every": 1}
    base.update(learning)
    return apply_overrides(PipelineConfig(), {f"learning.{k}": v for k, v in base.items()} | {"energy.backend": "none"})
