"""Node parameters <-> config dataclasses: descriptors, overrides, validation, and config/robot.yaml."""

from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from rcl_interfaces.msg import ParameterType  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from ssl_nav.config import SECTIONS, PipelineConfig, field_info  # noqa: E402
from ssl_nav.errors import ConfigError  # noqa: E402
from ssl_nav.ros.params import (NODE_SECTIONS, check_params_file, declare_config, load_params_file,  # noqa: E402
                                node_parameters, params_yaml)

ROBOT_YAML = Path(__file__).resolve().parents[2] / "config" / "robot.yaml"


def make_node(ctx, name, overrides=()):
    return rclpy.create_node(name, context=ctx, parameter_overrides=list(overrides))


def test_every_field_is_declared_with_its_descriptor(rclpy_context):
    node = make_node(rclpy_context, "view_collector")
    try:
        cfg = declare_config(node)
        assert cfg == PipelineConfig()  # defaults round-trip
        for section in NODE_SECTIONS["view_collector"]:
            for f, _ in field_info(SECTIONS[section]):
                d = node.describe_parameter(f"{section}.{f.name}")
                assert d.description.startswith(f.metadata["help"])
                assert d.read_only
                rng = f.metadata.get("range")
                if rng and d.type == ParameterType.PARAMETER_DOUBLE:
                    assert (d.floating_point_range[0].from_value, d.floating_point_range[0].to_value) == rng
                elif rng:
                    assert (d.integer_range[0].from_value, d.integer_range[0].to_value) == rng
        d = node.describe_parameter("mapping.id_mode")
        assert "stable" in d.additional_constraints and "per_frame" in d.additional_constraints
        assert not node.has_parameter("learning.epochs")  # the collector does not declare other sections
    finally:
        node.destroy_node()


def test_overrides_are_read_back_into_the_dataclasses(rclpy_context):
    node = make_node(rclpy_context, "finetuner", [Parameter("learning.epochs", value=3),
                                                  Parameter("learning.init_checkpoint", value="/x/model.pt"),
                                                  Parameter("energy.backend", value="none"),
                                                  Parameter("ros.data_dir", value="/tmp/d")])
    try:
        cfg = declare_config(node)
        assert cfg.learning.epochs == 3 and cfg.learning.init_checkpoint == "/x/model.pt"
        assert cfg.energy.backend == "none" and cfg.ros.data_dir == "/tmp/d"
        assert cfg.learning.batch_size == PipelineConfig().learning.batch_size
    finally:
        node.destroy_node()
    node = make_node(rclpy_context, "finetuner")
    try:
        assert declare_config(node).learning.init_checkpoint is None  # "" means none
    finally:
        node.destroy_node()


@pytest.mark.parametrize("param,value,match", [
    ("learning.epochs", 0, "learning.epochs"),              # outside its range (rclpy descriptor check)
    ("learning.backbone", "vgg", "learning.backbone"),      # not one of the choices
    ("learning.base_lr", 1, "learning.base_lr"),            # int for a double
])
def test_bad_values_raise_config_errors_naming_the_parameter(rclpy_context, param, value, match):
    node = make_node(rclpy_context, "finetuner", [Parameter(param, value=value)])
    try:
        with pytest.raises(ConfigError, match=match):
            declare_config(node)
    finally:
        node.destroy_node()


def test_robot_yaml_mirrors_the_dataclasses():
    data = load_params_file(ROBOT_YAML)
    assert set(data) == set(NODE_SECTIONS)
    for node, params in data.items():
        assert set(params) == set(node_parameters(node)), node
    check_params_file(ROBOT_YAML)  # every value has its field's type, range and choices
    # what `python -m ssl_nav.ros.params` writes has the same keys (values are the robot's to tune)
    assert {k: set(v) for k, v in data.items()} == {k: set(v) for k, v in _parse(params_yaml()).items()}


def _parse(text):
    import yaml

    from ssl_nav.ros.params import _flatten

    return {k: _flatten(v["ros__parameters"]) for k, v in yaml.safe_load(text).items()}


def test_params_file_errors_name_file_node_and_key(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("view_collector:\n  ros__parameters:\n    views:\n      crop_sise: 64\n")
    with pytest.raises(ConfigError, match="view_collector.*views.crop_sise"):
        check_params_file(p)
    p.write_text("retrieval_server:\n  ros__parameters:\n    learning:\n      epochs: 2\n")
    with pytest.raises(ConfigError, match="unknown parameter 'learning.epochs'"):
        check_params_file(p)
    p.write_text("retreival_server:\n  ros__parameters: {}\n")
    with pytest.raises(ConfigError, match="unknown node"):
        check_params_file(p)
    p.write_text("finetuner:\n  ros__parameters:\n    learning:\n      trainable: some\n")
    with pytest.raises(ConfigError, match=f"{p}.*learning.trainable"):
        check_params_file(p)
    # wildcard parameters apply to every node that declares them
    p.write_text("/**:\n  ros__parameters:\n    ros:\n      data_dir: /data\n"
                 "/robot1/finetuner:\n  ros__parameters:\n    learning:\n      epochs: 2\n")
    cfgs = check_params_file(p)
    assert all(c.ros.data_dir == "/data" for c in cfgs.values()) and cfgs["finetuner"].learning.epochs == 2


def test_a_params_file_with_a_non_utf8_byte_is_a_config_error(tmp_path, capsys):
    """`ros-stack --params` on such a file raised UnicodeDecodeError."""
    from ssl_nav.cli import main

    p = tmp_path / "p.yaml"
    p.write_bytes(b"view_collector:\n  ros__parameters:\n    views.crop_size: 64 # \xff\n")
    with pytest.raises(ConfigError, match=r"p.yaml: not UTF-8 text \(byte 0xff"):
        load_params_file(p)
    assert main(["ros-stack", "--params", str(p), "--duration", "0.1"]) == 2
    assert "not UTF-8 text" in capsys.readouterr().err
