"""``retrieval_server``: query photo -> ranked map instances -> navigation goal, with hot index reload.

SimView retrieval (Sakaguchi et al., IROS 2024, arXiv 2404.09647): the query is embedded with the backbone, each
instance scores by its best view (FAISS cosine), and the winner's map centroid is the goal. The node calls
:class:`ssl_nav.retrieval.query.Retriever` and :func:`ssl_nav.retrieval.build.build_index`, as
``ssl-nav query`` / ``ssl-nav index`` do.

- Subscribes ``query_image`` (Image) and ``query_image/compressed`` (CompressedImage, JPEG/PNG), and
  ``model_ready`` (String path of a model.pt, RELIABLE + TRANSIENT_LOCAL; remap it to
  ``finetuner/model_ready``).
- Publishes ``~/goal_pose`` (PoseStamped in ``ros.map_frame``, stamped with the query's stamp) when the photo's
  object is in the map, ``~/matches`` (String JSON: the Retriever's answer plus ``query_stamp``,
  ``latency_s`` and ``index``; with ``retrieval.verify`` each verified match carries ``verification``:
  ``{"inliers", "matches", "view_id", "n_views"}`` of its local-feature check, :mod:`ssl_nav.retrieval.verify`,
  and the open-set decision includes the evidence; with a self-calibrated model, ``open_set.self_calibrated``)
  for every query, ``~/markers`` (MarkerArray), and ``~/status`` (String JSON,
  latched, every ``ros.status_period_s`` and on every reload: the index in use, reload state, the query
  counters ``received`` / ``answered`` / ``failed`` / ``dropped_oldest`` / ``bad_queries`` / ``no_index``,
  query latency p50/p99 over the last 1000 answers, and the last incremental update).
- ``~/reload`` (Trigger): rebuild the index from DATA/store with the current model (the last ``model_ready``,
  else the index's model, else ``ros.index_model``).

Queries wait in a bounded queue (``ros.query_queue``; when full the oldest is dropped, so the newest are served
and latency stays bounded) served by one worker thread. Index work runs in a second thread, one job at a time:

- **Growth** (every ``retrieval.update_period_s``): when the store's ``views.jsonl`` or ``instances.json``
  changed, only the new views are embedded and added to the index in use
  (:func:`ssl_nav.retrieval.update.sync_index`; removed views leave it), which is then saved atomically. Queries
  are answered throughout (the index is locked only while vectors are added). ``last_update`` in the status
  gives the time from the store's last write to the views being searchable. When ``retrieval.index_type: auto``
  would now choose another structure (a flat index grown past ``retrieval.approximate_from``), the index is
  rebuilt from its stored vectors, without re-embedding, and swapped in.
- **A new model** (``model_ready``, ``~/reload``): the whole store is re-embedded into a new index while the
  old one keeps answering; the new one is swapped in under a lock, then synced with any views that arrived
  meanwhile. A query in flight finishes on the index it started with, so none is dropped or failed by a reload.

Before any index exists, queries are answered on ``~/matches`` with ``{"in_map": false, "reason": "no index
yet"}``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from ssl_nav.errors import SslNavError
from ssl_nav.ros import conversions as conv
from ssl_nav.ros.params import NODE_SECTIONS, declare_config
from ssl_nav.ros.runtime import LATCHED_QOS, RELIABLE_QOS, STATUS_QOS, DataDir, json_msg, run_node

NODE_NAME = "retrieval_server"
NO_INDEX = "no index yet"


class RetrievalServerNode(Node):
    """The ``retrieval_server`` node (see the module docstring)."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self.cfg = declare_config(self, NODE_SECTIONS[NODE_NAME])
        self.data = DataDir(self.cfg.ros.data_dir)
        self._lock = threading.Lock()  # guards self._retriever (the swap)
        self._retriever = None
        self.index_info: dict | None = None
        self.model_spec: str | None = None
        self.counts: Counter[str] = Counter()
        self.last_error: str | None = None
        self._latencies: deque[float] = deque(maxlen=1000)  # seconds, of the last answered queries
        self.last_update: dict | None = None
        self._store_signature: tuple | None = None  # (views.jsonl, instances.json) stat when last synced
        self._update_requested = False

        self._queue: deque = deque(maxlen=self.cfg.ros.query_queue)
        self._queue_cv = threading.Condition()
        self._reload_cv = threading.Condition()
        self._reload_request: tuple[str, str | None, bool] | None = None  # (reason, model, rebuild)
        self.reloading = False
        self._stop = threading.Event()

        self.goal_pub = self.create_publisher(PoseStamped, "~/goal_pose", RELIABLE_QOS)
        self.matches_pub = self.create_publisher(String, "~/matches", RELIABLE_QOS)
        self.markers_pub = self.create_publisher(MarkerArray, "~/markers", 1)
        self.status_pub = self.create_publisher(String, "~/status", STATUS_QOS)
        self.create_subscription(Image, "query_image", self._on_image, RELIABLE_QOS)
        self.create_subscription(CompressedImage, "query_image/compressed", self._on_compressed, RELIABLE_QOS)
        self.create_subscription(String, "model_ready", self._on_model_ready, LATCHED_QOS)
        self.create_service(Trigger, "~/reload", self._on_reload)

        self._query_thread = threading.Thread(target=self._serve, name="retrieval_queries", daemon=True)
        self._reload_thread = threading.Thread(target=self._reloader, name="retrieval_reload", daemon=True)
        self._query_thread.start()
        self._reload_thread.start()
        if (self.data.index / "meta.json").is_file():
            self.request_reload("existing index", None, rebuild=False)
        self.create_timer(self.cfg.ros.status_period_s, self.publish_status)
        if self.cfg.retrieval.update_period_s > 0:
            self.create_timer(self.cfg.retrieval.update_period_s, self._check_store)
        self.publish_status()

    # ------------------------------------------------------------------ queries
    def _enqueue(self, stamp: Any, rgb: np.ndarray, frame_id: str) -> None:
        self.counts["received"] += 1
        with self._queue_cv:
            if len(self._queue) == self._queue.maxlen:
                self.counts["dropped_oldest"] += 1
            self._queue.append((stamp, rgb, frame_id, time.monotonic()))
            self._queue_cv.notify()

    def _on_image(self, msg: Image) -> None:
        try:
            rgb = conv.image_to_rgb(msg, "query_image")
        except SslNavError as e:
            self._bad("query_image", str(e), msg.header.stamp)
            return
        self._enqueue(msg.header.stamp, rgb, msg.header.frame_id)

    def _on_compressed(self, msg: CompressedImage) -> None:
        try:
            rgb = conv.compressed_to_rgb(msg, "query_image/compressed")
        except SslNavError as e:
            self._bad("query_image/compressed", str(e), msg.header.stamp)
            return
        self._enqueue(msg.header.stamp, rgb, msg.header.frame_id)

    def _bad(self, topic: str, reason: str, stamp: Any) -> None:
        self.counts["bad_queries"] += 1
        self.get_logger().warning(f"dropped a message on '{topic}': {reason}")
        self.matches_pub.publish(json_msg({"in_map": False, "reason": f"bad query: {reason}", "matches": [],
                                           "query_stamp": conv.stamp_to_sec(stamp)}))

    def _serve(self) -> None:
        while not self._stop.is_set():
            with self._queue_cv:
                while not self._queue and not self._stop.is_set():
                    self._queue_cv.wait(0.2)
                if self._stop.is_set():
                    return
                item = self._queue.popleft()
            try:
                self._answer(*item)
            except Exception as e:  # a failing query must not kill the server
                self.counts["failed"] += 1
                self.get_logger().error(f"query failed: {type(e).__name__}: {e}")
                self.matches_pub.publish(json_msg({"in_map": False, "reason": f"query failed: {e}", "matches": [],
                                                   "query_stamp": conv.stamp_to_sec(item[0])}))

    def _answer(self, stamp: Any, rgb: np.ndarray, frame_id: str, t_received: float) -> None:
        with self._lock:
            retriever, info = self._retriever, self.index_info
        qstamp = conv.stamp_to_sec(stamp)
        if retriever is None:
            self.counts["no_index"] += 1
            self.matches_pub.publish(json_msg({"in_map": False, "reason": NO_INDEX, "matches": [],
                                               "query_stamp": qstamp, "reloading": self.reloading}))
            return
        result = retriever.query(rgb)
        latency = time.monotonic() - t_received
        self.counts["answered"] += 1
        self._latencies.append(latency)
        out_stamp = stamp if qstamp > 0 else self.get_clock().now().to_msg()
        result.update({"query_stamp": qstamp, "latency_s": round(latency, 6), "index": info,
                       "reloading": self.reloading})
        if result.get("in_map") and result.get("matches") and result["matches"][0].get("goal"):
            goal = conv.goal_to_pose_stamped(result["matches"][0]["goal"], self.cfg.ros.map_frame, out_stamp)
            self.goal_pub.publish(goal)
            self.counts["goals"] += 1
        self.matches_pub.publish(json_msg(result))
        if self.cfg.ros.publish_markers:
            self.markers_pub.publish(conv.match_markers(result, self.cfg.ros.map_frame, out_stamp))

    # ------------------------------------------------------------------ index (re)loading
    def _on_model_ready(self, msg: String) -> None:
        path = msg.data.strip()
        if not path or not Path(path).is_file():
            self.get_logger().warning(f"dropped a message on 'model_ready': {path!r} is not a file")
            return
        if path == self.model_spec and self._retriever is not None:
            return
        self.request_reload(f"model_ready {path}", path)

    def request_reload(self, reason: str, model: str | None, rebuild: bool = True) -> None:
        """Queue a reload (coalesced: the newest request wins); it runs in the reload thread."""
        with self._reload_cv:
            self._reload_request = (reason, model, rebuild)
            self._reload_cv.notify()

    def _reloader(self) -> None:
        while not self._stop.is_set():
            with self._reload_cv:
                while self._reload_request is None and not self._update_requested and not self._stop.is_set():
                    self._reload_cv.wait(0.2)
                if self._stop.is_set():
                    return
                req, self._reload_request = self._reload_request, None
                if req is None:  # only an update is pending
                    self._update_requested = False
                else:
                    self.reloading = True
            if req is None:
                self._update()
                continue
            self.publish_status()
            try:
                self._reload(*req)
            except (SslNavError, OSError) as e:
                self.last_error = f"reload ({req[0]}) failed: {e}"
                self.counts["reload_failed"] += 1
                self.get_logger().error(self.last_error)
            except Exception as e:
                self.last_error = f"reload ({req[0]}) failed: {type(e).__name__}: {e}"
                self.counts["reload_failed"] += 1
                self.get_logger().error(self.last_error)
            finally:
                self.reloading = False
                self.publish_status()
            self._update()  # views that arrived while the new index was being built

    def _reload(self, reason: str, model: str | None, rebuild: bool) -> None:
        from ssl_nav.retrieval.build import build_index
        from ssl_nav.retrieval.embedder import Embedder
        from ssl_nav.retrieval.index import read_meta
        from ssl_nav.retrieval.query import Retriever

        t0 = time.monotonic()
        rcfg = self.cfg.retrieval
        if rebuild:
            # the encoder is loaded once: it builds the index and then serves the queries
            spec = model or self.model_spec or self._index_model_spec() or self.cfg.ros.index_model
            embedder = Embedder.load(spec, rcfg)
            index = build_index(self.data.store, embedder, rcfg, self.data.index.absolute(), progress=False)
            retriever = Retriever(index, embedder, rcfg, frame_id=self.cfg.ros.map_frame, index_dir=self.data.index)
        else:
            retriever = Retriever.open(self.data.index, rcfg)
            retriever.frame_id = self.cfg.ros.map_frame
        for w in retriever.warnings:
            self.get_logger().warning(w)
        meta = read_meta(self.data.index)
        info = {"model": meta.get("model_spec"), "model_hash": retriever.index.model_hash[:12],
                "vectors": retriever.index.ntotal, "instances": len(retriever.index.instance_ids())}
        with self._lock:
            self._retriever, self.index_info = retriever, info
            self.model_spec = meta.get("model_spec")
            self._store_signature = None  # compare the store with the new index at the next update
        self.counts["reloads"] += 1
        self.last_error = None
        self.get_logger().info(f"index ready ({reason}): {info['vectors']} views of {info['instances']} instances, "
                               f"model {info['model']} in {time.monotonic() - t0:.1f} s")

    # ------------------------------------------------------------------ incremental updates
    def _signature(self) -> tuple | None:
        """``(size, mtime_ns)`` of the store's views.jsonl and instances.json (None when there is no store)."""
        try:
            return tuple((st.st_size, st.st_mtime_ns) for st in
                         (self.data.store.joinpath(n).stat() for n in ("views.jsonl", "instances.json")))
        except OSError:
            return None

    def _check_store(self) -> None:
        """Timer: queue an update when the store changed since the index was last synced with it."""
        if self._retriever is None or self.reloading:
            return
        sig = self._signature()
        if sig is not None and sig != self._store_signature:
            with self._reload_cv:
                self._update_requested = True
                self._reload_cv.notify()

    def _update(self) -> None:
        """Embed the store's new views into the index in use, drop removed ones, save; never re-embeds the rest."""
        from ssl_nav.retrieval.query import Retriever
        from ssl_nav.retrieval.update import sync_index
        from ssl_nav.views.store import ViewStore

        with self._lock:
            retriever = self._retriever
        sig = self._signature()
        if retriever is None or sig is None or sig == self._store_signature:
            return
        built_from = retriever.index.extra.get("store")
        if built_from and Path(built_from) != self.data.store.resolve():  # warned once per store change
            self.get_logger().warning(f"the index was built from {built_from}, not from {self.data.store}: "
                                      f"not updated from the store (~/reload rebuilds it from there)")
            self._store_signature = sig
            return
        written = max(m for _, m in sig) / 1e9  # the store's last write (wall clock)
        t0 = time.monotonic()
        try:
            store = ViewStore(self.data.store, strict=False)
            res = sync_index(store, retriever.index, retriever.embedder, reload=False)
            index = retriever.index
            if res.changed and index.wants_restructure():  # e.g. flat grown past retrieval.approximate_from
                index = index.restructured(self.cfg.retrieval)
                self.get_logger().info(f"index restructured for {index.ntotal} views: {index.index_type} "
                                       f"{index.structure.to_json()} (no re-embedding)")
            if res.changed:
                index.save(self.data.index)
                fresh = Retriever(index, retriever.embedder, self.cfg.retrieval,
                                  frame_id=self.cfg.ros.map_frame, index_dir=self.data.index)
                with self._lock:
                    if self._retriever is retriever:  # not replaced by a reload meanwhile
                        self._retriever = fresh
                        self.index_info = dict(self.index_info or {}, vectors=fresh.index.ntotal,
                                               instances=len(fresh.index.instance_ids()))
        except Exception as e:  # a bad view must not stop the index thread; the next change retries
            self.counts["update_failed"] += 1
            self.last_error = f"update failed: {e if isinstance(e, (SslNavError, OSError)) else repr(e)}"
            self.get_logger().error(self.last_error)
            self._store_signature = sig
            return
        self._store_signature = sig
        if self.last_error and self.last_error.startswith("update failed"):
            self.last_error = None
        if res.changed:
            self.counts["updates"] += 1
            self.last_update = {"added": res.added, "removed": res.removed, "seconds": round(time.monotonic() - t0, 3),
                                "arrival_to_searchable_s": round(max(0.0, time.time() - written), 3)}
            self.get_logger().info(f"index updated: +{res.added} / -{res.removed} views "
                                   f"({self.last_update['seconds']} s)")
            self.publish_status()

    def _index_model_spec(self) -> str | None:
        from ssl_nav.retrieval.index import read_meta

        if not (self.data.index / "meta.json").is_file():
            return None
        try:
            return read_meta(self.data.index).get("model_spec")
        except SslNavError:
            return None

    def _on_reload(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.request_reload("~/reload", None)
        response.success = True
        response.message = "reload started; see ~/status"
        return response

    # ------------------------------------------------------------------ status
    def status(self) -> dict:
        with self._lock:
            info = self.index_info
        lat = np.asarray(self._latencies, dtype=np.float64)
        latency = ({"p50_s": round(float(np.percentile(lat, 50)), 6), "p99_s": round(float(np.percentile(lat, 99)), 6),
                    "n": int(len(lat))} if len(lat) else None)
        counts = {k: 0 for k in ("received", "answered", "failed", "dropped_oldest", "bad_queries", "no_index")}
        counts.update(self.counts)
        return {"index": info, "reloading": self.reloading, "queue": len(self._queue), "counts": counts,
                "latency": latency, "last_update": self.last_update, "last_error": self.last_error,
                "model": self.model_spec}

    def publish_status(self) -> None:
        self.status_pub.publish(json_msg(self.status()))

    @property
    def ready(self) -> bool:
        return self._retriever is not None

    def close(self) -> None:
        self._stop.set()
        with self._queue_cv:
            self._queue_cv.notify_all()
        with self._reload_cv:
            self._reload_cv.notify_all()
        self._query_thread.join(timeout=5)
        self._reload_thread.join(timeout=60)


def main(args: list[str] | None = None) -> int:
    return run_node(RetrievalServerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
