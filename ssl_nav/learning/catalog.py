"""The objectives' names, without importing torch: for ``--help`` texts, reports and the docs.

:mod:`ssl_nav.learning.objectives` holds the objectives themselves; their ``title`` comes from here, so a help
text that states the default objective reads it from the configuration (``LearningConfig().objective``).
"""

from __future__ import annotations

from ssl_nav.config import LearningConfig

#: ``learning.objective`` -> the method's name
TITLES: dict[str, str] = {
    "simsiam": "SimSiam",
    "moco": "MoCo v2",
    "moco_masked": "MoCo v2 + instance-id masking (uses map ids)",
    "simclr": "SimCLR",
    "barlow": "Barlow Twins",
    "none": "instance classifier only",
}


def describe(lc: LearningConfig | None = None) -> str:
    """The objective of ``lc`` (the defaults when None) in words: 'SimSiam + instance CE, CrossIA pairing'."""
    lc = lc or LearningConfig()
    title = TITLES[lc.objective]
    if lc.objective == "none":
        text = "instance classifier (CE) only"
    else:
        text = f"{title} + instance CE" if lc.ce_weight > 0 else f"{title} only"
    return text + (", CrossIA pairing" if lc.crossia else ", SimView pairing")
