"""Render a procedural pybullet scene into a frames directory, with HQ user photos, queries and a calibration split.

  ssl-nav simulate --seed 7 --out /tmp/s7
  ssl-nav simulate --preset demo --seed 7 --out /tmp/s7      # the scene `ssl-nav demo --seed 7` uses
  ssl-nav simulate --seed 3 --out DIR --positions 4 --turns 6 --width 320 --height 240
  ssl-nav simulate --seed 7 --out /tmp/s7 --bag /tmp/s7.bag     # and the robot frames as a rosbag2 (MCAP)

Writes frames.jsonl + rgb/ depth/ instance/ (LQ robot frames), photos.jsonl + photos/ (square crops around the
object, as a user frames a photo), queries.jsonl + queries/ (the test queries), calibration.jsonl +
calibration/ (other viewpoints and a disjoint open set, for `ssl-nav calibrate`) and scene.json (see
docs/simulator.md). ``--bag PATH`` also writes the robot frames as a rosbag2 recording (a bag directory, MCAP
or sqlite3) with realsense2_camera's topics, /tf and /tf_static (:mod:`ssl_nav.recordings.bag_writer`), for
``ros2 bag play`` and ``ssl-nav collect --bag``. The same seed and configuration give byte-identical files. Flags override single
``sim.*`` keys of --config or of the preset.
"""

from __future__ import annotations

import argparse

from ssl_nav.commands import add_config_argument, add_progress_argument, config_from_args, progress_from_args

NAME = "simulate"
HELP = "render a simulated scene (LQ robot frames, HQ photos, queries, calibration split) into a frames directory"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=None, help="scene seed (sim.seed; default from the config)")
    p.add_argument("--out", required=True, help="output directory (created; a previous simulate output is replaced)")
    p.add_argument("--preset", choices=("demo", "quick"), default=None,
                   help="the configuration of `ssl-nav demo` (demo) or `ssl-nav demo --quick` (quick) instead of "
                        "--config: the same seed then writes the demo's frames directory")
    p.add_argument("--positions", type=int, default=None, help="exploration positions (sim.n_explore_positions)")
    p.add_argument("--turns", type=int, default=None, help="turn steps per position (sim.n_turn_steps)")
    p.add_argument("--width", type=int, default=None, help="image width (sim.width)")
    p.add_argument("--height", type=int, default=None, help="image height (sim.height)")
    p.add_argument("--photos", type=int, default=None,
                   help="user photos per goal instance, at most 5 (sim.n_user_photos)")
    p.add_argument("--hard-cases", action="store_true",
                   help="add segmentation hard cases and RealSense-like robot depth (sim.hard_cases, "
                        "sim.depth_model: realsense)")
    p.add_argument("--bag", metavar="PATH", default=None,
                   help="also write the robot frames as a rosbag2 recording at PATH (a bag directory; replaced when "
                        "it exists): colour rgb8, depth 16UC1 mm, camera info, instance masks, /tf + /tf_static on "
                        "the recordings.* topics")
    p.add_argument("--bag-storage", choices=("mcap", "sqlite3"), default="mcap",
                   help="storage of --bag (default mcap)")
    add_progress_argument(p)
    add_config_argument(p)


def run(args: argparse.Namespace) -> int:
    from ssl_nav.config import apply_overrides
    from ssl_nav.errors import ConfigError
    from ssl_nav.sim.simulate import simulate_to_dir

    overrides = {"sim.seed": args.seed, "sim.n_explore_positions": args.positions, "sim.n_turn_steps": args.turns,
                 "sim.width": args.width, "sim.height": args.height, "sim.n_user_photos": args.photos}
    if args.hard_cases:
        overrides.update({"sim.hard_cases": True, "sim.depth_model": "realsense"})
    if args.preset is not None:
        if args.config is not None:
            raise ConfigError("--preset and --config are exclusive: a preset is a whole configuration")
        from ssl_nav.pipeline import demo_config

        cfg = apply_overrides(demo_config(None, quick=args.preset == "quick"), overrides, "flags")
    else:
        cfg = config_from_args(args, overrides)
    s = simulate_to_dir(cfg, args.out, progress=progress_from_args(args))
    print(f"ssl-nav simulate: scene {s['scene_id']} (seed {s['seed']}) -> {s['out']}")
    print(f"  frames.jsonl       {s['frames']} LQ robot frames (rgb/, depth/ mm, instance/), "
          f"{s['objects_seen']} of {s['objects']} objects seen")
    print(f"  photos.jsonl       {s['photos']} HQ user photos of {s['goal_instances']} goal instances")
    print(f"  queries.jsonl      {s['queries']} queries ({s['open_set_queries']} open-set, "
          f"{s['lookalike_queries']} of them look-alikes)")
    if s["calibration_queries"]:
        print(f"  calibration.jsonl  {s['calibration_queries']} calibration queries "
              f"({s['calibration_open_set_queries']} open-set, none shared with queries.jsonl)")
    print(f"  scene.json         objects, boxes, categories, open sets, room, camera")
    if args.bag is not None:
        from ssl_nav.recordings.bag_writer import frames_dir_to_bag

        b = frames_dir_to_bag(args.out, args.bag, cfg, args.bag_storage)
        print(f"  bag                {b['path']} ({b['storage']}): {b['frames']} frames on "
              f"{cfg.recordings.rgb_topic}, {cfg.recordings.depth_topic}, {cfg.recordings.camera_info_topic}, "
              f"{cfg.recordings.instance_topic}, /tf, /tf_static")
    print(f"  done in {s['seconds']:.1f} s")
    return 0
