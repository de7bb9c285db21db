"""The objectives compared as the edge-energy study compares them (Famá et al., arXiv 2510.08374), on our task.

Each self-supervised objective of :mod:`ssl_nav.learning.objectives` (SimSiam, MoCo v2, the label-aware
``moco_masked``, SimCLR, Barlow Twins) runs at **its own best recipe**, with an equal budget (the same epochs,
batch and data: the ``--quick`` demo scene, MobileNetV2 with its last stage trained, one torch thread):

1. **SSL only** (``ce_weight 0``: no instance classifier, no outlier exposure): a small lr sweep per objective,
   ``base_lr`` = its published lr (:data:`PUBLISHED_LR`; SimSiam: CrossIA's) × 0.25 / 1 / 4, on seeds 0-2; the best (mean mAP, then AUROC) is that objective's
   recipe here, and it is confirmed on held-out seeds 3-7, which chose nothing.
2. **Each objective + the instance classifier** (``ce_weight 1`` with outlier exposure, as ssl_nav trains by
   default), at the lr its SSL-only sweep chose, seeds 0-2; beside the classifier alone (``objective: none``).
3. **Controls that prove training**: ``base_lr 0`` on seeds 0-2, SSL only and + classifier. With lr 0 no weight
   moves (``test_lr_zero_is_a_no_op_control_for_every_objective``) and the heads never reach the retrieval
   embedding (the backbone output), so one control per seed serves every objective: it measures the
   re-estimated BatchNorm statistics of the trained stage alone (and, + classifier, a random classifier as the
   open-set score).
4. **Reduced data** (the study's other axis): each objective's SSL-only best recipe on 50 % and 25 % of each
   instance's robot views (``learning.view_fraction``; nested, seed-stable; user photos kept), seeds 0-2.

Per run: top-1, mAP, open-set AUROC on the honest protocol (robot views indexed, look-alike negatives), fine-tune
wall time, and energy from its ``energy.json`` ("unavailable" where no sensor can be read, never 0). **Time to a
target mAP**: the shortest mean fine-tune (over the data fractions, whose step counts scale with the data) whose
mean mAP over seeds 0-2 reaches :data:`TARGET_MAP`; joules likewise where a sensor exists.

Runs are cached like the ablation's (``experiments.run_variant``), so this bench shares runs with it and
``SSL_NAV_BENCH_CACHED_ONLY=1`` writes the section from what has been computed. ``--quick``: seed 0, SimSiam and
MoCo v2 only.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(REPO), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

AREA = "Objectives: each at its own recipe (edge-energy comparison)"
OBJECTIVES = ("simsiam", "moco", "moco_masked", "simclr", "barlow")
LR_MULTIPLIERS = (0.25, 1.0, 4.0)
FRACTIONS = (0.5, 0.25)
SWEEP_SEEDS = (0, 1, 2)
HELD_OUT_SEEDS = (3, 4, 5, 6, 7)
TARGET_MAP = 0.85
#: every run: one torch thread (the machine is shared), the --quick demo scene
COMMON: dict[str, Any] = {"learning.threads": 1}
QUICK_SCENE = True


#: the centre of each sweep: the lr its paper (or code) publishes, as base_lr (lr = base_lr x batch / 256), so that the
#: sweep does not move when a recipe does (SimSiam's recipe is a quarter of CrossIA's lr; the sweep spans it)
PUBLISHED_LR = {"simsiam": 0.8, "moco": 0.03, "moco_masked": 0.05, "simclr": 0.3, "barlow": 0.2, "none": 0.05}


def _recipe_lr(objective: str) -> float:
    return PUBLISHED_LR[objective]


def ssl_only(objective: str, mult: float = 1.0, **more: Any) -> dict[str, Any]:
    return {**COMMON, "learning.objective": objective, "learning.ce_weight": 0.0,
            "learning.base_lr": round(_recipe_lr(objective) * mult, 6), **more}


def with_classifier(objective: str, base_lr: float) -> dict[str, Any]:
    return {**COMMON, "learning.objective": objective, "learning.ce_weight": 1.0, "learning.base_lr": base_lr}


def controls() -> dict[str, dict[str, Any]]:
    return {"lr 0, SSL only (any objective)": ssl_only("simsiam", 0.0),
            "lr 0, + classifier (any objective)": with_classifier("simsiam", 0.0)}


def sweep_variants(objectives=OBJECTIVES) -> dict[str, dict[str, Any]]:
    return {f"{o} only, lr ×{m:g}": ssl_only(o, m) for o in objectives for m in LR_MULTIPLIERS}


def plan(quick: bool = False) -> list[tuple[str, int, dict[str, Any]]]:
    """Every (name, seed, overrides) this bench needs before its choices are known: the sweep and the
    controls. (The held-out, + classifier and reduced-data runs follow from the sweep: :func:`run`.)"""
    objectives = OBJECTIVES[:2] if quick else OBJECTIVES
    seeds = (0,) if quick else SWEEP_SEEDS
    vs = {**sweep_variants(objectives), **controls(),
          "classifier only (objective none)": with_classifier("none", _recipe_lr("none"))}
    return [(n, s, ov) for s in seeds for n, ov in vs.items()]


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.mean(xs) if xs else None


def _f(x, spec: str = ".3f") -> str:
    return "–" if x is None else format(x, spec)


def _score(runs: list[dict]) -> tuple:
    """What the sweep maximises: mean mAP, then mean AUROC (None last)."""
    m = _mean([r["finetuned"].get("mAP") for r in runs])
    a = _mean([r["finetuned"].get("auroc") for r in runs])
    return (m if m is not None else -1.0, a if a is not None else -1.0)


def _joules(r: dict) -> float | None:
    return ((r.get("finetune") or {}).get("energy_j"))


def _row(name: str, runs: list[dict], base: list[dict] | None = None, control: list[dict] | None = None) -> dict:
    from experiments import METRICS

    vals = {k: [r["finetuned"].get(k) for r in runs] for k in METRICS}
    wall = _mean([r["finetune"]["wall_s"] for r in runs])
    joules = [_joules(r) for r in runs]
    energy = (f"{_mean(joules):.0f} J" if joules and all(j is not None for j in joules)
              else f"energy unavailable ({runs[0]['finetune'].get('energy_source') or 'unavailable'})")
    note = (f"seeds {[r['seed'] for r in runs]}: " + "; ".join(f"{k} " + "/".join(_f(v) for v in vals[k])
                                                                  for k in METRICS))
    ok = None
    if control is not None:
        ctl = {r["seed"]: r["finetuned"].get("mAP") for r in control}
        paired = [r for r in runs if ctl.get(r["seed"]) is not None and r["finetuned"].get("mAP") is not None]
        beats = [r["finetuned"]["mAP"] > ctl[r["seed"]] for r in paired]
        above = [r["finetuned"].get("mAP") is not None and r["finetuned"]["mAP"] > r["baseline"]["mAP"] for r in runs]
        ok = bool(paired) and all(beats) and all(above)
        note += (f"; mAP above its lr-0 control on {sum(beats)}/{len(paired)} seeds with a control "
                 f"({[r['seed'] for r in paired]}), above ImageNet on {sum(above)}/{len(runs)}")
    return {"benchmark": name, "figure": "; ".join(f"{k} {_f(_mean(vals[k]))}" for k in METRICS), "ok": ok,
            "note": f"{note}; fine-tune {_f(wall, '.0f')} s per run; {energy}"}


def run(quick: bool = False) -> list[dict]:
    from experiments import run_variants

    objectives = OBJECTIVES[:2] if quick else OBJECTIVES
    seeds = (0,) if quick else SWEEP_SEEDS
    held_out = () if quick else HELD_OUT_SEEDS
    got = lambda vs, ss: run_variants(vs, ss, quick=QUICK_SCENE)  # noqa: E731
    sweep = got(sweep_variants(objectives), seeds)
    ctl = got(controls(), seeds)
    ctl_alone, ctl_ce = (ctl[n] for n in controls())
    rows: list[dict] = []
    first = next(iter(sweep.values()))
    if first:
        rows.append({"benchmark": "ImageNet MobileNetV2 (no fine-tuning)",
                     "figure": "; ".join(f"{k} {_f(_mean([r['baseline'].get(k) for r in first]))}"
                                         for k in ("top1", "mAP", "auroc")),
                     "note": f"--quick demo scenes, seeds {[r['seed'] for r in first]}; every run below: 1 torch "
                             f"thread, MobileNetV2 last stage, the demo's epochs and batch (equal budget)"})
    rows.append(_row("control: lr 0, SSL only (BatchNorm re-estimate; no weight moves)", ctl_alone))
    best: dict[str, float] = {}
    for o in objectives:
        runs = {m: sweep[f"{o} only, lr ×{m:g}"] for m in LR_MULTIPLIERS}
        done = {m: r for m, r in runs.items() if r}
        if not done:
            rows.append({"benchmark": f"{o} only: lr sweep", "figure": "not run", "ok": None})
            continue
        m_best = max(done, key=lambda m: _score(done[m]))
        best[o] = round(_recipe_lr(o) * m_best, 6)
        sweep_note = ", ".join(f"×{m:g}: mAP {_f(_score(r)[0])} AUROC {_f(_score(r)[1])}" for m, r in done.items())
        row = _row(f"{o} only, its best lr (base_lr {best[o]:g} = published ×{m_best:g}), seeds "
                   f"{[r['seed'] for r in done[m_best]]}", done[m_best], control=ctl_alone)
        row["note"] = f"sweep {sweep_note}; " + row["note"]
        rows.append(row)
    if held_out:
        hv = got({f"{o} only, best lr, held-out": ssl_only(o, best[o] / _recipe_lr(o)) for o in best}, held_out)
        hctl = got({"control lr 0, held-out": controls()["lr 0, SSL only (any objective)"]}, held_out)
        for name, runs in hv.items():
            if runs:
                rows.append(_row(f"{name} seeds {list(held_out)}", runs, control=hctl["control lr 0, held-out"]
                                 if hctl["control lr 0, held-out"] else None))
    ce = got({f"{o} + classifier (lr {best[o]:g})": with_classifier(o, best[o]) for o in best}
             | {"classifier only (objective none)": with_classifier("none", _recipe_lr("none"))}, seeds)
    rows.append(_row("control: lr 0, + classifier", ctl_ce))
    for name, runs in ce.items():
        if runs:
            rows.append(_row(name, runs, control=ctl_ce))
    if not quick:
        frac = got({f"{o} only, {fr:.0%} of robot views": ssl_only(o, best[o] / _recipe_lr(o),
                                                                     **{"learning.view_fraction": fr})
                    for o in best for fr in FRACTIONS}, seeds)
        for o in best:
            curve = [(1.0, sweep[f"{o} only, lr ×{best[o] / _recipe_lr(o):g}"])]
            curve += [(fr, frac[f"{o} only, {fr:.0%} of robot views"]) for fr in FRACTIONS]
            curve = [(fr, r) for fr, r in curve if r]
            pts = ", ".join(f"{fr:.0%}: mAP {_f(_score(r)[0])}, {_f(_mean([x['finetune']['wall_s'] for x in r]), '.0f')} s"
                            for fr, r in curve)
            reach = [(_mean([x["finetune"]["wall_s"] for x in r]), fr) for fr, r in curve if _score(r)[0] >= TARGET_MAP]
            figure = (f"{min(reach)[0]:.0f} s to mAP ≥ {TARGET_MAP} ({min(reach)[1]:.0%} of the views)" if reach
                      else f"mAP {TARGET_MAP} not reached")
            missing = [f"{fr:.0%}" for fr in FRACTIONS if not frac[f"{o} only, {fr:.0%} of robot views"]]
            rows.append({"benchmark": f"{o} only: reduced data, time to mAP ≥ {TARGET_MAP}", "figure": figure,
                         "note": f"{pts}" + (f"; {', '.join(missing)} of the views not run this round" if missing
                                             else "") + "; joules: unavailable here (no sensor), the time is the proxy"})
    return rows
