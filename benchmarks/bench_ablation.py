"""Fine-tuning recipe ablation (docs/finetuning.md): which objective, losses and options earn their place.

Every variant fine-tunes on the same per-seed scene (``benchmarks/experiments.py``: the demo preset, robot views
indexed, user photos as training data only, queries from ``queries.jsonl`` with look-alike open-set negatives)
and is evaluated against the ImageNet baseline. The variants are deltas from the current defaults
(``LearningConfig`` with its objective's recipe, and ``RetrievalConfig``), so the bench re-runs unchanged after a
default changes:

- the default (SimSiam + CrossIA pairing + instance classifier + outlier exposure, SimSiam's recipe: CrossIA's
  wd 1.5e-6 at a quarter of its lr 0.1 for batch 32; flip TTA), CrossIA's raw lr, and the previous default (``moco_masked``: MoCo v2 with the anchor's
  own map instance masked out of the queue, + classifier + outlier exposure, lr 0.05 · batch / 256, wd 1e-4);
- SimSiam alone (no classifier), and the **lr = 0 controls** of the default and of SimSiam alone (no weight
  moves; only the BatchNorm statistics of the trained stage are re-estimated): a learned part must beat them;
- a heads-only warm-up (``head_warmup_epochs``) at the recipe's lr and at CrossIA's, outlier exposure off, flip TTA off, the classifier alone,
  SimView pairing.

Seeds 0-2 chose; the default, the previous default, SimSiam alone and its control are re-run on held-out seeds
3-7, which chose nothing. Rows: first the goals (every seed: the default against the previous default on every
metric, the mean mAP and AUROC over seeds 0-7, SimSiam alone against ImageNet and against its lr-0 control, the
fine-tune time), then per variant top-1, mAP, open-set AUROC (mean ± std, per seed, Δ to the default), the
fine-tune wall time, the SSL loss of the first and last epoch and the monitor's final effective rank.

``--quick``: the ``--quick`` scene preset and seed 0 only. Results are cached under ``out/bench/results/`` by
effective configuration, scene and the training/retrieval code (``experiments.run_variant``), shared with
``bench_mapping`` and ``bench_objectives``; ``SSL_NAV_BENCH_CACHED_ONLY=1`` writes the rows from the cached runs
only, and a variant with fewer seeds says so in its row.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

AREA = "Fine-tuning recipe ablation"
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

#: the default before SimSiam was made to train: the label-aware MoCo variant at its own recipe (lr 0.05 x batch /
#: 256, wd 1e-4, 1 warm-up epoch: ``moco_masked``'s Recipe), + classifier, outlier exposure, flip TTA
PREVIOUS_DEFAULT: dict[str, Any] = {"learning.objective": "moco_masked"}
#: SimSiam alone at CrossIA's lr (0.1 at batch 32): without the classifier it trains best at the higher lr
#: (bench_objectives' sweep)
SIMSIAM_ONLY: dict[str, Any] = {"learning.objective": "simsiam", "learning.ce_weight": 0.0}  # recipe here: 0.8
#: CrossIA's raw lr for the default (SimSiam's recipe is a quarter of it)
CROSSIA_LR: dict[str, Any] = {"learning.base_lr": 0.8}
LR0: dict[str, Any] = {"learning.base_lr": 0.0}
HEAD_WARMUP_EPOCHS = 2
THREADS = 1


def describe(lc, rc=None) -> str:
    """The recipe of a LearningConfig (and how a RetrievalConfig embeds) in a few words."""
    from ssl_nav.learning.catalog import describe as objective
    from ssl_nav.learning.objectives import resolve_recipe

    lc = resolve_recipe(lc)
    parts = [f"{lc.augment} augment", objective(lc)]
    if lc.recolour_oe_weight > 0 and lc.ce_weight > 0:
        parts.append(f"recolour OE {lc.recolour_oe_weight:g}")
    parts.append(f"lr {lc.base_lr:g}·bs/256, wd {lc.weight_decay:g}")
    if rc is not None and rc.flip_tta:
        parts.append("flip TTA")
    return ", ".join(parts)


def variants() -> dict[str, dict[str, Any]]:
    """Name -> overrides; the first is the default, the second the previous default.

    Snapshot of the code at this commit: SimSiam's recipe here still reads CrossIA's lr (base_lr 0.8), so every
    variant writes out the values of the recipe the ablation chose (base_lr 0.2); the names are those of the
    variants on main, where they are deltas from the defaults."""
    r = {"learning.base_lr": 0.2}
    return {
        "default: instance augment, SimSiam + instance CE, CrossIA pairing, recolour OE 0.5, lr 0.2·bs/256, "
        "wd 1.5e-06, flip TTA": dict(r),
        "previous default: moco_masked (MoCo v2 + instance-id masking, uses map ids) + CE + OE": dict(PREVIOUS_DEFAULT),
        "SimSiam only (no classifier, no OE)": dict(SIMSIAM_ONLY),
        "control: SimSiam only at lr 0": {**SIMSIAM_ONLY, **LR0},
        "control: default at lr 0": dict(LR0),
        "CrossIA's lr (0.1 at batch 32, 4x the recipe)": {},
        f"heads-only warm-up, {HEAD_WARMUP_EPOCHS} epochs": {**r, "learning.head_warmup_epochs": HEAD_WARMUP_EPOCHS},
        f"CrossIA's lr + heads-only warm-up, {HEAD_WARMUP_EPOCHS} epochs": {
            "learning.head_warmup_epochs": HEAD_WARMUP_EPOCHS},
        "recolour outlier exposure off": {**r, "learning.recolour_oe_weight": 0.0},
        "flip TTA off (index and queries)": {**r, "retrieval.flip_tta": False},
        "CE only (objective none)": {"learning.objective": "none", "learning.ce_weight": 1.0},
        "SimView pairing": {**r, "learning.crossia": False},
    }


#: fields that change the time of a run but not what it learns
_TIMING_ONLY = ("monitor_every", "checkpoint_every", "threads")


def _distinct(vs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Drop variants that train and embed exactly like an earlier one (e.g. ``augment crossia`` when the default
    differs from the previous default only in the augmentation)."""
    import dataclasses

    from ssl_nav.config import PipelineConfig, apply_overrides

    seen, out = set(), {}
    for name, ov in vs.items():
        cfg = apply_overrides(PipelineConfig(), ov)
        key = tuple(sorted((k, v) for k, v in dataclasses.asdict(cfg.learning).items() if k not in _TIMING_ONLY))
        key += tuple(sorted(dataclasses.asdict(cfg.retrieval).items()))
        if key not in seen:
            seen.add(key)
            out[name] = ov
    return out


