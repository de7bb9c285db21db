"""Check or summarise a ViewStore.

  ssl-nav store check STORE    list missing, corrupt or malformed files by path; exit 1 when there is any
  ssl-nav store stats STORE    instances, views per instance, low/high-quality split
  ssl-nav store recover STORE  undo the write of a killed process now (any writer does it first anyway)
"""

from __future__ import annotations

import argparse
import json

NAME = "store"
HELP = "check a view store, show its statistics, or undo a killed writer's changes"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("check", "stats", "recover"),
                   help="check files, show statistics, or roll back what a killed writer left (under the lock)")
    p.add_argument("store", metavar="STORE", help="view store directory")
    p.add_argument("--json", action="store_true", help="stats: print JSON instead of a table")
    p.add_argument("--no-decode", action="store_true", help="check: only test that images exist (faster)")


def run(args: argparse.Namespace) -> int:
    from ssl_nav.views.store import ViewStore

    if args.action == "recover":
        store = ViewStore(args.store)
        with store.writing():  # recovers when it takes the lock
            pass
        print(f"{args.store}: no interrupted write left ({len(store)} views)")
        return 0
    if args.action == "check":
        store = ViewStore(args.store, strict=False)
        problems = store.check(decode=not args.no_decode)
        for p in problems:
            print(p)
        if problems:
            print(f"{args.store}: {len(problems)} problem(s) in {len(store)} views")
            return 1
        print(f"{args.store}: ok ({len(store)} views, {len(store.instances())} instances)")
        return 0
    store = ViewStore(args.store)
    st = store.stats()
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    print(f"{'instance':>10} {'category':<20} {'low':>5} {'high':>5}")
    inst = store.instances()
    for iid, d in st["per_instance"].items():
        cat = (inst.get(iid) or {}).get("category") or "-"
        print(f"{iid:>10} {str(cat)[:20]:<20} {d['low']:>5} {d['high']:>5}")
    print(f"{st['instances']} instances ({st['instances_with_views']} with views), {st['views']} views: "
          f"{st['low']} low-quality, {st['high']} high-quality")
    return 0
