"""Energy metering of fine-tunes, per phase (edge-energy study, Famá et al., arXiv 2510.08374).

:class:`ssl_nav.energy.meter.EnergyMeter` measures a block of work in named phases (``data``, ``train``,
``monitor``, ``checkpoint``, and ``other`` for the rest) and produces an EnergyRecord
(:mod:`ssl_nav.energy.record`, schema in ``docs/energy.md``). One module per source: ``jetson`` (INA3221 rails;
the board input rail is the total), ``nvml`` (GPU energy counter), ``rapl`` (CPU packages and DRAM),
``combined`` (NVML + RAPL on a PC), ``zeus`` (when installed). Nothing measurable gives ``source:
"unavailable"`` and null joules, never 0. :func:`ssl_nav.energy.ledger.append_ledger` appends a record to
``energy.jsonl``; :mod:`ssl_nav.energy.report` prints one.
"""
