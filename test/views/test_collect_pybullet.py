"""Integration: collect views from a small pybullet scene and check every crop against the simulator's GT masks."""

import cv2
import numpy as np
import pytest

from ssl_nav.config import PipelineConfig, SimConfig, ViewsConfig
from ssl_nav.crops import crop_square
from ssl_nav.views.collect import collect_frames
from ssl_nav.views.store import ViewStore

pytest.importorskip("pybullet")


def test_pybullet_crops_show_their_instance(tmp_path):
    from ssl_nav.sim.explore import exploration_poses
    from ssl_nav.sim.pybullet_backend import PyBulletSimulator

    sim_cfg = SimConfig(width=160, height=120, n_explore_positions=4, n_turn_steps=8, n_objects_min=6,
                        n_objects_max=6, n_twins=1, n_distractors=1)
    cfg = PipelineConfig(sim=sim_cfg, views=ViewsConfig(crop_size=48, min_box_px=10, min_visible_points=10))
    with PyBulletSimulator(sim_cfg) as sim:
        sim.load_scene(5)
        poses = exploration_poses(sim, sim_cfg, np.random.default_rng(0))
        frames = [sim.render(T, "low", frame_id=f"{i:03d}") for i, T in enumerate(poses)]
        object_ids = {o.instance_id for o in sim.objects()}
    gt = {f.frame_id: f.instance_mask.copy() for f in frames}
    store = ViewStore(tmp_path / "store", create=True)
    summary = collect_frames(frames, store, cfg, progress=False)
    assert summary["frames_used"] == len(frames) and summary["frames_skipped"] == 0
    assert set(int(i) for i in store.instances()) <= object_ids
    views = store.views(quality="low")
    assert len(views) >= 10
    seen_often = {i for i in object_ids if sum(int((m == i).sum() >= 50) for m in gt.values()) >= 3}
    assert seen_often and {int(v["instance_id"]) for v in views} >= seen_often
    for v in views:
        crop = crop_square(gt[v["frame_id"]], tuple(int(x) for x in v["bbox"]), 48, interpolation=cv2.INTER_NEAREST)
        ids, counts = np.unique(crop[crop > 0], return_counts=True)
        assert int(ids[np.argmax(counts)]) == int(v["instance_id"]), v
    assert store.check() == []
