"""Retrieval-quality experiments shared by the benchmarks: one simulated scene per seed, variants on top.

The benchmarks that ask "does this mechanism help?" (ablations, recipes, segmenters, deblurring, open-set
scores, objectives) all follow the same CLI path on the embedded simulator, under the honest protocol:

1. ``ssl-nav simulate`` (:func:`ssl_nav.sim.simulate.simulate_to_dir`) with the demo preset for a seed;
2. ``ssl-nav collect`` (map + views + user photos) into a view store;
3. ``ssl-nav finetune`` with the variant's overrides;
4. ``ssl-nav index`` of the store's **robot views only** (``retrieval.index_quality: low``; user photos are
   training data) with the ImageNet baseline and with the fine-tuned model;
5. ``ssl-nav eval`` on the scene's ``queries.jsonl``.

Simulated frames (step 1) are cached under ``out/bench/scenes/seed<N>-sim-<key>`` (the ``sim`` section and the
simulator's source), collected stores (step 2) under ``out/bench/scenes/seed<N>-<key>`` (``sim``, ``mapping``,
``views`` and their sources), so a code change rebuilds them and every mapping/views variant of a seed sees the
same frames. The baseline's index and metrics are cached next to the store, per retrieval configuration. The
result of a fine-tune (steps 3-5) is cached under ``out/bench/results/`` per :func:`result_key` (the whole
effective configuration, the scene and the training/retrieval code), so benchmarks that ask for the same run
share it and an interrupted benchmark resumes; file locks keep two benchmark processes from building the same
entry. ``SSL_NAV_BENCH_CACHED_ONLY=1`` writes rows from the cached results only (runs not made are reported as
such).

Usage in a ``bench_*.py``::

    from experiments import run_variants, variant_rows
    results = run_variants({"default": {}, "no CE": {"learning.ce_weight": 0.0}}, seeds=(0, 1, 2))
    rows = variant_rows(results, reference="default")
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ROOT = REPO / "out" / "bench"
#: the honest protocol: robot views indexed, user photos are training data
PROTOCOL: dict[str, Any] = {"retrieval.index_quality": "low"}
#: the metrics a variant row reports, in order
METRICS = ("top1", "mAP", "auroc")
#: what shapes a scene (simulate + collect); a change here or in these sources rebuilds the cached scene
SCENE_SECTIONS = ("sim", "mapping", "views")
SCENE_SOURCES = ("ssl_nav/sim", "ssl_nav/mapping", "ssl_nav/views", "ssl_nav/frames.py", "ssl_nav/geometry.py")
#: what the simulated frames depend on
SIM_SOURCES = ("ssl_nav/sim", "ssl_nav/frames.py", "ssl_nav/geometry.py")
#: what a fine-tune's result depends on besides its configuration and its scene
RESULT_SOURCES = ("ssl_nav/learning", "ssl_nav/retrieval", "ssl_nav/energy", "ssl_nav/atomic.py", "ssl_nav/errors.py")
#: set to 1: :func:`run_variant` returns only cached results (None for a run not made), so a section can be written
#: from what has been computed when time runs out
CACHED_ONLY_ENV = "SSL_NAV_BENCH_CACHED_ONLY"
#: what the cached baseline index and metrics of a scene depend on besides the retrieval configuration
BASELINE_SOURCES = ("ssl_nav/retrieval", "ssl_nav/learning/backbones.py")


def experiment_config(seed: int, overrides: dict[str, Any] | None = None, quick: bool = False):
    """The demo preset for ``seed`` (``--quick`` preset when ``quick``), the protocol, then ``overrides``."""
    from ssl_nav.config import apply_overrides
    from ssl_nav.pipeline import demo_config

    cfg = demo_config(None, quick, seed)
    return apply_overrides(cfg, {**PROTOCOL, **(overrides or {})}, "experiment")


def source_hash(sources: tuple[str, ...] = SCENE_SOURCES) -> str:
    h = hashlib.sha256()
    for rel in sources:
        p = REPO / rel
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
            h.update(f.relative_to(REPO).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def _key(sections: tuple[str, ...], cfg, sources: tuple[str, ...]) -> str:
    from ssl_nav.config import to_dict

    d = to_dict(cfg)
    blob = json.dumps({s: d[s] for s in sections}, sort_keys=True) + source_hash(sources)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def scene_key(cfg) -> str:
    """Hash of what shapes a scene's store: the ``sim``, ``mapping`` and ``views`` sections and their sources."""
    return _key(SCENE_SECTIONS, cfg, SCENE_SOURCES)


