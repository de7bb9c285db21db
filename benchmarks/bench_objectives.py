"""The four-objective comparison of the edge-energy study (Famá et al., arXiv 2510.08374) on our task.

The study asks which self-supervised objective gives the best quality per joule on an edge device, and how
each degrades when the training data shrinks. Here: SimSiam, SimCLR, MoCo v2 and Barlow Twins
(``learning.objective``), each beside the default instance-classifier cross-entropy (``learning.ce_weight``
1.0, as every fine-tune of ssl_nav trains), on 100 %, 50 % and 25 % of each instance's robot views
(``learning.view_fraction``: a nested, seed-stable subset; the user photos are always kept). Everything else is
the demo preset: same backbone (MobileNetV2, ``trainable: last``), data, augmentation and schedule.

Per run:

- fine-tune time (the whole ``finetune`` call: data, steps, monitor, checkpoints, export) and images/s (trained
  images over the epochs' time);
- energy from the run's ``energy.json`` (``energy.backend: auto``); "unavailable" where no sensor can be read,
  never 0;
- peak memory: the high-water mark (``VmHWM``, ``benchmarks/memory.py``) of a fresh process that runs only the
  fine-tune (so it includes the Python and torch runtime, about 0.4 GB);
- retrieval on the demo protocol (:mod:`experiments`: robot views indexed, user photos are training data,
  look-alike negatives): top-1, mAP, open-set AUROC of the fine-tuned model, and the ImageNet baseline;
- retrieval per joule: the mAP gain over the ImageNet baseline per kJ. Where energy is unavailable the proxy is
  the mAP gain per minute of fine-tuning, which ranks the same way only at equal average power (same device,
  same load).

One seed on the ``--quick`` demo scene (12 fine-tunes; about 30-40 min on 2 shared cores with
``learning.threads: 1``); ``SSL_NAV_OBJECTIVE_SEEDS=0,1,2`` runs more seeds.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(REPO), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

AREA = "Objectives: retrieval per joule (edge-energy comparison)"
OBJECTIVES: dict[str, str] = {"SimSiam": "simsiam", "SimCLR": "simclr", "MoCo v2": "moco", "Barlow Twins": "barlow"}
FRACTIONS: tuple[float, ...] = (1.0, 0.5, 0.25)
#: what every run shares besides the demo preset: one thread (the machine is shared), the energy source as found
COMMON: dict = {"learning.threads": 1, "energy.backend": "auto"}

_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/benchmarks")
from experiments import experiment_config
from memory import peak_rss_kb
from ssl_nav.learning.trainer import finetune
seed, overrides, store, out = int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4], sys.argv[5]
cfg = experiment_config(seed, overrides, quick=sys.argv[6] == "1")
res = finetune(store, out, cfg, progress=False)
print(json.dumps({"summary": res.summary, "energy": res.energy, "model_path": str(res.model_path),
                  "maxrss_kb": peak_rss_kb()}, default=str))
"""


def _finetune_in_child(seed: int, overrides: dict, store: Path, out: Path, quick_scene: bool) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(overrides.get("learning.threads", 1)), PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(REPO), str(seed), json.dumps(overrides), str(store),
                           str(out), "1" if quick_scene else "0"], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"fine-tune {overrides} failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_one(seed: int, objective: str, fraction: float, quick_scene: bool = True) -> dict:
    """Fine-tune one (objective, fraction) in a child process, index the robot views, evaluate."""
    import shutil

    from experiments import ROOT, baseline_metrics, experiment_config, index_metrics, prepare_scene
    from ssl_nav.retrieval.build import build_index

    overrides = {**COMMON, "learning.objective": objective, "learning.view_fraction": fraction}
    cfg = experiment_config(seed, overrides, quick_scene)
    frames, store = prepare_scene(cfg)
    out = ROOT / "objectives" / f"seed{seed}-{objective}-{int(round(100 * fraction))}"
    if out.exists():
        shutil.rmtree(out)
    child = _finetune_in_child(seed, overrides, store, out / "run", quick_scene)
    build_index(store, Path(child["model_path"]), cfg.retrieval, out / "index", progress=False)
    res = {"seed": seed, "objective": objective, "fraction": fraction,
           "baseline": baseline_metrics(cfg, frames, store), "finetuned": index_metrics(out / "index",
                                                                                   frames / "queries.jsonl", cfg),
           "summary": child["summary"], "energy": child["energy"], "maxrss_kb": child["maxrss_kb"]}
    (out / "result.json").write_text(json.dumps(res, indent=1, default=str))
    return res


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.mean(xs) if xs else None


def _f(x: float | None, spec: str = ".3f") -> str:
    return "–" if x is None else format(x, spec)


