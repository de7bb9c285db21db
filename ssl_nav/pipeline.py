"""The end-to-end job shared by ``ssl-nav demo``, the benchmarks and the simulators.

:func:`run_scene` runs every stage on one loaded scene of a :class:`~ssl_nav.sim.base.Simulator`:

1. **simulate**: render low-quality robot frames (blur, noise) at the exploration poses (panoramic turns at
   positions spread over the free floor) into the frames directory ``OUT/frames`` (``frames.jsonl``,
   ``scene.json``), render each episode's goal image into ``OUT/frames/queries/<episode_id>.png`` with
   ``OUT/frames/queries.jsonl`` (DESIGN.md queries format), and save the user photos.
2. **map + views**: fuse the frames into the 3D instance map (``OUT/map``) and collect up to K diverse square
   crops per instance into the view store ``OUT/store`` (SimView, arXiv 2404.09647).
3. **user photos**: add the high-quality user photos (at most 5 per instance, CrossIA arXiv 2404.09645) of the
   goal instances to the store as ``quality: high`` views, cropped square around the object's mask.
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

:func:`run_demo` loads the embedded pybullet scene for a seed, draws its episodes and user photos, and calls
:func:`run_scene`. Its presets (:data:`DEMO_OVERRIDES`, and :data:`QUICK_OVERRIDES` on top for ``--quick``)
fit the 10-minute (3-minute) budget on 2 CPU cores. Seeds are fixed: the scene, the trajectory, the photos,
the episodes and training all derive from ``sim.seed`` / ``learning.seed``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ssl_nav.atomic import atomic_write_json
from ssl_nav.config import PipelineConfig, apply_overrides, to_dict

#: the demo's scene size and training budget (10 min on 2 CPU cores); applied when no config file is given
DEMO_OVERRIDES: dict[str, Any] = {
    "sim.width": 480, "sim.height": 360,
    "sim.n_objects_min": 14, "sim.n_objects_max": 14, "sim.n_twins": 3, "sim.n_distractors": 3,
    "sim.n_open_set": 4, "sim.n_explore_positions": 10, "sim.n_turn_steps": 8,
    "sim.n_user_photos": 3, "sim.n_queries_per_instance": 3,
    "views.crop_size": 160, "views.max_views_per_instance": 16,
    "learning.image_size": 128, "learning.epochs": 25, "learning.batch_size": 32,
    "learning.trainable": "last",
    "retrieval.image_size": 128,
}
#: ``--quick``: on top of the demo preset (3 min on 2 CPU cores)
QUICK_OVERRIDES: dict[str, Any] = {
    "sim.width": 400, "sim.height": 300,
    "sim.n_objects_min": 10, "sim.n_objects_max": 10, "sim.n_twins": 2, "sim.n_distractors": 2,
    "sim.n_open_set": 3, "sim.n_explore_positions": 8, "sim.n_turn_steps": 8,
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

def object_crop(frame, instance_id: int, size: int, margin: float) -> np.ndarray | None:
    """SimView-style square crop of one instance in a frame, from its instance mask (None when not visible)."""
    from ssl_nav.views.crops import crop_square, square_box

    if frame.instance_mask is None:
        return None
    ys, xs = np.nonzero(frame.instance_mask == instance_id)
    if len(xs) < 16:
        return None
    square = square_box((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), margin)
    return crop_square(frame.rgb, square, size)


def _write_png(path: Path, img: np.ndarray) -> None:
    from ssl_nav.frames import write_png

    write_png(path, img)


def _summary_columns(metrics: dict) -> dict:
    keys = ("top1", "top5", "mAP", "mrr", "auroc", "auroc_best_view", "open_set_score", "goal_error_median_m",
            "goal_success_1m", "open_set_accuracy")
    return {k: metrics.get(k) for k in keys}


# ------------------------------------------------------------------------------------------------ run_scene

def run_scene(sim, cfg: PipelineConfig, out: str | os.PathLike, *, episodes: list, user_photos: dict | None = None,
              progress: bool = True, timer: StageTimer | None = None) -> dict:
    """Run every stage on the loaded scene of ``sim``; write into ``out``; return the scene report.

    ``episodes`` are instance-image-goal episodes (``goal_instance_id`` None = not in the map); their goal
    images are the queries and are never trained on. ``user_photos`` maps an instance id to its HQ photos
    (frames with instance masks); they are added to the store as training data (CrossIA).
    """
    from tqdm import tqdm

    from ssl_nav.frames import FramesWriter
    from ssl_nav.learning.trainer import finetune
    from ssl_nav.retrieval.build import build_index
    from ssl_nav.retrieval.evaluate import compute_metrics, query_result, result_summary
    from ssl_nav.retrieval.query import Retriever
    from ssl_nav.views.collect import collect_frames
    from ssl_nav.views.store import ViewStore

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timer = timer or StageTimer(progress)
    rng = np.random.default_rng([cfg.sim.seed, 7])
    frames_dir, store_dir, map_dir = out / "frames", out / "store", out / "map"
    run_dir, idx_base, idx_ft = out / "run", out / "index-baseline", out / "index-finetuned"
    objects = {int(o.instance_id): o for o in sim.objects()}

    # 1. simulate --------------------------------------------------------------------------------------
    with timer.stage("simulate"):
        from ssl_nav.sim.explore import exploration_poses

        poses = exploration_poses(sim, cfg.sim, rng)
        frames = []
        with FramesWriter(frames_dir) as fw:
            for i, T in enumerate(tqdm(poses, desc="simulate: frames", unit="frame", disable=not progress)):
                f = sim.render(T, quality="low", frame_id=f"{i:05d}", stamp=0.2 * i)
                fw.write(f)
                frames.append(f)
        scene = {"seed": cfg.sim.seed, "scene_id": sim.scene_id, "objects": [o.to_json() for o in objects.values()]}
        atomic_write_json(frames_dir / "scene.json", scene)
        queries, query_images = [], []
        (frames_dir / "queries").mkdir(exist_ok=True)
        for ep in tqdm(episodes, desc="simulate: goal images", unit="query", disable=not progress):
            g = sim.render_goal(ep)
            rel = f"queries/{ep.episode_id}.png"
            img = g.rgb
            if cfg.retrieval.query_crop == "object":
                oid = ep.goal_instance_id if ep.goal_instance_id is not None else ep.extra.get("object_instance_id")
                crop = None if oid is None else object_crop(g, int(oid), cfg.views.crop_size, cfg.views.margin)
                if crop is not None:
                    _write_png(frames_dir / f"queries/{ep.episode_id}_full.png", g.rgb)
                    img = crop
            _write_png(frames_dir / rel, img)
            queries.append({"image": rel, "instance_id": None if ep.goal_instance_id is None else str(ep.goal_instance_id),
                            "episode_id": str(ep.episode_id), "category": ep.category,
                            "goal_T_world_cam": np.asarray(ep.goal_T_world_cam).tolist()})
            query_images.append(img)
        with open(frames_dir / "queries.jsonl.tmp", "w") as fh:
            fh.writelines(json.dumps(q) + "\n" for q in queries)
        os.replace(frames_dir / "queries.jsonl.tmp", frames_dir / "queries.jsonl")
        photo_lines = []
        for iid, photos in sorted((user_photos or {}).items()):
            for n, ph in enumerate(photos):
                rel = f"photos/{iid}/{n}.png"
                _write_png(frames_dir / rel, ph.rgb)
                photo_lines.append({"instance_id": str(iid), "image": rel})
        with open(frames_dir / "photos.jsonl.tmp", "w") as fh:
            fh.writelines(json.dumps(p) + "\n" for p in photo_lines)
        os.replace(frames_dir / "photos.jsonl.tmp", frames_dir / "photos.jsonl")

    # 2. map + views -----------------------------------------------------------------------------------
    with timer.stage("map_views"):
        if store_dir.exists():
            import shutil

            shutil.rmtree(store_dir)
        store = ViewStore(store_dir, create=True)
        categories = {iid: o.category for iid, o in objects.items()}
        collect = collect_frames(frames, store, cfg, progress=progress, total=len(frames), categories=categories,
                                 map_dir=map_dir)
        del frames

    # 3. user photos (HQ, CrossIA) ---------------------------------------------------------------------
    with timer.stage("user_photos"):
        n_hq = 0
        mapped = set(store.instances())
        for iid, photos in sorted((user_photos or {}).items()):
            if str(iid) not in mapped:
                continue  # the map never saw it: no instance to attach the photo to
            for ph in photos[:5]:
                crop = object_crop(ph, int(iid), cfg.views.crop_size, cfg.views.margin)
                if crop is not None:
                    store.add_view(str(iid), crop, "high", frame_id=None, T_world_cam=ph.T_world_cam, source="user_photo")
                    n_hq += 1

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
            "n_frames": len(poses), "n_queries": len(queries),
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

    if cfg is None or quick or seed is not None:
        cfg = demo_config(cfg, quick, seed)
    out = Path(out)
    timer = StageTimer(progress)
    sim = PyBulletSimulator(cfg.sim)
    try:
        with timer.stage("load_scene"):
            sim.load_scene(cfg.sim.seed)
            rng = np.random.default_rng([cfg.sim.seed, 11])
            episodes = sim.episodes(rng)
            goal_ids = sorted({ep.goal_instance_id for ep in episodes if ep.goal_instance_id is not None})
            photos = {iid: sim.user_photos(iid, cfg.sim.n_user_photos, rng) for iid in goal_ids} \
                if cfg.sim.n_user_photos > 0 else {}
        report = run_scene(sim, cfg, out, episodes=episodes, user_photos=photos, progress=progress, timer=timer)
    finally:
        sim.close()
    report["quick"] = quick
    atomic_write_json(out / "report.json", report)
    return report
