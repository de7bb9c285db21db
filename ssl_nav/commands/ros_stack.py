"""Run every ssl_nav ROS 2 node in one process (for machines without ``ros2 launch``).

  ssl-nav ros-stack --params config/robot.yaml              view_collector, finetuner, retrieval_server
  ssl-nav ros-stack --params config/robot.yaml --with-sim   + sim_bridge, and the whole loop runs once:
                                                            explore -> views -> baseline index -> fine-tune -> reload

Topics and remaps are those of launch/ssl_nav.launch.py and launch/sim_demo.launch.py (README "On a robot").
Set ROS_DOMAIN_ID / ROS_AUTOMATIC_DISCOVERY_RANGE as for any ROS 2 process. Stop with Ctrl-C.
"""

from __future__ import annotations

import argparse

NAME = "ros-stack"
HELP = "run all ROS 2 nodes in one process (MultiThreadedExecutor), optionally with the simulator"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", metavar="YAML", default=None,
                   help="ROS 2 parameters file with ros__parameters per node (e.g. config/robot.yaml)")
    p.add_argument("--with-sim", action="store_true",
                   help="add sim_bridge (embedded pybullet simulator) and run the whole loop once")
    p.add_argument("--data-dir", metavar="DIR", default=None, help="override ros.data_dir of every node")
    p.add_argument("--namespace", default="", help="ROS namespace of every node")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="stop after S seconds (default: run until Ctrl-C)")
    p.add_argument("--no-finetune", action="store_true",
                   help="with --with-sim: index with the baseline model only, do not start a fine-tune")


def run(args: argparse.Namespace) -> int:
    from ssl_nav.errors import DependencyError
    from ssl_nav.shutdown import StopOnSignal

    with StopOnSignal() as signals:  # from the start: a signal during the imports also ends with exit 0
        try:
            from ssl_nav.ros.stack import run_stack
        except ImportError as e:
            raise DependencyError(f"rclpy and the ROS 2 message packages are needed for ros-stack ({e})") from None
        if signals.stop.is_set():
            return 0
        return run_stack(args.params, args.with_sim, namespace=args.namespace, data_dir=args.data_dir,
                         duration=args.duration, finetune=not args.no_finetune, stop=signals.stop)
