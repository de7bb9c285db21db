"""Read habitat-lab InstanceImageNav episode files (``.json.gz``) as our :class:`~ssl_nav.sim.base.Episode`.

The format is habitat-lab's ``InstanceImageNav-v1`` dataset
(``habitat/datasets/image_nav/instance_image_nav_dataset.py``; Krantz et al., ICCV 2023). A file is a gzip'd
JSON object::

    {"episodes": [{"episode_id": str|int, "scene_id": "hm3d_v0.2/val/<scene>/<name>.basis.glb",
                   "scene_dataset_config": str (optional), "start_position": [x, y, z],
                   "start_rotation": [x, y, z, w], "goal_object_id": str|int, "goal_image_id": int,
                   "object_category": str|null, "goals": [] , "info": {...}}, ...],
     "goals": {"<scene basename>_<goal_object_id>": {
                   "position": [x, y, z], "object_id": str|int, "object_category": str, "radius": float|null,
                   "view_points": [{"agent_state": {"position": [x, y, z], "rotation": [x, y, z, w]},
                                    "iou": float}, ...],
                   "image_goals": [{"position": [x, y, z], "rotation": [x, y, z, w], "hfov": deg,
                                    "image_dimensions": [height, width], "frame_coverage": float,
                                    "object_coverage": float}, ...]}},
     "content_scenes_path": "{data_path}/content/{scene}.json.gz" (optional)}

all in Habitat's world (y up). The goal key is the scene file's basename without ``.glb``/``.basis``, an
underscore and the ``goal_object_id`` (``InstanceImageGoalNavEpisode.goal_key``). Goals may also sit in the
episode's own ``goals`` list, or under ``goals_by_category`` (the ObjectNav layout), both of which this reader
accepts. Like habitat-lab's ``PointNavDatasetV1``, a split file whose directory has a ``content/`` folder
also loads the per-scene files there (``{split}/content/{scene}.json.gz``); the top-level file then often
holds no episodes.

Each episode becomes an :class:`Episode` in our conventions (z-up world, OpenCV goal camera). Its goal
instance is not known until the scene's semantic objects are: ``goal_instance_id`` is ``None`` and
``extra["goal_object_id"]`` holds the raw id until :func:`bind_goal_instances` resolves it
(``extra["goal_resolved"]``).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ssl_nav.errors import FormatError
from ssl_nav.sim.base import Episode
from ssl_nav.sim.habitat_spec import (
    habitat_agent_to_T_world_cam, habitat_camera_to_T_world_cam, habitat_to_world_points,
)

DEFAULT_SCENE_PATH_PREFIX = "data/scene_datasets/"
CONTENT_SCENES_PATH = "{data_path}/content/{scene}.json.gz"


def goal_key(scene_id: str, goal_object_id: Any) -> str:
    """habitat-lab's goal key: scene basename without ``.glb`` / ``.basis``, then ``_<goal_object_id>``."""
    sid = os.path.basename(str(scene_id))
    for ext in (".glb", ".basis"):
        if sid.endswith(ext):
            sid = sid[: -len(ext)]
    return f"{sid}_{goal_object_id}"


def scene_name(scene_id: str) -> str:
    """Short scene name: the basename without ``.basis.glb`` / ``.glb`` (``TEEsavR23oF``)."""
    return goal_key(scene_id, "x")[:-2]


def resolve_scene_path(scene_id: str, scenes_dir: str | os.PathLike | None) -> str:
    """Episode ``scene_id`` as habitat-lab resolves it: drop ``data/scene_datasets/``, join ``scenes_dir``."""
    if scenes_dir is None or os.path.isabs(scene_id):
        return scene_id
    if scene_id.startswith(DEFAULT_SCENE_PATH_PREFIX):
        scene_id = scene_id[len(DEFAULT_SCENE_PATH_PREFIX):]
    return os.path.join(str(scenes_dir), scene_id)


# ------------------------------------------------------------------------------------------ reading