def frames_key(cfg) -> str:
    """Hash of what shapes a scene's simulated frames: the ``sim`` section and the simulator's sources (every
    mapping/views variant of a seed shares the frames: the GT-mask and the geometric map see the same scene)."""
    return _key(("sim",), cfg, SIM_SOURCES)


@contextmanager
def _locked(d: Path):
    """Hold an exclusive lock on ``<d>.lock`` (two benchmark processes never build the same cache entry)."""
    import fcntl

    d.parent.mkdir(parents=True, exist_ok=True)
    with open(d.parent / f"{d.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def simulated_frames(cfg, root: Path = ROOT, progress: bool = False) -> Path:
    """``ssl-nav simulate`` of ``cfg``'s scene, cached per ``sim`` section and simulator source; the frames dir."""
    return _simulated(cfg, root, progress)


def _simulated(cfg, root: Path, progress: bool) -> Path:
    d = root / "scenes" / f"seed{cfg.sim.seed}-sim-{frames_key(cfg)}"
    with _locked(d):
        _simulate_once(cfg, d, progress)
    return d / "frames"


def _simulate_once(cfg, d: Path, progress: bool) -> None:
    if not (d / "done.json").is_file():
        from ssl_nav.sim.simulate import simulate_to_dir

        if d.exists():
            shutil.rmtree(d)
        summary = simulate_to_dir(cfg, d / "frames", progress=progress)
        (d / "done.json").write_text(json.dumps({"seconds": summary.get("seconds")}))


def prepare_scene(cfg, root: Path = ROOT, progress: bool = False) -> tuple[Path, Path]:
    """Simulate (cached per ``sim`` section) and collect (cached per scene key) the scene of ``cfg``; returns
    (frames dir, store dir)."""
    frames = _simulated(cfg, root, progress)
    d = root / "scenes" / f"seed{cfg.sim.seed}-{scene_key(cfg)}"
    with _locked(d):
        _collect_once(cfg, frames, d, progress)
    return frames, d / "store"


def _collect_once(cfg, frames: Path, d: Path, progress: bool) -> None:
    """``ssl-nav collect`` (:func:`ssl_nav.views.ingest.collect_recording`: map, views, user photos) into
    ``d/store``, once per scene key."""
    from ssl_nav.views.ingest import collect_recording

    done = d / "done.json"
    if done.is_file():
        return
    if d.exists():
        shutil.rmtree(d)
    t0 = time.monotonic()
    res = collect_recording(frames, d / "store", cfg, progress=progress)
    done.write_text(json.dumps({"collect": {k: v for k, v in res.summary.items() if k != "skipped"},
                                "photos": res.photos["photos"], "frames": str(frames),
                                "seconds": round(time.monotonic() - t0, 1)}))


def index_metrics(index_dir: Path, queries: Path, cfg) -> dict:
    """``ssl-nav eval --baseline none`` of one index on a queries file
    (:func:`ssl_nav.retrieval.evaluate.evaluate_index`): its metrics column."""
    from ssl_nav.retrieval.evaluate import evaluate_index

    return evaluate_index(index_dir, queries, cfg.retrieval, baseline="none", progress=False).columns["model"]


def baseline_dir(cfg, store: Path) -> Path:
    """Where the baseline index (``<dir>/index``) and metrics of a scene's store are cached."""
    from ssl_nav.config import to_dict

    blob = json.dumps({"retrieval": to_dict(cfg)["retrieval"], "backbone": cfg.learning.backbone}, sort_keys=True)
    key = hashlib.sha256((blob + source_hash(BASELINE_SOURCES)).encode()).hexdigest()[:10]
    return store.parent / f"baseline-{key}"


def baseline_metrics(cfg, frames: Path, store: Path, progress: bool = False) -> dict:
    """Index and evaluate the ImageNet baseline of a scene once per retrieval configuration and retrieval source
    (cached next to the scene: every variant of a seed shares it)."""
    from ssl_nav.retrieval.build import build_index

    d = baseline_dir(cfg, store)
    done = d / "metrics.json"
    with _locked(d):
        if done.is_file():
            return json.loads(done.read_text())
        if d.exists():
            shutil.rmtree(d)
        build_index(store, cfg.learning.backbone, cfg.retrieval, d / "index", progress=progress)
        metrics = index_metrics(d / "index", frames / "queries.jsonl", cfg)
        done.write_text(json.dumps(metrics))
        return metrics


def code_hash(sources: tuple[str, ...] = RESULT_SOURCES) -> str:
    """sha256 of the code of ``sources`` without docstrings (an edit of the documentation does not invalidate
    cached results; any change of the code does)."""
    import ast

    h = hashlib.sha256()
    for rel in sources:
        p = REPO / rel
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
            tree = ast.parse(f.read_text())
            for node in ast.walk(tree):
                body = getattr(node, "body", None)
                if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                        and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
                    body[0] = ast.Pass()
            h.update(f.relative_to(REPO).as_posix().encode())
            h.update(ast.dump(tree).encode())
    return h.hexdigest()[:12]


def result_key(cfg) -> str:
    """Key of a fine-tune's result: the whole effective configuration, the scene and the training/retrieval code.
    Two benchmarks asking for the same run (the ablation's default and the mapping bench's GT-mask map) share it."""
    from ssl_nav.config import to_dict

    blob = json.dumps(to_dict(cfg), sort_keys=True, default=str) + scene_key(cfg) + code_hash()
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_result(seed: int, overrides: dict[str, Any] | None = None, *, quick: bool = False,
                  root: Path = ROOT) -> dict | None:
    """The stored result of :func:`run_variant` for this run, or None when it has not been made."""
    path = root / "results" / f"seed{seed}-{result_key(experiment_config(seed, overrides, quick))}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def run_variant(seed: int, overrides: dict[str, Any] | None = None, *, quick: bool = False, name: str = "variant",
                root: Path = ROOT, progress: bool = False) -> dict | None:
    """Simulate/collect (cached), fine-tune with ``overrides``, index robot views, evaluate baseline and model.

    Returns ``{"seed", "name", "overrides", "baseline": metrics, "finetuned": metrics, "finetune": summary,
    "seconds", "key"}`` (``"cached": True`` when it comes from ``out/bench/results``: results are kept per
    :func:`result_key`, so an interrupted benchmark resumes and benchmarks share runs). With the environment
    variable :data:`CACHED_ONLY_ENV` set to 1, a run that is not cached is not made: None.
    """
    import os

    cfg = experiment_config(seed, overrides, quick)
    key = result_key(cfg)
    path = root / "results" / f"seed{seed}-{key}.json"
    if path.is_file():
        res = json.loads(path.read_text())
        res["name"], res["cached"] = name, True
        return res
    if os.environ.get(CACHED_ONLY_ENV) == "1":
        return None
    from ssl_nav.atomic import atomic_write_json
    from ssl_nav.learning.run_dir import finetune_run
    from ssl_nav.retrieval.build import build_index

    frames, store = prepare_scene(cfg, root, progress)
    out = root / "runs" / f"seed{seed}-{key}"
    if out.exists():
        shutil.rmtree(out)
    t0 = time.monotonic()
    ft = finetune_run(store, out / "run", cfg, progress=progress)
    build_index(store, ft.model_path, cfg.retrieval, out / "index-finetuned", progress=progress)
    queries = frames / "queries.jsonl"
    res = {"seed": seed, "name": name, "overrides": overrides or {}, "key": key,
           "baseline": baseline_metrics(cfg, frames, store, progress),
           "finetuned": index_metrics(out / "index-finetuned", queries, cfg),
           "finetune": ft.summary, "seconds": round(time.monotonic() - t0, 1)}
    (out / "result.json").write_text(json.dumps(res, indent=1, default=str))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, json.loads(json.dumps(res, default=str)))
    return res


