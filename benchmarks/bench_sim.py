"""Simulator throughput: the embedded pybullet backend at 640x480 on one core, before and after, side by side.

"Before" is the renderer as it was: the room's floor, walls and ceiling rasterised by TinyRenderer
(``sim.room_shell: tinyrenderer``) and the LQ sensor noise drawn with ``rng.standard_normal`` then rounded and
clipped in numpy (:func:`_degrade_before`, the previous ``apply_degradation``). "After" is this version: the
room ray-cast in numpy (:mod:`ssl_nav.sim.room_shell`) and inverse-transform noise added and saturated by
OpenCV in one pass. Both run on the same poses in the same process, interleaved, so the ratio holds on a
loaded machine; a per-stage breakdown shows where the time goes. One core: OMP_NUM_THREADS=1 and
``cv2.setNumThreads(1)``.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path

import numpy as np

AREA = "Simulator"


def _degrade_before(rgb: np.ndarray, d, rng: np.random.Generator) -> np.ndarray:
    """The previous ``ssl_nav.sim.degrade.apply_degradation``: the same blur and rescale, then float32 normal noise
    and numpy round and clip (the noise step is what changed)."""
    from ssl_nav.sim.degrade import blur_and_rescale

    img = blur_and_rescale(rgb, d)
    if d.noise_std > 0:
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(d.noise_std)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _timed(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


def _breakdown(sim, poses) -> dict[str, float]:
    """Milliseconds per frame of each step of an LQ render (this version), measured piece by piece."""
    import pybullet as p

    from ssl_nav.frames import depth_to_png16, encode_png
    from ssl_nav.sim.degrade import degrade
    from ssl_nav.sim.pybullet_backend import NEAR, linearise_depth, opengl_projection_matrix, opengl_view_matrix

    cfg = sim.cfg
    w, h = cfg.width, cfg.height
    K = sim.intrinsics()
    light = sim.spec.lighting
    acc = {k: 0.0 for k in ("getCameraImage (furniture, objects)", "room shell ray-cast", "degradation (LQ)",
                            "depth linearisation", "PNG encoding (rgb, depth, mask)")}
    for k, T in enumerate(poses):
        (_, _, px, zbuf, seg), dt = _timed(
            p.getCameraImage, w, h, viewMatrix=opengl_view_matrix(T),
            projectionMatrix=opengl_projection_matrix(K, w, h, NEAR, cfg.max_depth),
            lightDirection=list(light.direction), lightColor=list(light.color), lightDistance=10.0, shadow=0, lightAmbientCoeff=light.ambient,
            lightDiffuseCoeff=light.diffuse, lightSpecularCoeff=light.specular, renderer=p.ER_TINY_RENDERER,
            physicsClientId=sim._cid)
        acc["getCameraImage (furniture, objects)"] += dt
        _, dt = _timed(sim._shell.render, K, T, w, h, light)
        acc["room shell ray-cast"] += dt
        _, dt = _timed(linearise_depth, np.asarray(zbuf).reshape(h, w), NEAR, cfg.max_depth)
        acc["depth linearisation"] += dt
        rgb = np.ascontiguousarray(np.asarray(px).reshape(h, w, 4)[:, :, :3])
        _, dt = _timed(degrade, rgb, cfg, np.random.default_rng(k))
        acc["degradation (LQ)"] += dt
        f = sim.render(T, "low", frame_id=str(k))
        t = time.perf_counter()
        encode_png(f.rgb), encode_png(depth_to_png16(f.depth)), encode_png(f.instance_mask.astype(np.uint16))
        acc["PNG encoding (rgb, depth, mask)"] += time.perf_counter() - t
    return {k: 1000 * v / len(poses) for k, v in acc.items()}


def _byte_identical(cfg, seed: int, n: int) -> bool:
    """Two fresh simulators, the same seed and poses: identical RGB, depth and masks (LQ and HQ)."""
    from ssl_nav.sim.explore import exploration_poses, exploration_rng
    from ssl_nav.sim.pybullet_backend import PyBulletSimulator

    runs = []
    for _ in range(2):
        with PyBulletSimulator(cfg) as sim:
            sim.load_scene(seed)
            poses = exploration_poses(sim, cfg, exploration_rng(seed))[:n]
            runs.append([(f.rgb.tobytes(), f.depth.tobytes(), f.instance_mask.tobytes())
                         for k, T in enumerate(poses) for f in (sim.render(T, "low", frame_id=str(k)),
                                                                 sim.render(T, "high"))])
    return runs[0] == runs[1]


def run(quick: bool) -> list[dict]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2

    import ssl_nav.sim.degrade as degrade_mod
    from ssl_nav.config import PipelineConfig, SimConfig
    from ssl_nav.sim.explore import exploration_poses
    from ssl_nav.sim.pybullet_backend import PyBulletSimulator
    from ssl_nav.sim.simulate import simulate_to_dir

    cv2.setNumThreads(1)
    cfg = dataclasses.replace(SimConfig(), width=640, height=480)
    n = 8 if quick else 40
    sims = {name: PyBulletSimulator(dataclasses.replace(cfg, room_shell=shell))
            for name, shell in (("after", "raycast"), ("before", "tinyrenderer"))}
    rows = []
    try:
        build = {}
        for name, sim in sims.items():
            _, build[name] = _timed(sim.load_scene, 7)
        poses = exploration_poses(sims["after"], cfg, np.random.default_rng(0))[:n]
        for sim in sims.values():  # warm-up: texture upload, noise tables, imports
            sim.render(poses[0], "high")
            sim.render(poses[0], "low", frame_id="warm-up")
        secs = {(name, q): 0.0 for name in sims for q in ("low", "high")}
        after_apply = degrade_mod.apply_degradation
        for k, T in enumerate(poses):  # interleaved, so both see the same machine load
            for name, sim in sims.items():
                degrade_mod.apply_degradation = _degrade_before if name == "before" else after_apply
                for q in ("low", "high"):
                    _, dt = _timed(sim.render, T, q, frame_id=str(k))
                    secs[(name, q)] += dt
        degrade_mod.apply_degradation = after_apply
        fps = {key: len(poses) / s for key, s in secs.items()}
        breakdown = _breakdown(sims["after"], poses)
        n_objects = len(sims["after"].spec.objects)
    finally:
        for sim in sims.values():
            sim.close()
    load = os.getloadavg()[0]
    note = (f"{len(poses)} exploration frames of scene seed 7 ({n_objects} objects), one process, OMP_NUM_THREADS=1, "
            f"cv2.setNumThreads(1), 1-min load average {load:.1f} on {os.cpu_count()} cores")
    ratio = fps[("after", "low")] / fps[("before", "low")]
    rows.append({"benchmark": "LQ robot frames/s at 640x480 (render + blur, rescale, noise), one core",
                 "figure": f"{fps[('after', 'low')]:.1f} frames/s", "target": ">= 10 frames/s",
                 "ok": fps[("after", "low")] >= 10.0,
                 "note": f"{note}; before (room rasterised by TinyRenderer, numpy noise), same run: "
                         f"{fps[('before', 'low')]:.1f} frames/s, {ratio:.2f}x faster now"})
    rows.append({"benchmark": "HQ frames/s at 640x480 (render only), one core",
                 "figure": f"{fps[('after', 'high')]:.1f} frames/s", "target": ">= 10 frames/s",
                 "ok": fps[("after", "high")] >= 10.0,
                 "note": f"before, same run: {fps[('before', 'high')]:.1f} frames/s, "
                         f"{fps[('after', 'high')] / fps[('before', 'high')]:.2f}x faster now"})
    total = sum(breakdown.values())
    rows.append({"benchmark": "where an LQ frame's time goes (ms per frame, this version)",
                 "figure": f"{total:.0f} ms incl. PNG", "target": "", "ok": None,
                 "note": "; ".join(f"{k} {v:.1f}" for k, v in breakdown.items())
                         + " (measured piece by piece; PNG encoding happens when a frames directory is written)"})
    # hard cases + RealSense-like depth (informational: more objects, the depth model's own work)
    hard = dataclasses.replace(cfg, hard_cases=True, depth_model="realsense", n_products=4)
    with PyBulletSimulator(hard) as sim:
        sim.load_scene(7)
        sim.render(poses[0], "low", frame_id="warm-up")
        _, dt = _timed(lambda: [sim.render(T, "low", frame_id=str(k)) for k, T in enumerate(poses)])
        n_hard = len(sim.spec.objects)
    rows.append({"benchmark": "LQ frames/s at 640x480 with sim.hard_cases, products and sim.depth_model: realsense",
                 "figure": f"{len(poses) / dt:.1f} frames/s", "target": "", "ok": None,
                 "note": f"seed 7, {n_hard} objects; same poses and machine as above"})
    # a whole `ssl-nav simulate` of the default scene (frames, photos, queries, calibration, PNG files)
    pcfg = dataclasses.replace(PipelineConfig(), sim=dataclasses.replace(cfg, seed=7))
    with tempfile.TemporaryDirectory() as tmp:
        s, dt = _timed(simulate_to_dir, pcfg, Path(tmp) / "s7", False)
    rows.append({"benchmark": "ssl-nav simulate --seed 7 (default config: 640x480, frames + photos + queries + "
                              "calibration, PNG files)",
                 "figure": f"{dt:.1f} s", "target": "< 40 s", "ok": dt < 40.0,
                 "note": f"{s['frames']} frames, {s['photos']} photos, {s['queries']} queries, "
                         f"{s['calibration_queries']} calibration queries; {s['frames'] / dt:.1f} frames/s overall"})
    same = _byte_identical(dataclasses.replace(cfg, hard_cases=True, depth_model="realsense", n_products=2), 3, 3)
    rows.append({"benchmark": "byte-identical output per seed (two fresh simulators, LQ + HQ, hard cases)",
                 "figure": "identical" if same else "DIFFERENT", "target": "identical", "ok": same,
                 "note": "also checked by test/sim/test_simulate.py on whole frames directories"})
    rows.append({"benchmark": "scene build (procedural spec + pybullet bodies)", "figure": f"{build['after']:.2f} s",
                 "target": "< 5 s", "ok": build["after"] < 5.0,
                 "note": f"seed 7, default SimConfig; with the room as pybullet bodies {build['before']:.2f} s"})
    return rows
