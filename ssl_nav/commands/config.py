"""Show, check or write the pipeline configuration.

  ssl-nav config dump                           print the defaults as YAML (this is config/pipeline.yaml)
  ssl-nav config dump FILE                      print FILE with every default filled in
  ssl-nav config dump --preset quick --seed 3   the configuration of `ssl-nav demo --quick --seed 3`
  ssl-nav config check FILE                     validate a YAML file; errors name the file and the key

A dumped preset, given with --config to simulate, collect, finetune, index and eval, runs the demo's stages
one command at a time (README: "The demo as CLI commands").
"""

from __future__ import annotations

import argparse

NAME = "config"
HELP = "print the default configuration or check a YAML file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("dump", "check"), help="dump the defaults, or check FILE")
    p.add_argument("file", nargs="?", help="YAML file to check (or to dump with its values applied)")
    p.add_argument("--preset", choices=("demo", "quick"), default=None,
                   help="dump: the configuration of `ssl-nav demo` (demo) or `ssl-nav demo --quick` (quick), "
                        "instead of FILE")
    p.add_argument("--seed", type=int, default=None,
                   help="dump: sim.seed and learning.seed, as `ssl-nav demo --seed N` sets them")


def run(args: argparse.Namespace) -> int:
    from ssl_nav.config import apply_overrides, dump_yaml, load_config
    from ssl_nav.errors import ConfigError

    if args.action == "check" and args.file is None:
        raise ConfigError("give the FILE to check: ssl-nav config check FILE")
    if args.action == "check" and (args.preset or args.seed is not None):
        raise ConfigError("--preset and --seed go with `ssl-nav config dump`")
    if args.preset is not None and args.file is not None:
        raise ConfigError("--preset and FILE are exclusive: a preset is a whole configuration")
    cfg = load_config(args.file)
    if args.action == "check":
        print(f"{args.file}: ok")
        return 0
    if args.preset is not None:
        from ssl_nav.pipeline import demo_config

        cfg = demo_config(None, quick=args.preset == "quick")
    if args.seed is not None:
        cfg = apply_overrides(cfg, {"sim.seed": args.seed, "learning.seed": args.seed}, "--seed")
    print(dump_yaml(cfg), end="")
    return 0
