"""The embedded-simulator demo (``ssl-nav demo``): one pybullet scene for a seed, every stage, the report."""

from __future__ import annotations

import os
from pathlib import Path

from ssl_nav.atomic import atomic_write_json
from ssl_nav.config import PipelineConfig
from ssl_nav.pipeline.presets import demo_config
from ssl_nav.pipeline.scene import ScenePaths, StageTimer, run_scene
from ssl_nav.sim.pybullet_backend import PyBulletSimulator
from ssl_nav.sim.simulate import draw_pybullet_scene

def run_demo(cfg: PipelineConfig | None, out: str | os.PathLike, quick: bool = False, progress: bool = True,
             seed: int | None = None, segmenter: str | None = None) -> dict:
    """The embedded-simulator demo: one pybullet scene for ``sim.seed`` (or ``seed``), every stage, report.

    The configuration is :func:`demo_config` of ``cfg`` (None: the demo preset), ``quick``, ``seed`` and
    ``segmenter``."""
    if cfg is None or quick or seed is not None or segmenter is not None:
        cfg = demo_config(cfg, quick, seed, segmenter)
    out = Path(out)
    ScenePaths(out).claim()  # before the scene loads: a refused --out costs nothing
    timer = StageTimer(progress)
    sim = PyBulletSimulator(cfg.sim)
    try:
        with timer.stage("load_scene"):
            draw = draw_pybullet_scene(sim, cfg)
        report = run_scene(sim, cfg, out, draw=draw, progress=progress, timer=timer)
    finally:
        sim.close()
    report["quick"] = quick
    atomic_write_json(out / "report.json", report)
    return report
