"""Open-set scores side by side: which score tells "in the map" from "not in the map" best, before and after
fine-tuning (ssl_nav/retrieval/openset.py; docs/retrieval.md).

Job: the default fine-tune of ``benchmarks/experiments.py`` on seeds 0, 1, 2 (the demo preset under the
evaluation protocol: robot views indexed, the user photos are training data, goal photos framed on the object;
the open set is the scene's not-in-map objects, mostly look-alikes of mapped ones). It is the same run as the
fine-tuning ablation's default and the mapping bench's GT-mask map (``experiments.run_variant`` caches results
by effective configuration), so this bench trains nothing new when those have run; it re-embeds the test and
calibration queries with the cached indexes (seconds).

Rows, per score (every score is computed for every query of the same run, so the comparison is paired):

- open-set AUROC, ImageNet baseline → fine-tuned, mean ± std over seeds, and per seed; the classifier scores
  (max_logit, energy, max_softmax) exist only for models that carry CrossIA's instance classifier in
  ``model.pt`` (``–`` for the baseline);
- the score in force by default (``retrieval.open_set_score: auto``): fine-tuned ≥ baseline on every seed;
- the open-set accuracy on the test queries with each score's threshold fitted on the calibration split
  (``calibration.jsonl``, written by the simulator apart from the test queries; ``ssl-nav calibrate``).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

AREA = "Open-set scores"
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
SEEDS = (0, 1, 2)
#: the default fine-tune, one torch thread (as bench_ablation and bench_mapping: the same cached run)
DEFAULT_RUN = {"learning.threads": 1}


def _calibrated_accuracy(cal: list, test: list) -> dict[str, float]:
    """Per score: the threshold fitted on ``cal``, and the open-set accuracy on ``test`` (an in-map query is right
    when accepted with the right top-1, a not-in-map query when rejected)."""
    from ssl_nav.retrieval.evaluate import calibrate

    out = {}
    for name in (test[0].scores if test else {}):
        try:
            t = calibrate([c.scores[name] for c in cal], [c.gt_instance_id is not None for c in cal])["threshold"]
        except (ValueError, TypeError, KeyError):
            continue
        right = []
        for q in test:
            v = q.scores.get(name)
            if v is None:
                break
            if q.gt_instance_id is None:
                right.append(v < t)
            else:
                top = q.ranked_gt[0] if q.ranked_gt and q.ranked_gt[0] is not None else (
                    q.ranked_instances[0] if q.ranked_instances else None)
                right.append(v >= t and top == q.gt_instance_id)
        if len(right) == len(test):
            out[name] = sum(right) / len(right)
    return out


def run_seed(seed: int, quick: bool) -> dict | None:
    """The default run of a seed (cached); per model the AUROC of every score, the score in force and the
    calibrated open-set accuracy of every score. None when the run is not cached under
    ``SSL_NAV_BENCH_CACHED_ONLY=1``."""
    from experiments import ROOT, baseline_dir, experiment_config, prepare_scene, run_variant

    from ssl_nav.retrieval.evaluate import evaluate_queries_file
    from ssl_nav.retrieval.query import Retriever

    r = run_variant(seed, DEFAULT_RUN, quick=quick, name="default")
    if r is None:
        return None
    cfg = experiment_config(seed, DEFAULT_RUN, quick)
    frames, store = prepare_scene(cfg)
    res: dict = {"seed": seed, "n_in_map": r["finetuned"]["n_in_map"], "n_open_set": r["finetuned"]["n_open_set"],
                 "n_calibration": None}
    indexes = {"baseline": baseline_dir(cfg, store) / "index",
               "finetuned": ROOT / "runs" / f"seed{seed}-{r['key']}" / "index-finetuned"}
    for model, index in indexes.items():
        m = r[model]
        entry = {"auroc": m["auroc_by_score"], "score": m["open_set_score"], "accuracy": {}}
        cal_file = frames / "calibration.jsonl"
        if cal_file.is_file() and index.is_dir():
            retriever = Retriever.open(index, cfg.retrieval)
            _, test = evaluate_queries_file(retriever, frames / "queries.jsonl", progress=False)
            _, cal = evaluate_queries_file(retriever, cal_file, progress=False)
            res["n_calibration"] = len(cal)
            entry["accuracy"] = _calibrated_accuracy(cal, test)
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
                                             f"seeds {seeds}: "
                                             + ", ".join(f"{_fmt(x)} → {_fmt(y)}" for x, y in zip(b_, f_))})
    else:
        rows.append({"benchmark": "open-set accuracy with calibrated thresholds", "figure": "not measured",
                     "target": "", "ok": None,
                     "note": "the simulated frames directory has no calibration.jsonl (calibration split)"})
    rows.append({"benchmark": "queries per seed", "figure": counts, "target": "", "ok": None,
                 "note": f"{'quick' if quick else 'demo'} preset; calibration split: "
                         + "/".join(str(r["n_calibration"]) for r in results) + " queries per seed"})
    return rows


def run(quick: bool) -> list[dict]:
    import torch

    torch.set_num_threads(1)
    results = []
    for seed in SEEDS[:1] if quick else SEEDS:
        r = run_seed(seed, quick)
        if r is None:
            print(f"  seed {seed}: not run (cached results only)", flush=True)
            continue
        results.append(r)
        print(f"  seed {seed}: " + ", ".join(f"{m} {r[m]['score']} {_fmt(r[m]['auroc'].get(r[m]['score']))}"
                                            for m in ("baseline", "finetuned")) , flush=True)
    if not results:
        return [{"benchmark": "open-set scores", "figure": "not run", "ok": None, "note": "no cached default run"}]
    return rows_from(results, quick)