def run_variants(variants: dict[str, dict[str, Any]], seeds: Iterable[int] = (0, 1, 2), *, quick: bool = False,
                 root: Path = ROOT, progress: bool = False) -> dict[str, list[dict]]:
    """:func:`run_variant` for every (variant, seed); prints one line per run. Returns ``{name: [per seed]}``."""
    out: dict[str, list[dict]] = {name: [] for name in variants}
    for seed in seeds:
        for name, ov in variants.items():
            r = run_variant(seed, ov, quick=quick, name=name, root=root, progress=progress)
            if r is None:
                print(f"  seed {seed} {name}: not run ({CACHED_ONLY_ENV}=1)", flush=True)
                continue
            out[name].append(r)
            m = r["finetuned"]
            print(f"  seed {seed} {name}: " + ", ".join(f"{k} {fmt(m.get(k))}" for k in METRICS)
                  + (" (cached)" if r.get("cached") else f" ({r['seconds']:.0f} s)"), flush=True)
    return out


def fmt(v: Any) -> str:
    return "–" if v is None else f"{v:.3f}"


def mean_std(values: list[float | None]) -> str:
    """``mean ± std`` over seeds (``–`` when a value is missing)."""
    vals = [v for v in values if v is not None]
    if not vals or len(vals) != len(values):
        return "–"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.3f} ± {sd:.3f}"


