"""``EnergyMeter``: measures a block of work, split into named phases, as an EnergyRecord.

    with EnergyMeter(cfg.energy, run_id="run-1") as meter:
        with meter.phase("data"):
            cache.fill()
            meter.count(images=n_decoded)
        for batch in loader:
            with meter.phase("train"):
                ...
                meter.count(images=n_forwarded, steps=1)
        with meter.phase("checkpoint"):
            save(...)
    record = meter.record          # see ssl_nav.energy.record and docs/energy.md

Phases (edge-energy accounting per stage as in Famá et al., arXiv 2510.08374): at every phase boundary the meter
reads the backend (counters, or one power sample) and charges the joules and seconds since the previous reading
to the phase that was open. Phases nest as a stack and the innermost open phase is charged (a ``checkpoint``
opened inside ``train`` takes its own time out of ``train``); time outside every phase goes to ``other``.
So the phases partition the metered window and add up to the total. ``count(...)`` adds images and steps to
the innermost open phase, or to ``phase=``.

Between boundaries a :class:`ssl_nav.energy.base.Poller` reads backends that ask for it (RAPL wrap-around,
sampled power); those reads also cut the open segment. A reading's increase is spread over the segments since
the last good reading by duration, so a failed read loses no joules, and a backend slow to read (Jetson I2C
rails: ``read_at_boundaries = False``) is read by the poller only, its phases resolved to the sampling
period. Every read error and the longest interval between good readings go into the record's ``sampling``.

``backend: auto`` tries, in order: Jetson INA3221 rails (the board input rail is the total); NVML when CUDA is
available, joined by RAPL when its counters can be read (``nvml+rapl``: GPU + CPU packages + DRAM); Zeus; RAPL
alone. With no source, ``source`` is ``"unavailable"`` and every joule figure ``null``, never 0.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, TypeVar

from ssl_nav.config import EnergyConfig
from ssl_nav.energy.base import EnergyBackend, Poller
from ssl_nav.energy.record import PHASES, build_record

T = TypeVar("T")
OTHER = "other"
#: the INA3221 root of the L4T (JetPack 4) driver, tried when ``energy.hwmon_root`` is left at its default
JETPACK4_ROOT = "/sys/bus/i2c/drivers/ina3221x"
_PHASE_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def _why(e: BaseException) -> str:
    if isinstance(e, ImportError):
        return f"{e.name or 'module'} not installed"
    if type(e) is OSError and e.args and isinstance(e.args[0], str):
        return e.args[0]  # our own "no sensor here" messages
    return f"{type(e).__name__}: {e}"


def select_backend(cfg: EnergyConfig, *, cuda_available: bool | None = None,
                   nvml: Any = None) -> tuple[EnergyBackend | None, str]:
    """The backend ``cfg.backend`` asks for and a note saying what was chosen and why (or why none).
    ``cuda_available`` and ``nvml`` (a ``pynvml``-like module) replace the real ones in tests."""
    from ssl_nav.energy.combined import CombinedBackend
    from ssl_nav.energy.jetson import DEFAULT_ROOT as JETSON_ROOT, JetsonBackend
    from ssl_nav.energy.nvml import NvmlBackend
    from ssl_nav.energy.rapl import RaplBackend
    from ssl_nav.energy.zeus import ZeusBackend

    want = cfg.backend
    if want == "none":
        return None, "energy.backend is none"
    cuda_cache: list[bool] = [] if cuda_available is None else [cuda_available]

    def cuda() -> bool:  # torch is imported only when a GPU source is considered
        if not cuda_cache:
            cuda_cache.append(_cuda_available())
        return cuda_cache[0]

    rapl_period = max(cfg.sample_period_s, 0.5)  # wrap-safe, and RAPL's own update is ~1 ms
    tried: list[str] = []

    def jetson() -> tuple[EnergyBackend, str] | None:
        roots = [cfg.hwmon_root] + ([JETPACK4_ROOT] if cfg.hwmon_root == JETSON_ROOT else [])
        for root in roots:
            if JetsonBackend.available(root):
                return JetsonBackend(root, cfg.sample_period_s), f"INA3221 rails under {root}"
        tried.append(f"jetson: no INA3221 rails under {' or '.join(roots)}")
        return None

    def rapl() -> tuple[EnergyBackend, str] | None:
        try:
            return RaplBackend(cfg.powercap_root, rapl_period), f"RAPL powercap under {cfg.powercap_root}"
        except Exception as e:
            tried.append(f"rapl: {_why(e)}")
            return None

    def gpu(with_rapl: bool) -> tuple[EnergyBackend, str] | None:
        if want == "auto" and not cuda():
            tried.append("nvml: CUDA not available")
            return None
        try:
            nv = NvmlBackend(cfg.sample_period_s, nvml=nvml)
        except Exception as e:
            tried.append(f"nvml: {_why(e)}")
            return None
        if with_rapl:
            r = rapl()
            if r is not None:
                return CombinedBackend([nv, r[0]]), f"NVML GPU energy and {r[1]}"
            return nv, f"NVML GPU energy only ({tried[-1]})"
        return nv, "NVML GPU energy"

    def zeus() -> tuple[EnergyBackend, str] | None:
        if want == "auto" and not cuda():
            tried.append("zeus: CUDA not available")
            return None
        if not ZeusBackend.available():
            tried.append("zeus: not installed")
            return None
        try:
            return ZeusBackend(), "Zeus monitor"
        except Exception as e:
            tried.append(f"zeus: {_why(e)}")
            return None

    candidates: dict[str, Callable[[], tuple[EnergyBackend, str] | None]] = {
        "jetson": jetson, "nvml+rapl": lambda: gpu(True), "nvml": lambda: gpu(False), "zeus": zeus, "rapl": rapl}
    order = ["jetson", "nvml+rapl", "zeus", "rapl"] if want == "auto" else [want]
    for name in order:
        got = candidates[name]()
        if got is not None:
            return got
    return None, "no energy source: " + "; ".join(tried)


@dataclass
class _Tally:
    """What one phase has accumulated."""

    wall_s: float = 0.0
    channel_j: dict[str, float] = field(default_factory=dict)
    images: int = 0
    steps: int = 0
    entries: int = 0


class EnergyMeter:
    """Context manager measuring one run in phases; ``record`` holds the EnergyRecord after the block exits.

    ``backend``/``note``: use this backend instead of selecting one from ``cfg``. ``sync``: called at every
    phase boundary while a source is metered (pass ``torch.cuda.synchronize`` on CUDA so that queued kernels
    are charged to the phase that launched them). ``clock``, ``wall_clock`` and ``sleep`` replace time's in
    tests.
    """

    def __init__(self, cfg: EnergyConfig | None = None, run_id: str | None = None,
                 backend: EnergyBackend | None = None, *, note: str | None = None,
                 sync: Callable[[], None] | None = None, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.cfg = cfg or EnergyConfig()
        self.run_id = run_id or uuid.uuid4().hex[:12]
        if backend is not None:
            self.backend: EnergyBackend | None = backend
            self.note = note or f"given backend {backend.source}"
        else:
            self.backend, self.note = select_backend(self.cfg)
        self.sync, self.clock, self.wall_clock, self.sleep = sync, clock, wall_clock, sleep
        self.record: dict[str, Any] | None = None
        self.extra: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._stack: list[str] = []
        self._tallies: dict[str, _Tally] = {OTHER: _Tally()}
        self._pending: list[tuple[str, float]] = []
        self._last: dict[str, float] = {}
        self._origin: dict[str, float] = {}
        self._accounting = False
        self._poller: Poller | None = None
        self._idle: dict | None = None
        self._t0 = self._wall0 = self._seg_t = 0.0
        self._stats: dict[str, Any] = {"readings": 0, "errors": 0, "last_error": None, "max_gap_s": None,
                                       "gaps": 0}
        self._last_ok_t: float | None = None
        self._latest: dict[str, float] | None = None  # the last good reading, attributed or not
        self._good_after_start = False

    # ------------------------------------------------------------------ public API
    @property
    def current_phase(self) -> str:
        """The phase being charged now (``other`` outside every phase)."""
        with self._lock:
            return self._stack[-1] if self._stack else OTHER

    @contextmanager
    def phase(self, name: str) -> Iterator["EnergyMeter"]:
        """Charge the time and energy of the block to phase ``name`` (lower-case letters, digits, ``_``)."""
        if not isinstance(name, str) or not _PHASE_NAME.fullmatch(name) or name == OTHER:
            raise ValueError(f"energy phase name {name!r}: use lower-case letters, digits and _ "
                             f"(and not {OTHER!r}, the time outside every phase)")
        if not self._accounting:
            raise RuntimeError(f"EnergyMeter.phase({name!r}) outside 'with meter:'")
        self._boundary()
        with self._lock:
            self._stack.append(name)
            self._tally(name).entries += 1
        try:
            yield self
        finally:
            self._boundary()
            with self._lock:
                self._stack.pop()

    def iterate(self, iterable: Iterable[T], phase: str = "data",
                images: Callable[[T], int] | None = None) -> Iterator[T]:
        """Yield the items of ``iterable``, charging each ``next()`` (a DataLoader's loading and augmentation
        in the main process) to ``phase`` and counting ``images(item)`` there. The loop body runs outside
        that phase, so ``break`` is safe."""
        it = iter(iterable)
        while True:
            with self.phase(phase):
                try:
                    item = next(it)
                except StopIteration:
                    return
                if images is not None:
                    self.count(images=images(item))
            yield item

    def count(self, images: int = 0, steps: int = 0, phase: str | None = None) -> None:
        """Add images processed (every forward pass counts its images) and optimisation steps to ``phase``
        (default: the innermost open phase, ``other`` outside every phase)."""
        if phase is not None and phase != OTHER and not _PHASE_NAME.fullmatch(phase):
            raise ValueError(f"energy phase name {phase!r}: use lower-case letters, digits and _")
        with self._lock:
            t = self._tally(phase or self.current_phase)
            t.images += int(images)
            t.steps += int(steps)

    @property
    def images(self) -> int:
        """Images counted so far, all phases together."""
        with self._lock:
            return sum(t.images for t in self._tallies.values())

    @property
    def steps(self) -> int:
        with self._lock:
            return sum(t.steps for t in self._tallies.values())

    # ------------------------------------------------------------------ readings
    def _tally(self, name: str) -> _Tally:
        if name not in self._tallies:
            self._tallies[name] = _Tally()
        return self._tallies[name]

    def _read(self, t: float) -> dict[str, float] | None:
        """One backend reading (lock held), with the sampling statistics."""
        assert self.backend is not None
        try:
            r = self.backend.read()
        except Exception as e:
            self._stats["errors"] += 1
            self._stats["last_error"] = f"{type(e).__name__}: {e}"
            return None
        self._stats["readings"] += 1
        if self._last_ok_t is not None:
            gap = t - self._last_ok_t
            if self._stats["max_gap_s"] is None or gap > self._stats["max_gap_s"]:
                self._stats["max_gap_s"] = gap
            period = self.backend.poll_period_s
            if period is not None and gap > 2.0 * period:
                self._stats["gaps"] += 1
        self._last_ok_t = t
        self._latest = r
        return r

    def _cut(self, t: float) -> None:
        """Close the open segment at ``t``, charging its time to the current phase."""
        dt = max(0.0, t - self._seg_t)
        name = self._stack[-1] if self._stack else OTHER
        self._tally(name).wall_s += dt
        self._pending.append((name, dt))
        self._seg_t = t

    def _attribute(self, r: dict[str, float]) -> None:
        """Spread the increase since the last good reading over the segments since then, by duration."""
        total_dt = sum(dt for _, dt in self._pending)
        for i, (name, dt) in enumerate(self._pending):
            share = dt / total_dt if total_dt > 0 else float(i == len(self._pending) - 1)
            if share:
                acc = self._tally(name).channel_j
                for ch, v in r.items():
                    acc[ch] = acc.get(ch, 0.0) + share * (v - self._last.get(ch, 0.0))
        self._pending = []
        self._last = dict(r)
        self._good_after_start = True

    def _boundary(self, sync: bool = True, read: bool | None = None) -> None:
        """Close the open segment now; read the backend (``read``: default, its ``read_at_boundaries``)."""
        b = self.backend
        read = (b is not None and b.read_at_boundaries) if read is None else (read and b is not None)
        if sync and b is not None and self.sync is not None:
            self.sync()  # also without a read: durations apportion the joules of sampled sources
        with self._lock:
            t = self.clock()
            self._cut(t)
            if read:
                r = self._read(t)
                if r is not None:
                    self._attribute(r)
            elif b is None:
                self._pending = []

    def _poll(self) -> None:
        with self._lock:
            if self.backend is None:
                return
            if self._accounting:
                self._boundary(sync=False, read=True)
            else:
                self._read(self.clock())

    def _measure_idle(self, seconds: float) -> None:
        """Average power per channel over ``seconds`` of doing nothing, before the run."""
        with self._lock:
            ta = self.clock()
            ra = self._read(ta)
        self.sleep(seconds)
        with self._lock:
            tb = self.clock()
            rb = self._read(tb)
        if ra is None or rb is None or tb <= ta:
            self.note += "; idle baseline not measured (read failed)"
            return
        self._idle = {"wall_s": tb - ta, "channel_w": {ch: (rb[ch] - ra.get(ch, 0.0)) / (tb - ta) for ch in rb}}

    # ------------------------------------------------------------------ context manager
    def __enter__(self) -> "EnergyMeter":
        if self.backend is not None:
            try:
                self.backend.start()
            except Exception as e:
                self.note = f"{self.backend.source} failed to start: {_why(e)}"
                self.backend = None
        if self.backend is not None and self.backend.poll_period_s is not None:
            self._poller = Poller(self._poll, self.backend.poll_period_s)
            self._poller.start()
        if self.backend is not None and self.cfg.idle_baseline_s > 0:
            self._measure_idle(self.cfg.idle_baseline_s)
        with self._lock:
            self._wall0, self._t0 = self.wall_clock(), self.clock()
            self._seg_t = self._t0
            if self.backend is not None:
                r = self._read(self._t0)
                if r is None:
                    self.note += "; first reading failed, the run starts at the last good one before it"
                self._last = dict(self._latest or {})
                self._origin = dict(self._last)
            self._accounting = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._poller is not None:
            self._poller.stop()
        self._boundary(read=True)
        with self._lock:
            self._accounting = False
            t_end = self._seg_t  # the last cut: the phases add up to exactly this window
            self.record = self._build(t_end - self._t0, t_end)

    def _build(self, wall: float, t_end: float) -> dict[str, Any]:
        b = self.backend
        source, channels, channel_j = "unavailable", None, None
        sampling: dict[str, Any] = {"period_s": None, **self._stats, "unmeasured_s": None}
        if self._poller is not None and self._poller.escaped is not None and not sampling["last_error"]:
            sampling["last_error"] = f"poller: {_why(self._poller.escaped)}"
        note = self.note
        if b is not None:
            try:
                b.stop()
            except Exception as e:
                note += f"; {b.source} stop: {_why(e)}"
            sampling["period_s"] = b.poll_period_s
            if self._good_after_start:
                source, channels = b.source, dict(b.channels)
                channel_j = {ch: self._last.get(ch, 0.0) - self._origin.get(ch, 0.0) for ch in channels}
                unmeasured = t_end - self._last_ok_t if self._pending and self._last_ok_t is not None else 0.0
                sampling["unmeasured_s"] = round(max(0.0, unmeasured), 6)
                if b.notes:
                    note += "; " + "; ".join(b.notes)
            else:
                note += f"; {b.source}: no reading succeeded during the run"
        if sampling["max_gap_s"] is not None:
            sampling["max_gap_s"] = round(sampling["max_gap_s"], 6)
        order = [p for p in PHASES if p in self._tallies] + [p for p in self._tallies if p not in PHASES]
        phases = {p: {"wall_s": self._tallies[p].wall_s, "channel_j": self._tallies[p].channel_j,
                      "images": self._tallies[p].images, "steps": self._tallies[p].steps,
                      "entries": self._tallies[p].entries} for p in order}
        rec = build_record(run_id=self.run_id, start=self._wall0, wall_s=wall, source=source, channels=channels,
                           channel_j=channel_j, phases=phases, sampling=sampling, idle=self._idle, note=note)
        rec.update(self.extra)
        return rec


def append_ledger(path, record: dict) -> None:
    """Append an EnergyRecord to the ledger (see :mod:`ssl_nav.energy.ledger`)."""
    from ssl_nav.energy.ledger import append_ledger as _append

    _append(path, record)