def summarise(runs: list[dict]) -> dict:
    """Means over seeds of one (objective, fraction): metrics, time, energy, images/s, peak RSS, retrieval per
    kJ (or per minute when energy is unavailable)."""
    fin = {k: _mean([r["finetuned"].get(k) for r in runs]) for k in ("top1", "mAP", "auroc")}
    base_map = _mean([r["baseline"].get("mAP") for r in runs])
    wall = _mean([r["summary"]["wall_s"] for r in runs])
    joules = [(r["energy"].get("joules") or {}).get("total") for r in runs]
    measured = all(j is not None for j in joules)
    kj = _mean(joules) / 1000 if measured else None
    gain = None if fin["mAP"] is None or base_map is None else fin["mAP"] - base_map
    return {**fin, "base_mAP": base_map, "gain": gain, "wall_s": wall,
            "ips": _mean([r["summary"]["images_per_s"] for r in runs]),
            "rss_gb": _mean([r["maxrss_kb"] / 2**20 for r in runs]), "kj": kj,
            "source": runs[0]["energy"].get("source", "unavailable"),
            "covers": runs[0]["energy"].get("total_covers"),
            "per_kj": None if kj is None or gain is None or kj <= 0 else gain / kj,
            "per_min": None if gain is None or not wall else gain / (wall / 60),
            "n_views": runs[0]["summary"]["n_views"]}


def run(quick: bool = False) -> list[dict]:
    seeds = tuple(int(s) for s in os.environ.get("SSL_NAV_OBJECTIVE_SEEDS", "0").split(","))
    objectives = dict(list(OBJECTIVES.items())[:2]) if quick else OBJECTIVES
    fractions = FRACTIONS[:2] if quick else FRACTIONS
    t0 = time.monotonic()
    table: dict[tuple[str, float], dict] = {}
    for name, obj in objectives.items():
        for frac in fractions:
            runs = [run_one(seed, obj, frac) for seed in seeds]
            s = table[(name, frac)] = summarise(runs)
            print(f"  {name} {frac:.0%}: mAP {_f(s['mAP'])}, top-1 {_f(s['top1'])}, AUROC {_f(s['auroc'])}, "
                  f"{_f(s['wall_s'], '.0f')} s, {_f(s['ips'], '.1f')} img/s, {_f(s['rss_gb'], '.2f')} GB",
                  flush=True)
    first = next(iter(table.values()))
    rows = [{"benchmark": "ImageNet baseline (no fine-tuning)",
             "figure": f"mAP {_f(first['base_mAP'])}",
             "note": f"quick demo scene, seeds {list(seeds)}; the reference of every ΔmAP below"}]
    for (name, frac), s in table.items():
        energy = (f"{s['kj'] * 1000:.0f} J ({s['covers']}; {s['source']})" if s["kj"] is not None
                  else f"energy unavailable (source {s['source']}; no sensor readable here)")
        per = (f"ΔmAP {_f(s['gain'], '+.3f')} = {_f(s['per_kj'], '+.3f')} per kJ" if s["per_kj"] is not None
               else f"ΔmAP {_f(s['gain'], '+.3f')} = {_f(s['per_min'], '+.3f')} per min of fine-tuning (proxy)")
        rows.append({"benchmark": f"{name}, {frac:.0%} of robot views ({s['n_views']} views)",
                     "figure": f"mAP {_f(s['mAP'])}, top-1 {_f(s['top1'])}, AUROC {_f(s['auroc'])}",
                     "note": f"{per}; fine-tune {_f(s['wall_s'], '.0f')} s, {_f(s['ips'], '.1f')} img/s, "
                             f"peak RSS {_f(s['rss_gb'], '.2f')} GB; {energy}"})
    key = "per_kj" if all(s["per_kj"] is not None for s in table.values()) else "per_min"
    best = max(table, key=lambda k: table[k][key] if table[k][key] is not None else float("-inf"))
    best_map = max(table, key=lambda k: table[k]["mAP"] if table[k]["mAP"] is not None else float("-inf"))
    unit = "ΔmAP per kJ" if key == "per_kj" else "ΔmAP per minute of fine-tuning (energy unavailable: time proxy)"
    rows.append({"benchmark": "best retrieval per joule" if key == "per_kj" else "best retrieval per second (proxy)",
                 "figure": f"{best[0]} at {best[1]:.0%}: {_f(table[best][key], '+.3f')} {unit}",
                 "note": f"highest mAP: {best_map[0]} at {best_map[1]:.0%} ({_f(table[best_map]['mAP'])}); "
                         f"every run: demo protocol on the --quick scene, learning.threads 1, ce_weight 1.0 "
                         f"(instance classifier kept), trainable last, {len(seeds)} seed(s); the per-minute proxy carries the "
                         f"machine's load (a shared machine makes it noise: compare it from a quiet one); "
                         f"{(time.monotonic() - t0) / 60:.0f} min in all"})
    return rows
