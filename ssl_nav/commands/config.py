"""Show, check or write the pipeline configuration.

  ssl-nav config dump              print the defaults as YAML (this is config/pipeline.yaml)
  ssl-nav config check FILE        validate a YAML file; errors name the file and the key
"""

from __future__ import annotations

import argparse

NAME = "config"
HELP = "print the default configuration or check a YAML file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("dump", "check"), help="dump the defaults, or check FILE")
    p.add_argument("file", nargs="?", help="YAML file to check (or to dump with its values applied)")


def run(args: argparse.Namespace) -> int:
    from ssl_nav.config import dump_yaml, load_config
    from ssl_nav.errors import ConfigError

    if args.action == "check" and args.file is None:
        raise ConfigError("give the FILE to check: ssl-nav config check FILE")
    cfg = load_config(args.file)
    if args.action == "check":
        print(f"{args.file}: ok")
    else:
        print(dump_yaml(cfg), end="")
    return 0
