"""The end-to-end job shared by ``ssl-nav demo``, ``ssl-nav habitat`` and the benchmarks.

:func:`run_scene` runs every stage on one loaded scene of a :class:`~ssl_nav.sim.base.Simulator`. Each stage
is the function its CLI command calls, so the demo is the CLI sequence (README: "The demo as CLI commands";
``test/test_pipeline.py`` checks that both give identical metrics):

===========  ==================================================  =========================================
stage        function                                            command
===========  ==================================================  =========================================
simulate     :func:`ssl_nav.sim.simulate.write_simulation`       ``ssl-nav simulate --out OUT/frames``
collect      :func:`ssl_nav.views.ingest.collect_recording`      ``ssl-nav collect --frames OUT/frames
                                                                 --store OUT/store``
finetune     :func:`ssl_nav.learning.run_dir.finetune_run`       ``ssl-nav finetune --out OUT/run``
index        :func:`ssl_nav.retrieval.build.build_index`         ``ssl-nav index`` (``--model mobilenet_v2
                                                                 --out OUT/index-baseline``, then
                                                                 ``--model OUT/run/model.pt
                                                                 --out OUT/index-finetuned``)
evaluate     :func:`ssl_nav.retrieval.evaluate.evaluate_index`   ``ssl-nav eval --index OUT/index-finetuned
                                                                 --baseline OUT/index-baseline``
===========  ==================================================  =========================================

1. **simulate**: low-quality robot frames (blur, noise) at the exploration poses, the user photos and each
   episode's goal image (both cropped square around their object, as a user frames them), and the
   calibration split, into the frames directory ``OUT/frames``.
2. **collect**: fuse the frames into the 3D instance map (``OUT/store/map``), cut up to K diverse square
   crops per instance into the view store ``OUT/store`` (SimView, arXiv 2404.09647), and add the user photos
   of ``photos.jsonl`` as ``quality: high`` views (at most 5 per instance, CrossIA arXiv 2404.09645).
3. **finetune**: SimSiam + CrossIA partial fine-tuning of the backbone on the store (``OUT/run``), energy
   metered (``OUT/energy.jsonl``).
4. **index**: FAISS indexes of the store's robot views (``retrieval.index_quality: low``, the evaluation
   protocol: the user photos are training data) with the ImageNet backbone (the baseline) and with the
   fine-tuned one.
5. **evaluate**: the goal images (never used for training) against both indexes: top-1, top-5, mAP, MRR,
   open-set AUROC and accuracy, goal-distance error (:mod:`ssl_nav.retrieval.evaluate`), side by side; and,
   as a separate row, top-1 and open-set AUROC with the user photos indexed too (``metrics_user_photos``).

It writes ``OUT/report.json`` and ``OUT/report.png`` (each query photo with its top-3 instances under both
models, each instance shown by its best-matching stored view, green = correct, red = wrong).

:func:`run_demo` loads the embedded pybullet scene for a seed and draws its trajectory, episodes and user
photos with :func:`ssl_nav.sim.simulate.draw_pybullet_scene` (the streams ``ssl-nav simulate`` uses, so
``ssl-nav simulate --preset demo --seed N`` writes the demo's frames directory), then calls :func:`run_scene`.
Its presets (:data:`DEMO_OVERRIDES`, and :data:`QUICK_OVERRIDES` on top for ``--quick``) fit the 10-minute
(3-minute) budget on 2 CPU cores; ``ssl-nav config dump --preset quick --seed N`` writes the configuration
they make. Seeds are fixed: the scene, the trajectory, the photos, the episodes and training all derive from
``sim.seed`` / ``learning.seed``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from ssl_nav.atomic import atomic_write_json
from ssl_nav.config import PipelineConfig, apply_overrides, to_dict
from ssl_nav.frames import read_image_rgb, write_png
from ssl_nav.learning.run_dir import finetune_run
from ssl_nav.retrieval.build import build_index
from ssl_nav.retrieval.evaluate import evaluate_index, evaluate_queries_file, load_queries, result_summary
from ssl_nav.retrieval.query import Retriever
from ssl_nav.sim.explore import exploration_poses, exploration_rng
from ssl_nav.sim.pybullet_backend import PyBulletSimulator  # pybullet: an optional dependency of the library
from ssl_nav.sim.simulate import SceneDraw, draw_pybullet_scene, write_simulation
from ssl_nav.views.ingest import CollectResult, collect_recording
from ssl_nav.views.store import ViewStore

#: the demo's scene size and training budget (about 1 min on 2 idle CPU cores); applied when no config file is given.
#: The development benchmark: half the goal objects are printed product packages, twins include near-identical
#: products, and the open set is mostly look-alikes of goal objects that are not in the map.
DEMO_OVERRIDES: dict[str, Any] = {
    "sim.width": 480, "sim.height": 360,
    "sim.n_objects_min": 14, "sim.n_objects_max": 14, "sim.n_twins": 3, "sim.n_distractors": 3,
    "sim.n_open_set": 2, "sim.n_lookalikes": 4, "sim.n_products": 4,
    "sim.n_explore_positions": 10, "sim.n_turn_steps": 8,
    "sim.n_user_photos": 3, "sim.n_queries_per_instance": 3, "sim.n_calibration_queries_per_instance": 1,
    "views.crop_size": 160, "views.max_views_per_instance": 16,
    "learning.image_size": 128, "learning.epochs": 30, "learning.batch_size": 32,
    "learning.trainable": "last",
    "retrieval.image_size": 128,
}
#: ``--quick``: on top of the demo preset (about 20 s on 2 idle CPU cores)
QUICK_OVERRIDES: dict[str, Any] = {
    "sim.width": 400, "sim.height": 300,
    "sim.n_objects_min": 10, "sim.n_objects_max": 10, "sim.n_twins": 2, "sim.n_distractors": 2,
    "sim.n_open_set": 1, "sim.n_lookalikes": 3, "sim.n_products": 3,
    "sim.n_explore_positions": 8, "sim.n_turn_steps": 8,
    "sim.n_queries_per_instance": 2,
    "views.crop_size": 128, "views.max_views_per_instance": 12,
    "learning.image_size": 112, "learning.epochs": 20,
    "retrieval.image_size": 112,
}

#: the stages of :func:`run_demo`, as the progress lines number them
STAGES = ("load_scene", "simulate", "collect", "finetune", "index", "evaluate", "report")


def demo_config(cfg: PipelineConfig | None = None, quick: bool = False, seed: int | None = None,
                segmenter: str | None = None) -> PipelineConfig:
    """The demo's configuration: ``cfg`` as given, or the defaults with :data:`DEMO_OVERRIDES`; then ``--quick``,
    ``--seed`` and ``--segmenter`` (``mapping.segmenter``)."""
    if cfg is None:
        cfg = apply_overrides(PipelineConfig(), DEMO_OVERRIDES, "demo preset")
    if quick:
        cfg = apply_overrides(cfg, QUICK_OVERRIDES, "quick preset")
    if seed is not None:
        cfg = apply_overrides(cfg, {"sim.seed": seed, "learning.seed": seed}, "--seed")
    if segmenter is not None:
        cfg = apply_overrides(cfg, {"mapping.segmenter": segmenter}, "--segmenter")
    return cfg


class StageTimer:
    """Wall time per stage, printed as each one ends when ``progress``."""

    def __init__(self, progress: bool = True) -> None:
        self.times: dict[str, float] = {}
        self.progress = progress
        self.t0 = time.monotonic()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.progress:
            print(f"[{len(self.times) + 1}/{len(STAGES)}] {name} ...", file=sys.stderr, flush=True)
        t = time.monotonic()
        try:
            yield
        finally:
            self.times[name] = round(time.monotonic() - t, 2)
            if self.progress:
                print(f"      {name}: {self.times[name]:.1f} s", file=sys.stderr, flush=True)

    def total(self) -> float:
        return round(time.monotonic() - self.t0, 2)


# ------------------------------------------------------------------------------------------------ stages

@dataclass(frozen=True)
class ScenePaths:
    """Where :func:`run_scene` writes, each the output of one CLI command (see the module docstring)."""

    out: Path

    @property
    def frames(self) -> Path:
        return self.out / "frames"

    @property
    def store(self) -> Path:
        return self.out / "store"

    @property
    def map(self) -> Path:
        return self.store / "map"

    @property
    def run(self) -> Path:
        return self.out / "run"

    @property
    def index_baseline(self) -> Path:
        return self.out / "index-baseline"

    @property
    def index_finetuned(self) -> Path:
        return self.out / "index-finetuned"

    @property
    def queries(self) -> Path:
        return self.frames / "queries.jsonl"

    def as_dict(self, model: Path | None) -> dict:
        return {"frames": str(self.frames), "queries": str(self.queries), "store": str(self.store),
                "map": str(self.map), "run": str(self.run), "model": str(model),
                "index_baseline": str(self.index_baseline), "index_finetuned": str(self.index_finetuned),
                "report_png": str(self.out / "report.png")}


def _summary_columns(metrics: dict) -> dict:
    keys = ("top1", "top5", "mAP", "mrr", "auroc", "auroc_best_view", "open_set_score", "goal_error_median_m",
            "goal_success_1m", "open_set_accuracy")
    return {k: metrics.get(k) for k in keys}


def simulate_stage(sim, cfg: PipelineConfig, paths: ScenePaths, draw: SceneDraw | None, episodes: list | None,
                   user_photos: dict | None, progress: bool) -> dict:
    """``ssl-nav simulate``: the robot frames, user photos, queries and calibration split of ``draw`` (or of
    the default exploration with the given episodes and photos) into ``paths.frames``."""
    if draw is None:
        draw = SceneDraw(exploration_poses(sim, cfg.sim, exploration_rng(cfg.sim.seed)), list(episodes or []),
                         [], dict(user_photos or {}))
    return write_simulation(sim, cfg, paths.frames, draw, progress=progress)


def collect_stage(cfg: PipelineConfig, paths: ScenePaths, progress: bool) -> CollectResult:
    """``ssl-nav collect --frames OUT/frames --store OUT/store`` (map, views, user photos) into a new store."""
    if paths.store.exists():
        shutil.rmtree(paths.store)
    return collect_recording(paths.frames, paths.store, cfg, progress=progress)


def index_stage(store: ViewStore, model_path: Path, cfg: PipelineConfig, paths: ScenePaths, progress: bool) -> None:
    """``ssl-nav index`` twice: the ImageNet baseline and the fine-tuned model, the store's robot views."""
    build_index(store, cfg.learning.backbone, cfg.retrieval, paths.index_baseline, progress=progress)
    build_index(store, model_path, cfg.retrieval, paths.index_finetuned, progress=progress)


