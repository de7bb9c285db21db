"""Where map instances come from (``mapping.segmenter``), behind one interface for the collector and the ROS node.

- ``masks``: the frames' instance masks (a simulator's ground truth, Habitat semantics, or a 2D segmenter on the
  ``instance_mask`` topic; ``mapping.id_mode`` says whether their ids are stable) fused by
  :class:`~ssl_nav.mapping.instance_map.InstanceMap`;
- ``semantic_map``: an external 3D semantic map (a labelled PLY/PCD, ``mapping.semantic_map``); the frames only
  give views;
- ``geometric``: :class:`~ssl_nav.mapping.segment.GeometricSegmenter`, 3D segmentation of the fused depth
  that needs neither masks nor weights;
- ``auto``: ``masks`` when the first usable frame carries an instance mask, else ``geometric``.

:class:`MapBuilder` integrates frames and answers the current :class:`InstanceMap`; its ``reasons`` count the
frames that gave no object evidence and why (no mask, no support surface in view, no depth in range).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ssl_nav.config import MappingConfig
from ssl_nav.errors import ConfigError, FormatError, StoreError
from ssl_nav.frames import Frame
from ssl_nav.mapping.instance_map import InstanceMap
from ssl_nav.mapping.segment import GeometricSegmenter

SEGMENTERS = ("masks", "semantic_map", "geometric")
NO_MASK = "no instance mask"


def choose_segmenter(setting: str, frame_has_mask: bool) -> tuple[str, str]:
    """The segmenter for ``mapping.segmenter`` = ``setting``, and why (for logs and summaries)."""
    if setting in SEGMENTERS:
        return setting, "mapping.segmenter"
    if setting != "auto":
        raise ConfigError(f"mapping.segmenter: unknown segmenter {setting!r} (auto, {', '.join(SEGMENTERS)})")
    if frame_has_mask:
        return "masks", "auto: the frames carry instance masks"
    return "geometric", "auto: the frames carry no instance masks"


def load_semantic_map(cfg: MappingConfig) -> InstanceMap:
    """The external semantic map named by ``mapping.semantic_map``."""
    if not cfg.semantic_map:
        raise ConfigError("mapping.semantic_map: set it to a labelled PLY/PCD (or a saved map directory) to use "
                          "mapping.segmenter: semantic_map")
    p = Path(cfg.semantic_map).expanduser()
    if not p.exists():
        raise FormatError(f"{p}: semantic map not found (mapping.semantic_map)")
    return InstanceMap.load(p, cfg)


class MapBuilder:
    """Integrate frames into the map of one segmenter; ``instance_map()`` is the current map (ids stable)."""

    def __init__(self, cfg: MappingConfig, segmenter: str, imap: InstanceMap | None = None, why: str = ""):
        if segmenter not in SEGMENTERS:
            raise ConfigError(f"mapping.segmenter: unknown segmenter {segmenter!r} ({', '.join(SEGMENTERS)})")
        self.cfg = cfg
        self.name = segmenter
        self.why = why or "mapping.segmenter"
        self.reasons: Counter = Counter()
        self.geometric: GeometricSegmenter | None = None
        self._imap: InstanceMap | None = None
        if segmenter == "masks":
            self._imap = imap if imap is not None else InstanceMap(cfg)
        elif segmenter == "semantic_map":
            self._imap = imap if imap is not None else load_semantic_map(cfg)
        else:
            if imap is not None and imap.instances():  # its ids would restart at 1 and merge unrelated objects
                raise StoreError("the geometric segmenter builds its map from one recording, so it cannot continue "
                                 f"a map of {len(imap.instances())} instances (collect --append); collect this "
                                 "recording into a new --store")
            self.geometric = GeometricSegmenter(cfg)

    @property
    def ids_are_ground_truth(self) -> bool:
        """Whether instance ids are the mask ids themselves (simulator / Habitat ids with ``id_mode: stable``)."""
        return self.name == "masks" and self.cfg.id_mode == "stable"

    def integrate(self, frame: Frame) -> str | None:
        """Fuse one frame; returns why it gave no object evidence (``None`` when it may have).

        Raises :class:`~ssl_nav.errors.FrameError` for an invalid frame (the caller counts and drops it).
        """
        if self.geometric is not None:
            reason = self.geometric.integrate(frame).reason
        elif self.name == "masks":
            frame.validate()
            reason = NO_MASK if frame.instance_mask is None else None
            assert self._imap is not None
            self._imap.integrate(frame)
        else:
            frame.validate()
            reason = None
        if reason is not None:
            self.reasons[reason] += 1
        return reason

    def instance_map(self) -> InstanceMap:
        """The current map (the geometric segmenter re-segments every ``geometric_resegment_every`` frames)."""
        if self.geometric is not None:
            return self.geometric.instance_map()
        assert self._imap is not None
        return self._imap

    def finish(self) -> InstanceMap:
        """The final map after the last frame (the geometric segmenter segments once more)."""
        if self.geometric is not None:
            return self.geometric.segment()
        assert self._imap is not None
        return self._imap

    def summary(self) -> dict:
        """Which segmenter, why, and its own counts."""
        out = {"segmenter": self.name, "segmenter_reason": self.why, "frames_without_objects": dict(self.reasons)}
        if self.geometric is not None:
            out["geometric"] = {k: v for k, v in self.geometric.summary().items()
                                if k not in ("segmenter", "frames_without_objects")}
        return out
