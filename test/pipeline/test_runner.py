"""The shared multi-scene runner: episode scoring, the table, and a tiny real run on the pybullet backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ssl_nav.sim.base import Episode
from ssl_nav.pipeline.runner import MODELS, SCENE_METRICS, average_rows, format_report_table, scene_row, score_episode

SSL_NAV = Path(sys.executable).with_name("ssl-nav")


def _ep(view_points=None, eid="e1") -> Episode:
    extra = {} if view_points is None else {"view_points": view_points}
    return Episode(episode_id=eid, scene_id="s", goal_instance_id=3, goal_T_world_cam=np.eye(4), extra=extra)


def _res(gt="3", ranked=("3", "5"), accepted=True, pred_c=(1.0, 1.0, 0.5), gt_c=(1.2, 1.0, 0.5)) -> dict:
    return {"query_id": "e1", "gt_instance_id": gt, "ranked_instances": list(ranked), "accepted": accepted,
            "best_score": 0.8, "pred_centroid": None if pred_c is None else list(pred_c),
            "gt_centroid": None if gt_c is None else list(gt_c)}


def _goal_at(position):
    return lambda centroid: {"position": list(position), "yaw": 0.0, "frame_id": "map", "navigable": True}


# ------------------------------------------------------------------------------------------ scoring

def test_goal_success_against_view_points_uses_the_goal_pose_on_the_floor_plane():
    vps = [[3.0, 0.0, 0.1], [0.0, 2.0, 0.1]]
    s = score_episode(_res(), _ep(vps), 1.0, _goal_at([0.5, 2.5, 0.0]))  # 0.707 m from the second view point
    assert s["retrieval_success"] and s["goal_success"] and s["goal_distance_m"] == pytest.approx(0.7071, abs=1e-4)
    assert s["goal"]["position"] == [0.5, 2.5, 0.0]
    s = score_episode(_res(), _ep(vps), 0.5, _goal_at([0.5, 2.5, 7.0]))  # height is ignored, 0.707 > 0.5
    assert not s["goal_success"] and s["goal_distance_m"] == pytest.approx(0.7071, abs=1e-4)
    # the wrong instance can still lead near the goal (e.g. a neighbouring twin): goal success, retrieval failure
    s = score_episode(_res(ranked=("5", "3")), _ep(vps), 1.0, _goal_at([0.0, 2.2, 0.0]))
    assert not s["retrieval_success"] and s["goal_success"] and s["pred_instance_id"] == "5"


def test_goal_success_without_view_points_compares_centroids():
    s = score_episode(_res(pred_c=(1.0, 1.0, 0.5), gt_c=(1.6, 1.8, 0.5)), _ep(), 1.0, _goal_at([9, 9, 0]))
    assert s["goal_success"] and s["goal_distance_m"] == pytest.approx(1.0)
    s = score_episode(_res(pred_c=(1.0, 1.0, 0.5), gt_c=(1.0, 1.0, 1.6)), _ep(), 1.0, _goal_at([9, 9, 0]))
    assert not s["goal_success"]  # 1.1 m, in 3D: a different object on a shelf above counts as a miss
    assert s["goal"] is None


def test_rejected_and_open_set_episodes():
    s = score_episode(_res(accepted=False), _ep([[0, 0, 0]]), 1.0, _goal_at([0, 0, 0]))
    assert not s["retrieval_success"] and s["goal_success"] is False and s["goal_distance_m"] is None
    s = score_episode(_res(gt=None, accepted=False), _ep(), 1.0, _goal_at([0, 0, 0]))
    assert s["retrieval_success"] and s["goal_success"] is None
    s = score_episode(_res(gt=None, accepted=True), _ep(), 1.0, _goal_at([0, 0, 0]))
    assert not s["retrieval_success"]
    s = score_episode(_res(ranked=()), _ep(), 1.0, _goal_at([0, 0, 0]))
    assert s["pred_instance_id"] is None and not s["retrieval_success"]


def _scene_report(map_b, map_f):
    return {"scene_id": "sc", "n_objects": 4, "n_queries": 3,
            "metrics": {"baseline": {"mAP": map_b, "top1": 0.5, "top5": 1.0, "auroc": None},
                        "finetuned": {"mAP": map_f, "top1": 1.0, "top5": 1.0, "auroc": 0.75}}}


def test_scene_rows_average_and_table():
    scored = {m: [{"gt_instance_id": "1", "retrieval_success": True, "goal_success": True},
                  {"gt_instance_id": "2", "retrieval_success": False, "goal_success": False},
                  {"gt_instance_id": None, "retrieval_success": True, "goal_success": None}] for m in MODELS}
    r1 = scene_row(_scene_report(0.4, 0.6), scored, n_unresolved=1)
    assert r1["finetuned"]["mAP"] == 0.6 and r1["baseline"]["top1"] == 0.5
    assert r1["finetuned"]["retrieval_success"] == pytest.approx(2 / 3)
    assert r1["finetuned"]["goal_success"] == 0.5  # over the two in-map episodes only
    assert (r1["finetuned"]["n_in_map"], r1["finetuned"]["n_open_set"], r1["n_unresolved_goals"]) == (2, 1, 1)
    r2 = scene_row(_scene_report(0.8, None), {m: [] for m in MODELS}, n_unresolved=0)
    avg = average_rows([r1, r2])
    assert avg["baseline"]["mAP"] == pytest.approx(0.6)  # (0.4 + 0.8) / 2
    assert avg["finetuned"]["mAP"] == pytest.approx(0.6)  # the scene without a value is skipped
    assert avg["finetuned"]["auroc"] == pytest.approx(0.75)
    r1["scene"], r2["scene"] = "TEEsavR23oF", "HaxA7YrQdEC"
    table = format_report_table({"scenes": [r1, r2], "average": avg, "n_episodes": 6})
    lines = table.splitlines()
    assert "mAP:base" in lines[0] and "goal:ft" in lines[0]
    assert lines[2].startswith("TEEsavR23oF") and "0.400" in lines[2] and "0.600" in lines[2]
    assert lines[-1].startswith("mean") and "–" not in lines[-1].split()[2]


# ------------------------------------------------------------------------------------------ a tiny real run

TINY = """
sim: {width: 96, height: 72, n_objects_min: 3, n_objects_max: 3, n_twins: 0, n_distractors: 0, n_open_set: 1,
      n_explore_positions: 3, n_turn_steps: 4, n_user_photos: 1, n_queries_per_instance: 1}