#: the demo report's name of each column of ``ssl-nav eval``
_REPORT_NAMES = {"baseline": "baseline", "fine-tuned": "finetuned"}


def evaluate_stage(sim, cfg: PipelineConfig, paths: ScenePaths, store: ViewStore, progress: bool) -> tuple:
    """``ssl-nav eval --index OUT/index-finetuned --baseline OUT/index-baseline --queries OUT/frames/queries.jsonl``;
    then, for reference, the other protocol (user photos indexed too, in memory) and the goals of a few
    queries. Returns (evaluation, metrics by report name, user-photos row, goals)."""
    ev = evaluate_index(paths.index_finetuned, paths.queries, cfg.retrieval, baseline=str(paths.index_baseline),
                        progress=progress, is_navigable=sim.is_navigable)
    metrics = {_REPORT_NAMES[k]: v for k, v in ev.columns.items()}
    user_photos_row = {}
    if cfg.retrieval.index_quality == "low" and store.views(quality="high"):
        for name, r in ev.retrievers.items():
            other = Retriever(build_index(store, r.embedder, cfg.retrieval, quality="all", progress=False),
                              r.embedder, cfg.retrieval)
            user_photos_row[_REPORT_NAMES[name]] = evaluate_queries_file(other, paths.queries, progress=False)[0]
    finetuned = ev.retrievers["fine-tuned"]
    goals = []
    for q in load_queries(paths.queries)[:8]:
        ans = finetuned.query(read_image_rgb(q["image_path"]))
        goals.append({"episode_id": q.get("episode_id"), "instance_id": q["instance_id"],
                      "in_map": ans["in_map"], "top1": ans["matches"][0] if ans["matches"] else None})
    return ev, metrics, user_photos_row, goals


