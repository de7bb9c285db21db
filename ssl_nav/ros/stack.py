"""Every ssl_nav node in one process with a ``MultiThreadedExecutor`` (``ssl-nav ros-stack``).

For machines without ``ros2 launch``: the nodes get the same parameters file (``--params-file``) and the same
remaps as ``launch/ssl_nav.launch.py`` / ``launch/sim_demo.launch.py``:

- ``retrieval_server``: ``model_ready`` -> ``finetuner/model_ready``;
- with ``--with-sim``, ``view_collector``: ``rgb``, ``depth``, ``camera_info``, ``instance_mask``,
  ``camera_pose`` -> ``sim_bridge``'s ``camera/...`` topics (:data:`ssl_nav.ros.sim_bridge.TOPICS`).

With ``--with-sim`` the stack also runs the whole loop once (:class:`SimLoop`): when the trajectory is done and
the collector idle, it saves the map, builds the baseline index (``ros.index_model``) so that queries are
answered at once, starts a fine-tune, and the retrieval server hot-reloads on ``model_ready``.

Ctrl-C (SIGINT) and SIGTERM stop the stack in order: rclpy's own signal handlers are off (they shut the context
down at once, under the nodes' worker threads), a :class:`~ssl_nav.shutdown.StopOnSignal` flag ends the spin
loop, the nodes' threads stop, the nodes are destroyed and only then the context is shut down; the exit code is
0. A second signal while that runs interrupts it.

With host-only discovery and no profile of the user's, the process uses ``config/fastdds_large_data.xml``
(:mod:`ssl_nav.ros.dds_profile`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions

from ssl_nav.ros.dds_profile import PROFILE_ENV, use_default_profile
from ssl_nav.ros.finetuner import FinetunerNode
from ssl_nav.ros.params import check_params_file
from ssl_nav.ros.retrieval_server import RetrievalServerNode
from ssl_nav.ros.sim_bridge import TOPICS as SIM_TOPICS
from ssl_nav.ros.view_collector import ViewCollectorNode
from ssl_nav.shutdown import StopOnSignal

#: relative remaps node -> ["from:=to"], as in the launch files
REMAPS: dict[str, list[str]] = {
    "retrieval_server": ["model_ready:=finetuner/model_ready"],
    "view_collector": [],
}
SIM_REMAPS: list[str] = [f"{src}:={dst}" for src, dst in SIM_TOPICS.items()]


def _cli_args(params_file: str | None, remaps: list[str]) -> list[str]:
    args = ["--ros-args"]
    if params_file:
        args += ["--params-file", str(params_file)]
    for r in remaps:
        args += ["-r", r]
    return args


class Stack:
    """The nodes of one process; ``nodes`` maps node name -> node."""

    def __init__(self, context: Any = None, params_file: str | Path | None = None, with_sim: bool = False,
                 namespace: str = "", data_dir: str | None = None) -> None:
        if params_file is not None:
            check_params_file(params_file)  # unknown parameters would be silently ignored by rclpy
        overrides = [Parameter("ros.data_dir", value=str(data_dir))] if data_dir else []
        common = {"context": context, "namespace": namespace, "parameter_overrides": overrides}
        self.nodes: dict[str, Any] = {}
        try:
            if with_sim:
                from ssl_nav.ros.sim_bridge import SimBridgeNode

                self.nodes["sim_bridge"] = SimBridgeNode(cli_args=_cli_args(params_file, []), **common)
            self.nodes["view_collector"] = ViewCollectorNode(
                cli_args=_cli_args(params_file, REMAPS["view_collector"] + (SIM_REMAPS if with_sim else [])),
                **common)
            self.nodes["finetuner"] = FinetunerNode(cli_args=_cli_args(params_file, []), **common)
            self.nodes["retrieval_server"] = RetrievalServerNode(
                cli_args=_cli_args(params_file, REMAPS["retrieval_server"]), **common)
        except BaseException:
            self.close()
            raise
        self.executor = MultiThreadedExecutor(num_threads=4, context=context)
        for n in self.nodes.values():
            self.executor.add_node(n)

    def spin(self, duration: float | None = None, stop: threading.Event | None = None) -> None:
        """Spin until ``duration`` seconds have passed (forever when ``None``) or ``stop`` is set."""
        end = None if duration is None else time.monotonic() + duration
        while (end is None or time.monotonic() < end) and not (stop is not None and stop.is_set()):
            self.executor.spin_once(timeout_sec=0.1)

    def close(self) -> None:
        """Stop the nodes' worker threads, then the executor, then destroy the nodes."""
        for n in self.nodes.values():
            close = getattr(n, "close", None)
            if close:
                close()
        ex = getattr(self, "executor", None)
        if ex is not None:
            for n in self.nodes.values():
                ex.remove_node(n)
            ex.shutdown(timeout_sec=2)
        for n in self.nodes.values():
            n.destroy_node()
        self.nodes = {}


