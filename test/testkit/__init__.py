"""Helpers shared by the tests (and the benchmarks that need synthetic inputs); not tests themselves.

- :mod:`testkit.scenes`: a tiny numpy ray caster for scenes of known geometry (boxes on a floor).
- :mod:`testkit.stores`: tiny ViewStores in the on-disk format, and a configuration for seconds-long fine-tunes.
- :mod:`testkit.training`: SGD steps of the trainer's loss on one fixed batch (does a loss learn?).

``test/conftest.py`` puts ``test/`` on ``sys.path``, so tests ``from testkit import scenes``; a script outside
pytest (a benchmark, a ``torchrun`` worker) inserts ``test/`` itself.
"""
