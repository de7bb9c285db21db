"""Configuration: YAML mirrors the dataclasses; errors name the file and the key."""

import dataclasses

import pytest

from ssl_nav.config import PipelineConfig, apply_overrides, config_from_dict, dump_yaml, load_config
from ssl_nav.errors import ConfigError

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_pipeline_yaml_mirrors_defaults():
    assert load_config(REPO / "config" / "pipeline.yaml") == PipelineConfig()
    assert (REPO / "config" / "pipeline.yaml").read_text() == dump_yaml(PipelineConfig())


def test_dump_round_trip(tmp_path):
    cfg = apply_overrides(PipelineConfig(), {"learning.epochs": 3, "sim.seed": 11, "learning.init_checkpoint": "x.pt"})
    p = tmp_path / "c.yaml"
    p.write_text(dump_yaml(cfg))
    assert load_config(p) == cfg


@pytest.mark.parametrize("text, key", [
    ("learning:\n  epochz: 3\n", "learning.epochz"),
    ("learning:\n  epochs: three\n", "learning.epochs"),
    ("learning:\n  backbone: vgg\n", "learning.backbone"),
    ("views:\n  margin: -1\n", "views.margin"),
    ("retrieval:\n  flip_tta: 1\n", "retrieval.flip_tta"),
    ("simm:\n  seed: 1\n", "simm"),
])
def test_errors_name_file_and_key(tmp_path, text, key):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(p) in str(e.value) and key in str(e.value)


def test_int_accepted_for_float_and_cross_field_check():
    cfg = config_from_dict({"views": {"margin": 1}})
    assert cfg.views.margin == 1.0 and isinstance(cfg.views.margin, float)
    with pytest.raises(ConfigError, match="camera_height_min"):
        config_from_dict({"sim": {"camera_height_min": 2.0, "camera_height_max": 1.0}})


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_skip_none_and_check_types():
    cfg = apply_overrides(PipelineConfig(), {"learning.epochs": None, "learning.batch_size": 8})
    assert cfg.learning.batch_size == 8 and cfg.learning.epochs == PipelineConfig().learning.epochs
    with pytest.raises(ConfigError, match="learning.batch_size"):
        apply_overrides(PipelineConfig(), {"learning.batch_size": "big"})
    assert dataclasses.asdict(PipelineConfig())  # plain data


def test_a_key_given_twice_is_refused_with_its_lines(tmp_path):
    """PyYAML would keep the last value silently."""
    p = tmp_path / "dup.yaml"
    p.write_text("learning:\n  epochs: 3\n  batch_size: 8\n  epochs: 5\n")
    with pytest.raises(ConfigError, match=r"dup.yaml:4: key 'epochs' is given twice \(first on line 2\)"):
        load_config(p)
    p.write_text("learning:\n  epochs: 3\nviews:\n  margin: 0.1\nlearning:\n  epochs: 4\n")
    with pytest.raises(ConfigError, match=r"dup.yaml:5: key 'learning' is given twice"):
        load_config(p)


def test_warmup_longer_than_training_is_refused():
    """A warmup_epochs above epochs, from YAML or from flags; checked once all overrides are in."""
    with pytest.raises(ConfigError, match=r"'learning.warmup_epochs' \(5\) exceeds 'learning.epochs' \(3\)"):
        config_from_dict({"learning": {"epochs": 3, "warmup_epochs": 5}})
    with pytest.raises(ConfigError, match="learning.warmup_epochs"):
        apply_overrides(PipelineConfig(), {"learning.epochs": 0 + 1, "learning.warmup_epochs": 2})
    cfg = apply_overrides(PipelineConfig(), {"learning.warmup_epochs": 30, "learning.epochs": 40})
    assert (cfg.learning.warmup_epochs, cfg.learning.epochs) == (30, 40)


def test_a_config_that_is_not_utf8_is_named(tmp_path):
    """No UnicodeDecodeError; the file and line are named."""
    p = tmp_path / "latin1.yaml"
    p.write_bytes(b"learning:\n  backbone: r\xe9snet\n")
    with pytest.raises(ConfigError, match=r"latin1.yaml:2: not UTF-8"):
        load_config(p)
