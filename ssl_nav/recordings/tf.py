"""A time-indexed transform tree, as tf2 keeps it, for offline lookups in a recording.

``/tf`` and ``/tf_static`` carry ``geometry_msgs/TransformStamped``: the pose of ``child_frame_id`` in
``header.frame_id`` at ``header.stamp`` (REP 105). Every frame has one parent, so the frames form a tree;
:meth:`TransformTree.lookup` walks from the target frame up to the common ancestor of the source frame
and back down, interpolating every dynamic edge at the requested time: linear in translation, spherical
linear (slerp, Shoemake 1985, "Animating rotation with quaternion curves") in rotation, like tf2's
``BufferCore::lookupTransform``. Static edges hold at any time. A time outside an edge's samples is not
extrapolated (tf2 refuses it too): :class:`LookupError` says which edge and which time.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from ssl_nav.geometry import matrix_to_quaternion, quaternion_to_matrix


def slerp(q0: np.ndarray, q1: np.ndarray, a: float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions (x, y, z, w) at ``a`` in [0, 1], shortest arc."""
    q0 = np.asarray(q0, dtype=np.float64)
    q1 = np.asarray(q1, dtype=np.float64)
    d = float(np.dot(q0, q1))
    if d < 0.0:
        q1, d = -q1, -d
    if d > 0.9995:  # nearly parallel: normalised lerp is exact to rounding
        q = q0 + a * (q1 - q0)
        return q / np.linalg.norm(q)
    th = np.arccos(min(d, 1.0))
    s = np.sin(th)
    return (np.sin((1.0 - a) * th) * q0 + np.sin(a * th) * q1) / s


def make_transform(t: np.ndarray, q_xyzw: np.ndarray) -> np.ndarray:
    """4x4 from a translation and a quaternion (normalised here)."""
    q = np.asarray(q_xyzw, dtype=np.float64)
    T = np.eye(4)
    T[:3, :3] = quaternion_to_matrix(q / np.linalg.norm(q))
    T[:3, 3] = t
    return T


def interpolate(T0: np.ndarray, T1: np.ndarray, a: float) -> np.ndarray:
    """Interpolate two rigid transforms: lerp of the translations, slerp of the rotations."""
    q = slerp(matrix_to_quaternion(T0[:3, :3]), matrix_to_quaternion(T1[:3, :3]), a)
    return make_transform((1.0 - a) * T0[:3, 3] + a * T1[:3, 3], q)


@dataclass
class _Edge:
    parent: str
    static: bool
    stamps: list[float] = field(default_factory=list)
    poses: list[np.ndarray] = field(default_factory=list)

    def at(self, t: float, tolerance: float) -> np.ndarray:
        if self.static:
            return self.poses[-1]
        i = bisect.bisect_left(self.stamps, t)
        if i < len(self.stamps) and abs(self.stamps[i] - t) <= 1e-9:
            return self.poses[i]
        if i == 0 or i == len(self.stamps):
            j = 0 if i == 0 else len(self.stamps) - 1
            if abs(self.stamps[j] - t) <= tolerance:
                return self.poses[j]
            side = "before the first" if i == 0 else "after the last"
            raise LookupError(f"{t:.6f} s is {side} transform ({self.stamps[j]:.6f} s); no extrapolation")
        t0, t1 = self.stamps[i - 1], self.stamps[i]
        return interpolate(self.poses[i - 1], self.poses[i], (t - t0) / (t1 - t0))


class TransformTree:
    """Transforms of a recording (``/tf`` dynamic, ``/tf_static`` static), looked up at any time in range."""

    def __init__(self, tolerance: float = 0.0) -> None:
        #: child frame -> its edge to the parent
        self.edges: dict[str, _Edge] = {}
        #: a lookup this close (s) outside an edge's samples takes the nearest sample
        self.tolerance = float(tolerance)
        self._sorted = True

    @property
    def frames(self) -> list[str]:
        """Every frame named by a transform, sorted."""
        return sorted(set(self.edges) | {e.parent for e in self.edges.values()})

    def add(self, parent: str, child: str, stamp: float, T: np.ndarray, static: bool = False) -> None:
        """Add the pose of ``child`` in ``parent`` at ``stamp``. A child's parent is fixed by its first transform
        (tf2 re-parents; a recording that does so is refused with :class:`ValueError`)."""
        parent, child = parent.lstrip("/"), child.lstrip("/")
        e = self.edges.get(child)
        if e is None:
            e = self.edges[child] = _Edge(parent, static)
        elif e.parent != parent:
            raise ValueError(f"frame {child!r} has two parents, {e.parent!r} and {parent!r}")
        if static:
            e.static = True
            e.stamps, e.poses = [stamp], [T]
            return
        if e.stamps and stamp < e.stamps[-1]:
            self._sorted = False
        e.stamps.append(stamp)
        e.poses.append(T)

    def _sort(self) -> None:
        for e in self.edges.values():
            if not e.static:
                order = sorted(range(len(e.stamps)), key=e.stamps.__getitem__)
                e.stamps = [e.stamps[i] for i in order]
                e.poses = [e.poses[i] for i in order]
        self._sorted = True

    def _chain(self, frame: str) -> list[str]:
        out = [frame]
        while out[-1] in self.edges:
            out.append(self.edges[out[-1]].parent)
            if len(out) > 1000:
                raise ValueError(f"the transforms above {frame!r} form a loop")
        return out

    def can_connect(self, target: str, source: str) -> bool:
        """Whether a chain of transforms joins the two frames (at some time)."""
        target, source = target.lstrip("/"), source.lstrip("/")
        return bool(set(self._chain(target)) & set(self._chain(source)))

    def lookup(self, target: str, source: str, t: float) -> np.ndarray:
        """``T_target_source`` at time ``t`` (a point in ``source`` -> ``target``). :class:`LookupError` when the
        frames are not connected or a dynamic edge has no samples around ``t``."""
        if not self._sorted:
            self._sort()
        target, source = target.lstrip("/"), source.lstrip("/")
        up_s, up_t = self._chain(source), self._chain(target)
        common = next((f for f in up_s if f in set(up_t)), None)
        if common is None:
            raise LookupError(f"no chain of transforms joins {target!r} and {source!r}")
        T_c_s = np.eye(4)
        for f in up_s[:up_s.index(common)]:
            e = self.edges[f]
            try:
                T_c_s = e.at(t, self.tolerance) @ T_c_s
            except LookupError as err:
                raise LookupError(f"{e.parent} -> {f}: {err}") from None
        T_c_t = np.eye(4)
        for f in up_t[:up_t.index(common)]:
            e = self.edges[f]
            try:
                T_c_t = e.at(t, self.tolerance) @ T_c_t
            except LookupError as err:
                raise LookupError(f"{e.parent} -> {f}: {err}") from None
        return np.linalg.inv(T_c_t) @ T_c_s
