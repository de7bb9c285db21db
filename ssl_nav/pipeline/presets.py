"""The demo's presets: :data:`DEMO_OVERRIDES`, :data:`QUICK_OVERRIDES` (``--quick``) and :func:`demo_config`."""

from __future__ import annotations

from typing import Any

from ssl_nav.config import PipelineConfig, apply_overrides

#: the demo's scene size and training budget (about 90 s on 2 idle CPU cores); applied when no config file is given.
#: The development benchmark: half the goal objects are printed product packages, twins include near-identical
#: products, and the open set is mostly look-alikes of goal objects that are not in the map.
DEMO_OVERRIDES: dict[str, Any] = {
    "sim.width": 480, "sim.height": 360,
    "sim.n_objects_min": 14, "sim.n_objects_max": 14, "sim.n_twins": 3, "sim.n_distractors": 3,
    "sim.n_open_set": 2, "sim.n_lookalikes": 4, "sim.n_products": 4,
    "sim.n_explore_positions": 10, "sim.n_turn_steps": 8,
    "sim.n_user_photos": 3, "sim.n_queries_per_instance": 3, "sim.n_calibration_queries_per_instance": 1,
    "views.crop_size": 160, "views.max_views_per_instance": 16,
    "learning.image_size": 128, "learning.epochs": 30, "learning.batch_size": 32,
    "learning.trainable": "last",
    "retrieval.image_size": 128,
}
#: ``--quick``: on top of the demo preset (about 20 s on 2 idle CPU cores)
QUICK_OVERRIDES: dict[str, Any] = {
    "sim.width": 400, "sim.height": 300,
    "sim.n_objects_min": 10, "sim.n_objects_max": 10, "sim.n_twins": 2, "sim.n_distractors": 2,
    "sim.n_open_set": 1, "sim.n_lookalikes": 3, "sim.n_products": 3,
    "sim.n_explore_positions": 8, "sim.n_turn_steps": 8,
    "sim.n_queries_per_instance": 2,
    "views.crop_size": 128, "views.max_views_per_instance": 12,
    "learning.image_size": 112, "learning.epochs": 20,
    "retrieval.image_size": 112,
}

#: the stages of :func:`run_demo`, as the progress lines number them
STAGES = ("load_scene", "simulate", "collect", "finetune", "index", "evaluate", "report")


def demo_config(cfg: PipelineConfig | None = None, quick: bool = False, seed: int | None = None,
                segmenter: str | None = None) -> PipelineConfig:
    """The demo's configuration: ``cfg`` as given, or the defaults with :data:`DEMO_OVERRIDES`; then ``--quick``,
    ``--seed`` and ``--segmenter`` (``mapping.segmenter``)."""
    if cfg is None:
        cfg = apply_overrides(PipelineConfig(), DEMO_OVERRIDES, "demo preset")
    if quick:
        cfg = apply_overrides(cfg, QUICK_OVERRIDES, "quick preset")
    if seed is not None:
        cfg = apply_overrides(cfg, {"sim.seed": seed, "learning.seed": seed}, "--seed")
    if segmenter is not None:
        cfg = apply_overrides(cfg, {"mapping.segmenter": segmenter}, "--segmenter")
    return cfg
