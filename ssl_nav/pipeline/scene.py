"""One scene, every stage: :func:`run_scene` and the layout of its output directory (:class:`ScenePaths`).

The stages and what they write are described in :mod:`ssl_nav.pipeline`; each stage is the function its CLI
command calls.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ssl_nav.atomic import atomic_write_json
from ssl_nav.config import PipelineConfig, to_dict
from ssl_nav.errors import SslNavError
from ssl_nav.frames import read_image_rgb
from ssl_nav.learning.run_dir import finetune_run
from ssl_nav.paths import store_dir, store_map_dir
from ssl_nav.pipeline.gallery import write_gallery
from ssl_nav.pipeline.presets import STAGES
from ssl_nav.retrieval.build import build_index
from ssl_nav.retrieval.evaluate import evaluate_index, evaluate_queries_file, load_queries, result_summary
from ssl_nav.retrieval.query import Retriever
from ssl_nav.sim.explore import exploration_poses, exploration_rng
from ssl_nav.sim.simulate import SceneDraw, write_simulation
from ssl_nav.views.ingest import CollectResult, collect_recording
from ssl_nav.views.store import ViewStore


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
        return store_dir(self.out)

    @property
    def map(self) -> Path:
        return store_map_dir(self.store)

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

    #: written into ``out`` before the first stage: its stage directories are then the pipeline's to replace
    MARKER = ".ssl-nav-pipeline.json"

    def stage_dirs(self) -> list[Path]:
        return [self.frames, self.store, self.run, self.index_baseline, self.index_finetuned]

    def claim(self) -> None:
        """Refuse an ``out`` whose stage directories hold something this pipeline did not write (a view store
        of the user's, say): a run replaces them. Then mark ``out`` as the pipeline's. Nothing is deleted on
        refusal."""
        if self.out.exists() and not self.out.is_dir():
            raise SslNavError(f"{self.out}: exists and is not a directory")
        if not (self.out / self.MARKER).is_file():
            for d in self.stage_dirs():
                if d.is_symlink() or (d.exists() and (not d.is_dir() or any(d.iterdir()))):
                    raise SslNavError(f"{d}: exists and was not written by ssl-nav demo (no {self.out / self.MARKER});"
                                      f" a run would replace it: choose another --out, or move it away")
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.out / self.MARKER, {"written_by": "ssl_nav.pipeline.run_scene",
                                                   "stages": [d.name for d in self.stage_dirs()]})

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
    paths.claim()
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
