"""ROS 2 parameters declared from the config dataclasses (``ssl_nav/config.py``), and read back into them.

Each node declares the fields of the sections it uses as ``<section>.<field>`` (``views.crop_size``,
``ros.data_dir``), with a ``ParameterDescriptor`` whose description is the field's help, whose
``floating_point_range`` / ``integer_range`` is the field's range, and whose ``additional_constraints`` lists
the field's choices. ``Optional[str]`` fields are strings where ``""`` means ``None``. Parameters are read at
start-up (``read_only``); values are validated with the same checks as the YAML configuration, so a bad value
raises :class:`~ssl_nav.errors.ConfigError` naming the node and the parameter.

``config/robot.yaml`` holds ``ros__parameters`` per node and mirrors the dataclasses
(:func:`params_yaml` writes it; a test checks it).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

from ssl_nav.config import SECTIONS, PipelineConfig, check_value, field_info, validate
from ssl_nav.errors import ConfigError

#: node name -> config sections it declares (docs/ros.md)
NODE_SECTIONS: dict[str, tuple[str, ...]] = {
    "view_collector": ("mapping", "views", "ros"),
    "finetuner": ("learning", "energy", "ros"),
    "retrieval_server": ("retrieval", "ros"),
    "sim_bridge": ("sim", "ros"),
}


def _base_type(tp: Any) -> tuple[type, bool]:
    """(scalar type, optional) of a field annotation."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp):
        return next(a for a in typing.get_args(tp) if a is not type(None)), True
    return tp, False


_ROS_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
              float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}


def parameter_name(section: str, field_name: str) -> str:
    return f"{section}.{field_name}"


def parameter_descriptor(section: str, f: dataclasses.Field, tp: Any) -> ParameterDescriptor:
    """The descriptor of one config field: type, help, range, choices; read-only (read at start-up)."""
    base, optional = _base_type(tp)
    help_text = f.metadata.get("help", "")
    if optional:
        help_text += " (empty string = none)"
    d = ParameterDescriptor(name=parameter_name(section, f.name), type=_ROS_TYPES[base], description=help_text,
                            read_only=True)
    rng = f.metadata.get("range")
    if rng is not None and base is float:
        d.floating_point_range = [FloatingPointRange(from_value=float(rng[0]), to_value=float(rng[1]), step=0.0)]
    elif rng is not None and base is int:
        d.integer_range = [IntegerRange(from_value=int(rng[0]), to_value=int(rng[1]), step=0)]
    choices = f.metadata.get("choices")
    if choices is not None:
        d.additional_constraints = "one of: " + ", ".join(map(str, choices))
    return d


def _to_ros_value(value: Any, tp: Any) -> Any:
    base, optional = _base_type(tp)
    if value is None and optional:
        return ""
    return base(value) if base is float else value


def _from_ros_value(value: Any, tp: Any) -> Any:
    base, optional = _base_type(tp)
    if optional and value == "":
        return None
    return value


def section_parameters(section: str, cfg: PipelineConfig | None = None) -> dict[str, Any]:
    """``{"<section>.<field>": ROS value}`` of one section (defaults when ``cfg`` is None)."""
    cfg = cfg or PipelineConfig()
    sec = getattr(cfg, section)
    return {parameter_name(section, f.name): _to_ros_value(getattr(sec, f.name), tp)
            for f, tp in field_info(SECTIONS[section])}


def node_parameters(node_name: str, cfg: PipelineConfig | None = None) -> dict[str, Any]:
    """Every parameter a node declares, with its value from ``cfg`` (defaults when None)."""
    if node_name not in NODE_SECTIONS:
        raise ConfigError(f"unknown node {node_name!r} (known: {', '.join(NODE_SECTIONS)})")
    out: dict[str, Any] = {}
    for s in NODE_SECTIONS[node_name]:
        out.update(section_parameters(s, cfg))
    return out


def declare_config(node: Any, sections: tuple[str, ...] | None = None,
                   defaults: PipelineConfig | None = None) -> PipelineConfig:
    """Declare every ``<section>.<field>`` parameter on ``node`` and return the resulting config.

    Overrides (``--params-file``, launch ``parameters=[...]``, ``parameter_overrides``) apply at declaration;
    a value of the wrong type or outside its range raises :class:`ConfigError` naming node and parameter.
    """
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    sections = sections if sections is not None else NODE_SECTIONS[node.get_name()]
    defaults = defaults or PipelineConfig()
    where = f"node '{node.get_fully_qualified_name()}'"
    for s in sections:
        for f, tp in field_info(SECTIONS[s]):
            name = parameter_name(s, f.name)
            try:
                node.declare_parameter(name, _to_ros_value(getattr(getattr(defaults, s), f.name), tp),
                                       parameter_descriptor(s, f, tp))
            except InvalidParameterTypeException as e:
                raise ConfigError(f"{where}: parameter '{name}' has the wrong type ({e}); "
                                  f"write floats with a decimal point") from None
            except InvalidParameterValueException as e:
                raise ConfigError(f"{where}: parameter '{name}': {e}") from None
    return read_config(node, sections, defaults)


