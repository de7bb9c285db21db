"""The InstanceImageNav episode reader on small files written in habitat-lab's format."""

from __future__ import annotations

import copy
import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest

from ssl_nav.errors import FormatError
from ssl_nav.geometry import camera_pose
from ssl_nav.sim.episodes import (
    bind_goal_instances, episodes_path, goal_key, group_by_scene, read_episode_file, read_episodes,
    resolve_scene_path, scene_name, user_photo_cameras,
)
from ssl_nav.sim.habitat_spec import SemanticInstanceMap, SemanticObjectRecord

SCENE = "hm3d_v0.2/val/00800-TEEsavR23oF/TEEsavR23oF.basis.glb"
S45 = math.sqrt(0.5)


def _goal(object_id: str, category: str) -> dict:
    """One InstanceImageGoal as habitat-lab serialises it (ObjectGoal fields + image_goals)."""
    return {
        "position": [1.0, 0.4, -3.0], "radius": None, "object_id": object_id, "object_name": f"{category}_{object_id}",
        "object_name_id": None, "object_category": category, "room_id": None, "room_name": None,
        "view_points": [
            {"agent_state": {"position": [1.0, 0.1, -2.0], "rotation": [0, 0, 0, 1]}, "iou": 0.4},
            {"agent_state": {"position": [2.0, 0.1, -3.0], "rotation": [0, S45, 0, S45]}, "iou": 0.2},
        ],
        "image_goals": [
            {"position": [1.0, 1.31, -1.5], "rotation": [0, 0, 0, 1], "hfov": 90, "image_dimensions": [512, 512],
             "frame_coverage": 0.31, "object_coverage": 0.95},
            {"position": [0.0, 1.0, -3.0], "rotation": [0.0, S45, 0.0, S45], "hfov": 42.5,
             "image_dimensions": [480, 640], "frame_coverage": 0.12, "object_coverage": 0.8},
        ],
        "object_surface_area": 1.7,
    }


def _episode(eid: str, object_id: str, image_id: int, category: str, scene: str = SCENE) -> dict:
    return {
        "episode_id": eid, "scene_id": scene,
        "scene_dataset_config": "./data/scene_datasets/hm3d_v0.2/hm3d_annotated_basis.scene_dataset_config.json",
        "additional_obj_config_paths": [], "start_position": [0.5, 0.1, 0.5], "start_rotation": [0, 0, 0, 1],
        "info": {"geodesic_distance": 4.2}, "goals": [], "start_room": None, "shortest_paths": None,
        "goal_object_id": object_id, "goal_image_id": image_id, "object_category": category,
    }


def _dataset() -> dict:
    key = goal_key(SCENE, "54")
    return {"episodes": [_episode("0", "54", 1, "chair"), _episode("1", "54", 0, "chair"),
                         _episode("2", "7", 0, "bed")],
            "goals": {key: _goal("54", "chair"), goal_key(SCENE, "7"): _goal("7", "bed")}}