def variant_rows(results: dict[str, list[dict]], reference: str | None = None, metrics: tuple[str, ...] = METRICS,
                 prefix: str = "", seeds: Iterable[int] | None = None) -> list[dict]:
    """BENCHMARKS.md rows: per variant, each metric's mean ± std over its seeds and the per-seed values; with
    ``reference``, the per-seed difference to that variant (on the seeds both have). The baseline (ImageNet, of
    the reference's scenes) is the first row. A variant run on fewer than ``seeds`` (default: the reference's)
    says so in its name; one not run at all gets a "not run" row."""
    rows = []
    first = results[reference] if reference else next(iter(results.values()))
    seeds = list(seeds) if seeds is not None else [r["seed"] for r in first]
    base = {k: [r["baseline"].get(k) for r in first] for k in metrics}
    if first:
        rows.append({"benchmark": f"{prefix}ImageNet baseline (no fine-tuning)",
                     "figure": "; ".join(f"{k} {mean_std(base[k])}" for k in metrics),
                     "note": f"seeds {[r['seed'] for r in first]}: "
                             + "; ".join(f"{k} " + "/".join(fmt(v) for v in base[k]) for k in metrics)})
    for name, runs in results.items():
        if not runs:
            rows.append({"benchmark": f"{prefix}{name}", "figure": "not run", "ok": None,
                         "note": "no cached result for any seed (out of time this round)"})
            continue
        own = [r["seed"] for r in runs]
        vals = {k: [r["finetuned"].get(k) for r in runs] for k in metrics}
        note = "; ".join(f"{k} " + "/".join(fmt(v) for v in vals[k]) for k in metrics)
        if reference and name != reference:
            ref = {r["seed"]: r for r in results[reference]}
            common = [r for r in runs if r["seed"] in ref]
            diffs = {k: [None if r["finetuned"].get(k) is None or ref[r["seed"]]["finetuned"].get(k) is None
                         else r["finetuned"][k] - ref[r["seed"]]["finetuned"][k] for r in common] for k in metrics}
            if common:
                note += f"; Δ vs {reference.split(':')[0]} (seeds {[r['seed'] for r in common]}): " + "; ".join(
                    f"{k} " + "/".join("–" if d is None else f"{d:+.3f}" for d in diffs[k]) for k in metrics)
        secs = statistics.mean(r["seconds"] for r in runs)
        label = "" if own == seeds else f" — **{len(own)} seed{'s' if len(own) > 1 else ''} only** ({own})"
        rows.append({"benchmark": f"{prefix}{name}{label}",
                     "figure": "; ".join(f"{k} {mean_std(vals[k])}" for k in metrics),
                     "note": f"seeds {own}, per seed: {note}; {secs:.0f} s per run (fine-tune, index, eval)"})
    return rows
