"""Simulator throughput: the embedded pybullet backend at 640x480 (TinyRenderer + LQ degradation)."""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

AREA = "Simulator"


def run(quick: bool) -> list[dict]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from ssl_nav.config import SimConfig
    from ssl_nav.sim.explore import exploration_poses
    from ssl_nav.sim.pybullet_backend import PyBulletSimulator

    cfg = dataclasses.replace(SimConfig(), width=640, height=480)
    n = 8 if quick else 40
    rows = []
    with PyBulletSimulator(cfg) as sim:
        t0 = time.perf_counter()
        sim.load_scene(7)
        build = time.perf_counter() - t0
        poses = exploration_poses(sim, cfg, np.random.default_rng(0))[:n]
        sim.render(poses[0], "high")  # warm-up (texture upload, caches)
        fps = {}
        for quality in ("low", "high"):
            t0 = time.perf_counter()
            for k, T in enumerate(poses):
                sim.render(T, quality, frame_id=str(k))
            fps[quality] = len(poses) / (time.perf_counter() - t0)
    load = os.getloadavg()[0]
    note = (f"{len(poses)} exploration frames of scene seed 7 ({len(sim.spec.objects) if sim.spec else '?'} objects), "
            f"one process, OMP_NUM_THREADS=1, 1-min load average {load:.1f} on {os.cpu_count()} cores; "
            "target: the default 72-frame scene renders in under 40 s")
    rows.append({"benchmark": "LQ robot frames/s at 640x480 (render + blur, rescale, noise)",
                 "figure": f"{fps['low']:.1f} frames/s", "target": ">= 2 frames/s",
                 "ok": fps["low"] >= 2.0, "note": note})
    rows.append({"benchmark": "HQ frames/s at 640x480 (render only)", "figure": f"{fps['high']:.1f} frames/s",
                 "target": ">= 2 frames/s", "ok": fps["high"] >= 2.0, "note": note})
    rows.append({"benchmark": "scene build (procedural spec + pybullet bodies)", "figure": f"{build:.2f} s",
                 "target": "< 5 s", "ok": build < 5.0, "note": "seed 7, default SimConfig"})
    return rows
