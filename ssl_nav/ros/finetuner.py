"""``finetuner``: on-robot fine-tuning on the collected views, energy-metered.

Runs :func:`ssl_nav.learning.run_dir.finetune_run` (the function behind ``ssl-nav finetune``, which ends by
fitting the open-set threshold the retrieval server uses, :mod:`ssl_nav.learning.selfcalib`; by default SimSiam,
Chen & He, arXiv 2011.10566, with CrossIA pairing and classifier, Sakaguchi et al., arXiv 2404.09645: the
``learning.objective`` parameter picks another objective of :mod:`ssl_nav.learning.objectives`) in a worker thread
off the executor, so the node answers ``~/start`` / ``~/cancel`` while it trains.

- ``~/start`` (Trigger): start a run on DATA/store into DATA/runs/<run_id>; refused while one runs or when the
  store has no views.
- ``~/cancel`` (Trigger): ask the running fine-tune to stop after the current step (no model.pt is written).
- ``~/progress`` (String JSON): ``{"run_id", "state": "started"|"running"|"completed"|"cancelled"|"failed", ...}``
  with the epoch's metrics line while running.
- ``~/energy`` (String JSON, latched): the run's EnergyRecord (:mod:`ssl_nav.energy.record`, format
  ``ssl_nav.energy/2`` with per-phase figures), the same object as ``RUN/energy.json`` and the line appended to
  the ledger DATA/``energy.ledger``; its ``run_id`` is the trainer's. With no energy source every joule and
  watt figure is null and ``source`` is ``"unavailable"``, never 0.
- ``~/model_ready`` (String: path of model.pt; RELIABLE + TRANSIENT_LOCAL, depth 1): latched, so a retrieval
  server started later still gets the newest model. On start-up the newest completed run's model is announced.
"""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path
from typing import Any

from rclpy.node import Node
from std_msgs.msg import String
from std_srvs.srv import Trigger

from ssl_nav.errors import SslNavError
from ssl_nav.ros.params import NODE_SECTIONS, declare_config
from ssl_nav.ros.runtime import LATCHED_QOS, STATUS_QOS, DataDir, json_msg, run_node

NODE_NAME = "finetuner"


class FinetunerNode(Node):
    """The ``finetuner`` node (see the module docstring)."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self.cfg = declare_config(self, NODE_SECTIONS[NODE_NAME])
        self.data = DataDir(self.cfg.ros.data_dir)
        self.progress_pub = self.create_publisher(String, "~/progress", STATUS_QOS)
        self.energy_pub = self.create_publisher(String, "~/energy", STATUS_QOS)
        self.model_pub = self.create_publisher(String, "~/model_ready", LATCHED_QOS)
        self.create_service(Trigger, "~/start", self._on_start)
        self.create_service(Trigger, "~/cancel", self._on_cancel)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self.run_id: str | None = None
        self.last_result: dict | None = None
        latest = self.data.latest_model()
        if latest is not None:
            self.model_pub.publish(String(data=str(latest)))
            self.get_logger().info(f"announced the newest model {latest}")

    # ------------------------------------------------------------------ control
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> tuple[bool, str]:
        """Start a fine-tune in a worker thread; (accepted, message)."""
        from ssl_nav.views.store import ViewStore

        with self._lock:
            if self.running:
                return False, f"a fine-tune is already running (run {self.run_id})"
            try:
                n = len(ViewStore(self.data.store))
            except SslNavError as e:
                return False, f"no view store yet: {e}"
            if n == 0:
                return False, f"the view store {self.data.store} has no views yet"
            self.run_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
            self._cancel.clear()
            self._thread = threading.Thread(target=self._train, args=(self.run_id,), name="finetuner_worker",
                                            daemon=True)
            self._thread.start()
        self._progress({"run_id": self.run_id, "state": "started", "views": n})
        return True, f"started run {self.run_id} on {n} views"

    def cancel(self) -> tuple[bool, str]:
        if not self.running:
            return False, "no fine-tune is running"
        self._cancel.set()
        return True, f"cancelling run {self.run_id}"

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the running fine-tune to end; True when none runs any more."""
        t = self._thread
        if t is not None:
            t.join(timeout)
        return not self.running

    def _progress(self, obj: dict) -> None:
        self.progress_pub.publish(json_msg(obj))

    def _train(self, run_id: str) -> None:
        from ssl_nav.learning.run_dir import finetune_run

        out = self.data.runs / run_id
        log = self.get_logger()
        log.info(f"fine-tuning run {run_id} -> {out}")

        def on_epoch(m: dict) -> None:
            self._progress({"run_id": run_id, "state": "running", **m})


        try:
            # finetune_run holds the run directory's lock, like `ssl-nav finetune`
            res = finetune_run(self.data.store, out, self.cfg, progress=False, on_epoch=on_epoch,
                               should_stop=self._cancel.is_set, ledger=self.data.ledger(self.cfg.energy.ledger))
        except SslNavError as e:
            log.error(f"fine-tune {run_id} failed: {e}")
            self.last_result = {"run_id": run_id, "state": "failed", "error": str(e)}
            self._progress(self.last_result)
            return
        except Exception as e:  # keep the node alive and say why
            log.error(f"fine-tune {run_id} failed: {type(e).__name__}: {e}")
            self.last_result = {"run_id": run_id, "state": "failed", "error": f"{type(e).__name__}: {e}"}
            self._progress(self.last_result)
            return
        state = res.summary.get("status", "completed")
        self.last_result = {"run_id": run_id, "state": state, "run_dir": str(res.run_dir),
                            "model": str(res.model_path) if res.model_path else None, "summary": res.summary}
        if res.energy:  # the run's EnergyRecord, exactly as in RUN/energy.json and the ledger
            self.energy_pub.publish(json_msg(res.energy))
        self._progress(self.last_result)
        if state == "completed" and res.model_path is not None and Path(res.model_path).is_file():
            self.model_pub.publish(String(data=str(Path(res.model_path).absolute())))
            log.info(f"run {run_id} completed: model_ready {res.model_path}")
        else:
            log.info(f"run {run_id} ended: {state}")

    # ------------------------------------------------------------------ services
    def _on_start(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = self.start()
        return response

    def _on_cancel(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = self.cancel()
        return response

    def close(self) -> None:
        if self.running:
            self._cancel.set()
            self.wait(30)


def main(args: list[str] | None = None) -> int:
    return run_node(FinetunerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
