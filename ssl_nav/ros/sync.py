"""Approximate-time synchronisation of camera streams by stamp (message_filters is not needed).

Each topic keeps a small buffer of ``(stamp, item)`` sorted by stamp. A reference item (the first topic,
usually ``rgb``) becomes a set as soon as every required topic has an item within ``tolerance`` seconds of it;
the set's items leave their buffers and nothing else does, so items that arrive out of order (several callback
threads, one topic overtaking another) still find their partners. A reference item that found no partners
within ``window`` seconds of the newest stamp seen is dropped and counted under the topics it missed
(:attr:`StampSynchronizer.unmatched`); items of the other topics that old leave silently. Every buffer is also
bounded (``buffer_size``). Pure Python, no ROS imports: the view collector feeds it from its subscription
callbacks.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from typing import Any

Set = dict[str, "tuple[float, Any] | None"]


class StampSynchronizer:
    """Matches items of several topics whose stamps lie within ``tolerance`` of each other.

    ``topics[0]`` is the reference. ``optional`` topics join a set when an item is within tolerance and are
    otherwise left out (``None`` in the emitted set); ``required`` can change at run time (:meth:`set_required`,
    then :meth:`match` emits the sets that completes).
    """

    def __init__(self, topics: list[str], tolerance: float, window: float = 1.0, buffer_size: int = 50,
                 optional: tuple[str, ...] = ()) -> None:
        if not topics:
            raise ValueError("StampSynchronizer needs at least one topic")
        self.topics = list(topics)
        self.ref = self.topics[0]
        self.tolerance = float(tolerance)
        self.window = float(window)
        self.buffer_size = int(buffer_size)
        self.required = [t for t in topics if t not in optional]
        self._buf: dict[str, list[tuple[float, Any]]] = {t: [] for t in topics}
        self._newest = float("-inf")
        self._lock = threading.Lock()
        #: reference items dropped, by reason ("no depth within 0.05 s", "late", "buffer overflow")
        self.unmatched: Counter[str] = Counter()
        #: items of the other topics that left unused, by topic (not frames lost: a frame is a reference item)
        self.unused: Counter[str] = Counter()
        self.emitted = 0

    def set_required(self, topic: str, required: bool) -> None:
        with self._lock:
            if required and topic not in self.required:
                self.required.append(topic)
            elif not required and topic in self.required and topic != self.ref:
                self.required.remove(topic)

    def add(self, topic: str, stamp: float, item: Any) -> list[Set]:
        """Buffer one item; return the sets (``{topic: (stamp, item) | None}``) it completes, oldest first."""
        with self._lock:
            if stamp < self._newest - self.window:
                self._lost(topic, "late (older than the sync window)")
                return []
            buf = self._buf[topic]
            bisect.insort(buf, (stamp, item), key=lambda x: x[0])
            if len(buf) > self.buffer_size:
                del buf[0]
                self._lost(topic, "buffer overflow")
            self._newest = max(self._newest, stamp)
            out = self._match()
            self._expire()
            return out

    def match(self) -> list[Set]:
        """The sets that are complete now (after :meth:`set_required` relaxed a topic)."""
        with self._lock:
            return self._match()

    def _lost(self, topic: str, reason: str) -> None:
        if topic == self.ref:
            self.unmatched[reason] += 1
        else:
            self.unused[topic] += 1

    def _nearest(self, topic: str, stamp: float) -> int | None:
        buf = self._buf[topic]
        i = bisect.bisect_left(buf, stamp, key=lambda x: x[0])
        best, best_d = None, self.tolerance
        for j in (i - 1, i):
            if 0 <= j < len(buf):
                d = abs(buf[j][0] - stamp)
                if d <= best_d:
                    best, best_d = j, d
        return best

    def _match(self) -> list[Set]:
        out: list[Set] = []
        refs = self._buf[self.ref]
        i = 0
        while i < len(refs):
            stamp, item = refs[i]
            picks: dict[str, int | None] = {}
            for t in self.topics[1:]:
                j = self._nearest(t, stamp)
                if j is None and t in self.required:
                    break
                picks[t] = j
            else:
                chosen: Set = {self.ref: refs.pop(i)}
                for t, j in picks.items():
                    chosen[t] = self._buf[t].pop(j) if j is not None else None
                out.append(chosen)
                self.emitted += 1
                continue
            i += 1
        return out

    def _expire(self) -> None:
        limit = self._newest - self.window
        for t, buf in self._buf.items():
            k = 0
            while k < len(buf) and buf[k][0] < limit:
                if t == self.ref:
                    missing = [o for o in self.required if o != self.ref and self._nearest(o, buf[k][0]) is None]
                    self.unmatched[f"no {' / '.join(missing) or 'partner'} within {self.tolerance} s"] += 1
                else:
                    self.unused[t] += 1
                k += 1
            if k:
                del buf[:k]

    def pending(self) -> dict[str, int]:
        with self._lock:
            return {t: len(b) for t, b in self._buf.items()}

    def clear(self) -> None:
        with self._lock:
            for b in self._buf.values():
                b.clear()
            self._newest = float("-inf")
