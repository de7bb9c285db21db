"""The end-to-end job shared by ``ssl-nav demo``, the benchmarks and the simulators.

:func:`run_scene` runs every stage on one loaded scene of a :class:`~ssl_nav.sim.base.Simulator`:

1. **simulate**: :func:`ssl_nav.sim.simulate.write_simulation`, the stage ``ssl-nav simulate`` runs: low-quality
   robot frames (blur, noise) at the exploration poses (panoramic turns at positions spread over the free
   floor), the user photos and each episode's goal image (both cropped square around their object, as a user
   frames them), and the calibration split, into the frames directory ``OUT/frames`` (``frames.jsonl``,
   ``photos.jsonl``, ``queries.jsonl``, ``calibration.jsonl``, ``scene.json``).
2. **map + views**: fuse the frames read back from ``OUT/frames`` into the 3D instance map (``OUT/map``) and
   collect up to K diverse square crops per instance into the view store ``OUT/store`` (SimView,
   arXiv 2404.09647).
3. **user photos**: add the high-quality user photos of ``OUT/frames/photos.jsonl`` (at most 5 per instance,
   CrossIA arXiv 2404.09645) to the store as ``quality: high`` views, as ``ssl-nav collect`` does.
4. **fine-tune**: SimSiam + CrossIA partial fine-tuning of the backbone on the store (``OUT/run``), energy
   metered (``OUT/energy.jsonl``).
5. **index**: FAISS indexes of the store's robot views (``retrieval.index_quality: low``, the evaluation
   protocol: the user photos are training data) with the ImageNet backbone (the baseline,
   ``OUT/index-baseline``) and with the fine-tuned one (``OUT/index-finetuned``).
6. **evaluate**: the goal images (never used for training) against both indexes: top-1, top-5, mAP, MRR,
   open-set AUROC and accuracy, goal-distance error (:mod:`ssl_nav.retrieval.evaluate`), side by side; and,
   as a separate row, top-1 and open-set AUROC with the user photos indexed too (``metrics_user_photos``).

It writes ``OUT/report.json`` and ``OUT/report.png`` (each query photo with its top-3 instances under both
models, each instance shown by its best-matching stored view, green = correct, red = wrong).

:func:`run_demo` loads the embedded pybullet scene for a seed and draws its trajectory, episodes and user
photos with :func:`ssl_nav.sim.simulate.draw_pybullet_scene` (the streams ``ssl-nav simulate`` uses, so
``ssl-nav simulate --preset demo --seed N`` writes the demo's frames directory), then calls :func:`run_scene`.
Its presets (:data:`DEMO_OVERRIDES`, and :data:`QUICK_OVERRIDES` on top for ``--quick``) fit the 10-minute
(3-minute) budget on 2 CPU cores. Seeds are fixed: the scene, the trajectory, the photos, the episodes and
training all derive from ``sim.seed`` / ``learning.seed``.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ssl_nav.atomic import atomic_write_json
from ssl_nav.config import PipelineConfig, apply_overrides, to_dict

#: the demo's scene size and training budget (10 min on 2 CPU cores); applied when no config file is given.
#: The development benchmark: half the goal objects are printed product packages, twins include near-identical
#: products, and the open set is mostly look-alikes of goal objects that are not in the map.
DEMO_OVERRIDES: dict[str, Any] = {
    "sim.width": 480, "sim.height": 360,
    "sim.n_objects_min": 14, "sim.n_objects_max": 14, "sim.n_twins": 3, "sim.n_distractors": 3,
    "sim.n_open_set": 2, "sim.n_lookalikes": 4, "sim.n_products": 4,
    "sim.n_explore_positions": 10, "sim.n_turn_steps": 8,
    "sim.n_user_photos": 3, "sim.n_queries_per_instance": 3, "sim.n_calibration_queries_per_instance": 1,
    "views.crop_size": 160, "views.max_views_per_instance": 16,
    "learning.image_size": 128, "learning.epochs": 25, "learning.batch_size": 32,
    "learning.trainable": "last",
    "retrieval.image_size": 128,
}
#: ``--quick``: on top of the demo preset (3 min on 2 CPU cores)
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

STAGES = ("load_scene", "simulate", "map_views", "user_photos", "finetune", "index", "evaluate", "report")


def demo_config(cfg: PipelineConfig | None = None, quick: bool = False, seed: int | None = None) -> PipelineConfig:
    """The demo's configuration: ``cfg`` as given, or the defaults with :data:`DEMO_OVERRIDES`; then ``--quick``."""
    if cfg is None:
        cfg = apply_overrides(PipelineConfig(), DEMO_OVERRIDES, "demo preset")
    if quick:
        cfg = apply_overrides(cfg, QUICK_OVERRIDES, "quick preset")
    if seed is not None:
        cfg = apply_overrides(cfg, {"sim.seed": seed, "learning.seed": seed}, "--seed")
    return cfg


