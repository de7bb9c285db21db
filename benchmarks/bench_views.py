"""Mapping and views: visibility + crop throughput, and instance-map memory.

- Throughput: 640x480 frames, 50 box instances, ~200k map points; per frame the
  map is z-buffered into the camera with the occlusion test against the frame's
  depth, every visible instance gets its square box, quality figures and a
  224 px crop (what the streaming collector does per keyframe; thresholds are
  off so that every instance in view is cropped, the worst case). Measured in a
  child process pinned to one core with OMP/BLAS/OpenCV threads set to 1.
- Memory: an InstanceMap holding 1M points (50 instances), measured with
  tracemalloc (numpy reports its buffers to it) and as the RSS growth of a fresh
  child process, including the concatenated points/labels cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

AREA = "Mapping and views"
REPO = Path(__file__).resolve().parent.parent

_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}


def _scene(n_instances: int, points_per_instance: int, seed: int = 0):
    """Boxes on a 10 x 5 grid in front of the origin, points sampled uniformly on their surfaces."""
    import numpy as np

    rng = np.random.default_rng(seed)
    pts, labels = [], []
    for i in range(n_instances):
        gx, gy = i % 10, i // 10
        centre = np.array([1.5 + 0.9 * gy, -4.0 + 0.9 * gx, 0.4 + 0.2 * rng.random()])
        half = 0.1 + 0.2 * rng.random(3)
        face = rng.integers(0, 6, points_per_instance)
        p = rng.uniform(-1, 1, (points_per_instance, 3))
        axis, sign = face // 2, np.where(face % 2 == 0, -1.0, 1.0)
        p[np.arange(points_per_instance), axis] = sign
        pts.append((centre + p * half).astype(np.float32))
        labels.append(np.full(points_per_instance, i + 1, np.int32))
    return np.concatenate(pts), np.concatenate(labels)


def _frames(points, n: int, width: int = 640, height: int = 480):
    """Frames at the origin turning in place; depth = z-buffer of the map points over a far wall."""
    import math

    import numpy as np

    from ssl_nav.frames import Frame
    from ssl_nav.geometry import camera_pose, intrinsics_from_fov, invert, transform
    from ssl_nav.views.visibility import splat_footprint, splat_min

    K = intrinsics_from_fov(width, height, 70.0)
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = []
    for k in range(n):
        T = camera_pose(np.array([0.0, 0.0, 1.2]), math.radians(-35 + 70 * k / max(1, n - 1)), math.radians(15))
        pc = transform(invert(T), points.astype(np.float64))
        ok = pc[:, 2] > 0.1
        u = K[0, 0] * pc[ok, 0] / pc[ok, 2] + K[0, 2]
        v = K[1, 1] * pc[ok, 1] / pc[ok, 2] + K[1, 2]
        inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
        z = pc[ok, 2][inside].astype(np.float32)
        zbuf = np.full(height * width, 8.0, np.float32)
        splat_min(zbuf, v[inside].astype(np.int32), u[inside].astype(np.int32), z, splat_footprint(K[0, 0], 0.03, z),
                   (height, width))
        out.append(Frame(rgb=rgb, depth=zbuf.reshape(height, width), K=K, T_world_cam=T, frame_id=str(k)))
    return out


def _child_throughput(n_frames: int) -> dict:
    import time

    import cv2
    import numpy as np

    from ssl_nav.config import ViewsConfig
    from ssl_nav.views.collect import evaluate_frame
    from ssl_nav.crops import crop_square

    cv2.setNumThreads(1)
    points, labels = _scene(50, 4000)
    frames = _frames(points, n_frames)
    # thresholds off: every instance in view gets its quality figures and a crop (the worst case per frame)
    cfg = ViewsConfig(min_visible_points=1, min_box_px=1, min_visible_fraction=0.0, max_truncation=1.0,
                      min_purity=0.0)
    ids, counts = np.unique(labels, return_counts=True)
    n_points = dict(zip(ids.tolist(), counts.tolist()))  # the map keeps these (InstanceMap.instances())
    evaluate_frame(frames[0], points, labels, cfg, 0.02, None, n_points)  # warm-up
    from collections import Counter

    n_views = 0
    rejected: Counter = Counter()
    t0 = time.perf_counter()
    for f in frames:
        for iid, square, q in evaluate_frame(f, points, labels, cfg, 0.02, rejected, n_points):
            crop_square(f.rgb, square, cfg.crop_size)
            n_views += 1
    dt = time.perf_counter() - t0
    return {"fps": len(frames) / dt, "views_per_frame": n_views / len(frames), "points": int(len(points)),
            "visible_per_frame": (n_views + sum(rejected.values())) / len(frames)}


def _child_memory() -> dict:
    import resource
    import tracemalloc

    import numpy as np

    from ssl_nav.mapping import InstanceMap

    points, labels = _scene(50, 20000, seed=2)  # 1M points
    rss0 = _rss_mb()
    tracemalloc.start()
    imap = InstanceMap.from_points(points, labels)
    del points, labels
    current_map, _ = tracemalloc.get_traced_memory()
    pts, lab = imap.points_and_labels()
    n = len(pts)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = _rss_mb()
    return {"n": int(n), "map_mb": current_map / 2**20, "with_cache_mb": current / 2**20, "peak_mb": peak / 2**20,
            "rss_delta_mb": rss1 - rss0, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _run_child(what: str, arg: int) -> dict:
    code = ("import os, sys, json\n"
            "os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            "import benchmarks.bench_views as b\n"
            f"print(json.dumps(b._child_{what}({arg}) if {arg!r} is not None else b._child_{what}()))\n")
    if what == "memory":
        code = code.replace(f"b._child_memory({arg}) if {arg!r} is not None else ", "")
    env = {**os.environ, **_ENV}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool) -> list[dict]:
    t = _run_child("throughput", 10 if quick else 40)
    m = _run_child("memory", None)
    return [
        {"benchmark": "visibility + crops, 640x480, 50 instances, "
                      f"{t['points'] // 1000}k map points, 1 core",
         "figure": f"{t['fps']:.1f} frames/s", "target": ">= 30 frames/s", "ok": t["fps"] >= 30,
         "note": f"per frame {t['visible_per_frame']:.1f} instances in view: z-buffer + depth test, boxes, quality, "
                 f"and {t['views_per_frame']:.1f} square crops resized to 224 px (thresholds off: worst case)"},
        {"benchmark": f"instance map memory, {m['n'] / 1e6:.1f}M points",
         "figure": f"{m['with_cache_mb']:.0f} MB", "target": "< 200 MB", "ok": m["with_cache_mb"] < 200,
         "note": f"tracemalloc: map {m['map_mb']:.0f} MB, with points/labels cache {m['with_cache_mb']:.0f} MB, "
                 f"peak {m['peak_mb']:.0f} MB; RSS growth {m['rss_delta_mb']:.0f} MB"},
    ]
