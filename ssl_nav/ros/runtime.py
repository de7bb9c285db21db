"""What every ssl_nav node shares: the data directory layout, QoS profiles, JSON messages and ``main()``.

Data directory (``ros.data_dir``)::

    DATA/store/        ViewStore (view_collector writes, finetuner and retrieval_server read)
    DATA/store/map/    the InstanceMap saved by view_collector ~/save (where ssl-nav collect keeps it)
    DATA/runs/<id>/    fine-tune runs (model.pt, metrics.jsonl, energy.json, checkpoint.pt)
    DATA/index/        the retrieval server's current FAISS index directory
    DATA/energy.jsonl  the energy ledger (``energy.ledger``)
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Callable

from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data)
from std_msgs.msg import String

from ssl_nav.paths import LEDGER_FILE, store_dir, store_map_dir

#: camera streams (docs/ros.md: sensor-data QoS: best effort, keep last 5)
SENSOR_QOS = qos_profile_sensor_data

#: the latched ``model_ready``: a late subscriber still gets the last model
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)

#: status topics: reliable and latched so that a late subscriber sees the current state
STATUS_QOS = LATCHED_QOS

#: queries, results and goals: reliable, a few deep (the server bounds its own queue)
RELIABLE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)


class DataDir:
    """Paths of a node data directory (created on first use)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def store(self) -> Path:
        return store_dir(self.root)

    @property
    def map(self) -> Path:
        """``DATA/store/map``, where ``ssl-nav collect`` keeps a store's map (:func:`ssl_nav.paths.store_map_dir`)."""
        return store_map_dir(self.store)

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def index(self) -> Path:
        return self.root / "index"

    def ledger(self, name: str = LEDGER_FILE) -> Path:
        return self.root / name

    def latest_model(self) -> Path | None:
        """The newest completed run's ``model.pt`` (by modification time), if any."""
        if not self.runs.is_dir():
            return None
        models = [p for p in self.runs.glob("*/model.pt") if p.is_file()]
        return max(models, key=lambda p: p.stat().st_mtime) if models else None


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if hasattr(obj, "tolist"):
        return _clean(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def json_msg(obj: Any) -> String:
    """A ``std_msgs/String`` holding ``obj`` as JSON (NaN -> null)."""
    return String(data=json.dumps(_clean(obj)))


def run_node(factory: Callable[..., Any], args: list[str] | None = None) -> int:
    """``main()`` of a node executable: init rclpy with the ROS args, spin multi-threaded, shut down in order.

    As ``ssl-nav ros-stack`` (:mod:`ssl_nav.ros.stack`): rclpy's signal handlers are off (they would shut the
    context down under the node's worker threads); SIGINT / SIGTERM set a :class:`~ssl_nav.shutdown.StopOnSignal`
    flag that ends the spin loop, then the node's threads stop (``close()``), the node is destroyed and only then
    the context shuts down. Exit code 0 on a signal, 2 on an :class:`~ssl_nav.errors.SslNavError` (the message
    names the parameter or file), no traceback either way. With host-only discovery and no profile of the user's,
    the process uses ``config/fastdds_large_data.xml`` (:mod:`ssl_nav.ros.dds_profile`).
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from ssl_nav.errors import SslNavError
    from ssl_nav.ros.dds_profile import PROFILE_ENV, use_default_profile
    from ssl_nav.shutdown import StopOnSignal

    with StopOnSignal() as signals:
        profile = use_default_profile()  # before the first participant: Fast DDS reads it then
        rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
        node = executor = None
        try:
            if signals.stop.is_set():
                return 0
            node = factory()
            if profile:
                node.get_logger().info(f"Fast DDS profile {profile} ({PROFILE_ENV} was unset; docs/ros.md)")
            executor = MultiThreadedExecutor(num_threads=4)  # camera callbacks, timers, services, status
            executor.add_node(node)
            while not signals.stop.is_set():
                executor.spin_once(timeout_sec=0.1)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        except SslNavError as e:
            print(f"{getattr(factory, '__name__', 'node')}: error: {e}", file=sys.stderr)
            return 2
        finally:
            if node is not None:
                close = getattr(node, "close", None)
                if close:
                    close()
                if executor is not None:
                    executor.remove_node(node)
                    executor.shutdown(timeout_sec=2)
                node.destroy_node()
            if rclpy.ok():
                rclpy.shutdown()
    return 0
