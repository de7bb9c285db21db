"""The simulate stage: render a loaded scene into a frames directory (``ssl-nav simulate``, the demo, Habitat).

:func:`write_simulation` is the one writer for every backend; :func:`draw_pybullet_scene` draws what the embedded
simulator writes for a seed with fixed random streams; :func:`simulate_to_dir` is ``ssl-nav simulate``. So
``ssl-nav simulate --preset quick --seed N`` writes the same files as the simulate stage of
``ssl-nav demo --quick --seed N``.

Layout written under ``out`` (paths relative to ``out``; see :mod:`ssl_nav.frames` and docs/simulator.md)::

    frames.jsonl, rgb/, depth/, instance/      LQ robot frames along an exploration trajectory
    photos.jsonl, photos/<id>/<n>.png          HQ user photos (at most 5 per goal instance), framed as a user
                                               would: a square crop around the object
    queries.jsonl, queries/<episode_id>.png    the test queries (instance-image goals), cropped around the object
                                               (retrieval.query_crop: object) with the full goal image in
                                               queries/<episode_id>_full.png
    calibration.jsonl, calibration/...         the calibration split: other viewpoints of the goal objects and an
                                               open set disjoint from the test queries' (same line format)
    scene.json                                 seed, scene id, objects (boxes, categories, roles), open sets, room,
                                               camera

Everything comes from ``cfg.sim.seed``: a second run with the same seed and config writes byte-identical files.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ssl_nav.atomic import atomic_write_json, atomic_write_text
from ssl_nav.config import PipelineConfig, to_dict
from ssl_nav.crops import crop_square, square_box
from ssl_nav.errors import SslNavError
from ssl_nav.frames import Frame, FramesWriter, write_png
from ssl_nav.progress import tqdm
from ssl_nav.sim.base import Episode
from ssl_nav.sim.explore import exploration_poses, exploration_rng
from ssl_nav.sim.pybullet_backend import PyBulletSimulator

#: what write_simulation owns inside ``out``; only these are cleared before a rerun
OUTPUT_NAMES = ("frames.jsonl", "rgb", "depth", "instance", "photos.jsonl", "photos", "queries.jsonl", "queries",
                "calibration.jsonl", "calibration", "scene.json")
#: random streams of the embedded simulator's draws, ``default_rng([seed, stream])``
EPISODE_STREAM, CALIBRATION_STREAM, PHOTO_STREAM = 0xE9, 0xCA, 0xF0


@dataclass
class SceneDraw:
    """What the simulate stage writes for one loaded scene."""

    poses: list[np.ndarray]  #: robot camera poses (OpenCV T_world_cam), in time order
    episodes: list[Episode]  #: the test queries
    calibration: list[Episode] = field(default_factory=list)  #: the calibration split (may be empty)
    user_photos: dict[int, list[Frame]] = field(default_factory=dict)  #: HQ photos (with instance masks)


def draw_pybullet_scene(sim, cfg: PipelineConfig) -> SceneDraw:
    """Load scene ``cfg.sim.seed`` into a PyBulletSimulator and draw its trajectory, episodes and photos.

    Each draw has its own random stream, so every consumer of a seed (``ssl-nav simulate``, the demo, the
    benchmarks, ``ssl-nav habitat --backend pybullet``) gets the same scene.
    """
    scfg = cfg.sim
    seed = int(scfg.seed)
    sim.load_scene(seed)
    poses = exploration_poses(sim, scfg, exploration_rng(seed))
    episodes = sim.episodes(np.random.default_rng([seed, EPISODE_STREAM]))
    calibration = sim.calibration_episodes(np.random.default_rng([seed, CALIBRATION_STREAM])) \
        if scfg.n_calibration_queries_per_instance > 0 else []
    photo_rng = np.random.default_rng([seed, PHOTO_STREAM])
    goal_ids = [o.instance_id for o in sim.objects() if o.extra.get("role") == "object"]
    photos = {iid: sim.user_photos(iid, scfg.n_user_photos, photo_rng) for iid in goal_ids} \
        if scfg.n_user_photos > 0 else {}
    return SceneDraw(poses, episodes, calibration, photos)


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise SslNavError(f"{out}: exists and is not a directory")
    if out.is_dir():
        others = [p.name for p in out.iterdir() if p.name not in OUTPUT_NAMES]
        if others and not (out / "scene.json").is_file():
            raise SslNavError(f"{out}: directory is not empty and is not a previous simulate output "
                              f"(found {others[0]!r}); choose another --out")
        for name in OUTPUT_NAMES:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def object_square(frame: Frame, instance_id: int, margin: float, min_pixels: int = 16
                  ) -> tuple[int, int, int, int] | None:
    """SimView's square box ``[x0, y0, x1, y1)`` around an instance's mask (None when it is barely visible)."""
    if frame.instance_mask is None:
        return None
    ys, xs = np.nonzero(frame.instance_mask == instance_id)
    if len(xs) < min_pixels:
        return None
    return square_box((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), margin)


def object_crop(frame: Frame, instance_id: int, size: int, margin: float) -> np.ndarray | None:
    """A square crop of one instance, as a user frames a photo of it (None when it is barely visible)."""
    square = object_square(frame, instance_id, margin)
    return None if square is None else crop_square(frame.rgb, square, size)


def _jsonl(lines: list[dict]) -> str:
    return "".join(json.dumps(x) + "\n" for x in lines)


def _write_queries(sim, cfg: PipelineConfig, out: Path, folder: str, episodes: list[Episode], split: str,
                   bar) -> list[dict]:
    """Render each episode's goal image into ``out/folder``; return the query lines."""
    lines = []
    (out / folder).mkdir(parents=True, exist_ok=True)
    for ep in episodes:
        f = sim.render_goal(ep)
        rel = f"{folder}/{ep.episode_id}.png"
        line = {"image": rel, "instance_id": None if ep.goal_instance_id is None else str(ep.goal_instance_id),
                "episode_id": str(ep.episode_id), "category": ep.category, "open_set": ep.goal_instance_id is None,
                "split": split}
        oid = ep.goal_instance_id if ep.goal_instance_id is not None else ep.extra.get("object_instance_id")
        square = None
        if cfg.retrieval.query_crop == "object" and oid is not None:
            square = object_square(f, int(oid), cfg.views.margin)
        if square is not None:
            full = f"{folder}/{ep.episode_id}_full.png"
            write_png(out / full, f.rgb)
            write_png(out / rel, crop_square(f.rgb, square, cfg.views.crop_size))
            line.update(image_full=full, crop=[int(v) for v in square])
        else:
            write_png(out / rel, f.rgb)
        line.update({
            "goal_T_world_cam": np.round(np.asarray(ep.goal_T_world_cam, np.float64), 6).tolist(),
            "hfov_deg": ep.hfov_deg, "width": ep.width, "height": ep.height,
            "start_T_world_cam": None if ep.start_T_world_cam is None
            else np.round(np.asarray(ep.start_T_world_cam, np.float64), 6).tolist()})
        for key in ("lookalike_of", "lookalike"):
            if ep.extra.get(key) is not None:
                line[key] = str(ep.extra[key]) if key == "lookalike_of" else ep.extra[key]
        lines.append(line)
        bar.update(1)
    return lines