def _loss_ssl_trend(r: dict) -> str | None:
    import json

    path = Path(r.get("finetune", {}).get("run_dir", "")) / "metrics.jsonl"
    if not path.is_file():
        return None
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    if not lines or "loss_ssl" not in lines[0]:
        return None
    return f"{lines[0]['loss_ssl']:+.2f}→{lines[-1]['loss_ssl']:+.2f}"


def _extras(results: dict[str, list[dict]]) -> dict[str, str]:
    """Per variant: fine-tune wall time, SimSiam-loss trend, final eff. rank and silhouette (mean over seeds)."""
    out = {}
    for name, runs in results.items():
        if not runs:
            continue
        wall = statistics.mean(r["finetune"]["wall_s"] for r in runs)
        bits = [f"fine-tune {wall:.0f} s"]
        trends = [t for t in (_loss_ssl_trend(r) for r in runs) if t]
        if trends:
            bits.append("loss_ssl first→last epoch " + "/".join(trends))
        for key, fmt in (("eff_rank", ".1f"), ("silhouette", ".2f")):
            vals = [r["finetune"].get(key) for r in runs if r["finetune"].get(key) is not None]
            if vals:
                bits.append(f"{key} {statistics.mean(vals):{fmt}}")
        if any(r["finetune"].get("collapse_warning") for r in runs):
            bits.append("**collapse warning**")
        out[name] = "; ".join(bits)
    return out


def finetune_cpu_time(seed: int, overrides: dict[str, Any], quick: bool) -> dict:
    """CPU time of one ``finetune`` (this process, one torch thread) of a variant on its scene: the fine-tune's
    cost without the shared machine's load, which the wall time of the cached runs carries. Cached under
    ``out/bench/timing/`` per :func:`experiments.result_key`."""
    import json
    import shutil
    import time

    from experiments import ROOT, experiment_config, prepare_scene, result_key

    from ssl_nav.learning.trainer import finetune

    cfg = experiment_config(seed, overrides, quick)
    path = ROOT / "timing" / f"seed{seed}-{result_key(cfg)}.json"
    if path.is_file():
        return json.loads(path.read_text())
    _, store = prepare_scene(cfg)
    out = ROOT / "timing" / f"run-seed{seed}-{result_key(cfg)}"
    shutil.rmtree(out, ignore_errors=True)
    c0, w0 = time.process_time(), time.perf_counter()
    ft = finetune(store, out, cfg, progress=False)
    res = {"cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - w0, "train_s": ft.summary.get("train_s")}
    shutil.rmtree(out, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res))
    return res


