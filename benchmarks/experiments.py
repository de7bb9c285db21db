"""Retrieval-quality experiments shared by the benchmarks: one simulated scene per seed, variants on top.

The benchmarks that ask "does this mechanism help?" (ablations, recipes, segmenters, deblurring, open-set
scores, objectives) all follow the same CLI path on the embedded simulator, under the honest protocol:

1. ``ssl-nav simulate`` (:func:`ssl_nav.sim.simulate.simulate_to_dir`) with the demo preset for a seed;
2. ``ssl-nav collect`` (map + views + user photos) into a view store;
3. ``ssl-nav finetune`` with the variant's overrides;
4. ``ssl-nav index`` of the store's **robot views only** (``retrieval.index_quality: low``; user photos are
   training data) with the ImageNet baseline and with the fine-tuned model;
5. ``ssl-nav eval`` on the scene's ``queries.jsonl``.

Scenes (steps 1-2) are cached under ``out/bench/scenes/<key>``, where the key hashes the scene-shaping
configuration (``sim``, ``mapping``, ``views``) and the source of the modules that produce them, so a code
change rebuilds them. The baseline's index and metrics are cached next to the scene, per retrieval
configuration. Fine-tunes and their indexes are not cached across runs.

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
#: what the cached baseline index and metrics of a scene depend on besides the retrieval configuration
BASELINE_SOURCES = ("ssl_nav/retrieval", "ssl_nav/learning/backbones.py")


def experiment_config(seed: int, overrides: dict[str, Any] | None = None, quick: bool = False):
    """The demo preset for ``seed`` (``--quick`` preset when ``quick``), the protocol, then ``overrides``."""
    from ssl_nav.config import apply_overrides
    from ssl_nav.pipeline import demo_config

    cfg = demo_config(None, quick, seed)
    return apply_overrides(cfg, {**PROTOCOL, **(overrides or {})}, "experiment")


def _source_hash(sources: tuple[str, ...] = SCENE_SOURCES) -> str:
    h = hashlib.sha256()
    for rel in sources:
        p = REPO / rel
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
            h.update(f.relative_to(REPO).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def scene_key(cfg) -> str:
    from ssl_nav.config import to_dict

    d = to_dict(cfg)
    blob = json.dumps({s: d[s] for s in SCENE_SECTIONS}, sort_keys=True) + _source_hash()
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def prepare_scene(cfg, root: Path = ROOT, progress: bool = False) -> tuple[Path, Path]:
    """Simulate and collect the scene of ``cfg`` (cached); returns (frames dir, store dir)."""
    from ssl_nav.views.ingest import add_photos_from_dir, read_categories
    from ssl_nav.frames import count_frames, read_frames_dir
    from ssl_nav.mapping.gt_match import read_scene_objects
    from ssl_nav.sim.simulate import simulate_to_dir
    from ssl_nav.views.collect import collect_frames
    from ssl_nav.views.store import ViewStore

    d = root / "scenes" / f"seed{cfg.sim.seed}-{scene_key(cfg)}"
    frames, store_dir, done = d / "frames", d / "store", d / "done.json"
    if done.is_file():
        return frames, store_dir
    if d.exists():
        shutil.rmtree(d)
    t0 = time.monotonic()
    simulate_to_dir(cfg, frames, progress=progress)
    store = ViewStore(store_dir, create=True)
    summary = collect_frames(read_frames_dir(frames), store, cfg, progress=progress, total=count_frames(frames),
                             categories=read_categories(frames), map_dir=store_dir / "map",
                             gt_objects=read_scene_objects(frames))
    photos = add_photos_from_dir(frames, store, progress=progress)
    done.write_text(json.dumps({"collect": {k: v for k, v in summary.items() if k != "skipped"},
                                "photos": photos["photos"], "seconds": round(time.monotonic() - t0, 1)}))
    return frames, store_dir


def evaluate_index(index_dir: Path, queries: Path, cfg) -> dict:
    """``ssl-nav eval`` of one index on a queries file: the metrics dict of :mod:`ssl_nav.retrieval.evaluate`."""
    from ssl_nav.retrieval.evaluate import evaluate_queries_file
    from ssl_nav.retrieval.query import Retriever

    metrics, _ = evaluate_queries_file(Retriever.open(index_dir, cfg.retrieval), queries, progress=False)
    return metrics


def baseline_metrics(cfg, frames: Path, store: Path, progress: bool = False) -> dict:
    """Index and evaluate the ImageNet baseline of a scene once per retrieval configuration and retrieval source
    (cached next to the scene: every variant of a seed shares it)."""
    from ssl_nav.config import to_dict
    from ssl_nav.retrieval.build import build_index

    blob = json.dumps({"retrieval": to_dict(cfg)["retrieval"], "backbone": cfg.learning.backbone}, sort_keys=True)
    key = hashlib.sha256((blob + _source_hash(BASELINE_SOURCES)).encode()).hexdigest()[:10]
    d = store.parent / f"baseline-{key}"
    done = d / "metrics.json"
    if done.is_file():
        return json.loads(done.read_text())
    if d.exists():
        shutil.rmtree(d)
    build_index(store, cfg.learning.backbone, cfg.retrieval, d / "index", progress=progress)
    metrics = evaluate_index(d / "index", frames / "queries.jsonl", cfg)
    done.write_text(json.dumps(metrics))
    return metrics


def run_variant(seed: int, overrides: dict[str, Any] | None = None, *, quick: bool = False, name: str = "variant",
                root: Path = ROOT, progress: bool = False) -> dict:
    """Simulate/collect (cached), fine-tune with ``overrides``, index robot views, evaluate baseline and model.

    Returns ``{"seed", "name", "overrides", "baseline": metrics, "finetuned": metrics, "finetune": summary,
    "seconds"}``.
    """
    from ssl_nav.learning.trainer import finetune
    from ssl_nav.retrieval.build import build_index

    cfg = experiment_config(seed, overrides, quick)
    frames, store = prepare_scene(cfg, root, progress)
    slug = hashlib.sha256(json.dumps(overrides or {}, sort_keys=True).encode()).hexdigest()[:10]
    out = root / "runs" / f"seed{seed}-{slug}"
    if out.exists():
        shutil.rmtree(out)
    t0 = time.monotonic()
    ft = finetune(store, out / "run", cfg, progress=progress)
    build_index(store, ft.model_path, cfg.retrieval, out / "index-finetuned", progress=progress)
    queries = frames / "queries.jsonl"
    res = {"seed": seed, "name": name, "overrides": overrides or {},
           "baseline": baseline_metrics(cfg, frames, store, progress),
           "finetuned": evaluate_index(out / "index-finetuned", queries, cfg),
           "finetune": ft.summary, "seconds": round(time.monotonic() - t0, 1)}
    (out / "result.json").write_text(json.dumps(res, indent=1, default=str))
    return res


def run_variants(variants: dict[str, dict[str, Any]], seeds: Iterable[int] = (0, 1, 2), *, quick: bool = False,
                 root: Path = ROOT, progress: bool = False) -> dict[str, list[dict]]:
    """:func:`run_variant` for every (variant, seed); prints one line per run. Returns ``{name: [per seed]}``."""
    out: dict[str, list[dict]] = {name: [] for name in variants}
    for seed in seeds:
        for name, ov in variants.items():
            r = run_variant(seed, ov, quick=quick, name=name, root=root, progress=progress)
            out[name].append(r)
            m = r["finetuned"]
            print(f"  seed {seed} {name}: " + ", ".join(f"{k} {_fmt(m.get(k))}" for k in METRICS)
                  + f" ({r['seconds']:.0f} s)", flush=True)
    return out


def _fmt(v: Any) -> str:
    return "–" if v is None else f"{v:.3f}"


def mean_std(values: list[float | None]) -> str:
    """``mean ± std`` over seeds (``–`` when a value is missing)."""
    vals = [v for v in values if v is not None]
    if not vals or len(vals) != len(values):
        return "–"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.3f} ± {sd:.3f}"


def variant_rows(results: dict[str, list[dict]], reference: str | None = None, metrics: tuple[str, ...] = METRICS,
                 prefix: str = "") -> list[dict]:
    """BENCHMARKS.md rows: per variant, each metric's mean ± std over seeds and the per-seed values; with
    ``reference``, the per-seed difference to that variant. The baseline (ImageNet) is the first row."""
    rows = []
    first = next(iter(results.values()))
    seeds = [r["seed"] for r in first]
    base = {k: [r["baseline"].get(k) for r in first] for k in metrics}
    rows.append({"benchmark": f"{prefix}ImageNet baseline (no fine-tuning)",
                 "figure": "; ".join(f"{k} {mean_std(base[k])}" for k in metrics),
                 "note": f"seeds {seeds}: " + "; ".join(f"{k} " + "/".join(_fmt(v) for v in base[k]) for k in metrics)})
    for name, runs in results.items():
        vals = {k: [r["finetuned"].get(k) for r in runs] for k in metrics}
        note = "; ".join(f"{k} " + "/".join(_fmt(v) for v in vals[k]) for k in metrics)
        if reference and name != reference:
            ref = {k: [r["finetuned"].get(k) for r in results[reference]] for k in metrics}
            diffs = {k: [None if a is None or b is None else a - b for a, b in zip(vals[k], ref[k])]
                     for k in metrics}
            note += f"; Δ vs {reference}: " + "; ".join(
                f"{k} " + "/".join("–" if d is None else f"{d:+.3f}" for d in diffs[k]) for k in metrics)
        secs = statistics.mean(r["seconds"] for r in runs)
        rows.append({"benchmark": f"{prefix}{name}", "figure": "; ".join(f"{k} {mean_std(vals[k])}" for k in metrics),
                     "note": f"seeds {seeds}, per seed: {note}; {secs:.0f} s per run"})
    return rows