def read_json_gz(path: str | os.PathLike) -> dict:
    """A gzip'd (or plain, when the name does not end in .gz) JSON object; errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise FormatError(f"{p}: episode file not found")
    try:
        if p.name.endswith(".gz"):
            with gzip.open(p, "rt", encoding="utf-8") as fh:
                text = fh.read()
        else:
            text = p.read_text(encoding="utf-8")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
        raise FormatError(f"{p}: cannot read gzip'd JSON ({e})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise FormatError(f"{p}: malformed JSON at line {e.lineno} ({e.msg})") from None
    if not isinstance(data, dict):
        raise FormatError(f"{p}: top level must be a JSON object, got {type(data).__name__}")
    return data


def _req(d: dict, key: str, where: str) -> Any:
    if not isinstance(d, dict):
        raise FormatError(f"{where}: expected a JSON object, got {type(d).__name__}")
    if key not in d or d[key] is None:
        raise FormatError(f"{where}: missing field '{key}'")
    return d[key]


def _vec(v: Any, n: int, where: str) -> np.ndarray:
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise FormatError(f"{where}: must be {n} numbers, got {v!r}") from None
    if a.shape != (n,) or not np.all(np.isfinite(a)):
        raise FormatError(f"{where}: must be {n} finite numbers, got {v!r}")
    return a


def _goals_index(data: dict, where: str) -> dict[str, dict]:
    """Goals of a file by goal key: ``goals`` (InstanceImageNav) or ``goals_by_category`` (ObjectNav layout)."""
    out: dict[str, dict] = {}
    for field in ("goals", "goals_by_category"):
        goals = data.get(field)
        if goals is None:
            continue
        if not isinstance(goals, dict):
            raise FormatError(f"{where}: field '{field}' must map goal keys to goals")
        for k, g in goals.items():
            if isinstance(g, list):  # goals_by_category: key -> [goal, ...]
                for n, gg in enumerate(g):
                    if not isinstance(gg, dict):
                        raise FormatError(f"{where}: {field}['{k}'][{n}] must be a JSON object")
                    oid = gg.get("object_id")
                    out[f"{k}#{n}"] = gg
                    if oid is not None:
                        out.setdefault(f"@{oid}", gg)
            elif isinstance(g, dict):
                out[str(k)] = g
            else:
                raise FormatError(f"{where}: {field}['{k}'] must be a JSON object")
    return out


def _find_goal(ep: dict, goals: dict[str, dict], where: str) -> dict:
    key = goal_key(ep["scene_id"], ep["goal_object_id"])
    if key in goals:
        return goals[key]
    for g in ep.get("goals") or []:  # goals embedded in the episode
        if isinstance(g, dict) and str(g.get("object_id")) == str(ep["goal_object_id"]) and "image_goals" in g:
            return g
    if f"@{ep['goal_object_id']}" in goals:
        return goals[f"@{ep['goal_object_id']}"]
    raise FormatError(f"{where}: no goal '{key}' for goal_object_id {ep['goal_object_id']!r} "
                      f"(looked in 'goals', 'goals_by_category' and the episode's 'goals')")


def _image_goal(ig: dict, where: str) -> dict:
    """One ``image_goals`` entry (``InstanceImageParameters``) as our goal camera."""
    pos = _vec(_req(ig, "position", where), 3, f"{where}: field 'position'")
    rot = _vec(_req(ig, "rotation", where), 4, f"{where}: field 'rotation'")
    hfov = _req(ig, "hfov", where)
    if isinstance(hfov, bool) or not isinstance(hfov, (int, float)) or not 0 < hfov < 180:
        raise FormatError(f"{where}: field 'hfov' must be degrees in (0, 180), got {hfov!r}")
    dims = _req(ig, "image_dimensions", where)
    if (not isinstance(dims, (list, tuple)) or len(dims) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in dims)):
        raise FormatError(f"{where}: field 'image_dimensions' must be [height, width] positive integers, got {dims!r}")
    return {"T_world_cam": habitat_camera_to_T_world_cam(pos, rot, f"{where}: field 'rotation'"),
            "hfov_deg": float(hfov), "width": int(dims[1]), "height": int(dims[0]),
            "frame_coverage": ig.get("frame_coverage"), "object_coverage": ig.get("object_coverage")}


def _episode_from_json(ep: dict, goals: dict[str, dict], where: str, sensor_height: float,
                       scenes_dir: str | os.PathLike | None) -> Episode:
    for key in ("episode_id", "scene_id", "start_position", "start_rotation", "goal_object_id", "goal_image_id"):
        _req(ep, key, where)
    goal = _find_goal(ep, goals, where)
    gwhere = f"{where}: goal '{goal_key(ep['scene_id'], ep['goal_object_id'])}'"
    image_goals = _req(goal, "image_goals", gwhere)
    if not isinstance(image_goals, list) or not image_goals:
        raise FormatError(f"{gwhere}: field 'image_goals' must be a non-empty list")
    gid = ep["goal_image_id"]
    if isinstance(gid, bool) or not isinstance(gid, int) or not 0 <= gid < len(image_goals):
        raise FormatError(f"{where}: field 'goal_image_id' = {gid!r} is not an index into the goal's "
                          f"{len(image_goals)} image_goals")
    cams = [_image_goal(g, f"{gwhere}: image_goals[{n}]") for n, g in enumerate(image_goals)]
    cam = cams[gid]
    start_pos = _vec(ep["start_position"], 3, f"{where}: field 'start_position'")
    start_rot = _vec(ep["start_rotation"], 4, f"{where}: field 'start_rotation'")
    T_start = habitat_agent_to_T_world_cam(start_pos, start_rot, sensor_height, f"{where}: field 'start_rotation'")
    view_points = []
    for n, vp in enumerate(goal.get("view_points") or []):
        vwhere = f"{gwhere}: view_points[{n}]"
        state = _req(vp, "agent_state", vwhere)
        view_points.append(habitat_to_world_points(_vec(_req(state, "position", f"{vwhere}.agent_state"), 3,
                                                        f"{vwhere}.agent_state: field 'position'")).tolist())
    goal_position = None
    if goal.get("position") is not None:
        goal_position = habitat_to_world_points(_vec(goal["position"], 3, f"{gwhere}: field 'position'")).tolist()
    category = ep.get("object_category") or goal.get("object_category")
    extra = {
        "goal_object_id": str(ep["goal_object_id"]),
        "goal_image_id": int(gid),
        "goal_key": goal_key(ep["scene_id"], ep["goal_object_id"]),
        "goal_resolved": False,
        "object_category": category,
        "frame_coverage": cam["frame_coverage"],
        "object_coverage": cam["object_coverage"],
        "image_goals": cams,
        "goal_position": goal_position,
        "view_points": view_points,
        "scene_path": resolve_scene_path(str(ep["scene_id"]), scenes_dir),
        "scene_dataset_config": ep.get("scene_dataset_config"),
        "source": where.split(":")[0],
    }
    return Episode(episode_id=str(ep["episode_id"]), scene_id=str(ep["scene_id"]), goal_instance_id=None,
                   goal_T_world_cam=cam["T_world_cam"], category=category, hfov_deg=cam["hfov_deg"],
                   width=cam["width"], height=cam["height"], start_T_world_cam=T_start, extra=extra)


def read_episode_file(path: str | os.PathLike, sensor_height: float = 1.31,
                      scenes_dir: str | os.PathLike | None = None) -> tuple[list[Episode], dict]:
    """Episodes of one ``.json.gz`` file, and the file's top-level object (for ``content_scenes_path``)."""
    p = Path(path)
    data = read_json_gz(p)
    episodes = data.get("episodes")
    if episodes is None:
        raise FormatError(f"{p}: missing field 'episodes'")
    if not isinstance(episodes, list):
        raise FormatError(f"{p}: field 'episodes' must be a list")
    goals = _goals_index(data, str(p))
    out = [_episode_from_json(ep, goals, f"{p}: episodes[{n}]", sensor_height, scenes_dir)
           for n, ep in enumerate(episodes)]
    return out, data


