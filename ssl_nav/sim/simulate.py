"""``ssl-nav simulate``: render a procedural scene into a frames directory, with user photos and queries.

Layout written under ``out`` (paths relative to ``out``; see :mod:`ssl_nav.frames`)::

    frames.jsonl, rgb/, depth/, instance/    LQ robot frames along an exploration trajectory
    photos.jsonl, photos/<id>/<n>.png        HQ user photos (at most 5 per goal instance)
    queries.jsonl, queries/<episode_id>.png  instance-image-goal queries (DESIGN.md queries format,
                                             plus episode_id, category, goal_T_world_cam, hfov_deg, open_set)
    scene.json                               seed, scene id, objects (boxes, categories, roles), room, camera

Everything comes from ``cfg.sim.seed``: a second run with the same seed and config writes byte-identical images.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from ssl_nav.atomic import atomic_write_json, atomic_write_text
from ssl_nav.config import PipelineConfig, to_dict
from ssl_nav.errors import SslNavError
from ssl_nav.frames import FramesWriter, write_png

#: what simulate_to_dir owns inside ``out``; only these are cleared before a rerun
OUTPUT_NAMES = ("frames.jsonl", "rgb", "depth", "instance", "photos.jsonl", "photos", "queries.jsonl", "queries",
                "scene.json")


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


def simulate_to_dir(cfg: PipelineConfig, out: str | Path, progress: bool = True) -> dict:
    """Render scene ``cfg.sim.seed`` into ``out``; return a summary (counts, paths, seconds)."""
    from tqdm import tqdm

    from ssl_nav.sim.explore import exploration_poses, exploration_rng
    from ssl_nav.sim.pybullet_backend import PyBulletSimulator

    out = Path(out)
    scfg = cfg.sim
    seed = int(scfg.seed)
    _prepare_out(out)
    t0 = time.monotonic()
    with PyBulletSimulator(scfg) as sim:
        sim.load_scene(seed)
        objects = sim.objects()
        goal_ids = [o.instance_id for o in objects if o.extra.get("role") == "object"]
        poses = exploration_poses(sim, scfg, exploration_rng(seed))
        episodes = sim.episodes(np.random.default_rng([seed, 0xE9]))
        total = len(poses) + len(goal_ids) + len(episodes)
        bar = tqdm(total=total, desc=f"simulate seed {seed}", unit="img", disable=not progress, file=sys.stderr)
        seen: set[int] = set()
        with FramesWriter(out) as writer:
            for i, T in enumerate(poses):
                frame = sim.render(T, "low", frame_id=f"{i:06d}", stamp=i / scfg.frame_rate_hz)
                seen.update(int(v) for v in np.unique(frame.instance_mask) if v > 0)
                writer.write(frame)
                bar.update(1)
        photo_lines = []
        photo_rng = np.random.default_rng([seed, 0xF0])
        for iid in goal_ids:
            for n, f in enumerate(sim.user_photos(iid, scfg.n_user_photos, photo_rng)):
                rel = f"photos/{iid}/{n}.png"
                write_png(out / rel, f.rgb)
                photo_lines.append({"instance_id": str(iid), "image": rel,
                                    "T_world_cam": np.round(f.T_world_cam, 6).tolist()})
            bar.update(1)
        atomic_write_text(out / "photos.jsonl", "".join(json.dumps(x) + "\n" for x in photo_lines))
        query_lines = []
        for ep in episodes:
            f = sim.render_goal(ep)
            rel = f"queries/{ep.episode_id}.png"
            write_png(out / rel, f.rgb)
            query_lines.append({
                "image": rel, "instance_id": None if ep.goal_instance_id is None else str(ep.goal_instance_id),
                "episode_id": ep.episode_id, "category": ep.category, "open_set": ep.goal_instance_id is None,
                "goal_T_world_cam": np.round(ep.goal_T_world_cam, 6).tolist(), "hfov_deg": ep.hfov_deg,
                "width": ep.width, "height": ep.height,
                "start_T_world_cam": None if ep.start_T_world_cam is None
                else np.round(ep.start_T_world_cam, 6).tolist()})
            bar.update(1)
        bar.close()
        atomic_write_text(out / "queries.jsonl", "".join(json.dumps(x) + "\n" for x in query_lines))
        spec = sim.spec
        assert spec is not None
        K = sim.intrinsics()
        scene = {
            "seed": seed, "scene_id": sim.scene_id, "backend": "pybullet",
            "objects": [o.to_json() for o in objects],
            "open_set_objects": [o.to_json() for o in spec.open_set],
            **spec.to_json(),
            "camera": {"width": scfg.width, "height": scfg.height, "hfov_deg": scfg.hfov_deg, "K": K.tolist(),
                       "height_m": spec.camera_height, "pitch_deg": scfg.camera_pitch_deg},
            "n_frames": len(poses), "frame_rate_hz": scfg.frame_rate_hz,
            "sim_config": to_dict(scfg),
        }
        atomic_write_json(out / "scene.json", scene)
    return {
        "out": str(out), "seed": seed, "scene_id": scene["scene_id"], "frames": len(poses),
        "objects": len(objects), "goal_instances": len(goal_ids),
        "objects_seen": len(seen), "photos": len(photo_lines),
        "queries": len(query_lines), "open_set_queries": sum(1 for q in query_lines if q["instance_id"] is None),
        "seconds": round(time.monotonic() - t0, 2),
    }
