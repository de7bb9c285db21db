"""Matching map instances to scene objects by 3D overlap, and translating simulator ids to map ids."""

import json

import numpy as np
import pytest

from ssl_nav.config import MappingConfig
from ssl_nav.errors import FormatError
from ssl_nav.mapping import InstanceMap
from ssl_nav.mapping.gt_match import (gt_to_map_ids, has_gt_annotation, match_instances_to_objects,
                                      match_points_to_objects, read_scene_objects)

OBJECTS = [{"instance_id": "7", "aabb": [[0, 0, 0], [1, 1, 1]]},
           {"instance_id": "8", "aabb": [[0.8, 0.8, 0], [1.2, 1.2, 0.5]]},
           {"instance_id": "9", "aabb": [[5, 5, 0], [6, 6, 1]]}]


def test_each_instance_gets_the_object_holding_most_of_its_points():
    rng = np.random.default_rng(0)
    pts = {1: rng.uniform(0.1, 0.7, (50, 3)),           # inside 7 only
           2: rng.uniform([0.85, 0.85, 0.1], [0.95, 0.95, 0.4], (50, 3)),  # inside 7 and 8: the smaller box wins
           3: rng.uniform(2.0, 3.0, (50, 3)),           # in no box
           4: np.concatenate([rng.uniform([5.1, 5.1, 0.1], [5.9, 5.9, 0.9], (20, 3)), rng.uniform(2.0, 3.0, (30, 3))])}  # 40 % in 9
    got = match_points_to_objects(pts, OBJECTS, margin=0.0)
    assert got == {1: "7", 2: "8", 3: None, 4: None}
    assert match_points_to_objects({4: pts[4]}, OBJECTS, margin=0.0, min_fraction=0.3) == {4: "9"}


def test_instance_map_matching_and_translation_through_the_store_json():
    m = InstanceMap.from_points(np.concatenate([np.full((40, 3), 0.5), np.tile([5.5, 5.5, 0.5], (35, 1)), np.full((31, 3), 0.4)]),
                                np.array([3] * 40 + [1] * 35 + [2] * 31), MappingConfig())
    gt = match_instances_to_objects(m, OBJECTS)
    assert gt == {1: "9", 2: "7", 3: "7"}
    for iid, g in gt.items():
        m.set_gt_instance_id(iid, g)
    inst = m.to_store_instances()
    assert inst["1"]["gt_instance_id"] == "9" and has_gt_annotation(inst)
    assert gt_to_map_ids(inst) == {"9": "1", "7": "3"}  # two instances are object 7: the larger one
    assert not has_gt_annotation(InstanceMap.from_points(np.zeros((40, 3)), np.ones(40)).to_store_instances())


def test_read_scene_objects(tmp_path):
    assert read_scene_objects(tmp_path) == []
    (tmp_path / "scene.json").write_text(json.dumps({"objects": [{"instance_id": 3, "category": "mug",
                                                                  "aabb": [[0, 0, 0], [1, 1, 1]]}]}))
    assert read_scene_objects(tmp_path) == [{"instance_id": "3", "category": "mug",
                                             "aabb": [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]}]
    (tmp_path / "scene.json").write_text(json.dumps({"objects": [{"instance_id": 3, "aabb": [[0, 0], [1, 1]]}]}))
    with pytest.raises(FormatError, match="scene.json"):
        read_scene_objects(tmp_path)
