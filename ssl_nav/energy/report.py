"""Text summaries of an EnergyRecord for the CLI and the demo. An unmeasured figure prints as ``n/a``, never
as 0; a record without phases (format 1, before ``ssl_nav.energy/2``) prints its totals only."""

from __future__ import annotations

from ssl_nav.energy.base import DOMAINS
from ssl_nav.energy.record import is_unavailable

NA = "n/a"


def _num(x: float | None, unit: str = "", spec: str = ".1f") -> str:
    return NA if x is None else f"{x:{spec}}{unit}"


def summary_line(rec: dict | None) -> str:
    """One line: total, what it covers, the source, mean power, J per 1k images, wall time."""
    if not rec:
        return "energy: not recorded"
    wall = _num(rec.get("wall_s"), " s")
    work = f"{rec.get('images', 0)} images, {rec.get('steps', 0)} steps"
    if is_unavailable(rec):
        return (f"energy: not measured (source {rec.get('source', '?')}: {rec.get('note') or 'no sensor'}); "
                f"joules {NA}, wall {wall}, {work}")
    j = rec["joules"]
    covers = rec.get("total_covers") or "?"
    domains = ", ".join(f"{d} {_num(j.get(d), ' J')}" for d in DOMAINS if j.get(d) is not None)
    return (f"energy: {_num(j['total'], ' J')} total ({covers}; source {rec.get('source')}), "
            f"avg {_num(rec.get('avg_w'), ' W')}, {_num(rec.get('j_per_1k_images'), ' J')} per 1k images, "
            f"wall {wall}, {work}" + (f" [{domains}]" if domains else ""))


def phase_table(rec: dict | None) -> str:
    """The per-phase table (empty string for records without phases)."""
    phases = (rec or {}).get("phases") or {}
    if not phases:
        return ""
    head = f"{'phase':<12}{'wall s':>9}{'J':>11}{'W':>9}{'images':>9}{'steps':>7}{'J/1k img':>10}"
    rows = [head]
    for name, p in phases.items():
        rows.append(f"{name:<12}{_num(p.get('wall_s'), '', '.2f'):>9}{_num((p.get('joules') or {}).get('total')):>11}"
                    f"{_num(p.get('avg_w')):>9}{p.get('images', 0):>9}{p.get('steps', 0):>7}"
                    f"{_num(p.get('j_per_1k_images')):>10}")
    s = rec.get("sampling") or {}
    if s.get("errors") or s.get("gaps") or s.get("unmeasured_s"):
        rows.append(f"sampling: {s.get('errors', 0)} read errors (last: {s.get('last_error')}), "
                    f"{s.get('gaps', 0)} gaps over 2x the {s.get('period_s')} s period, longest "
                    f"{_num(s.get('max_gap_s'), ' s', '.3f')}, "
                    f"unmeasured tail {_num(s.get('unmeasured_s'), ' s', '.3f')}")
    return "\n".join(rows)


def format_record(rec: dict | None) -> str:
    """:func:`summary_line` and, when the record has phases, :func:`phase_table`."""
    table = phase_table(rec)
    return summary_line(rec) + ("\n" + table if table else "")