def scene_report(sim, cfg: PipelineConfig, paths: ScenePaths, simulated: dict, collected: CollectResult, ft,
                 metrics: dict, user_photos_row: dict, per_query: dict, goals: list, n_queries: int) -> dict:
    """``report.json`` of one scene (without the stage times)."""
    store = collected.store
    b, f = metrics["baseline"], metrics["finetuned"]
    beats = None if b.get("mAP") is None or f.get("mAP") is None else bool(f["mAP"] > b["mAP"])
    return {
        "scene_id": sim.scene_id, "seed": cfg.sim.seed, "n_objects": len(sim.objects()),
        "n_frames": simulated["frames"], "n_queries": n_queries, "simulate": simulated,
        "summary": {"baseline": _summary_columns(b), "finetuned": _summary_columns(f),
                    "finetuned_beats_baseline_mAP": beats},
        "metrics": metrics,
        "protocol": {"index_quality": cfg.retrieval.index_quality,
                     "views_indexed": "robot views" if cfg.retrieval.index_quality == "low"
                     else "robot views and user photos"},
        "metrics_user_photos": user_photos_row or None,
        "collect": collected.summary,
        "map": {"segmenter": collected.summary.get("segmenter"), "reason": collected.summary.get("segmenter_reason"),
                "instances": collected.summary.get("instances")},
        "store": {"views_low": len(store.views(quality="low")), "views_high": len(store.views(quality="high")),
                  "instances": len(store.instances()), "user_photos_added": collected.photos["photos"]},
        "finetune": {"run_dir": str(ft.run_dir), "model_path": str(ft.model_path), "summary": ft.summary,
                     "last_epoch": ft.metrics[-1] if ft.metrics else None},
        "energy": ft.energy,
        "goals": goals,
        "per_query": per_query,
        "paths": paths.as_dict(ft.model_path),
        "config": to_dict(cfg),
    }


