"""The Habitat backend: the no-habitat error path here, and the habitat_sim glue where habitat_sim is installed.

habitat_sim cannot be installed on the development machines (no Python 3.11 wheel; the Linux wheel lacks
magnum), so the tests that need it skip with that reason; everything they would call that does not need the
simulator is tested in test_habitat_spec.py and test_episodes.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ssl_nav.config import SimConfig
from ssl_nav.errors import DependencyError
from ssl_nav.sim.habitat_backend import HabitatSimulator, habitat_available, import_habitat_sim
from ssl_nav.sim.habitat_spec import habitat_spec_from_config

SSL_NAV = Path(sys.executable).with_name("ssl-nav")
NO_HABITAT = pytest.mark.skipif(habitat_available(), reason="habitat_sim is installed: no missing-dependency path")
NEEDS_HABITAT = pytest.mark.skipif(not habitat_available(),
                                   reason="habitat_sim is not importable (no wheel for this Python / no magnum)")


def _ssl_nav(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(SSL_NAV)] if SSL_NAV.exists() else [sys.executable, "-m", "ssl_nav"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


@NO_HABITAT
def test_ssl_nav_habitat_without_habitat_sim_exits_2_with_install_hint(tmp_path):
    r = _ssl_nav("habitat", "--scene-dataset", "hm3d.scene_dataset_config.json", "--episodes", "val.json.gz",
                 "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert "habitat_sim is not importable" in r.stderr
    assert "conda install habitat-sim headless -c conda-forge -c aihabitat" in r.stderr
    assert "wheel" in r.stderr and "--backend pybullet" in r.stderr
    assert not (tmp_path / "out" / "report.json").exists()


def test_ssl_nav_habitat_needs_its_inputs(tmp_path):
    r = _ssl_nav("habitat", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--scene-dataset" in r.stderr and "--episodes" in r.stderr
    r = _ssl_nav("habitat", "--backend", "pybullet", "--max-scenes", "0", "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert r.returncode == 2 and "--max-scenes must be at least 1" in r.stderr and "Traceback" not in r.stderr


@NO_HABITAT
def test_importing_ssl_nav_and_every_command_works_without_habitat_sim():
    code = ("import sys, ssl_nav, ssl_nav.cli, ssl_nav.sim.habitat_backend, ssl_nav.sim.habitat_spec, "
            "ssl_nav.sim.episodes, ssl_nav.pipeline.runner\n"
            "mods = ssl_nav.cli.command_modules()\n"
            "ssl_nav.cli.build_parser()\n"
            "assert 'habitat' in [m.NAME for m in mods]\n"
            "assert 'habitat_sim' not in sys.modules\n"
            "print('ok', len(mods))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok")


@NO_HABITAT
def test_backend_raises_dependency_error_with_the_hint():
    with pytest.raises(DependencyError, match="conda install habitat-sim headless"):
        import_habitat_sim()
    with pytest.raises(DependencyError, match="habitat_sim is not importable"):
        HabitatSimulator(SimConfig(), "x.scene_dataset_config.json")


# ------------------------------------------------------------------------------------------ with habitat_sim

@NEEDS_HABITAT
def test_make_habitat_config_turns_the_spec_into_habitat_sim_objects():
    habitat_sim = pytest.importorskip("habitat_sim")
    from ssl_nav.sim.habitat_backend import make_habitat_config

    spec = habitat_spec_from_config(SimConfig(), "scene.glb", "dataset.scene_dataset_config.json")
    conf = make_habitat_config(spec)
    assert conf.sim_cfg.scene_id == "scene.glb"
    assert conf.sim_cfg.scene_dataset_config_file == "dataset.scene_dataset_config.json"
    agent = conf.agents[0]
    assert agent.height == pytest.approx(1.41) and agent.radius == pytest.approx(0.17)
    by_uuid = {s.uuid: s for s in agent.sensor_specifications}
    assert by_uuid["rgb"].sensor_type == habitat_sim.SensorType.COLOR
    assert by_uuid["depth"].sensor_type == habitat_sim.SensorType.DEPTH
    assert by_uuid["semantic"].sensor_type == habitat_sim.SensorType.SEMANTIC
    assert list(by_uuid["rgb"].resolution) == [640, 360]
    assert float(by_uuid["depth"].hfov) == pytest.approx(58.0)


@pytest.mark.skipif(not os.environ.get("SSL_NAV_HABITAT_TEST_SCENE"),
                    reason="set SSL_NAV_HABITAT_TEST_SCENE to a scene with semantics (and "
                           "SSL_NAV_HABITAT_TEST_DATASET to its scene dataset config) to render")
@NEEDS_HABITAT
def test_render_a_real_scene():
    cfg = SimConfig(habitat_width=64, habitat_height=96)
    sim = HabitatSimulator(cfg, os.environ.get("SSL_NAV_HABITAT_TEST_DATASET", "default"))
    try:
        sim.load_scene(os.environ["SSL_NAV_HABITAT_TEST_SCENE"])
        objs = sim.objects()
        assert objs and [o.instance_id for o in objs] == list(range(1, len(objs) + 1))
        poses = sim.sample_navigable_poses(4, np.random.default_rng(0))
        assert poses and all(sim.is_navigable(T[:3, 3]) for T in poses)
        f = sim.render(poses[0], quality="high", frame_id="t").validate()
        assert f.rgb.shape == (96, 64, 3) and f.instance_mask.dtype == np.int32
        assert set(np.unique(f.instance_mask)) <= {0} | {o.instance_id for o in objs}
    finally:
        sim.close()
