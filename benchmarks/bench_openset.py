"""Open-set scores side by side: which score tells "in the map" from "not in the map" best, before and after
fine-tuning (ssl_nav/retrieval/openset.py; docs/retrieval.md).

Job: the demo (``run_demo``, the demo preset; ``--quick``: the quick preset) on seeds 0, 1, 2 under the
evaluation protocol (robot views indexed; the user photos are training data; goal photos framed on the object,
``retrieval.query_crop: object``), with ``sim.n_open_set`` raised to :data:`N_OPEN_SET` so that each seed has
enough not-in-map queries for an AUROC to mean something. Reports land in ``out/bench-openset/seed<N>/``.

Rows, per score (every score is computed for every query of the same run, so the comparison is paired):

- open-set AUROC, ImageNet baseline → fine-tuned, mean ± std over seeds, and per seed; the classifier scores
  (max_logit, energy, max_softmax) exist only for models that carry CrossIA's instance classifier in
  ``model.pt`` (``–`` otherwise);
- the score in force by default (``retrieval.open_set_score: auto``): fine-tuned ≥ baseline on every seed;
- when the frames directory holds a calibration split (``calibration.jsonl``, written by the simulator apart
  from the test queries): the open-set accuracy on the test queries with each score's threshold fitted on
  the calibration split (``ssl-nav calibrate``).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

AREA = "Open-set scores"
REPO = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)
#: not-in-map episodes per scene (the demo preset has 4)
N_OPEN_SET = 10


def run_seed(seed: int, quick: bool) -> dict:
    """One demo run; returns per model: the AUROC of every score, the score in force, and (with a calibration
    split) the calibrated open-set accuracy of every score."""
    from ssl_nav.config import apply_overrides
    from ssl_nav.pipeline import demo_config, run_demo
    from ssl_nav.retrieval.evaluate import calibrate, evaluate_queries_file
    from ssl_nav.retrieval.query import Retriever

    cfg = apply_overrides(demo_config(None, quick, seed), {"sim.n_open_set": N_OPEN_SET}, "bench_openset")
    out = REPO / "out" / "bench-openset" / f"seed{seed}"
    t0 = time.monotonic()
    report = run_demo(cfg, out, progress=False)
    res: dict = {"seed": seed, "seconds": round(time.monotonic() - t0), "n_in_map": None, "n_open_set": None}
    cal_file = Path(report["paths"]["frames"]) / "calibration.jsonl"
    for model, index_key in (("baseline", "index_baseline"), ("finetuned", "index_finetuned")):
        m = report["metrics"][model]
        res["n_in_map"], res["n_open_set"] = m["n_in_map"], m["n_open_set"]
        entry = {"auroc": m["auroc_by_score"], "score": m["open_set_score"], "accuracy": {}}
        if cal_file.is_file():
            r = Retriever.open(report["paths"][index_key], cfg.retrieval)
            _, cal = evaluate_queries_file(r, cal_file, progress=False)
            test = report["per_query"][model]
            for name in m["auroc_by_score"]:
                try:
                    t = calibrate([c.scores[name] for c in cal], [c.gt_instance_id is not None for c in cal])
                except (ValueError, TypeError):
                    continue
                right = [(q["scores"][name] >= t["threshold"] and (q["ranked_gt"] or [None])[0] == q["gt_instance_id"])
                         if q["gt_instance_id"] is not None else q["scores"][name] < t["threshold"] for q in test]
                entry["accuracy"][name] = sum(right) / len(right)
        res[model] = entry
    return res


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def _mean_std(vals: list) -> str:
    if not vals or any(v is None for v in vals):
        return "–"
    return f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals) if len(vals) > 1 else 0.0:.3f}"


def rows_from(results: list[dict], quick: bool = False) -> list[dict]:
    from ssl_nav.retrieval.openset import CLASSIFIER_SCORES, OPEN_SET_SCORES

    seeds = [r["seed"] for r in results]
    counts = "; ".join(f"seed {r['seed']}: {r['n_in_map']} in map + {r['n_open_set']} not" for r in results)
    rows = []
    for name in OPEN_SET_SCORES:
        b = [r["baseline"]["auroc"].get(name) for r in results]
        f = [r["finetuned"]["auroc"].get(name) for r in results]
        if all(v is None for v in f + b):
            rows.append({"benchmark": f"open-set AUROC by {name}", "figure": "–", "target": "", "ok": None,
                         "note": "the models here have no instance classifier in model.pt"
                         if name in CLASSIFIER_SCORES else "not computed"})
            continue
        rows.append({"benchmark": f"open-set AUROC by {name}: baseline → fine-tuned",
                     "figure": f"{_mean_std(b)} → {_mean_std(f)}", "target": "", "ok": None,
                     "note": f"seeds {seeds}: " + ", ".join(f"{_fmt(x)} → {_fmt(y)}" for x, y in zip(b, f))})
    used_b = [r["baseline"]["score"] for r in results]
    used_f = [r["finetuned"]["score"] for r in results]
    b = [r["baseline"]["auroc"].get(s) for r, s in zip(results, used_b)]
    f = [r["finetuned"]["auroc"].get(s) for r, s in zip(results, used_f)]
    ok = all(x is not None and y is not None and y >= x for x, y in zip(b, f))
    rows.append({"benchmark": "open-set AUROC, score in force (open_set_score: auto): fine-tuned ≥ baseline "
                              "on every seed",
                 "figure": f"{_mean_std(b)} → {_mean_std(f)}", "target": "fine-tuned ≥ baseline, each seed",
                 "ok": ok, "note": f"baseline: {', '.join(sorted(set(used_b)))}; fine-tuned: "
                                   f"{', '.join(sorted(set(used_f)))}; per seed "
                                   + ", ".join(f"{_fmt(x)} → {_fmt(y)}" for x, y in zip(b, f))})
    rows.append({"benchmark": "open-set AUROC ≥ 0.95 (fine-tuned, score in force)", "figure": _mean_std(f),
                 "target": "≥ 0.95 each seed", "ok": all(y is not None and y >= 0.95 for y in f),
                 "note": "negatives: the scene's open-set objects, rendered in the room but never mapped "
                         "(look-alikes of mapped objects where the simulator makes them)"})
    acc = [(name, [r["finetuned"]["accuracy"].get(name) for r in results],
            [r["baseline"]["accuracy"].get(name) for r in results]) for name in OPEN_SET_SCORES]
    if any(v is not None for _, f_, _ in acc for v in f_):
        for name, f_, b_ in acc:
            if all(v is None for v in f_):
                continue
            rows.append({"benchmark": f"open-set accuracy, {name} calibrated on calibration.jsonl: baseline → "
                                      f"fine-tuned", "figure": f"{_mean_std(b_)} → {_mean_std(f_)}", "target": "",
                         "ok": None, "note": f"threshold fitted on the calibration split, measured on queries.jsonl; "
                                             f"seeds {seeds}"})
    else:
        rows.append({"benchmark": "open-set accuracy with calibrated thresholds", "figure": "not measured",
                     "target": "", "ok": None,
                     "note": "the simulated frames directory has no calibration.jsonl (calibration split)"})
    rows.append({"benchmark": "queries per seed", "figure": counts, "target": "", "ok": None,
                 "note": f"{'quick' if quick else 'demo'} preset, sim.n_open_set = {N_OPEN_SET}; "
                         f"{statistics.mean(r['seconds'] for r in results):.0f} s per seed"})
    return rows


def run(quick: bool) -> list[dict]:
    results = []
    for seed in SEEDS:
        r = run_seed(seed, quick)
        results.append(r)
        print(f"  seed {seed}: " + ", ".join(f"{m} {r[m]['score']} {_fmt(r[m]['auroc'].get(r[m]['score']))}"
                                            for m in ("baseline", "finetuned")) + f" ({r['seconds']} s)", flush=True)
    return rows_from(results, quick)