def read_config(node: Any, sections: tuple[str, ...], defaults: PipelineConfig | None = None) -> PipelineConfig:
    """The declared parameters of ``sections`` as a :class:`PipelineConfig` (other sections keep ``defaults``)."""
    cfg = dataclasses.replace(defaults or PipelineConfig())
    where = f"node '{node.get_fully_qualified_name()}'"
    for s in sections:
        values = {}
        info = {f.name: (f, tp) for f, tp in field_info(SECTIONS[s])}
        for fname, (f, tp) in info.items():
            name = parameter_name(s, fname)
            raw = _from_ros_value(node.get_parameter(name).value, tp)
            values[fname] = check_value(where, name, raw, tp, f)
        sec = SECTIONS[s](**values)
        validate(sec, where)
        setattr(cfg, s, sec)
    return cfg


# ------------------------------------------------------------------------------------------------ params files

def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_params_file(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """A ROS 2 parameters YAML -> ``{node key: {"section.field": value}}`` (nested maps flattened with dots).

    Node keys are as written (``view_collector``, ``/ns/view_collector``, ``/**``).
    """
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_bytes().decode("utf-8"))
    except OSError as e:
        raise ConfigError(f"{p}: cannot read parameters file ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); a parameters "
                          f"file is UTF-8 YAML") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must map node names to {{ros__parameters: ...}}")
    out = {}
    for node_key, body in data.items():
        if not isinstance(body, dict) or "ros__parameters" not in body:
            raise ConfigError(f"{p}: node '{node_key}' has no 'ros__parameters' mapping")
        params = body["ros__parameters"] or {}
        if not isinstance(params, dict):
            raise ConfigError(f"{p}: node '{node_key}': 'ros__parameters' must be a mapping")
        out[str(node_key)] = _flatten(params)
    return out


def _node_of_key(key: str) -> str:
    return key.rstrip("/").split("/")[-1]


def check_params_file(path: str | os.PathLike) -> dict[str, PipelineConfig]:
    """Validate a parameters file against the nodes' declared parameters; return each node's config.

    rclpy silently ignores overrides for parameters a node never declares, so a typo would go unnoticed:
    this raises :class:`ConfigError` naming the file, node and key for unknown nodes, unknown parameters,
    wrong types and values outside their range or choices.
    """
    p = Path(path)
    data = load_params_file(p)
    wildcard = {}
    for key, params in data.items():
        if _node_of_key(key) in ("**", "*"):
            wildcard.update(params)
    configs = {}
    for key, params in data.items():
        node = _node_of_key(key)
        if node in ("**", "*"):
            continue
        if node not in NODE_SECTIONS:
            raise ConfigError(f"{p}: unknown node '{key}' (known: {', '.join(NODE_SECTIONS)})")
    for node, sections in NODE_SECTIONS.items():
        merged = dict(wildcard)
        for key, params in data.items():
            if _node_of_key(key) == node:
                merged.update(params)
        nested: dict[str, dict] = {s: {} for s in sections}
        types_of = {s: {f.name: tp for f, tp in field_info(SECTIONS[s])} for s in sections}
        for name, value in merged.items():
            s, _, fname = name.partition(".")
            if s not in sections:
                if name in wildcard and not any(_node_of_key(k) == node and name in v for k, v in data.items()):
                    continue  # a wildcard parameter meant for another node
                raise ConfigError(f"{p}: node '{node}': unknown parameter '{name}' "
                                  f"(sections: {', '.join(sections)})")
            optional = _base_type(types_of[s].get(fname, str))[1]
            nested[s][fname] = None if optional and value == "" else value
        cfg = PipelineConfig()
        for s in sections:
            setattr(cfg, s, _section_from(p, node, s, nested[s]))
        configs[node] = cfg
    return configs


def _section_from(p: Path, node: str, section: str, values: dict) -> Any:
    from ssl_nav.config import section_from_dict

    return section_from_dict(SECTIONS[section], values, f"{p}: node '{node}'", f"{section}.")


ROBOT_YAML_HEADER = (
    "# ssl_nav ROS 2 node parameters: ros__parameters per node, mirroring ssl_nav/config.py.\n"
    "# Use: ros2 launch ssl_nav ssl_nav.launch.py params_file:=FILE, or ssl-nav ros-stack --params FILE.\n"
    "# Regenerate after config changes: python -m ssl_nav.ros.params > config/robot.yaml\n"
    "# Topics are remapped in the launch files (README \"On a robot\").")


def params_yaml(cfg: PipelineConfig | None = None, nodes: tuple[str, ...] | None = None,
                header: str | None = None) -> str:
    """``ros__parameters`` YAML for each node, mirroring the dataclasses (with each field's help as a comment)."""
    cfg = cfg or PipelineConfig()
    lines = [header or ROBOT_YAML_HEADER, ""]
    for node in nodes or tuple(NODE_SECTIONS):
        lines += [f"{node}:", "  ros__parameters:"]
        for s in NODE_SECTIONS[node]:
            lines.append(f"    {s}:")
            sec = getattr(cfg, s)
            for f, tp in field_info(SECTIONS[s]):
                v = _to_ros_value(getattr(sec, f.name), tp)
                lines.append(f"      {f.name}: {yaml_scalar(v)}  # {f.metadata.get('help', '')}")
        lines.append("")
    return "\n".join(lines)


def yaml_scalar(v: Any) -> str:
    """A YAML scalar that both PyYAML and the rcl parser read back with the same type (floats keep a dot)."""
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        text = repr(v)
        if "e" in text and "." not in text.split("e")[0]:
            mantissa, exp = text.split("e")
            text = f"{mantissa}.0e{exp}"
        return text
    if isinstance(v, int):
        return str(v)
    return json.dumps(v)


if __name__ == "__main__":
    print(params_yaml(), end="")
