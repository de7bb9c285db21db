"""Subcommands of ``ssl-nav``, one module each (see :mod:`ssl_nav.cli`). Shared argument helpers live here."""

from __future__ import annotations

import argparse
from typing import Any

from ssl_nav.config import PipelineConfig, apply_overrides, load_config


def add_config_argument(p: argparse.ArgumentParser) -> None:
    """``--config FILE``: a YAML file mirroring ssl_nav/config.py (defaults when omitted)."""
    p.add_argument("--config", metavar="YAML", default=None,
                   help="pipeline configuration (see config/pipeline.yaml); defaults when omitted")


def config_from_args(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Load ``--config`` and apply ``{"section.key": value}`` overrides from flags (``None`` = not given)."""
    return apply_overrides(load_config(getattr(args, "config", None)), overrides or {})