def _write(path: Path, obj: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        json.dump(obj, fh)
    return path


def test_goal_key_and_scene_names_follow_habitat_lab():
    assert goal_key(SCENE, "54") == "TEEsavR23oF_54"
    assert goal_key("a/b/scene.glb", 3) == "scene_3"
    assert scene_name(SCENE) == "TEEsavR23oF"
    assert resolve_scene_path("data/scene_datasets/hm3d/x.glb", "/d") == "/d/hm3d/x.glb"
    assert resolve_scene_path("hm3d/x.glb", "/d") == "/d/hm3d/x.glb"
    assert resolve_scene_path("/abs/x.glb", "/d") == "/abs/x.glb"
    assert str(episodes_path("data/{split}/{split}.json.gz", "val")) == "data/val/val.json.gz"
    with pytest.raises(FormatError, match="split"):
        episodes_path("data/{split}/{split}.json.gz", None)


def test_reads_episode_fields_and_goal_camera_in_our_conventions(tmp_path):
    f = _write(tmp_path / "val.json.gz", _dataset())
    eps = read_episodes(f, scenes_dir="/data/scene_datasets")
    assert [e.episode_id for e in eps] == ["0", "1", "2"]
    e = eps[0]
    assert e.scene_id == SCENE and e.category == "chair"
    assert e.goal_instance_id is None and e.extra["goal_resolved"] is False
    assert e.extra["goal_object_id"] == "54" and e.extra["goal_image_id"] == 1
    assert e.extra["goal_key"] == "TEEsavR23oF_54"
    # image_goals[1]: hfov 42.5, [height, width] = [480, 640], coverages
    assert (e.hfov_deg, e.width, e.height) == (42.5, 640, 480)
    assert e.extra["frame_coverage"] == 0.12 and e.extra["object_coverage"] == 0.8
    # camera at Habitat (0, 1, -3) turned +90 deg about up: ours (0, 3, 1), looking along -x
    assert np.allclose(e.goal_T_world_cam, camera_pose(np.array([0.0, 3.0, 1.0]), math.pi))
    # start: Habitat floor point (0.5, 0.1, 0.5), identity: ours (0.5, -0.5, 0.1 + 1.31), facing +y
    assert np.allclose(e.start_T_world_cam, camera_pose(np.array([0.5, -0.5, 1.41]), math.pi / 2))
    # goal object centre and view points in z-up
    assert np.allclose(e.extra["goal_position"], [1.0, 3.0, 0.4])
    assert np.allclose(e.extra["view_points"], [[1.0, 2.0, 0.1], [2.0, 3.0, 0.1]])
    assert e.extra["scene_path"] == "/data/scene_datasets/" + SCENE
    assert e.extra["scene_dataset_config"].endswith("hm3d_annotated_basis.scene_dataset_config.json")
    assert (eps[1].width, eps[1].height, eps[1].hfov_deg) == (512, 512, 90.0)
    assert eps[2].category == "bed" and eps[2].extra["goal_object_id"] == "7"


def test_plain_json_and_goals_embedded_in_the_episode(tmp_path):
    data = _dataset()
    data["episodes"][2]["goals"] = [data["goals"].pop(goal_key(SCENE, "7"))]
    f = tmp_path / "eps.json"
    f.write_text(json.dumps(data))
    eps, _ = read_episode_file(f)
    assert eps[2].extra["goal_object_id"] == "7" and eps[2].width == 512


def test_goals_by_category_layout(tmp_path):
    data = _dataset()
    goals = data.pop("goals")
    data["goals_by_category"] = {"TEEsavR23oF.basis.glb_chair": [goals[goal_key(SCENE, "54")]],
                                 "TEEsavR23oF.basis.glb_bed": [goals[goal_key(SCENE, "7")]]}
    eps = read_episodes(_write(tmp_path / "x.json.gz", data))
    assert [e.extra["goal_object_id"] for e in eps] == ["54", "54", "7"]
    assert eps[0].hfov_deg == 42.5


def test_split_file_with_per_scene_content_files(tmp_path):
    split = tmp_path / "instance_imagenav" / "hm3d" / "v2" / "val"
    _write(split / "val.json.gz", {"episodes": [], "goals": {}})
    other_scene = "hm3d_v0.2/val/00801-HaxA7YrQdEC/HaxA7YrQdEC.basis.glb"
    a = _dataset()
    b = {"episodes": [_episode("5", "3", 0, "tv", scene=other_scene)],
         "goals": {goal_key(other_scene, "3"): _goal("3", "tv")}}
    _write(split / "content" / "TEEsavR23oF.json.gz", a)
    _write(split / "content" / "HaxA7YrQdEC.json.gz", b)
    pattern = str(tmp_path / "instance_imagenav" / "hm3d" / "v2" / "{split}" / "{split}.json.gz")
    eps = read_episodes(pattern, split="val")
    # content files in sorted scene order, each file's episodes in file order
    assert [(scene_name(e.scene_id), e.episode_id) for e in eps] == [
        ("HaxA7YrQdEC", "5"), ("TEEsavR23oF", "0"), ("TEEsavR23oF", "1"), ("TEEsavR23oF", "2")]
    assert list(group_by_scene(eps)) == [other_scene, SCENE]
    only = read_episodes(pattern, split="val", scenes=["TEEsavR23oF"])
    assert {scene_name(e.scene_id) for e in only} == {"TEEsavR23oF"} and len(only) == 3
    # the split directory itself works too
    assert len(read_episodes(split)) == 4


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["episodes"][0].pop("goal_image_id"), r"episodes\[0\]: missing field 'goal_image_id'"),
    (lambda d: d["episodes"][1].__setitem__("goal_image_id", 5), r"episodes\[1\]: field 'goal_image_id' = 5"),
    (lambda d: d["episodes"][2].__setitem__("goal_object_id", "99"), r"episodes\[2\]: no goal 'TEEsavR23oF_99'"),
    (lambda d: d["episodes"][0].__setitem__("start_rotation", [0, 0, 1]), r"episodes\[0\]: field 'start_rotation'"),
    (lambda d: d["goals"]["TEEsavR23oF_54"]["image_goals"][1].__setitem__("rotation", [0, 0, 0, 0]),
     r"image_goals\[1\]: field 'rotation'"),
    (lambda d: d["goals"]["TEEsavR23oF_54"]["image_goals"][1].__setitem__("image_dimensions", [480]),
     r"image_goals\[1\]: field 'image_dimensions'"),
    (lambda d: d["goals"]["TEEsavR23oF_54"]["image_goals"][1].__setitem__("hfov", "wide"),
     r"image_goals\[1\]: field 'hfov'"),
    (lambda d: d["goals"]["TEEsavR23oF_54"].__setitem__("image_goals", []), r"'image_goals' must be a non-empty"),
    (lambda d: d.pop("episodes"), r"missing field 'episodes'"),
])
def test_malformed_files_name_file_and_field(tmp_path, mutate, message):
    data = copy.deepcopy(_dataset())
    mutate(data)
    f = _write(tmp_path / "bad.json.gz", data)
    with pytest.raises(FormatError, match=message) as err:
        read_episodes(f)
    assert "bad.json.gz" in str(err.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(FormatError, match="not found"):
        read_episodes(tmp_path / "missing.json.gz")
    broken = tmp_path / "broken.json.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(FormatError, match="broken.json.gz: cannot read"):
        read_episodes(broken)
    bad_json = tmp_path / "badjson.json.gz"
    with gzip.open(bad_json, "wt") as fh:
        fh.write("{\"episodes\": [")
    with pytest.raises(FormatError, match="badjson.json.gz: malformed JSON"):
        read_episodes(bad_json)
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(FormatError, match="not an episode file"):
        read_episodes(tmp_path / "emptydir")


def test_bind_goal_instances_with_the_scene_semantic_map(tmp_path):
    eps = read_episodes(_write(tmp_path / "v.json.gz", _dataset()))
    box = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    m = SemanticInstanceMap([SemanticObjectRecord("chair_54", 54, "chair", *box),
                             SemanticObjectRecord("wall_2", 2, "wall", *box)], ignore_categories={"wall"})
    bound = bind_goal_instances(eps, m.instance_for_goal_object)
    assert [e.goal_instance_id for e in bound] == [1, 1, None]  # object 7 is not in this scene's instances
    assert [e.extra["goal_resolved"] for e in bound] == [True, True, False]
    assert eps[0].goal_instance_id is None  # the originals are not changed


def test_user_photo_cameras_are_the_goals_other_image_goals_never_a_query(tmp_path):
    eps = read_episodes(_write(tmp_path / "v.json.gz", _dataset()))
    assert len(eps[0].extra["image_goals"]) == 2
    assert np.allclose(eps[0].extra["image_goals"][1]["T_world_cam"], eps[0].goal_T_world_cam)
    box = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    m = SemanticInstanceMap([SemanticObjectRecord("chair_54", 54, "chair", *box),
                             SemanticObjectRecord("bed_7", 7, "bed", *box)], ignore_categories=())
    bound = bind_goal_instances(eps, m.instance_for_goal_object)
    cams = user_photo_cameras(bound, n_per_instance=5)
    # chair 54 (instance 2): both of its image goals are queries (episodes 0 and 1) -> no photo
    # bed 7 (instance 1): image goal 0 is the query, image goal 1 becomes the photo
    assert list(cams) == [1]
    assert len(cams[1]) == 1 and cams[1][0]["hfov_deg"] == 42.5
    assert (cams[1][0]["width"], cams[1][0]["height"]) == (640, 480)
    assert user_photo_cameras(bound, n_per_instance=0) == {}
    assert user_photo_cameras(eps, n_per_instance=5) == {}  # unresolved goals get no photos


@pytest.mark.parametrize("data, message", [
    ([1, 2], "top level must be a JSON object"),
    ({"episodes": {"0": {}}}, "field 'episodes' must be a list"),
    ({"episodes": [], "goals": ["x"]}, "field 'goals' must map goal keys to goals"),
    ({"episodes": [], "goals": {"k": 3}}, r"goals\['k'\] must be a JSON object"),
    ({"episodes": [], "goals_by_category": {"k": [3]}}, r"goals_by_category\['k'\]\[0\] must be a JSON object"),
    ({"episodes": ["x"]}, r"episodes\[0\]: expected a JSON object"),
])
def test_malformed_top_level_structures(tmp_path, data, message):
    f = tmp_path / "bad.json.gz"
    with gzip.open(f, "wt") as fh:
        json.dump(data, fh)
    with pytest.raises(FormatError, match=message):
        read_episodes(f)