# ------------------------------------------------------------------------------------------------ run_scene

def run_scene(sim, cfg: PipelineConfig, out: str | os.PathLike, *, episodes: list | None = None,
              user_photos: dict | None = None, draw: SceneDraw | None = None, progress: bool = True,
              timer: StageTimer | None = None) -> dict:
    """Run every stage on the loaded scene of ``sim``; write into ``out``; return the scene report.

    Give either ``draw`` (a :class:`ssl_nav.sim.simulate.SceneDraw`: poses, episodes, calibration episodes,
    photos) or ``episodes`` (instance-image-goal episodes, ``goal_instance_id`` None = not in the map) and
    ``user_photos`` (instance id -> HQ frames with instance masks); the robot then explores with
    :func:`ssl_nav.sim.explore.exploration_poses`. Goal images are the queries and are never trained on;
    user photos are training data (CrossIA). Each stage is the function its CLI command calls.
    """
    paths = ScenePaths(Path(out))
    paths.out.mkdir(parents=True, exist_ok=True)
    timer = timer or StageTimer(progress)
    with timer.stage("simulate"):
        simulated = simulate_stage(sim, cfg, paths, draw, episodes, user_photos, progress)
    with timer.stage("collect"):
        collected = collect_stage(cfg, paths, progress)
    with timer.stage("finetune"):
        ft = finetune_run(paths.store, paths.run, cfg, overwrite=True, progress=progress)
    with timer.stage("index"):
        index_stage(collected.store, ft.model_path, cfg, paths, progress)
    with timer.stage("evaluate"):
        ev, metrics, user_photos_row, goals = evaluate_stage(sim, cfg, paths, collected.store, progress)
    with timer.stage("report"):
        queries = load_queries(paths.queries)
        write_gallery(paths.out / "report.png", queries, [read_image_rgb(q["image_path"]) for q in queries],
                      collected.store, {_REPORT_NAMES[k]: r for k, r in ev.retrievers.items()})
        per_query = {_REPORT_NAMES[k]: [result_summary(r) for r in res] for k, res in ev.results.items()}
        report = scene_report(sim, cfg, paths, simulated, collected, ft, metrics, user_photos_row, per_query,
                              goals, len(queries))
    report["stage_seconds"] = dict(timer.times)
    report["total_seconds"] = timer.total()
    atomic_write_json(paths.out / "report.json", report)
    return report