views: {crop_size: 32, min_box_px: 6, max_views_per_instance: 4, min_visible_points: 5}
mapping: {voxel_size: 0.04, min_points: 5}
learning: {image_size: 32, epochs: 1, batch_size: 8, threads: 1, device: cpu}
retrieval: {image_size: 32, device: cpu}
"""


@pytest.mark.slow  # about 15 s on 2 cores: two scenes through every stage
def test_ssl_nav_habitat_on_the_pybullet_backend_writes_the_shared_report(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    out = tmp_path / "out"
    cmd = [str(SSL_NAV)] if SSL_NAV.exists() else [sys.executable, "-m", "ssl_nav"]
    r = subprocess.run(cmd + ["habitat", "--backend", "pybullet", "--config", str(tmp_path / "tiny.yaml"),
                              "--out", str(out), "--no-progress"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads((out / "report.json").read_text())
    # the same top-level shape a Habitat run writes
    assert {"backend", "scene_dataset", "episodes_file", "split", "success_distance_m", "models", "n_scenes",
            "n_episodes", "average", "scenes", "config"} <= set(rep)
    assert rep["backend"] == "pybullet" and rep["n_scenes"] == 1 and rep["models"] == ["baseline", "finetuned"]
    scene = rep["scenes"][0]
    assert scene["scene"] == "pybullet_seed0" and scene["success_target"] == "object_centroid"
    # the scene's own pipeline report agrees with the table
    srep = json.loads((out / scene["report"]).read_text())
    assert scene["n_episodes"] == srep["n_queries"] == rep["n_episodes"] == 4  # 3 objects + 1 open-set
    for m in MODELS:
        assert scene[m]["mAP"] == srep["metrics"][m]["mAP"]
        assert scene[m]["top1"] == srep["metrics"][m]["top1"]
        assert (scene[m]["n_in_map"], scene[m]["n_open_set"]) == (3, 1)
        eps = scene["episodes"][m]
        assert len(eps) == 4 and {e["episode_id"] for e in eps} == {q["query_id"] for q in srep["per_query"][m]}
        for e in eps:
            assert isinstance(e["retrieval_success"], bool)
            assert (e["goal_success"] is None) == (e["gt_instance_id"] is None)
        assert scene[m]["retrieval_success"] == pytest.approx(np.mean([e["retrieval_success"] for e in eps]))
        for k in SCENE_METRICS:
            assert rep["average"][m][k] == scene[m][k]  # one scene: the mean is the scene
    # the printed table and the closing summary
    assert "pybullet_seed0" in r.stdout and "mAP:base" in r.stdout and r.stdout.splitlines()[-1].startswith(
        "ssl-nav habitat: 1 scene(s), 4 episode(s) on pybullet")


def test_habitat_jobs_follow_the_episode_files_scene_order():
    from ssl_nav.config import PipelineConfig
    from ssl_nav.pipeline.runner import habitat_jobs

    def ep(scene: str, eid: str) -> Episode:
        return Episode(episode_id=eid, scene_id=f"hm3d/val/00-{scene}/{scene}.basis.glb", goal_instance_id=None,
                       goal_T_world_cam=np.eye(4), extra={"goal_object_id": "1"})

    eps = [ep("B", "0"), ep("A", "1"), ep("B", "2"), ep("C", "3")]
    assert [j.name for j in habitat_jobs(PipelineConfig(), eps)] == ["B", "A", "C"]
    assert [j.name for j in habitat_jobs(PipelineConfig(), eps, max_scenes=2)] == ["B", "A"]


def test_run_scenes_skips_scenes_without_episodes_and_still_writes_the_report(tmp_path):
    from ssl_nav.config import PipelineConfig
    from ssl_nav.pipeline.runner import SceneJob, run_scenes

    loaded = []
    job = SceneJob(name="empty", load=lambda sim: (loaded.append(sim), ([], {}))[1])
    rep = run_scenes("the-sim", [job], PipelineConfig(), tmp_path / "o", backend="habitat",
                     meta={"scene_dataset": "d.json", "episodes_file": "e.json.gz", "split": "val"}, progress=False)
    assert loaded == ["the-sim"]
    assert rep["n_scenes"] == 0 and rep["scenes"] == [] and rep["n_episodes"] == 0
    assert rep["average"]["finetuned"]["mAP"] is None
    on_disk = json.loads((tmp_path / "o" / "report.json").read_text())
    assert on_disk["backend"] == "habitat" and on_disk["split"] == "val"
    lines = format_report_table(on_disk).splitlines()
    assert len(lines) == 4 and lines[-1].split()[:2] == ["mean", "0"]  # header, rules, mean: no scene rows


def test_limit_episodes_cuts_drawn_scenes_and_episode_lists_alike():
    from ssl_nav.pipeline.runner import SceneJob, first_per_scene, limit_episodes
    from ssl_nav.sim.simulate import SceneDraw

    eps = [Episode(episode_id=str(i), scene_id="s" if i < 3 else "t", goal_instance_id=1,
                   goal_T_world_cam=np.eye(4)) for i in range(5)]
    drawn = limit_episodes(SceneJob("a", lambda sim: SceneDraw([], eps, eps[:1], {})), 2).load(None)
    assert isinstance(drawn, SceneDraw) and [e.episode_id for e in drawn.episodes] == ["0", "1"]
    assert drawn.calibration == eps[:1]  # the calibration split is not the test queries
    listed, photos = limit_episodes(SceneJob("b", lambda sim: (eps, {1: []})), 3).load(None)
    assert [e.episode_id for e in listed] == ["0", "1", "2"] and photos == {1: []}
    assert [e.episode_id for e in first_per_scene(eps, 1)] == ["0", "3"]