def _goal_rows(res: dict[str, list[dict]], default: str, previous: str, simsiam: str, control: str) -> list[dict]:
    """The goals over every seed run (goal seeds and held-out seeds together): the default at least the previous
    default on every metric and seed; mean mAP and AUROC of the default at least 0.97; SimSiam alone above ImageNet
    on mAP and above its lr-0 control on every seed; the fine-tune time of the default against the previous."""
    from experiments import METRICS
    from experiments import _fmt

    runs = sorted(res[default], key=lambda r: r["seed"])
    if not runs:
        return [{"benchmark": "goals", "figure": "not run", "ok": None, "note": "no result of the default"}]
    seeds = [r["seed"] for r in runs]
    rows = []
    prev = {r["seed"]: r for r in res.get(previous, [])}
    worse = [f"seed {r['seed']} {k} {_fmt(r['finetuned'].get(k))} < {_fmt(prev[r['seed']]['finetuned'].get(k))}"
             for r in runs if r["seed"] in prev for k in METRICS
             if (r["finetuned"].get(k) or 0) < (prev[r["seed"]]["finetuned"].get(k) or 0) - 1e-9]
    both = [s for s in seeds if s in prev]
    rows.append({"benchmark": "default ≥ previous default on top-1, mAP and AUROC, every seed",
                 "figure": "yes" if not worse else f"no ({len(worse)}): " + "; ".join(worse),
                 "target": "every metric, every seed", "ok": not worse and len(both) == len(seeds),
                 "note": f"seeds {both}; per seed default/previous: " + "; ".join(
                     f"{s}: " + ", ".join(f"{k} {_fmt(r['finetuned'].get(k))}/{_fmt(prev[s]['finetuned'].get(k))}"
                                          for k in METRICS) for r in runs for s in [r["seed"]] if s in prev)})
    for key in ("mAP", "auroc"):
        vals = [r["finetuned"].get(key) for r in runs]
        mean = statistics.mean(v for v in vals if v is not None)
        pv = [prev[s]["finetuned"].get(key) for s in both]
        rows.append({"benchmark": f"default {key}, mean over seeds {seeds}", "figure": f"{mean:.3f}",
                     "target": "≥ 0.97", "ok": mean >= 0.97 and len(seeds) == 8,
                     "note": "per seed " + "/".join(_fmt(v) for v in vals)
                             + (f"; previous default mean {statistics.mean(pv):.3f}" if pv else "")})
    ss = {r["seed"]: r for r in res.get(simsiam, [])}
    ctl = {r["seed"]: r for r in res.get(control, [])}
    above_base = [s for s, r in ss.items() if r["finetuned"]["mAP"] > r["baseline"]["mAP"]]
    above_ctl = [s for s, r in ss.items() if s in ctl and r["finetuned"]["mAP"] > ctl[s]["finetuned"]["mAP"]]
    rows.append({"benchmark": "SimSiam alone (no classifier): mAP above ImageNet and above its lr-0 control",
                 "figure": f"above ImageNet on {len(above_base)}/{len(ss)} seeds, above lr 0 on "
                           f"{len(above_ctl)}/{len([s for s in ss if s in ctl])}",
                 "target": "every seed", "ok": bool(ss) and len(above_base) == len(ss) == len(above_ctl),
                 "note": "per seed ImageNet / lr 0 / SimSiam mAP: " + "; ".join(
                     f"{s}: {_fmt(r['baseline']['mAP'])} / {_fmt(ctl[s]['finetuned']['mAP']) if s in ctl else '–'}"
                     f" / {_fmt(r['finetuned']['mAP'])}" for s, r in sorted(ss.items()))})
    pairs = [(a, prev[a["seed"]]) for a in runs if a["seed"] in prev]
    if pairs:
        ratios = [a["finetune"]["wall_s"] / b["finetune"]["wall_s"] for a, b in pairs]
        rows.append({"benchmark": "fine-tune wall time: default ÷ previous default (paired per seed)",
                     "figure": f"{statistics.median(ratios):.2f} (" + "/".join(f"{x:.2f}" for x in ratios) + ")",
                     "ok": None,
                     "note": ", ".join(f"seed {a['seed']}: {a['finetune']['wall_s']:.0f} s vs "
                                       f"{b['finetune']['wall_s']:.0f} s" for a, b in pairs)
                             + "; median of per-seed ratios of `finetune` wall time, 1 torch thread each; the runs "
                               "ran side by side on a shared 2-core machine, so the load differed between pairs"})
    return rows


