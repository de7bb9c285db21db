"""Subcommands of ``ssl-nav``, one module each (see :mod:`ssl_nav.cli`). Shared argument helpers live here."""

from __future__ import annotations

import argparse
from typing import Any

from ssl_nav.config import PipelineConfig, apply_overrides, load_config


def add_config_argument(p: argparse.ArgumentParser) -> None:
    """``--config FILE``: a YAML file mirroring ssl_nav/config.py (defaults when omitted)."""
    p.add_argument("--config", metavar="YAML", default=None,
                   help="pipeline configuration (see config/pipeline.yaml); defaults when omitted")


def add_progress_argument(p: argparse.ArgumentParser, *aliases: str) -> None:
    """``--no-progress`` (every long-running command): no progress bars. Bars are also off whenever stderr is
    not a terminal (:mod:`ssl_nav.progress`); read it back with :func:`progress_from_args`."""
    p.add_argument("--no-progress", *aliases, dest="no_progress", action="store_true",
                   help="no progress bars (they are off anyway when stderr is not a terminal)")


def progress_from_args(args: argparse.Namespace) -> bool:
    """Whether the command may draw progress bars (``--no-progress`` not given)."""
    return not getattr(args, "no_progress", False)


def config_from_args(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Load ``--config`` and apply ``{"section.key": value}`` overrides from flags (``None`` = not given)."""
    return apply_overrides(load_config(getattr(args, "config", None)), overrides or {})