def episodes_path(pattern: str | os.PathLike, split: str | None) -> Path:
    """habitat-lab's ``data_path`` pattern with ``{split}`` filled in (``.../{split}/{split}.json.gz``)."""
    text = str(pattern)
    if "{split}" in text:
        if not split:
            raise FormatError(f"{text}: the episodes path has '{{split}}'; give --split")
        text = text.replace("{split}", split)
    return Path(text)


def read_episodes(path: str | os.PathLike, *, split: str | None = None, scenes: Iterable[str] | None = None,
                  sensor_height: float = 1.31, scenes_dir: str | os.PathLike | None = None) -> list[Episode]:
    """Every episode of an InstanceImageNav dataset: one file, plus its per-scene ``content/`` files.

    ``path`` may hold ``{split}``. ``scenes`` (short names, e.g. ``TEEsavR23oF``) restricts the per-scene files
    loaded and the episodes returned. Episode order: the top-level file's, then the content files' in
    sorted scene order.
    """
    p = episodes_path(path, split)
    if not p.exists():
        raise FormatError(f"{p}: episode file not found")
    if p.is_dir():
        cand = p / f"{p.name}.json.gz"
        if not cand.is_file() and not (p / "content").is_dir():
            raise FormatError(f"{p}: not an episode file, nor a split directory with {p.name}.json.gz or content/")
        p = cand if cand.is_file() else p
    wanted = set(scenes) if scenes is not None else None
    episodes: list[Episode] = []
    content_pattern = CONTENT_SCENES_PATH
    data_dir = p if p.is_dir() else p.parent
    if p.is_file():
        eps, data = read_episode_file(p, sensor_height, scenes_dir)
        episodes.extend(eps)
        content_pattern = str(data.get("content_scenes_path") or CONTENT_SCENES_PATH)
    prefix, _, suffix = content_pattern.partition("{scene}")
    content_dir = Path(prefix.format(data_path=str(data_dir)))
    if suffix and content_dir.is_dir() and content_dir.resolve() != p.parent.resolve():
        names = sorted(f.name[: -len(suffix)] for f in content_dir.iterdir() if f.name.endswith(suffix))
        for name in names:
            if wanted is not None and name not in wanted:
                continue
            eps, _ = read_episode_file(content_dir / f"{name}{suffix}", sensor_height, scenes_dir)
            episodes.extend(eps)
    if wanted is not None:
        episodes = [e for e in episodes if scene_name(e.scene_id) in wanted]
    return episodes