# ------------------------------------------------------------------------------------------------ gallery

def write_gallery(path: Path, queries: list[dict], images: list[np.ndarray], store: ViewStore, retrievers: dict,
                  max_rows: int = 10, tile: int = 112) -> None:
    """report.png: per row a query photo, then its top-3 instances under each model (best-matching stored view),
    bordered green when correct and red when wrong; not-in-map queries are labelled as such."""
    names = list(retrievers)
    views_by_id = {v["view_id"]: v for v in store.views()}
    rows_idx = [i for i, q in enumerate(queries) if q["instance_id"] is not None][:max_rows - 2]
    rows_idx += [i for i, q in enumerate(queries) if q["instance_id"] is None][:max_rows - len(rows_idx)]
    pad, head = 6, 22
    width = pad + (tile + pad) * (1 + 3 * len(names)) + pad * len(names)
    canvas_rows = []
    header = np.full((head + 4, width, 3), 255, np.uint8)
    x = pad + tile + pad
    for n in names:
        cv2.putText(header, f"{n}: top-3", (x + 2, head - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        x += 3 * (tile + pad) + pad
    cv2.putText(header, "query", (pad + 2, head - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    canvas_rows.append(header)
    for i in rows_idx:
        q = queries[i]
        row = np.full((tile + head + pad, width, 3), 255, np.uint8)
        qi = cv2.resize(images[i], (tile, tile), interpolation=cv2.INTER_AREA)
        row[head:head + tile, pad:pad + tile] = qi
        label = f"#{q['instance_id']}" if q["instance_id"] is not None else "not in map"
        cv2.putText(row, label, (pad + 2, head - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        x = pad + tile + pad
        for n in names:
            ranked = retrievers[n].rank(retrievers[n].embedder.embed([images[i]])[0])[0][:3]
            for j, s in enumerate(ranked):
                v = views_by_id.get(s.best_view_id)
                img = store.load_image(v) if v is not None else np.zeros((tile, tile, 3), np.uint8)
                img = cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA)
                correct = q["instance_id"] is not None and s.instance_id == q["instance_id"]
                color = (0, 170, 0) if correct else (210, 0, 0)
                cv2.rectangle(img, (0, 0), (tile - 1, tile - 1), color, 4)
                row[head:head + tile, x:x + tile] = img
                cv2.putText(row, f"#{s.instance_id} {s.score:.2f}", (x + 2, head - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                            color, 1, cv2.LINE_AA)
                x += tile + pad
            x += pad
        canvas_rows.append(row)
    write_png(path, np.concatenate(canvas_rows, axis=0))


# ------------------------------------------------------------------------------------------------ run_demo

def run_demo(cfg: PipelineConfig | None, out: str | os.PathLike, quick: bool = False, progress: bool = True,
             seed: int | None = None, segmenter: str | None = None) -> dict:
    """The embedded-simulator demo: one pybullet scene for ``sim.seed`` (or ``seed``), every stage, report.

    The configuration is :func:`demo_config` of ``cfg`` (None: the demo preset), ``quick``, ``seed`` and
    ``segmenter``."""
    if cfg is None or quick or seed is not None or segmenter is not None:
        cfg = demo_config(cfg, quick, seed, segmenter)
    out = Path(out)
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
