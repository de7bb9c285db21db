"""Approximate-time synchronisation of camera streams by stamp (message_filters is not needed).

Each topic keeps a small buffer of ``(stamp, item)``. When every required topic has an item within
``tolerance`` seconds of a reference item (the oldest pending item of the first topic, usually ``rgb``), the set
is emitted and everything up to it is discarded. Items older than the last emitted set are dropped, and so are
reference items that can no longer be matched (every other topic has moved past them by more than the
tolerance). Pure Python, no ROS imports: the view collector feeds it from its subscription callbacks.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from typing import Any


class StampSynchronizer:
    """Matches items of several topics whose stamps lie within ``tolerance`` of each other.

    ``topics[0]`` is the reference (the first required topic). ``optional`` topics join a set when an item is
    within tolerance and are otherwise left out (``None`` in the emitted set); ``required`` can change at run
    time (:meth:`set_required`).
    """

    def __init__(self, topics: list[str], tolerance: float, buffer_size: int = 30,
                 optional: tuple[str, ...] = ()) -> None:
        if not topics:
            raise ValueError("StampSynchronizer needs at least one topic")
        self.topics = list(topics)
        self.tolerance = float(tolerance)
        self.buffer_size = int(buffer_size)
        self.required = [t for t in topics if t not in optional]
        self._buf: dict[str, list[tuple[float, Any]]] = {t: [] for t in topics}
        self._last_emitted = float("-inf")
        self._lock = threading.Lock()
        self.dropped: Counter[str] = Counter()
        self.emitted = 0

    def set_required(self, topic: str, required: bool) -> None:
        with self._lock:
            if required and topic not in self.required:
                self.required.append(topic)
            elif not required and topic in self.required and topic != self.topics[0]:
                self.required.remove(topic)

    def add(self, topic: str, stamp: float, item: Any) -> list[dict[str, tuple[float, Any] | None]]:
        """Buffer one item; return the sets (``{topic: (stamp, item) | None}``) it completes, oldest first."""
        with self._lock:
            if stamp <= self._last_emitted:
                self.dropped[f"{topic}: older than the last synchronised set"] += 1
                return []
            buf = self._buf[topic]
            keys = [s for s, _ in buf]
            i = bisect.bisect_right(keys, stamp)
            buf.insert(i, (stamp, item))
            if len(buf) > self.buffer_size:
                del buf[0]
                self.dropped[f"{topic}: buffer overflow (no match within tolerance)"] += 1
            return self._match()

    def _nearest(self, topic: str, stamp: float) -> int | None:
        buf = self._buf[topic]
        best, best_d = None, self.tolerance
        for i, (s, _) in enumerate(buf):
            d = abs(s - stamp)
            if d <= best_d:
                best, best_d = i, d
        return best

    def _match(self) -> list[dict]:
        ref = self.topics[0]
        out = []
        while self._buf[ref]:
            stamp, item = self._buf[ref][0]
            picks: dict[str, int | None] = {}
            complete = True
            for t in self.topics[1:]:
                j = self._nearest(t, stamp)
                if j is None and t in self.required:
                    complete = False
                    break
                picks[t] = j
            if complete:
                chosen: dict[str, tuple[float, Any] | None] = {ref: (stamp, item)}
                for t, j in picks.items():
                    chosen[t] = self._buf[t][j] if j is not None else None
                self._last_emitted = max(self._last_emitted, stamp)
                # discard everything up to the matched items
                del self._buf[ref][0]
                for t, j in picks.items():
                    if j is not None:
                        del self._buf[t][:j + 1]
                out.append(chosen)
                self.emitted += 1
                continue
            # can the reference item still be matched? Not if a required topic already has newer items beyond
            # the tolerance and nothing within it.
            stale = False
            for t in self.required:
                if t == ref:
                    continue
                buf = self._buf[t]
                if buf and buf[-1][0] > stamp + self.tolerance and self._nearest(t, stamp) is None:
                    stale = True
                    break
            if stale:
                del self._buf[ref][0]
                self.dropped[f"{ref}: no match within {self.tolerance} s"] += 1
                continue
            break
        # prune other topics' items too old to match any pending reference item
        if self._buf[ref]:
            oldest_ref = self._buf[ref][0][0]
            for t in self.topics[1:]:
                buf = self._buf[t]
                k = 0
                while k < len(buf) and buf[k][0] < oldest_ref - self.tolerance:
                    k += 1
                if k:
                    del buf[:k]
        return out

    def pending(self) -> dict[str, int]:
        with self._lock:
            return {t: len(b) for t, b in self._buf.items()}

    def clear(self) -> None:
        with self._lock:
            for b in self._buf.values():
                b.clear()
