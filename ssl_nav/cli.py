"""``ssl-nav``: the command-line entry point.

Each subcommand is one module in :mod:`ssl_nav.commands` that defines
``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``. Modules
import heavy dependencies (torch, open3d, pybullet) inside ``run`` so that
``--help`` stays fast. An :class:`~ssl_nav.errors.SslNavError` (or an ``OSError``:
a full disk, a directory that is not writable) prints its message and exits 2,
without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import ssl_nav.commands as pkg
from ssl_nav import __version__
from ssl_nav.errors import SslNavError
from ssl_nav.learning.catalog import describe


def command_modules() -> list:
    """Every subcommand module, sorted by command name."""
    mods = [importlib.import_module(f"ssl_nav.commands.{m.name}") for m in pkgutil.iter_modules(pkg.__path__)
            if not m.name.startswith("_")]
    return sorted(mods, key=lambda m: m.NAME)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssl-nav",
        description="Find a specific object from a photo: map instances, collect multi-view crops, "
                    f"fine-tune an encoder on them (default: {describe()}), and retrieve instances with a FAISS "
                    "index.",
    )
    parser.add_argument("--version", action="version", version=f"ssl-nav {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=(mod.__doc__ or mod.HELP).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except SslNavError as e:
        print(f"ssl-nav {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the disk is full, a directory is not writable, ...: the user's to fix, not a bug
        where = f"{e.filename}: " if e.filename else ""
        print(f"ssl-nav {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ssl-nav {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