def group_by_scene(episodes: Iterable[Episode]) -> dict[str, list[Episode]]:
    """Episodes per ``scene_id``, scenes in first-seen order."""
    out: dict[str, list[Episode]] = {}
    for e in episodes:
        out.setdefault(e.scene_id, []).append(e)
    return out


def bind_goal_instances(episodes: Iterable[Episode], lookup: Callable[[str], int | None]) -> list[Episode]:
    """Copies of ``episodes`` with ``goal_instance_id`` resolved from ``extra["goal_object_id"]``.

    ``lookup`` is e.g. :meth:`SemanticInstanceMap.instance_for_goal_object` of the loaded scene; an id it
    cannot map stays ``None`` (the goal is then scored as not in the map) and ``extra["goal_resolved"]``
    stays false.
    """
    out = []
    for e in episodes:
        oid = e.extra.get("goal_object_id")
        iid = lookup(oid) if oid is not None else None
        extra = {**e.extra, "goal_resolved": iid is not None}
        out.append(dataclasses.replace(e, goal_instance_id=iid, extra=extra))
    return out


def user_photo_cameras(episodes: Iterable[Episode], n_per_instance: int) -> dict[int, list[dict]]:
    """Cameras for up to ``n_per_instance`` high-quality "user photos" per goal instance (CrossIA).

    They are the goal's other ``image_goals``: views of the same instance that no episode uses as its
    query image, so the photos never leak a query. Instances in ascending id; cameras in file order.
    """
    episodes = [e for e in episodes if e.goal_instance_id is not None and e.extra.get("image_goals")]
    used = {(e.extra["goal_key"], e.extra["goal_image_id"]) for e in episodes}
    out: dict[int, list[dict]] = {}
    seen: set[str] = set()
    for e in sorted(episodes, key=lambda e: int(e.goal_instance_id)):
        key = e.extra["goal_key"]
        if key in seen:
            continue
        seen.add(key)
        cams = [c for k, c in enumerate(e.extra["image_goals"]) if (key, k) not in used]
        have = out.setdefault(int(e.goal_instance_id), [])
        have.extend(cams[: max(0, n_per_instance - len(have))])
    return {k: v for k, v in out.items() if v}
