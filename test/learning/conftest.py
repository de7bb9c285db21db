"""Fixtures of the learning tests: tiny stores and configurations (test/testkit/stores.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.stores import tiny_config, write_store


@pytest.fixture
def tiny_store(tmp_path: Path) -> Path:
    return write_store(tmp_path / "store")


@pytest.fixture
def learning_config():
    """Factory: ``learning_config(epochs=3, ...)`` -> a tiny PipelineConfig (see :func:`tiny_config`)."""
    return tiny_config


@pytest.fixture
def store_factory(tmp_path: Path):
    """Factory: ``store_factory(name, **write_store_kwargs)`` -> a tiny store under tmp_path."""
    return lambda name="store", **kw: write_store(tmp_path / name, **kw)