#: the seed of the CPU-time comparison (one pair of fine-tunes, run in this process one after the other)
TIMING_SEED = 0


def _cpu_time_row(default: str, previous: str, quick: bool = False) -> dict:
    import os

    from experiments import CACHED_ONLY_ENV

    vs = variants()
    t = {}
    for name in (previous, default):
        ov = {**vs[name], "learning.threads": THREADS}
        try:
            if os.environ.get(CACHED_ONLY_ENV) == "1":
                import json

                from experiments import ROOT, experiment_config, result_key

                p = ROOT / "timing" / f"seed{TIMING_SEED}-{result_key(experiment_config(TIMING_SEED, ov, quick))}.json"
                t[name] = json.loads(p.read_text())
            else:
                t[name] = finetune_cpu_time(TIMING_SEED, ov, quick)
        except FileNotFoundError:
            return {"benchmark": "fine-tune CPU time: default ÷ previous default", "figure": "not measured",
                    "ok": None, "note": "no cached timing"}
    a, b = t[default], t[previous]
    r = a["cpu_s"] / b["cpu_s"]
    return {"benchmark": f"fine-tune CPU time: default ÷ previous default (seed {TIMING_SEED}, same scene)",
            "figure": f"{r:.2f} ({a['cpu_s']:.0f} s vs {b['cpu_s']:.0f} s)", "target": "≤ 1.0", "ok": r <= 1.0,
            "note": "process CPU time of `finetune` (set-up, training, monitor, checkpoints, export), 1 torch thread, "
                    "both in one process one after the other; CPU time rather than wall time because the shared "
                    f"machine's load changed by several times during the runs (wall {a['wall_s']:.0f} s vs "
                    f"{b['wall_s']:.0f} s); the previous default monitors and checkpoints every epoch"}


def run(quick: bool = False) -> list[dict]:
    from experiments import run_variants, variant_rows

    import torch

    seeds = (0,) if quick else (0, 1, 2)
    vs = variants()
    names = list(vs)
    default, previous, simsiam, control = names[:4]
    # one thread per run: on a shared 2-core machine, 2-thread OpenMP under contention runs several times slower;
    # every variant gets the same, and the figures are quality and time ratios
    torch.set_num_threads(THREADS)
    results = run_variants({k: {**v, "learning.threads": THREADS} for k, v in vs.items()}, seeds, quick=quick)
    rows = variant_rows(results, reference=default, seeds=seeds)
    extras = _extras(results)
    for row, name in zip(rows[-len(results):], results):
        if name in extras:
            row["note"] += f"; {extras[name]}"
    held: dict[str, list[dict]] = {}
    if not quick:
        held = run_variants({n: {**vs[n], "learning.threads": THREADS} for n in (default, previous, simsiam, control)},
                            HELD_OUT_SEEDS)
        hrows = variant_rows(held, reference=default, seeds=HELD_OUT_SEEDS)
        for row in hrows:
            row["benchmark"] = f"held-out seeds {'/'.join(map(str, HELD_OUT_SEEDS))}: {row['benchmark']}"
        rows += hrows
    every = {n: results.get(n, []) + held.get(n, []) for n in (default, previous, simsiam, control)}
    return _goal_rows(every, default, previous, simsiam, control) + [_cpu_time_row(default, previous, quick)] + rows


#: seeds that chose nothing: the default and SimSiam alone are re-checked on them
HELD_OUT_SEEDS = (3, 4, 5, 6, 7)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--list", action="store_true", help="print the variants and exit")
    args = ap.parse_args()
    if args.list:
        for k, v in variants().items():
            print(f"{k}: {v}")
    else:
        for r in run(args.quick):
            print(r)
