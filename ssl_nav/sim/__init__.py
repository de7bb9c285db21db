"""Simulators: the :class:`~ssl_nav.sim.base.Simulator` protocol, the embedded pybullet backend
(:mod:`ssl_nav.sim.pybullet_backend`, procedural scenes in :mod:`ssl_nav.sim.scenes`, LQ degradation in
:mod:`ssl_nav.sim.degrade`, exploration in :mod:`ssl_nav.sim.explore`, ``ssl-nav simulate`` in
:mod:`ssl_nav.sim.simulate`) and the Habitat backend.

Importing this package imports neither pybullet nor habitat_sim; the backends import them when built.
"""
