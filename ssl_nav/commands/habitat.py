"""Run instance-image-goal episodes scene by scene: Habitat InstanceImageNav, or the embedded simulator.

  ssl-nav habitat --scene-dataset CFG --episodes FILE.json.gz [--split val] [--max-scenes N] --out DIR
  ssl-nav habitat --backend pybullet [--max-scenes N] --out DIR

For each scene the shared pipeline runs (explore, map, collect views, fine-tune, index) and then answers
every episode's goal image with the baseline and the fine-tuned model. OUT/report.json holds SimView's table
(mAP per scene and averaged; top-1), retrieval success and goal success; the table is printed too
(definitions in ssl_nav/pipeline/runner.py). Each scene's own report is in OUT/scenes/<scene>/report.json.

Habitat: --scene-dataset is the scene dataset config (e.g.
data/scene_datasets/hm3d_v0.2/hm3d_annotated_basis.scene_dataset_config.json) and --episodes a habitat-lab
InstanceImageNav file; '{split}' in it is replaced by --split, as in habitat-lab's data_path
(data/datasets/instance_imagenav/hm3d/v2/{split}/{split}.json.gz). Episode scene ids are resolved against
sim.habitat_scenes_dir (--scenes-dir). Needs habitat_sim (headless conda build:
`conda install habitat-sim headless -c conda-forge -c aihabitat`, or a wheel for this Python).

pybullet: scenes are the seeds sim.seed, sim.seed+1, ... (--max-scenes of them, default 1), with the
embedded simulator's episodes and user photos; --scene-dataset and --episodes are not needed. Without
--config it uses the demo preset of `ssl-nav demo` (ssl_nav.pipeline.DEMO_OVERRIDES), sized for a CPU.
"""

from __future__ import annotations

import argparse

from ssl_nav.commands import add_config_argument, add_progress_argument, config_from_args, progress_from_args

NAME = "habitat"
HELP = "run InstanceImageNav episodes per scene (Habitat, or --backend pybullet) and report SimView's table"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("habitat", "pybullet"), default="habitat",
                   help="simulator backend (default: habitat)")
    p.add_argument("--scene-dataset", metavar="CFG", default=None,
                   help="Habitat scene dataset config (*.scene_dataset_config.json)")
    p.add_argument("--episodes", metavar="FILE", default=None,
                   help="habitat-lab InstanceImageNav episodes (.json.gz; '{split}' is replaced by --split)")
    p.add_argument("--split", default=None, help="dataset split, e.g. val")
    p.add_argument("--scenes-dir", default=None, help="directory episode scene ids are relative to "
                                                       "(default: sim.habitat_scenes_dir)")
    p.add_argument("--max-scenes", type=int, default=None, help="run at most N scenes (pybullet: N seeds, default 1)")
    p.add_argument("--max-episodes", type=int, default=None, help="answer at most N episodes per scene")
    p.add_argument("--out", required=True, help="output directory (report.json, scenes/<scene>/...)")
    add_progress_argument(p)
    add_config_argument(p)


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from ssl_nav.errors import ConfigError
    from ssl_nav.pipeline.runner import (first_per_scene, format_report_table, habitat_jobs, limit_episodes,
                                   pybullet_jobs, run_scenes)

    if args.max_scenes is not None and args.max_scenes < 1:
        raise ConfigError("--max-scenes must be at least 1")
    if args.max_episodes is not None and args.max_episodes < 1:
        raise ConfigError("--max-episodes must be at least 1")
    overrides = {"sim.backend": args.backend}
    if args.scenes_dir is not None:
        overrides["sim.habitat_scenes_dir"] = args.scenes_dir
    if args.backend == "pybullet" and args.config is None:
        # the embedded simulator's demo preset (sized for a CPU), as `ssl-nav demo` uses
        from ssl_nav.config import apply_overrides
        from ssl_nav.pipeline import demo_config

        cfg = apply_overrides(demo_config(None), overrides)
    else:
        cfg = config_from_args(args, overrides)
    progress = progress_from_args(args)
    out = Path(args.out)

    if args.backend == "habitat":
        if not args.scene_dataset or not args.episodes:
            raise ConfigError("--backend habitat needs --scene-dataset CFG and --episodes FILE.json.gz")
        # check habitat_sim first: a clear message, before reading any episode file
        from ssl_nav.sim.habitat_backend import HabitatSimulator, import_habitat_sim

        import_habitat_sim()
        if not Path(args.scene_dataset).is_file():
            raise ConfigError(f"{args.scene_dataset}: scene dataset config not found")
        from ssl_nav.sim.episodes import read_episodes

        episodes = read_episodes(args.episodes, split=args.split, sensor_height=cfg.sim.habitat_sensor_height,
                                 scenes_dir=cfg.sim.habitat_scenes_dir)
        if args.max_episodes is not None:
            episodes = first_per_scene(episodes, args.max_episodes)
        jobs = habitat_jobs(cfg, episodes, args.max_scenes)
        meta = {"scene_dataset": str(args.scene_dataset), "episodes_file": str(args.episodes), "split": args.split}
        sim = HabitatSimulator(cfg.sim, str(args.scene_dataset))
    else:
        from ssl_nav.sim.pybullet_backend import PyBulletSimulator

        jobs = pybullet_jobs(cfg, args.max_scenes or 1)
        if args.max_episodes is not None:
            jobs = [limit_episodes(j, args.max_episodes) for j in jobs]
        meta = {"scene_dataset": None, "episodes_file": None, "split": None}
        sim = PyBulletSimulator(cfg.sim)
    try:
        report = run_scenes(sim, jobs, cfg, out, backend=args.backend, meta=meta, progress=progress)
    finally:
        sim.close()
    print(format_report_table(report))
    avg = report["average"]["finetuned"]
    print(f"ssl-nav habitat: {report['n_scenes']} scene(s), {report['n_episodes']} episode(s) on {args.backend}; "
          f"mean mAP {_fmt(avg.get('mAP'))}, top-1 {_fmt(avg.get('top1'))}, goal success "
          f"{_fmt(avg.get('goal_success'))} (fine-tuned); report: {out / 'report.json'}", file=sys.stdout)
    return 0


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.3f}"
