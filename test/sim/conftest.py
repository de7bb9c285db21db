"""Small simulator settings shared by the simulator tests (tiny images, few objects: fast on 2 cores)."""

from __future__ import annotations

import dataclasses

import pytest

from ssl_nav.config import SimConfig


def small_sim_config(**kw) -> SimConfig:
    base = dict(width=160, height=120, n_objects_min=9, n_objects_max=10, n_twins=2, n_distractors=2, n_open_set=2,
                n_explore_positions=3, n_turn_steps=4, n_user_photos=2, n_queries_per_instance=1)
    base.update(kw)
    return dataclasses.replace(SimConfig(), **base)


@pytest.fixture(scope="session")
def make_cfg():
    """The small config factory: ``make_cfg(**overrides) -> SimConfig``."""
    return small_sim_config


@pytest.fixture(scope="module")
def small_cfg() -> SimConfig:
    return small_sim_config()


@pytest.fixture(scope="module")
def sim(small_cfg):
    from ssl_nav.sim.pybullet_backend import PyBulletSimulator

    s = PyBulletSimulator(small_cfg)
    s.load_scene(7)
    yield s
    s.close()