def write_simulation(sim, cfg: PipelineConfig, out: str | Path, draw: SceneDraw, progress: bool = True) -> dict:
    """Write a loaded scene of any backend into the frames directory ``out``; return a summary.

    Robot frames are rendered low quality at ``draw.poses``; user photos are cropped square around their
    object (``views.crop_size``, ``views.margin``: the crops ``ssl-nav add-photos`` and ``collect`` add as
    they are); goal images likewise when ``retrieval.query_crop`` is ``object``.
    """
    out = Path(out)
    scfg = cfg.sim
    seed = int(getattr(getattr(sim, "spec", None), "seed", scfg.seed))  # the loaded scene's (pybullet) seed
    _prepare_out(out)
    t0 = time.monotonic()
    objects = sim.objects()
    total = len(draw.poses) + len(draw.user_photos) + len(draw.episodes) + len(draw.calibration)
    bar = tqdm(total=total, desc=f"simulate {sim.scene_id}", unit="img", disable=not progress, file=sys.stderr)
    seen: set[int] = set()
    K, shape = None, (scfg.height, scfg.width)
    # PNG encoding costs about as much as rendering: one writer thread encodes frame i (in order, so the files
    # and frames.jsonl are the same) while the next frames render; OpenCV releases the GIL while it encodes
    with FramesWriter(out) as writer, ThreadPoolExecutor(max_workers=1) as pool:
        pending: deque = deque()
        for i, T in enumerate(draw.poses):
            frame = sim.render(T, "low", frame_id=f"{i:06d}", stamp=i / scfg.frame_rate_hz)
            if K is None:
                K, shape = frame.K, frame.rgb.shape[:2]
            seen.update(int(v) for v in np.unique(frame.instance_mask) if v > 0)
            pending.append(pool.submit(writer.write, frame))
            while len(pending) > 3 or (pending and pending[0].done()):
                pending.popleft().result()  # re-raises a write error here
                bar.update(1)
        while pending:
            pending.popleft().result()
            bar.update(1)
    photo_lines, photos_skipped = [], 0
    for iid, photos in sorted(draw.user_photos.items()):
        for n, f in enumerate(photos[:5]):
            crop = object_crop(f, int(iid), cfg.views.crop_size, cfg.views.margin)
            if crop is None:  # the object hides behind something in this photo
                photos_skipped += 1
                continue
            rel = f"photos/{iid}/{n}.png"
            write_png(out / rel, crop)
            photo_lines.append({"instance_id": str(iid), "image": rel,
                                "T_world_cam": np.round(np.asarray(f.T_world_cam, np.float64), 6).tolist()})
        bar.update(1)
    atomic_write_text(out / "photos.jsonl", _jsonl(photo_lines))
    query_lines = _write_queries(sim, cfg, out, "queries", draw.episodes, "test", bar)
    atomic_write_text(out / "queries.jsonl", _jsonl(query_lines))
    calib_lines = []
    if draw.calibration:
        calib_lines = _write_queries(sim, cfg, out, "calibration", draw.calibration, "calibration", bar)
        atomic_write_text(out / "calibration.jsonl", _jsonl(calib_lines))
    bar.close()
    if K is None:
        K = sim.intrinsics() if hasattr(sim, "intrinsics") else np.eye(3)
    h, w = shape
    backend = getattr(sim, "backend_name", type(sim).__name__)
    extra = sim.scene_json() if hasattr(sim, "scene_json") else {}
    scene = {
        "seed": seed, "scene_id": sim.scene_id, "backend": backend,
        "objects": [o.to_json() for o in objects], **extra,
        "camera": {"width": int(w), "height": int(h),
                   "hfov_deg": round(math.degrees(2 * math.atan(w / (2 * K[0, 0]))), 6), "K": np.asarray(K).tolist(),
                   "height_m": extra.get("camera_height"), "pitch_deg": scfg.camera_pitch_deg},
        "n_frames": len(draw.poses), "frame_rate_hz": scfg.frame_rate_hz,
        "sim_config": to_dict(scfg),
    }
    atomic_write_json(out / "scene.json", scene)
    return {
        "out": str(out), "seed": seed, "scene_id": sim.scene_id, "frames": len(draw.poses),
        "objects": len(objects),
        "goal_instances": len({e.goal_instance_id for e in draw.episodes if e.goal_instance_id is not None}),
        "objects_seen": len(seen), "photos": len(photo_lines), "photos_skipped": photos_skipped,
        "queries": len(query_lines), "open_set_queries": sum(1 for q in query_lines if q["instance_id"] is None),
        "lookalike_queries": sum(1 for q in query_lines if "lookalike_of" in q),
        "calibration_queries": len(calib_lines),
        "calibration_open_set_queries": sum(1 for q in calib_lines if q["instance_id"] is None),
        "seconds": round(time.monotonic() - t0, 2),
    }


def simulate_to_dir(cfg: PipelineConfig, out: str | Path, progress: bool = True) -> dict:
    """``ssl-nav simulate``: render scene ``cfg.sim.seed`` of the embedded simulator into ``out``; a summary."""
    t0 = time.monotonic()
    with PyBulletSimulator(cfg.sim) as sim:
        draw = draw_pybullet_scene(sim, cfg)
        summary = write_simulation(sim, cfg, out, draw, progress=progress)
    summary["seconds"] = round(time.monotonic() - t0, 2)
    return summary
