"""`make bench`: run every benchmarks/bench_*.py and write BENCHMARKS.md.

Each module defines ``AREA`` (a title) and ``run(quick: bool) -> list[dict]``; a row is
``{"benchmark": str, "figure": str, "target": str, "ok": bool | None, "note": str}``
(``target``, ``ok`` and ``note`` optional). Ratios are measured side by side in one run,
since this machine is shared and noisy. The harness adds the command, date, machine and commit.

Every figure names the commit it was measured on, so the tree must be clean: a tree with changes (other than
the markdown file being written) is refused unless ``--allow-dirty`` is given, and such a section then says
``+dirty`` after its commit.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, no GPU" if not _cuda() else f"{cpu}, {_cuda()}"


def _cuda() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    except Exception:
        return ""


def dirty_paths(repo: Path = REPO, ignore: Path | None = None) -> list[str]:
    """Paths with uncommitted changes (untracked files included) under ``repo``, but ``ignore``."""
    out = subprocess.run(["git", "status", "--porcelain", "--no-renames"], cwd=repo, capture_output=True, text=True,
                         check=True).stdout
    skip = str(Path(ignore).resolve().relative_to(Path(repo).resolve())) if ignore is not None else None
    paths = [line[3:].strip().strip('"') for line in out.splitlines() if line.strip()]
    return [p for p in paths if p != skip]


def commit(repo: Path = REPO, ignore: Path | None = None) -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty_paths(repo, ignore) else "")
    except (OSError, subprocess.CalledProcessError, ValueError):
        return "unknown"


def discover(only: list[str] | None) -> list:
    mods = []
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem[len("bench_"):]
        if only and name not in only:
            continue
        spec = importlib.util.spec_from_file_location(f"benchmarks.{path.stem}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mods.append((name, mod))
    return mods


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"), help="markdown file to write")
    ap.add_argument("--only", nargs="*", help="benchmark areas to run (file names without bench_), e.g. sim views")
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="run on a tree with uncommitted changes (the sections then say commit SHA+dirty)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    try:
        dirty = dirty_paths(REPO, out if out.resolve().is_relative_to(REPO.resolve()) else None)
    except (OSError, subprocess.CalledProcessError):
        dirty = []  # not a git checkout: the commit reads "unknown"
    if dirty and not args.allow_dirty:
        print(f"benchmarks/run.py: error: the tree has uncommitted changes ({', '.join(dirty[:5])}"
              f"{', ...' if len(dirty) > 5 else ''}); commit them so that the figures name the commit they come "
              "from, or pass --allow-dirty", file=sys.stderr)
        return 2
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    mach = machine()
    sha = commit(REPO, out if out.resolve().is_relative_to(REPO.resolve()) else None)
    sections: dict[str, str] = _read_sections(out)
    for name, mod in discover(args.only):
        print(f"== {mod.AREA} (benchmarks/bench_{name}.py)", flush=True)
        t0 = time.monotonic()
        rows = mod.run(quick=args.quick)
        cmd = f"python benchmarks/run.py --only {name}" + (" --quick" if args.quick else "")
        lines = [f"## {mod.AREA}", "", f"`{cmd}` — {date} — {mach} — commit {sha} — {time.monotonic() - t0:.0f} s", "",
                 "| benchmark | figure | target | met | note |", "|---|---|---|---|---|"]
        for r in rows:
            ok = r.get("ok")
            met = "–" if ok is None else ("yes" if ok else "**no**")
            lines.append(f"| {r['benchmark']} | {r['figure']} | {r.get('target', '')} | {met} | {r.get('note', '')} |")
            print(f"  {r['benchmark']}: {r['figure']} (target {r.get('target', '-')}, met {met})", flush=True)
        sections[name] = "\n".join(lines) + "\n"
    header = ("# BENCHMARKS\n\nWritten by `make bench` (`python benchmarks/run.py`). Each section says the command that "
              "reproduces it, the date, the machine and the commit. Ratios are measured side by side in one run.\n\n")
    out.write_text(header + "\n".join(sections[k] for k in sorted(sections)))
    print(f"wrote {out}")
    return 0


def _read_sections(path: Path) -> dict[str, str]:
    """Keep sections of areas not re-run (keyed by the bench file name in their command line)."""
    if not path.is_file():
        return {}
    sections, current, buf = {}, None, []
    for line in path.read_text().splitlines(keepends=True):
        if line.startswith("## "):
            if current:
                sections[current] = "".join(buf).rstrip() + "\n"
            current, buf = None, [line]
            continue
        if current is None and line.startswith("`python benchmarks/run.py --only "):
            current = line.split("--only ", 1)[1].split()[0].strip("`")
        if buf:
            buf.append(line)
    if current:
        sections[current] = "".join(buf).rstrip() + "\n"
    return sections


if __name__ == "__main__":
    sys.exit(main())
