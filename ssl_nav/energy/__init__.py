"""Energy metering of fine-tunes (edge-energy study, Famá et al., arXiv 2510.08374).

:class:`ssl_nav.energy.meter.EnergyMeter` wraps a block of work and produces an EnergyRecord (DESIGN.md);
one module per backend: ``nvml`` (NVIDIA total-energy counter), ``jetson`` (INA3221 rails), ``rapl``
(Intel/AMD powercap), ``zeus`` (when installed). Nothing measurable gives ``source: "unavailable"`` and null
joules, never 0. :func:`ssl_nav.energy.ledger.append_ledger` appends a record to ``energy.jsonl``.
"""