class StageTimer:
    """Wall time per stage, printed as each one ends when ``progress``."""

    def __init__(self, progress: bool = True) -> None:
        self.times: dict[str, float] = {}
        self.progress = progress
        self.t0 = time.monotonic()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        import sys

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


# ------------------------------------------------------------------------------------------------ helpers

def _summary_columns(metrics: dict) -> dict:
    keys = ("top1", "top5", "mAP", "mrr", "auroc", "auroc_best_view", "open_set_score", "goal_error_median_m",
            "goal_success_1m", "open_set_accuracy")
    return {k: metrics.get(k) for k in keys}


# ------------------------------------------------------------------------------------------------ run_scene

def run_scene(sim, cfg: PipelineConfig, out: str | os.PathLike, *, episodes: list | None = None,
              user_photos: dict | None = None, draw=None, progress: bool = True,
              timer: StageTimer | None = None) -> dict:
    """Run every stage on the loaded scene of ``sim``; write into ``out``; return the scene report.

    Give either ``draw`` (a :class:`ssl_nav.sim.simulate.SceneDraw`: poses, episodes, calibration episodes,
    photos) or ``episodes`` (instance-image-goal episodes, ``goal_instance_id`` None = not in the map) and
    ``user_photos`` (instance id -> HQ frames with instance masks); the robot then explores with
    :func:`ssl_nav.sim.explore.exploration_poses`. Goal images are the queries and are never trained on;
    user photos are training data (CrossIA).
    """
    from ssl_nav.commands.collect import add_photos_from_dir, read_categories
    from ssl_nav.frames import count_frames, read_frames_dir, read_image_rgb
    from ssl_nav.learning.trainer import finetune
    from ssl_nav.retrieval.build import build_index
    from ssl_nav.retrieval.evaluate import compute_metrics, load_queries, query_result, result_summary
    from ssl_nav.retrieval.query import Retriever
    from ssl_nav.sim.simulate import SceneDraw, write_simulation
    from ssl_nav.views.collect import collect_frames
    from ssl_nav.views.store import ViewStore

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timer = timer or StageTimer(progress)
    frames_dir, store_dir, map_dir = out / "frames", out / "store", out / "map"
    run_dir, idx_base, idx_ft = out / "run", out / "index-baseline", out / "index-finetuned"
    objects = {int(o.instance_id): o for o in sim.objects()}

    # 1. simulate --------------------------------------------------------------------------------------
    with timer.stage("simulate"):
        if draw is None:
            from ssl_nav.sim.explore import exploration_poses, exploration_rng

            draw = SceneDraw(exploration_poses(sim, cfg.sim, exploration_rng(cfg.sim.seed)), list(episodes or []),
                             [], dict(user_photos or {}))
        simulated = write_simulation(sim, cfg, frames_dir, draw, progress=progress)
        del draw, user_photos

    # 2. map + views -----------------------------------------------------------------------------------
    with timer.stage("map_views"):
        if store_dir.exists():
            import shutil

            shutil.rmtree(store_dir)
        store = ViewStore(store_dir, create=True)
        collect = collect_frames(read_frames_dir(frames_dir), store, cfg, progress=progress,
                                 total=count_frames(frames_dir), categories=read_categories(frames_dir),
                                 map_dir=map_dir)

    # 3. user photos (HQ, CrossIA): the cropped photos of photos.jsonl, as ``ssl-nav collect`` adds them ------
    with timer.stage("user_photos"):
        n_hq = add_photos_from_dir(frames_dir, store, progress=progress)["photos"]
        queries = load_queries(frames_dir / "queries.jsonl")
        query_images = [read_image_rgb(q["image_path"]) for q in queries]
        for q in queries:
            q.pop("image_path")

    # 4. fine-tune -------------------------------------------------------------------------------------
    with timer.stage("finetune"):
        ft = finetune(store_dir, run_dir, cfg, progress=progress, ledger=out / cfg.energy.ledger)

    # 5. index -----------------------------------------------------------------------------------------
    with timer.stage("index"):
        build_index(store, cfg.learning.backbone, cfg.retrieval, idx_base, progress=progress)
        build_index(store, ft.model_path, cfg.retrieval, idx_ft, progress=progress)
        retrievers = {"baseline": Retriever.open(idx_base, cfg.retrieval, is_navigable=sim.is_navigable),
                      "finetuned": Retriever.open(idx_ft, cfg.retrieval, is_navigable=sim.is_navigable)}

    # 6. evaluate --------------------------------------------------------------------------------------
    with timer.stage("evaluate"):
        gt_centroids = {str(i): o.centroid.tolist() for i, o in objects.items()}
        metrics, per_query, results, user_photos_row = {}, {}, {}, {}
        for name, r in retrievers.items():
            unit, raw = r.embedder.encode(query_images)

            def evaluate_on(retriever) -> list:
                return [query_result(retriever, e, q["episode_id"], q["instance_id"],
                                     None if q["instance_id"] is None else gt_centroids.get(q["instance_id"]),
                                     features=f) for e, f, q in zip(unit, raw, queries)]

            res = evaluate_on(r)
            results[name] = res
            metrics[name] = {**compute_metrics(res), "calibrated": r.thresholds.calibrated}
            per_query[name] = [result_summary(x) for x in res]
            if cfg.retrieval.index_quality == "low" and n_hq:
                # the other protocol, for reference: the user photos indexed too (in memory)
                other = Retriever(build_index(store, r.embedder, cfg.retrieval, quality="all", progress=False),
                                  r.embedder, cfg.retrieval)
                user_photos_row[name] = compute_metrics(evaluate_on(other))
        goals = []
        unit, raw = retrievers["finetuned"].embedder.encode(query_images[:8])
        for q, e, f in zip(queries, unit, raw):
            ans = retrievers["finetuned"].query_embedding(e, features=f)
            goals.append({"episode_id": q["episode_id"], "instance_id": q["instance_id"],
                          "in_map": ans["in_map"], "top1": ans["matches"][0] if ans["matches"] else None})

    with timer.stage("report"):
        gallery = out / "report.png"
        write_gallery(gallery, queries, query_images, results, store, retrievers)
        b, f = metrics["baseline"], metrics["finetuned"]
        beats = None if b.get("mAP") is None or f.get("mAP") is None else bool(f["mAP"] > b["mAP"])
        report = {
            "scene_id": sim.scene_id, "seed": cfg.sim.seed, "n_objects": len(objects),
            "n_frames": simulated["frames"], "n_queries": len(queries), "simulate": simulated,
            "summary": {"baseline": _summary_columns(b), "finetuned": _summary_columns(f),
                        "finetuned_beats_baseline_mAP": beats},
            "metrics": metrics,
            "protocol": {"index_quality": cfg.retrieval.index_quality,
                         "views_indexed": "robot views" if cfg.retrieval.index_quality == "low"
                         else "robot views and user photos"},
            "metrics_user_photos": user_photos_row or None,
            "collect": collect,
            "store": {"views_low": len(store.views(quality="low")), "views_high": len(store.views(quality="high")),
                      "instances": len(store.instances()), "user_photos_added": n_hq},
            "finetune": {"run_dir": str(ft.run_dir), "model_path": str(ft.model_path), "summary": ft.summary,
                         "last_epoch": ft.metrics[-1] if ft.metrics else None},
            "energy": ft.energy,
            "goals": goals,
            "per_query": per_query,
            "paths": {"frames": str(frames_dir), "queries": str(frames_dir / "queries.jsonl"),
                      "store": str(store_dir), "map": str(map_dir), "run": str(run_dir), "model": str(ft.model_path),
                      "index_baseline": str(idx_base), "index_finetuned": str(idx_ft), "report_png": str(gallery)},
            "config": to_dict(cfg),
        }
    report["stage_seconds"] = dict(timer.times)
    report["total_seconds"] = timer.total()
    atomic_write_json(out / "report.json", report)
    return report


# ------------------------------------------------------------------------------------------------ gallery

def write_gallery(path: Path, queries: list[dict], images: list[np.ndarray], results: dict, store, retrievers: dict,
                  max_rows: int = 10, tile: int = 112) -> None:
    """report.png: per row a query photo, then its top-3 instances under each model (best-matching stored view),
    bordered green when correct and red when wrong; not-in-map queries are labelled as such."""
    import cv2

    from ssl_nav.frames import write_png

    names = list(results)
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
            r = results[n][i]
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
            if not r.accepted and q["instance_id"] is None:
                pass
        canvas_rows.append(row)
    write_png(path, np.concatenate(canvas_rows, axis=0))


# ------------------------------------------------------------------------------------------------ run_demo

def run_demo(cfg: PipelineConfig | None, out: str | os.PathLike, quick: bool = False, progress: bool = True,
             seed: int | None = None) -> dict:
    """The embedded-simulator demo: one pybullet scene for ``sim.seed`` (or ``seed``), every stage, report."""
    from ssl_nav.sim.pybullet_backend import PyBulletSimulator
    from ssl_nav.sim.simulate import draw_pybullet_scene

    if cfg is None or quick or seed is not None:
        cfg = demo_config(cfg, quick, seed)
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