class SimLoop(threading.Thread):
    """Drives the whole simulated loop once: explore -> save -> baseline index -> fine-tune -> hot reload."""

    def __init__(self, stack: Stack, finetune: bool = True) -> None:
        super().__init__(name="ssl_nav_sim_loop", daemon=True)
        self.stack = stack
        self.finetune = finetune
        self.stop = threading.Event()
        self.stage = "exploring"

    def run(self) -> None:
        nodes = self.stack.nodes
        sim, col, ft, rs = nodes["sim_bridge"], nodes["view_collector"], nodes["finetuner"], nodes["retrieval_server"]
        log = col.get_logger()
        while not self.stop.wait(0.2):
            if sim.done.is_set():
                break
        # let the last frames arrive and be processed
        quiet_since = None
        while not self.stop.wait(0.2):
            if col.idle():
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 1.0:
                    break
            else:
                quiet_since = None
        if self.stop.is_set():
            return
        self.stage = "indexing"
        log.info("sim loop: " + col.save())
        if len(col.store) == 0:
            self.stage = "failed: no views collected"
            log.error("sim loop: no views were collected; nothing to index")
            return
        rs.request_reload("sim loop: baseline index", rs.model_spec or None)
        if self.finetune:
            self.stage = "fine-tuning"
            ok, msg = ft.start()
            log.info(f"sim loop: fine-tune: {msg}")
        self.stage = "serving"


def run_stack(params_file: str | None, with_sim: bool = False, *, namespace: str = "", data_dir: str | None = None,
              duration: float | None = None, finetune: bool = True, stop: threading.Event | None = None) -> int:
    """Run the stack until Ctrl-C or SIGTERM (or ``duration`` seconds); returns an exit code (0 on a signal).

    ``stop``: an event the caller's :class:`~ssl_nav.shutdown.StopOnSignal` sets; without one, this function
    installs its own."""
    stack = None
    loop = None
    with contextlib.nullcontext(None) if stop is not None else StopOnSignal() as own:
        stop = stop if stop is not None else own.stop
        profile = use_default_profile()  # before the first participant: Fast DDS reads it then
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
        try:
            if profile:
                print(f"ssl-nav ros-stack: Fast DDS profile {profile} ({PROFILE_ENV} was unset; docs/ros.md)",
                      flush=True)
            stack = Stack(None, params_file, with_sim, namespace, data_dir)
            names = ", ".join(stack.nodes)
            print(f"ssl-nav ros-stack: running {names}" + (f" in namespace {namespace}" if namespace else ""),
                  flush=True)
            if with_sim and not stop.is_set():
                loop = SimLoop(stack, finetune=finetune)
                loop.start()
            stack.spin(duration, stop)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            if loop is not None:
                loop.stop.set()
                loop.join(timeout=5)
            summary = _summary(stack)
            if stack is not None:
                stack.close()
            if rclpy.ok():
                rclpy.shutdown()
            if summary:
                print(summary, flush=True)
    return 0


def _summary(stack: Stack | None) -> str:
    if stack is None or not stack.nodes:
        return ""
    parts = []
    col = stack.nodes.get("view_collector")
    if col is not None:
        st = col.status()
        parts.append(f"{st['instances']} instances, {st['views']} views")
    ft = stack.nodes.get("finetuner")
    if ft is not None and ft.last_result:
        parts.append(f"fine-tune {ft.last_result.get('state')}")
    rs = stack.nodes.get("retrieval_server")
    if rs is not None:
        c = rs.counts
        parts.append(f"{c.get('answered', 0)} queries answered, {c.get('goals', 0)} goals")
    return "ssl-nav ros-stack: " + "; ".join(parts)
