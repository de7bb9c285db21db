"""MapBuilder: which segmenter 'auto' picks, and that each one maps the same ray-cast scene."""

import dataclasses

import numpy as np
import pytest

from ssl_nav.config import MappingConfig
from ssl_nav.errors import ConfigError, FormatError
from ssl_nav.mapping.builder import NO_MASK, MapBuilder, choose_segmenter

from testkit import scenes  # test/ is on sys.path (test/conftest.py)


def test_choose_segmenter():
    assert choose_segmenter("auto", True)[0] == "masks"
    name, why = choose_segmenter("auto", False)
    assert name == "geometric" and "no instance masks" in why
    assert choose_segmenter("geometric", True) == ("geometric", "mapping.segmenter")
    with pytest.raises(ConfigError, match="mapping.segmenter"):
        choose_segmenter("sam", True)


def test_masks_geometric_and_semantic_map_builders(tmp_path):
    frames = [scenes.render(scenes.default_boxes(), T, frame_id=f"f{i}") for i, T in enumerate(scenes.orbit_poses(6))]
    cfg = MappingConfig(geometric_stride=1)
    masks = MapBuilder(cfg, "masks")
    for f in frames:
        assert masks.integrate(f) is None
    assert masks.ids_are_ground_truth and sorted(masks.finish().instances()) == [1, 2, 3]
    no_mask = dataclasses.replace(frames[0], instance_mask=None)
    assert masks.integrate(no_mask) == NO_MASK and masks.summary()["frames_without_objects"] == {NO_MASK: 1}
    # geometric ignores the masks; box 2 (0.8 m tall) is taller than geometric_min_support_extent: raise it
    geo = MapBuilder(dataclasses.replace(cfg, geometric_min_support_extent=0.9), "geometric", why="test")
    for f in frames:
        geo.integrate(f)
    gmap = geo.finish()
    assert not geo.ids_are_ground_truth and len(gmap.instances()) == 3
    assert geo.summary()["segmenter"] == "geometric" and geo.summary()["geometric"]["instances"] == 3
    # an external semantic map: loaded from mapping.semantic_map, frames only validated
    masks.finish().save(tmp_path / "map")
    sem = MapBuilder(dataclasses.replace(cfg, semantic_map=str(tmp_path / "map")), "semantic_map")
    assert sem.integrate(frames[0]) is None and sorted(sem.instance_map().instances()) == [1, 2, 3]
    with pytest.raises(ConfigError, match="mapping.semantic_map"):
        MapBuilder(cfg, "semantic_map")
    with pytest.raises(FormatError, match="not found"):
        MapBuilder(dataclasses.replace(cfg, semantic_map=str(tmp_path / "nope.ply")), "semantic_map")
    assert np.isfinite(gmap.points_and_labels()[0]).all()
