"""The EnergyRecord: one JSON object per metered run (``RUN/energy.json``, one ledger line, the ROS ``~/energy``
message). The full schema, field by field, is in ``docs/energy.md``; in short::

    {"format": "ssl_nav.energy/2", "run_id", "start", "end", "wall_s",
     "source": "jetson-ina3221" | "nvml+rapl" | "nvml" | "rapl" | "zeus" | ... | "unavailable",
     "total_covers": "board (VDD_IN)" | "gpu+cpu+dram" | "gpu" | "cpu+dram" | ... | null,
     "joules": {"gpu", "cpu", "dram", "soc", "cpu_gpu", "board", "total"}, "avg_w",
     "images", "steps", "j_per_1k_images",
     "phases": {name: {"wall_s", "joules": {...as above}, "avg_w", "images", "steps", "j_per_1k_images",
                       "entries"}},
     "channels": {name: {"domain", "joules"}} | null,
     "sampling": {"period_s", "readings", "errors", "last_error", "max_gap_s", "gaps", "unmeasured_s"},
     "idle": null | {"wall_s", "avg_w": {...domains, "total"}}, "total_above_idle_j" (with idle),
     "note", ...caller fields (run_dir, device, backbone, status, ...)}

Rules: a domain no channel measures is ``null``; with no source every joule, watt and J/1k figure is ``null``
(never 0) and ``source`` is ``"unavailable"``. ``total`` is the board input rail when there is one, else the
sum of the measured domains; ``total_covers`` names it. The phases partition the metered window: their
``wall_s`` and joules add up to the record's.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ssl_nav.energy.base import DOMAINS

FORMAT = "ssl_nav.energy/2"
UNAVAILABLE = "unavailable"
#: the phases the trainer uses, in report order; ``other`` takes the time outside every phase
PHASES: tuple[str, ...] = ("data", "train", "monitor", "checkpoint", "other")
#: domains a ``total`` without a board rail adds up, in ``total_covers`` order
SUMMED: tuple[str, ...] = ("gpu", "cpu", "cpu_gpu", "soc", "dram")


def iso_utc(t: float) -> str:
    """ISO 8601 UTC time, milliseconds, ``Z`` suffix."""
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def total_covers(channels: dict[str, str | None] | None) -> str | None:
    """What ``total`` measures for these channels: ``"board (<rail>)"``, the summed domains joined by ``+``,
    or ``None`` when nothing is measured."""
    if not channels:
        return None
    boards = [c for c, d in channels.items() if d == "board"]
    if boards:
        return f"board ({'+'.join(boards)})"
    present = [d for d in SUMMED if d in channels.values()]
    return "+".join(present) if present else None


def domain_joules(channels: dict[str, str | None] | None, channel_j: dict[str, float] | None) -> dict:
    """``{domain: J | None, ..., "total": J | None}`` from per-channel joules (see :func:`total_covers`)."""
    out: dict[str, float | None] = {d: None for d in DOMAINS}
    if not channels or channel_j is None:
        return {**out, "total": None}
    for ch, d in channels.items():
        if d is not None:
            out[d] = (out[d] or 0.0) + float(channel_j.get(ch, 0.0))
    if out["board"] is not None:
        total = out["board"]
    else:
        parts = [out[d] for d in SUMMED if out[d] is not None]
        total = sum(parts) if parts else None
    return {**{d: _r(v) for d, v in out.items()}, "total": _r(total)}


def _r(x: float | None, nd: int = 6) -> float | None:
    return None if x is None else round(float(x), nd)


def _rate(j: float | None, wall_s: float) -> float | None:
    return None if j is None or wall_s <= 0 else _r(j / wall_s)


def _per_1k(j: float | None, images: int) -> float | None:
    return None if j is None or images <= 0 else _r(1000.0 * j / images)


def _above(j: float | None, idle_w: float | None, wall_s: float) -> float | None:
    return None if j is None or idle_w is None else _r(j - idle_w * wall_s)


def phase_entry(channels: dict[str, str | None] | None, channel_j: dict[str, float] | None, wall_s: float,
                images: int, steps: int, entries: int, idle_total_w: float | None = None) -> dict:
    """One entry of ``phases``."""
    joules = domain_joules(channels, channel_j)
    e = {"wall_s": _r(wall_s), "joules": joules, "avg_w": _rate(joules["total"], wall_s), "images": int(images),
         "steps": int(steps), "j_per_1k_images": _per_1k(joules["total"], images), "entries": int(entries)}
    if idle_total_w is not None:
        e["total_above_idle_j"] = _above(joules["total"], idle_total_w, wall_s)
    return e


def build_record(*, run_id: str, start: float, wall_s: float, source: str, channels: dict[str, str | None] | None,
                 channel_j: dict[str, float] | None, phases: dict[str, dict], sampling: dict,
                 idle: dict | None, note: str) -> dict[str, Any]:
    """The EnergyRecord of a run. ``start`` is the wall-clock start (epoch s); ``phases`` maps a name to
    ``{"wall_s", "channel_j", "images", "steps", "entries"}``; ``idle`` is ``{"wall_s", "channel_w"}`` or None.
    ``channels``/``channel_j`` are None when nothing was measured (``source`` is then ``"unavailable"``)."""
    measured = channels is not None and channel_j is not None and source != UNAVAILABLE
    if not measured:
        channels = channel_j = None
        source = UNAVAILABLE
    joules = domain_joules(channels, channel_j)
    idle_w = None
    idle_out = None
    if idle is not None and measured:
        w = domain_joules(channels, idle["channel_w"])  # same arithmetic on watts
        idle_out = {"wall_s": _r(idle["wall_s"]), "avg_w": w}
        idle_w = w["total"]
    images = sum(int(p["images"]) for p in phases.values())
    steps = sum(int(p["steps"]) for p in phases.values())
    rec: dict[str, Any] = {
        "format": FORMAT, "run_id": run_id, "start": iso_utc(start), "end": iso_utc(start + wall_s),
        "wall_s": _r(wall_s), "source": source, "total_covers": total_covers(channels) if measured else None,
        "joules": joules, "avg_w": _rate(joules["total"], wall_s),
        "images": images, "steps": steps, "j_per_1k_images": _per_1k(joules["total"], images),
        "phases": {name: phase_entry(channels, p["channel_j"] if measured else None, p["wall_s"], p["images"],
                                     p["steps"], p["entries"], idle_w) for name, p in phases.items()},
        "channels": ({ch: {"domain": d, "joules": _r(channel_j.get(ch, 0.0))} for ch, d in channels.items()}
                     if measured else None),
        "sampling": sampling, "idle": idle_out,
    }
    if idle_out is not None:
        rec["total_above_idle_j"] = _above(joules["total"], idle_w, wall_s)
    rec["note"] = note
    return rec


def is_unavailable(record: dict) -> bool:
    """True when the record measured nothing (every joule figure null)."""
    return record.get("source") == UNAVAILABLE or (record.get("joules") or {}).get("total") is None
