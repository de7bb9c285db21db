"""The multi-scene instance-image-goal runner shared by the Habitat and the embedded (pybullet) backends.

For each scene it loads the scene, gets its episodes (and high-quality user photos), and runs the shared
pipeline :func:`ssl_nav.pipeline.run_scene` (explore, map, collect views, fine-tune, index, answer every
episode's goal image) into ``OUT/scenes/<scene>``. It then scores each episode's answer and writes
``OUT/report.json``, the same shape for both backends, with SimView's table (Sakaguchi et al., IROS 2024,
arXiv 2404.09647: mAP per scene and averaged over scenes; top-1) plus:

- **retrieval success**: an in-map episode is a success when its goal image is accepted as "in the map" and
  the top-1 instance is the goal instance; an open-set episode (goal not in the scene's map) when it is
  rejected.
- **goal success**: for in-map episodes, the chosen (top-1, accepted) instance leads the robot to the goal.
  With the goal's view points (habitat-lab InstanceImageNav episodes list them: navigable positions from
  which the object is visible, the success area of habitat-lab's ``distance_to: VIEW_POINTS``), the goal
  pose that :func:`ssl_nav.retrieval.goals.goal_pose` computes for the chosen instance must lie within
  ``sim.success_distance`` of one of them, on the floor plane. Without view points (the embedded simulator),
  the chosen instance's map centroid must lie within ``sim.success_distance`` of the goal object's centre.
  Each scene records which target it used (``success_target``). habitat-lab scores an agent that stops
  within 0.1 m (geodesic) of a view point; ours scores the goal sent to the planner, with a planar
  distance, so the default is 1 m.

Averages are means over scenes of the per-scene values (scenes without in-map episodes are skipped for the
in-map metrics).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ssl_nav.atomic import atomic_write_json
from ssl_nav.config import PipelineConfig, to_dict
from ssl_nav.pipeline.scene import run_scene
from ssl_nav.retrieval.goals import goal_pose
from ssl_nav.sim.base import Episode, Simulator
from ssl_nav.sim.episodes import group_by_scene, scene_name
from ssl_nav.sim.simulate import SceneDraw, draw_pybullet_scene

MODELS = ("baseline", "finetuned")
#: per-scene metrics averaged over scenes, in table order
SCENE_METRICS = ("mAP", "top1", "retrieval_success", "goal_success")


@dataclass
class SceneJob:
    """One scene of a run: its name (output folder) and how to load it.

    ``load(sim)`` loads the scene into ``sim`` and returns its episodes and user photos (instance id -> HQ
    frames; may be empty), or a whole :class:`~ssl_nav.sim.simulate.SceneDraw` (the embedded simulator's).
    """

    name: str
    load: Callable[[Simulator], "tuple[list[Episode], dict[int, list]] | SceneDraw"]


# ------------------------------------------------------------------------------------------ scoring

def planar_distance(a: Iterable[float], b: Iterable[float]) -> float:
    """Distance in the floor plane (x, y of our z-up world)."""
    a, b = np.asarray(list(a), float), np.asarray(list(b), float)
    return float(np.linalg.norm(a[:2] - b[:2]))


def score_episode(result: dict, episode: Episode, success_distance: float,
                  goal_for: Callable[[list[float]], dict | None]) -> dict:
    """Retrieval and goal success of one episode from its ``run_scene`` per-query result.

    ``result`` is one ``report["per_query"][model]`` entry (:func:`ssl_nav.retrieval.evaluate.result_summary`);
    ``goal_for(centroid)`` returns the goal pose the robot would get for an instance centroid.
    """
    gt = result.get("gt_instance_id")
    ranked = result.get("ranked_instances") or []
    pred = ranked[0] if ranked else None
    accepted = bool(result.get("accepted"))
    out: dict[str, Any] = {"episode_id": str(episode.episode_id), "gt_instance_id": gt, "pred_instance_id": pred,
                           "accepted": accepted, "best_score": result.get("best_score")}
    if gt is None:
        out.update(retrieval_success=not accepted, goal_success=None, goal_distance_m=None, goal=None)
        return out
    out["retrieval_success"] = bool(accepted and pred == gt)
    centroid = result.get("pred_centroid")
    view_points = episode.extra.get("view_points") or []
    if not accepted or centroid is None:
        out.update(goal_success=False, goal_distance_m=None, goal=None)
    elif view_points:
        goal = goal_for(list(centroid))
        d = min(planar_distance(goal["position"], vp) for vp in view_points) if goal else math.inf
        out.update(goal=goal, goal_distance_m=round(d, 4), goal_success=bool(d <= success_distance))
    else:
        gt_centroid = result.get("gt_centroid")
        d = math.inf if gt_centroid is None else float(np.linalg.norm(np.subtract(centroid, gt_centroid)))
        out.update(goal=None, goal_distance_m=None if math.isinf(d) else round(d, 4),
                   goal_success=bool(d <= success_distance))
    return out


def _mean(values: Iterable[Any]) -> float | None:
    v = [float(x) for x in values if x is not None]
    return float(np.mean(v)) if v else None


def scene_row(scene_report: dict, scored: dict[str, list[dict]], n_unresolved: int) -> dict:
    """One scene's row of the table from ``run_scene``'s report and the scored episodes."""
    row: dict[str, Any] = {
        "scene_id": scene_report.get("scene_id"), "n_objects": scene_report.get("n_objects"),
        "n_episodes": scene_report.get("n_queries"), "n_unresolved_goals": n_unresolved,
    }
    for m in MODELS:
        metrics = scene_report.get("metrics", {}).get(m, {})
        eps = scored.get(m, [])
        inmap = [e for e in eps if e["gt_instance_id"] is not None]
        row[m] = {
            "mAP": metrics.get("mAP"), "top1": metrics.get("top1"), "top5": metrics.get("top5"),
            "auroc": metrics.get("auroc"),
            "retrieval_success": _mean(e["retrieval_success"] for e in eps),
            "goal_success": _mean(e["goal_success"] for e in inmap),
            "n_in_map": len(inmap), "n_open_set": len(eps) - len(inmap),
        }
    return row


def average_rows(rows: list[dict]) -> dict:
    """Mean over scenes of each model's per-scene metrics (``None`` values skipped)."""
    return {m: {k: _mean(r[m].get(k) for r in rows) for k in SCENE_METRICS + ("top5", "auroc")} for m in MODELS}


def format_report_table(report: dict) -> str:
    """SimView's table: one line per scene and the mean, baseline vs fine-tuned for each metric."""
    cols = [(k, m) for k in SCENE_METRICS for m in MODELS]
    short = {"mAP": "mAP", "top1": "top1", "retrieval_success": "retr", "goal_success": "goal"}
    head = "scene".ljust(22) + "eps".rjust(5) + "".join(f"{short[k]}:{'base' if m == 'baseline' else 'ft'}".rjust(10)
                                                       for k, m in cols)
    lines = [head, "-" * len(head)]

    def fmt(v: Any) -> str:
        return ("–" if v is None else f"{v:.3f}").rjust(10)

    for s in report["scenes"]:
        lines.append(str(s["scene"])[:21].ljust(22) + str(s["n_episodes"]).rjust(5)
                     + "".join(fmt(s[m].get(k)) for k, m in cols))
    avg = report["average"]
    lines.append("-" * len(head))
    lines.append("mean".ljust(22) + str(report["n_episodes"]).rjust(5) + "".join(fmt(avg[m].get(k)) for k, m in cols))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ running

def run_scenes(sim: Simulator, jobs: Iterable[SceneJob], cfg: PipelineConfig, out: str | os.PathLike, *,
               backend: str, meta: dict | None = None, progress: bool = True) -> dict:
    """Run :func:`ssl_nav.pipeline.run_scene` on each scene and write ``OUT/report.json``; returns the report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = list(jobs)
    scenes: list[dict] = []
    for n, job in enumerate(jobs, start=1):
        if progress:
            print(f"== scene {n}/{len(jobs)}: {job.name}", file=sys.stderr, flush=True)
        loaded = job.load(sim)
        draw = loaded if isinstance(loaded, SceneDraw) else None
        episodes, photos = (draw.episodes, draw.user_photos) if draw is not None else loaded
        # a Habitat goal object that is no instance of our map (unresolved id) cannot be scored either way
        unresolved = [e for e in episodes if "goal_object_id" in e.extra and not e.extra.get("goal_resolved")]
        episodes = [e for e in episodes if not ("goal_object_id" in e.extra and not e.extra.get("goal_resolved"))]
        if not episodes:
            if progress:
                print(f"   {job.name}: no episodes to answer; skipped", file=sys.stderr, flush=True)
            continue
        scene_out = out / "scenes" / job.name
        if draw is not None:
            draw.episodes = episodes
        rep = run_scene(sim, cfg, scene_out, episodes=episodes, user_photos=photos, draw=draw, progress=progress)

        def goal_for(centroid: list[float]) -> dict | None:
            return goal_pose(np.asarray(centroid, dtype=np.float64), standoff=cfg.retrieval.standoff,
                             is_navigable=sim.is_navigable)

        by_id = {str(e.episode_id): e for e in episodes}
        scored = {m: [score_episode(r, by_id[str(r["query_id"])], cfg.sim.success_distance, goal_for)
                      for r in rep.get("per_query", {}).get(m, []) if str(r.get("query_id")) in by_id]
                  for m in MODELS}
        row = {"scene": job.name, **scene_row(rep, scored, len(unresolved))}
        row.update(report=str(Path("scenes") / job.name / "report.json"),
                   success_target="view_points" if any(e.extra.get("view_points") for e in episodes)
                   else "object_centroid",
                   energy_joules=((rep.get("energy") or {}).get("joules") or {}).get("total"),
                   seconds=rep.get("total_seconds"), episodes=scored)
        scenes.append(row)
        atomic_write_json(scene_out / "episodes_scored.json", scored)
    report = {
        "backend": backend, **(meta or {}),
        "success_distance_m": cfg.sim.success_distance,
        "models": list(MODELS),
        "n_scenes": len(scenes),
        "n_episodes": sum(int(s["n_episodes"] or 0) for s in scenes),
        "average": average_rows(scenes) if scenes else {m: {k: None for k in SCENE_METRICS} for m in MODELS},
        "scenes": scenes,
        "config": to_dict(cfg),
    }
    atomic_write_json(out / "report.json", report)
    return report


# ------------------------------------------------------------------------------------------ scene sources

def pybullet_jobs(cfg: PipelineConfig, n_scenes: int) -> list[SceneJob]:
    """Embedded-simulator scenes: seeds ``sim.seed``, ``sim.seed + 1``, ...; each drawn as ``ssl-nav simulate``
    draws it (:func:`ssl_nav.sim.simulate.draw_pybullet_scene`)."""
    def job(seed: int) -> SceneJob:
        def load(sim) -> SceneDraw:
            return draw_pybullet_scene(sim, dataclasses.replace(cfg, sim=dataclasses.replace(cfg.sim, seed=seed)))

        return SceneJob(name=f"pybullet_seed{seed}", load=load)

    return [job(int(cfg.sim.seed) + k) for k in range(max(1, int(n_scenes)))]


def first_per_scene(episodes: list[Episode], n: int) -> list[Episode]:
    """The first ``n`` episodes of each scene, in file order (``ssl-nav habitat --max-episodes``)."""
    counts: dict[str, int] = {}
    out = []
    for e in episodes:
        if counts.get(e.scene_id, 0) < n:
            counts[e.scene_id] = counts.get(e.scene_id, 0) + 1
            out.append(e)
    return out


def limit_episodes(job: SceneJob, n: int) -> SceneJob:
    """``job`` answering only its first ``n`` episodes (the test queries; the calibration split is kept)."""
    def load(sim):
        loaded = job.load(sim)
        if isinstance(loaded, SceneDraw):
            return dataclasses.replace(loaded, episodes=loaded.episodes[:n])
        episodes, photos = loaded
        return episodes[:n], photos

    return SceneJob(name=job.name, load=load)


def habitat_jobs(cfg: PipelineConfig, episodes: list[Episode], max_scenes: int | None = None) -> list[SceneJob]:
    """Habitat scenes in the episodes' order; each binds its episodes' goal objects to its instances."""
    groups = list(group_by_scene(episodes).items())
    if max_scenes is not None:
        groups = groups[:max_scenes]

    def job(scene_id: str, eps: list[Episode]) -> SceneJob:
        def load(sim) -> tuple[list[Episode], dict[int, list]]:
            sim.load_scene(scene_id)
            bound = sim.bind_episodes(eps)
            photos = sim.user_photos_from_image_goals(bound, cfg.sim.n_user_photos) if cfg.sim.n_user_photos else {}
            return bound, photos

        return SceneJob(name=scene_name(scene_id), load=load)

    return [job(s, e) for s, e in groups]
