"""``ssl-nav simulate`` / simulate_to_dir: the documented directory, readable, and byte-identical on a rerun."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from ssl_nav.cli import main
from ssl_nav.config import PipelineConfig
from ssl_nav.errors import SslNavError
from ssl_nav.frames import Frame, read_frames_dir, read_image_rgb, read_jsonl
from ssl_nav.sim.simulate import simulate_to_dir


@pytest.fixture(scope="module")
def cfg(small_cfg) -> PipelineConfig:
    return dataclasses.replace(PipelineConfig(), sim=dataclasses.replace(small_cfg, seed=7, n_explore_positions=2,
                                                                        n_turn_steps=3))


@pytest.fixture(scope="module")
def runs(cfg, tmp_path_factory):
    a, b = tmp_path_factory.mktemp("sim_a"), tmp_path_factory.mktemp("sim_b")
    return simulate_to_dir(cfg, a, progress=False), a, simulate_to_dir(cfg, b, progress=False), b


def test_writes_the_documented_layout(runs, cfg):
    summary, out, _, _ = runs
    for name in ("frames.jsonl", "photos.jsonl", "queries.jsonl", "scene.json", "rgb", "depth", "instance",
                 "photos", "queries"):
        assert (out / name).exists(), name
    frames = list(read_frames_dir(out))
    assert len(frames) == summary["frames"] == 6 and all(isinstance(f, Frame) for f in frames)
    assert [f.stamp for f in frames] == [i / cfg.sim.frame_rate_hz for i in range(6)]
    assert all(f.quality == "low" and f.rgb.shape == (120, 160, 3) for f in frames)
    scene = json.loads((out / "scene.json").read_text())
    assert scene["seed"] == 7 and scene["scene_id"] == "pybullet_seed7"
    ids = {o["instance_id"] for o in scene["objects"]}
    assert ids == set(range(1, len(ids) + 1))
    for f in frames:  # masks carry only scene object ids; depth is metric (mm PNG read back)
        assert set(np.unique(f.instance_mask)) - {0} <= ids
        assert 0.05 < np.median(f.depth[f.depth > 0]) < 8.0
    photos = [rec for _, rec in read_jsonl(out / "photos.jsonl")]
    goal_ids = {str(o["instance_id"]) for o in scene["objects"] if o["role"] == "object"}
    assert {p["instance_id"] for p in photos} == goal_ids
    size = cfg.views.crop_size
    for p in photos:  # framed as a user would: a square crop around the object, addable without a mask
        assert p["image"].startswith(f"photos/{p['instance_id']}/") and (out / p["image"]).is_file()
        assert read_image_rgb(out / p["image"]).shape == (size, size, 3)
    assert max(sum(1 for p in photos if p["instance_id"] == i) for i in goal_ids) <= 5
    queries = [rec for _, rec in read_jsonl(out / "queries.jsonl")]
    assert len(queries) == len(goal_ids) * cfg.sim.n_queries_per_instance + cfg.sim.n_open_set
    assert sum(q["instance_id"] is None for q in queries) == cfg.sim.n_open_set
    for q in queries:
        assert q["instance_id"] is None or q["instance_id"] in goal_ids
        assert q["split"] == "test" and q["open_set"] == (q["instance_id"] is None)
        # the query is cropped around its object; the full goal image sits next to it
        assert read_image_rgb(out / q["image"]).shape == (size, size, 3)  # path relative to the file
        assert read_image_rgb(out / q["image_full"]).shape == (120, 160, 3)
        x0, y0, x1, y1 = q["crop"]
        assert x1 - x0 == y1 - y0 > 0
        assert np.asarray(q["goal_T_world_cam"]).shape == (4, 4) and q["episode_id"]


def test_writes_a_calibration_split_apart_from_the_test_queries(runs, cfg):
    _, out, _, _ = runs
    scene = json.loads((out / "scene.json").read_text())
    goal_ids = {str(o["instance_id"]) for o in scene["objects"] if o["role"] == "object"}
    calib = [rec for _, rec in read_jsonl(out / "calibration.jsonl")]
    queries = [rec for _, rec in read_jsonl(out / "queries.jsonl")]
    n = cfg.sim.n_calibration_queries_per_instance
    assert sum(q["instance_id"] is not None for q in calib) == len(goal_ids) * n
    assert {q["instance_id"] for q in calib if q["instance_id"]} == goal_ids  # other viewpoints of every goal
    assert all(q["split"] == "calibration" and q["image"].startswith("calibration/") for q in calib)
    assert all((out / q["image"]).is_file() for q in calib)
    assert not {q["episode_id"] for q in calib} & {q["episode_id"] for q in queries}
    assert not {q["image"] for q in calib} & {q["image"] for q in queries}
    # the calibration open set shares no object (and no model) with the test open set
    test_open = {o["instance_id"]: o for o in scene["open_set_objects"]}
    cal_open = {o["instance_id"]: o for o in scene["calibration_open_set_objects"]}
    assert len(cal_open) == cfg.sim.n_open_set and not set(test_open) & set(cal_open)
    assert not {o["category"] for o in test_open.values()} & {o["category"] for o in cal_open.values()}
    assert sum(q["instance_id"] is None for q in calib) == len(cal_open) * max(1, n)


def test_second_run_is_byte_identical(runs):
    _, a, _, b = runs
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b and any(p.suffix == ".png" for p in files_a)
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


@pytest.mark.slow  # about 20 s on 2 cores: simulates twice
def test_cli_writes_and_refuses_foreign_directory(tmp_path, capsys):
    out = tmp_path / "s"
    rc = main(["simulate", "--seed", "2", "--out", str(out), "--positions", "1", "--turns", "2", "--width", "64",
               "--height", "48", "--photos", "1", "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "2 LQ robot frames" in text and "queries.jsonl" in text
    assert len(list(read_frames_dir(out))) == 2
    # a rerun into its own previous output replaces it; a foreign non-empty directory is refused
    assert main(["simulate", "--seed", "2", "--out", str(out), "--positions", "1", "--turns", "1", "--width", "64",
                 "--height", "48", "--photos", "0", "--no-progress"]) == 0
    assert len(list((out / "rgb").iterdir())) == 1
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(SslNavError, match="not empty"):
        simulate_to_dir(PipelineConfig(), foreign, progress=False)
    assert main(["simulate", "--out", str(foreign), "--no-progress"]) == 2
    assert main(["simulate", "--out", str(tmp_path / "x"), "--preset", "quick", "--config", "c.yaml",
                 "--no-progress"]) == 2
    assert "exclusive" in capsys.readouterr().err
