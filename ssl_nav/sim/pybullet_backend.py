"""The embedded CPU simulator: pybullet's TinyRenderer over the procedural rooms of :mod:`ssl_nav.sim.scenes`.

One ``pybullet.connect(pybullet.DIRECT)`` client per simulator instance; every
call passes its ``physicsClientId``. One ``getCameraImage`` call gives RGB,
the z-buffer and the segmentation buffer:

- the view matrix is the OpenCV ``T_world_cam`` inverted and turned into the
  OpenGL camera (x right, y up, looking down -z);
- the projection matrix is built from our ``K`` so that a world point projected
  with :func:`ssl_nav.geometry.project` lands in pixel ``(floor(u), floor(v))``;
- depth is linearised from the z-buffer to metric z along the optical axis;
- the segmentation buffer holds pybullet body ids, mapped to the stable
  instance ids of :class:`~ssl_nav.sim.base.SceneObject` (0 for the room,
  furniture and background).

The room's floor, walls and ceiling are ray-cast in numpy (:mod:`ssl_nav.sim.room_shell`) and composited
behind what TinyRenderer draws (furniture and objects): TinyRenderer spends most of its time on the near-plane
clipped room triangles. ``sim.room_shell: tinyrenderer`` draws the room as pybullet boxes instead (the slow
reference the tests compare against). Procedural objects (products, books, plates...) are in-memory meshes
(:mod:`ssl_nav.sim.meshes`) with procedural textures written to a private temporary directory.

Objects are static (no physics stepping). Robot frames (``quality="low"``) are
degraded with :mod:`ssl_nav.sim.degrade` (and, with ``sim.depth_model: realsense``,
:mod:`ssl_nav.sim.depth_sensor`) from a generator seeded by the scene
seed, the frame id and the pose, so a render is reproducible on its own.
"""

from __future__ import annotations

import contextlib
import math
import zlib
from dataclasses import replace
from typing import Iterator

import numpy as np

from ssl_nav.config import SimConfig
from ssl_nav.errors import ConfigError, FrameError, SslNavError
from ssl_nav.frames import Frame
from ssl_nav.geometry import camera_pose, intrinsics_from_fov, invert, look_at, project, transform
from ssl_nav.sim.base import Episode, SceneObject
from ssl_nav.sim.degrade import degrade
from ssl_nav.sim.depth_sensor import realsense_depth
from ssl_nav.sim.data import resolve_data_file
from ssl_nav.sim.room_shell import RoomShell, ShellFace
from ssl_nav.sim.scenes import (SHELL_PARTS, BoxPart, Lighting, PlacedObject, SceneSpec, build_scene_spec, navigable,
                                random_lighting)
from ssl_nav.sim.textures import Texture, TextureFiles, texture_image

NEAR = 0.05  #: near clipping plane (m)
MIN_PHOTO_DISTANCE = 0.3  #: nearest camera distance of photos and goal images (m)
BOX_MESH = "cube.obj"  #: unit cube with UVs in pybullet_data (textured room parts)
#: OpenCV camera -> OpenGL camera (y and z flip)
_CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])
#: scene.json keys of an object that SceneObject.extra keeps
OBJECT_EXTRA_KEYS = ("role", "model", "support", "twin_of", "rgba", "texture", "design", "lookalike", "lookalike_of",
                     "hard_case", "touching", "mesh_dims")


def opengl_view_matrix(T_world_cam: np.ndarray) -> list[float]:
    """Column-major OpenGL view matrix (world -> OpenGL eye) of an OpenCV ``T_world_cam``."""
    V = _CV_TO_GL @ invert(np.asarray(T_world_cam, dtype=np.float64))
    return V.flatten(order="F").tolist()


def opengl_projection_matrix(K: np.ndarray, width: int, height: int, near: float, far: float) -> list[float]:
    """Column-major OpenGL projection of pinhole ``K`` for TinyRenderer (row 0 at the top).

    TinyRenderer samples its viewport at integer coordinates ``(X, Y)`` and pybullet returns row ``h - 1 - Y``;
    with ``x_s = u`` and ``y_s = h - v`` that would sample pixel ``(i, j)`` at ``(u, v) = (j, i + 1)``. Shifting
    the principal point by half a pixel (``cx - 0.5``, ``cy + 0.5``) samples the pixel centre
    ``(j + 0.5, i + 0.5)``, so a point projected with :func:`ssl_nav.geometry.project` lands in pixel
    ``(floor(u), floor(v))`` and the room shell's rays (:mod:`ssl_nav.sim.room_shell`) meet TinyRenderer's.
    """
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2] - 0.5, K[1, 2] + 0.5
    P = np.array([
        [2 * fx / width, 0.0, 1.0 - 2 * cx / width, 0.0],
        [0.0, 2 * fy / height, 2 * cy / height - 1.0, 0.0],
        [0.0, 0.0, -(far + near) / (far - near), -2 * far * near / (far - near)],
        [0.0, 0.0, -1.0, 0.0],
    ])
    return P.flatten(order="F").tolist()


def linearise_depth(zbuf: np.ndarray, near: float, far: float) -> np.ndarray:
    """Metric depth (z along the optical axis) from an OpenGL z-buffer in [0, 1]."""
    zbuf = zbuf.astype(np.float64)
    return far * near / (far - (far - near) * zbuf)


class PyBulletSimulator:
    """:class:`ssl_nav.sim.base.Simulator` on pybullet (DIRECT, TinyRenderer); scenes come from a seed."""

    backend_name = "pybullet"

    def __init__(self, cfg: SimConfig | None = None):
        import pybullet as p

        self.cfg = cfg or SimConfig()
        self._p = p
        self._cid = p.connect(p.DIRECT)
        if self._cid < 0:
            raise SslNavError("pybullet: cannot open a DIRECT client")
        self.scene_id = ""
        self.spec: SceneSpec | None = None
        self._body_to_id: dict[int, int] = {}
        self._lut = np.zeros(1, dtype=np.int32)
        self._textures: dict[str, int] = {}
        self._texture_files = TextureFiles()
        self._shell: RoomShell | None = None
        self._objects: list[SceneObject] = []

    # ------------------------------------------------------------ scene

    def load_scene(self, scene: str | int) -> None:
        """Build the procedural room of seed ``scene`` (an int, or a string of digits / ``pybullet_seedN``)."""
        seed = _parse_seed(scene)
        p, cid = self._p, self._cid
        p.resetSimulation(physicsClientId=cid)
        self._textures.clear()
        self._body_to_id.clear()
        spec = build_scene_spec(seed, self.cfg)
        raycast = self.cfg.room_shell == "raycast"
        for part in spec.parts:
            if not (raycast and part.name in SHELL_PARTS):
                self._create_part(part)
        for obj in spec.objects:
            self._body_to_id[self._create_object(obj)] = obj.instance_id
        self._rebuild_lut()
        self._shell = None
        if raycast:
            faces = {part.name: ShellFace(part.rgba, None if part.texture is None else texture_image(part.texture),
                                          getattr(part.texture, "tile_m", 1.0))
                     for part in spec.parts if part.name in SHELL_PARTS}
            self._shell = RoomShell(spec.room_min, spec.room_max, spec.wall_height, faces)
        self.spec = spec
        self.scene_id = spec.scene_id
        self._objects = [SceneObject(o.instance_id, o.category, o.aabb_min.copy(), o.aabb_max.copy(),
                                     extra={k: v for k, v in o.to_json().items() if k in OBJECT_EXTRA_KEYS})
                         for o in spec.objects]

    def _create_part(self, part: BoxPart) -> int:
        p, cid = self._p, self._cid
        if part.texture is not None:  # a unit cube mesh with per-face UVs, so the texture covers each face
            vs = p.createVisualShape(p.GEOM_MESH, fileName=resolve_data_file(BOX_MESH),
                                     meshScale=(2 * part.half_extents).tolist(), rgbaColor=list(part.rgba),
                                     physicsClientId=cid)
        else:
            vs = p.createVisualShape(p.GEOM_BOX, halfExtents=part.half_extents.tolist(), rgbaColor=list(part.rgba),
                                     physicsClientId=cid)
        body = p.createMultiBody(baseMass=0, baseCollisionShapeIndex=-1, baseVisualShapeIndex=vs,
                                 basePosition=part.center.tolist(), physicsClientId=cid)
        if part.texture is not None:
            p.changeVisualShape(body, -1, textureUniqueId=self._texture(part.texture), physicsClientId=cid)
        return body

    def _texture(self, tex: Texture) -> int:
        key = tex.key()
        if key not in self._textures:
            path = self._texture_files.path(tex)
            tid = self._p.loadTexture(path, physicsClientId=self._cid)
            if tid < 0:
                raise SslNavError(f"pybullet: cannot load texture {path}")
            self._textures[key] = tid
        return self._textures[key]

    def _create_object(self, obj: PlacedObject) -> int:
        p, cid = self._p, self._cid
        if obj.model.procedural is not None:
            m = obj.model.procedural.build()
            vs = p.createVisualShape(p.GEOM_MESH, vertices=m.vertices.tolist(), indices=m.indices.tolist(),
                                     uvs=m.uvs.tolist(), normals=m.normals.tolist(),
                                     meshScale=obj.mesh_scale.tolist(), rgbaColor=list(obj.rgba), physicsClientId=cid)
            what = f"procedural {obj.model.procedural.kind} mesh"
        else:
            vs = p.createVisualShape(p.GEOM_MESH, fileName=resolve_data_file(obj.model.mesh),
                                     meshScale=obj.mesh_scale.tolist(), rgbaColor=list(obj.rgba),
                                     visualFrameOrientation=p.getQuaternionFromEuler(obj.model.rpy),
                                     physicsClientId=cid)
            what = f"mesh {resolve_data_file(obj.model.mesh)}"
        if vs < 0:
            raise SslNavError(f"pybullet: cannot load {what}")
        body = p.createMultiBody(baseMass=0, baseCollisionShapeIndex=-1, baseVisualShapeIndex=vs,
                                 basePosition=obj.position.tolist(),
                                 baseOrientation=p.getQuaternionFromEuler((0.0, 0.0, obj.yaw)), physicsClientId=cid)
        if obj.texture is not None:
            p.changeVisualShape(body, -1, textureUniqueId=self._texture(obj.texture), rgbaColor=list(obj.rgba),
                                physicsClientId=cid)
        return body

    def _rebuild_lut(self) -> None:
        n = max(self._body_to_id, default=0) + 2
        lut = np.zeros(n, dtype=np.int32)
        for body, iid in self._body_to_id.items():
            lut[body + 1] = iid
        self._lut = lut

    @contextlib.contextmanager
    def _placed_open_set(self, obj: PlacedObject) -> Iterator[None]:
        """Temporarily add an open-set object at its reserved spot (never present in robot frames)."""
        body = self._create_object(obj)
        self._body_to_id[body] = obj.instance_id
        self._rebuild_lut()
        try:
            yield
        finally:
            self._p.removeBody(body, physicsClientId=self._cid)
            del self._body_to_id[body]
            self._rebuild_lut()

    def _require_scene(self) -> SceneSpec:
        if self.spec is None:
            raise SslNavError("pybullet simulator: no scene loaded (call load_scene(seed) first)")
        return self.spec

    def objects(self) -> list[SceneObject]:
        """Mapped scene objects (ids 1..N, equal to the instance-mask values of robot frames)."""
        self._require_scene()
        return list(self._objects)

    def open_set_objects(self) -> list[PlacedObject]:
        """Objects of the open-set episodes: never in robot frames, only in their own goal images."""
        return list(self._require_scene().open_set)

    # ------------------------------------------------------------ rendering

    def intrinsics(self, width: int | None = None, height: int | None = None, hfov_deg: float | None = None
                   ) -> np.ndarray:
        return intrinsics_from_fov(width or self.cfg.width, height or self.cfg.height, hfov_deg or self.cfg.hfov_deg)

    def render(self, T_world_cam: np.ndarray, quality: str = "low", frame_id: str = "", stamp: float = 0.0, *,
               lighting: Lighting | None = None, width: int | None = None, height: int | None = None,
               hfov_deg: float | None = None) -> Frame:
        """Render RGB, metric depth and the instance mask at an OpenCV pose; ``low`` adds blur, rescaling and noise."""
        spec = self._require_scene()
        if quality not in ("low", "high"):
            raise FrameError(f"render: quality must be 'low' or 'high', got {quality!r}")
        T = np.asarray(T_world_cam, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise FrameError(f"render: T_world_cam must be a finite 4x4 matrix, got shape {T.shape}")
        w, h = int(width or self.cfg.width), int(height or self.cfg.height)
        K = self.intrinsics(w, h, hfov_deg)
        far = float(self.cfg.max_depth)
        light = lighting or spec.lighting
        p = self._p
        _, _, px, zbuf, seg = p.getCameraImage(
            w, h, viewMatrix=opengl_view_matrix(T), projectionMatrix=opengl_projection_matrix(K, w, h, NEAR, far),
            lightDirection=list(light.direction), lightColor=list(light.color), lightDistance=10.0, shadow=0,
            lightAmbientCoeff=light.ambient, lightDiffuseCoeff=light.diffuse, lightSpecularCoeff=light.specular,
            renderer=p.ER_TINY_RENDERER, physicsClientId=self._cid)
        seg = np.asarray(seg).reshape(h, w)
        covered = seg >= 0
        depth = linearise_depth(np.asarray(zbuf).reshape(h, w), NEAR, far)
        if self._shell is not None:  # the room behind everything TinyRenderer drew
            rgb, shell_depth = self._shell.render(K, T, w, h, light)
            rgb[covered] = np.asarray(px).reshape(h, w, 4)[:, :, :3][covered]
            depth = np.where(covered, depth, shell_depth)
        else:
            rgb = np.ascontiguousarray(np.asarray(px, dtype=np.uint8).reshape(h, w, 4)[:, :, :3])
        background = depth >= far * 0.999
        depth[background] = 0.0
        mask = self._lut[np.clip(seg, -1, len(self._lut) - 2) + 1]
        mask[background] = 0
        extra: dict = {}
        if quality == "low":
            rng = self._frame_rng(frame_id, T)
            sharp = rgb
            rgb, d = degrade(rgb, self.cfg, rng)
            extra["degradation"] = d.to_json()
            if self.cfg.depth_model == "realsense":
                depth = realsense_depth(depth, sharp, float(K[0, 0]), self.cfg, rng)
            elif self.cfg.depth_noise_std > 0:
                valid = depth > 0
                depth[valid] += rng.normal(0.0, self.cfg.depth_noise_std, size=int(valid.sum()))
                depth[valid & (depth <= 0)] = 0.0
        return Frame(rgb=rgb, depth=depth.astype(np.float32), K=K, T_world_cam=T, instance_mask=mask.astype(np.int32),
                     stamp=float(stamp), frame_id=frame_id, quality=quality, extra=extra)

    def _frame_rng(self, frame_id: str, T: np.ndarray) -> np.random.Generator:
        spec = self._require_scene()
        key = zlib.crc32(np.round(T, 9).astype(np.float64).tobytes())
        return np.random.default_rng([spec.seed, 0x1D, zlib.crc32(frame_id.encode()), key])

    # ------------------------------------------------------------ navigation

    def is_navigable(self, point: np.ndarray) -> bool:
        """Inside the room, clear of furniture and floor objects by ``sim.robot_radius`` (z ignored)."""
        return navigable(self._require_scene(), np.asarray(point, dtype=np.float64), self.cfg.robot_radius)

    def sample_navigable_poses(self, n: int, rng: np.random.Generator) -> list[np.ndarray]:
        """``n`` robot camera poses at random navigable points, random headings, the scene's camera height and pitch."""
        spec = self._require_scene()
        out: list[np.ndarray] = []
        tries = 0
        while len(out) < n:
            tries += 1
            if tries > 2000 * max(n, 1):
                raise SslNavError(f"scene {spec.scene_id}: cannot find navigable floor (robot_radius="
                                  f"{self.cfg.robot_radius} m too large?)")
            xy = rng.uniform(spec.room_min, spec.room_max)
            if not self.is_navigable(xy):
                continue
            yaw = float(rng.uniform(-math.pi, math.pi))
            out.append(camera_pose(np.array([xy[0], xy[1], spec.camera_height]), yaw,
                                   math.radians(self.cfg.camera_pitch_deg)))
        return out

    # ------------------------------------------------------------ photos and episodes

    def _object(self, instance_id: int) -> PlacedObject:
        spec = self._require_scene()
        for o in spec.all_objects():
            if o.instance_id == int(instance_id):
                return o
        raise SslNavError(f"scene {spec.scene_id}: no object with instance id {instance_id}")

    def _camera_ok(self, eye: np.ndarray) -> bool:
        spec = self._require_scene()
        if not (spec.room_min[0] + 0.1 <= eye[0] <= spec.room_max[0] - 0.1
                and spec.room_min[1] + 0.1 <= eye[1] <= spec.room_max[1] - 0.1 and 0.2 <= eye[2] <= spec.wall_height - 0.15):
            return False
        for r, top in zip(spec.footprints, spec.furniture_tops):
            if r[0] - 0.05 <= eye[0] <= r[1] + 0.05 and r[2] - 0.05 <= eye[1] <= r[3] + 0.05 and eye[2] < top + 0.15:
                return False
        return True

    def _view_score(self, obj: PlacedObject, T: np.ndarray, w: int, h: int, hfov: float) -> float:
        """Visible share of the object's projected box in a small mask-only render (0 when it leaves the image)."""
        sw, sh = max(16, w // 4), max(12, h // 4)
        K = self.intrinsics(sw, sh, hfov)
        corners = np.array([[x, y, z] for x in (obj.aabb_min[0], obj.aabb_max[0]) for y in (obj.aabb_min[1], obj.aabb_max[1])
                            for z in (obj.aabb_min[2], obj.aabb_max[2])])
        uv, z = project(K, transform(invert(T), corners))
        if np.any(z <= NEAR) or np.any(~np.isfinite(uv)):
            return 0.0
        if uv[:, 0].min() < 0 or uv[:, 1].min() < 0 or uv[:, 0].max() > sw or uv[:, 1].max() > sh:
            return 0.0
        area = max(1.0, float(np.ptp(uv[:, 0]) * np.ptp(uv[:, 1])))
        f = self.render(T, "high", width=sw, height=sh, hfov_deg=hfov)
        return float((f.instance_mask == obj.instance_id).sum()) / area

    def _view_pose(self, obj: PlacedObject, rng: np.random.Generator, dist: tuple[float, float],
                   elev_deg: tuple[float, float], w: int, h: int, hfov: float, tries: int = 12,
                   azimuth: float | None = None) -> np.ndarray:
        """A camera pose looking at the object from a free spot, the most visible of a few random candidates.

        ``dist`` is in multiples of the object's longest side, so the object fills a similar share of every image.
        """
        c = (obj.aabb_min + obj.aabb_max) / 2
        size = float((obj.aabb_max - obj.aabb_min).max())
        dist = (max(MIN_PHOTO_DISTANCE, dist[0] * size), max(MIN_PHOTO_DISTANCE, dist[1] * size))
        best, best_score = None, -1.0
        for t in range(3 * tries):
            if t >= tries and best_score >= 0.2:
                break
            # after `tries` poor candidates, widen the search to lower (more horizontal) views, e.g. into shelves
            elev = elev_deg if t < tries else (-5.0, elev_deg[1])
            az = float(rng.uniform(0, 2 * math.pi)) if azimuth is None or t > 0 else azimuth
            el = math.radians(float(rng.uniform(*elev)))
            d = float(rng.uniform(*dist))
            eye = c + d * np.array([math.cos(az) * math.cos(el), math.sin(az) * math.cos(el), math.sin(el)])
            if not self._camera_ok(eye):
                continue
            aim = c + rng.normal(0, 0.02, 3)
            T = look_at(eye, aim)
            score = self._view_score(obj, T, w, h, hfov)
            if score > best_score:
                best, best_score = T, score
            if score >= 0.45:
                break
        if best is None:  # no free spot found: look from straight above (below the ceiling)
            top = min(c[2] + dist[0] + (obj.aabb_max[2] - obj.aabb_min[2]), self._require_scene().wall_height - 0.1)
            best = look_at(np.array([c[0] + 0.05, c[1], max(top, c[2] + 0.2)]), c)
        return best

    def user_photos(self, instance_id: int, n: int, rng: np.random.Generator) -> list[Frame]:
        """Up to 5 sharp (HQ) photos of an instance: closer viewpoints and other lighting than the robot's (CrossIA)."""
        obj = self._object(instance_id)
        n = min(int(n), 5)
        cfg = self.cfg
        photos = []
        az0 = float(rng.uniform(0, 2 * math.pi))
        for k in range(n):
            light = random_lighting(rng, strength=float(rng.uniform(0.9, 1.2)))
            T = self._view_pose(obj, rng, (cfg.photo_distance_min, cfg.photo_distance_max), (15.0, 55.0),
                                cfg.width, cfg.height, cfg.hfov_deg, azimuth=az0 + 2 * math.pi * k / max(n, 1))
            f = self.render(T, "high", frame_id=f"photo_{instance_id}_{k}", lighting=light)
            f.extra["lighting"] = light.to_json()
            photos.append(f)
        return photos

    def episodes(self, rng: np.random.Generator) -> list[Episode]:
        """Instance-image-goal episodes (the test queries): ``n_queries_per_instance`` per goal object, then as
        many (at least one) per open-set object.

        Goal objects are the scene's primary objects (not twins or distractors). Goal cameras stand farther
        away (``goal_distance_*`` object sizes) than user photos, under their own lighting; open-set episodes have
        ``goal_instance_id=None`` and their object is added only while :meth:`render_goal` runs.
        """
        spec = self._require_scene()
        return self._episodes(rng, spec.open_set, "ep", self.cfg.n_queries_per_instance)

    def calibration_episodes(self, rng: np.random.Generator) -> list[Episode]:
        """The calibration split: ``n_calibration_queries_per_instance`` episodes per goal object from other
        random viewpoints, and as many per object of the calibration open set, which shares no object with the
        test open set (``calibrate`` fits its thresholds on these, never on the test queries)."""
        spec = self._require_scene()
        return self._episodes(rng, spec.calibration_open_set, "cal", self.cfg.n_calibration_queries_per_instance)

    def _episodes(self, rng: np.random.Generator, open_set: list[PlacedObject], tag: str, per_object: int
                  ) -> list[Episode]:
        spec = self._require_scene()
        cfg = self.cfg
        eps: list[Episode] = []
        starts = self.sample_navigable_poses(1, rng)

        def make(obj: PlacedObject, goal_id: int | None) -> Episode:
            light = random_lighting(rng, strength=float(rng.uniform(0.85, 1.15)))
            view = ((cfg.goal_distance_min, cfg.goal_distance_max), (10.0, 40.0), cfg.width, cfg.height, cfg.hfov_deg)
            if goal_id is None and (obj.lookalike or "").startswith("variant:"):
                T = self._detail_pose(obj, rng, *view)
            else:
                with self._placed_open_set(obj) if goal_id is None else contextlib.nullcontext():
                    T = self._view_pose(obj, rng, *view)
            extra = {"lighting": light.to_json(), "object_instance_id": obj.instance_id, "open_set": goal_id is None}
            if obj.lookalike_of is not None:
                extra.update(lookalike_of=obj.lookalike_of, lookalike=obj.lookalike)
            return Episode(episode_id=f"{spec.scene_id}_{tag}{len(eps):03d}", scene_id=spec.scene_id,
                           goal_instance_id=goal_id, goal_T_world_cam=T, category=obj.category, hfov_deg=cfg.hfov_deg,
                           width=cfg.width, height=cfg.height, start_T_world_cam=starts[0], extra=extra)

        if per_object <= 0:
            return eps
        for obj in spec.objects:
            if obj.role != "object":
                continue
            for _ in range(per_object):
                eps.append(make(obj, obj.instance_id))
        for obj in open_set:
            for _ in range(max(1, per_object)):
                eps.append(make(obj, None))
        return eps

    def _detail_pose(self, obj: PlacedObject, rng: np.random.Generator, dist: tuple[float, float],
                     elev_deg: tuple[float, float], w: int, h: int, hfov: float, tries: int = 16,
                     min_differing: float = 0.015) -> np.ndarray:
        """A goal pose of a near-identical look-alike (``variant:*``) from which it looks different from the
        goal object it copies: of up to ``tries`` poses, the first where at least ``min_differing`` of the
        object's pixels change when its source's packaging is put in its place, else the one with the most.
        Its changed detail (the variant name, the logo, the band) is on some faces only; a query that shows
        only the faces both share is not a negative that anything could reject."""
        src = self._object(int(obj.lookalike_of))
        original = replace(obj, texture=src.texture, rgba=src.rgba)
        sw, sh = max(16, w // 2), max(12, h // 2)
        best, best_diff = None, -1.0
        for _ in range(tries):
            renders = []
            with self._placed_open_set(obj):
                T = self._view_pose(obj, rng, dist, elev_deg, w, h, hfov)
                renders.append(self.render(T, "high", width=sw, height=sh, hfov_deg=hfov))
            with self._placed_open_set(original):
                renders.append(self.render(T, "high", width=sw, height=sh, hfov_deg=hfov))
            mask = renders[0].instance_mask == obj.instance_id
            changed = np.abs(renders[0].rgb.astype(np.int16) - renders[1].rgb.astype(np.int16)).max(axis=2) > 40
            diff = float((changed & mask).sum()) / max(1, int(mask.sum()))
            if diff > best_diff:
                best, best_diff = T, diff
            if diff >= min_differing:
                break
        return best

    def render_goal(self, episode: Episode) -> Frame:
        """The episode's sharp goal image (its open-set object is placed for this render only)."""
        spec = self._require_scene()
        if episode.scene_id != spec.scene_id:
            raise SslNavError(f"episode {episode.episode_id}: scene {episode.scene_id} is not the loaded "
                              f"scene {spec.scene_id}")
        lj = episode.extra.get("lighting")
        light = Lighting(tuple(lj["direction"]), tuple(lj["color"]), lj["ambient"], lj["diffuse"], lj["specular"]) \
            if lj else spec.lighting
        kw = dict(lighting=light, width=episode.width, height=episode.height, hfov_deg=episode.hfov_deg)
        oid = episode.extra.get("object_instance_id")
        if episode.goal_instance_id is None and oid is not None:
            with self._placed_open_set(self._object(int(oid))):
                return self.render(episode.goal_T_world_cam, "high", frame_id=episode.episode_id, **kw)
        return self.render(episode.goal_T_world_cam, "high", frame_id=episode.episode_id, **kw)

    def scene_json(self) -> dict:
        """What ``scene.json`` records of the loaded scene besides its objects: room, furniture, lighting, the open
        sets of both splits."""
        spec = self._require_scene()
        return {"open_set_objects": [o.to_json() for o in spec.open_set],
                "calibration_open_set_objects": [o.to_json() for o in spec.calibration_open_set],
                **spec.to_json()}

    def close(self) -> None:
        """Disconnect the pybullet client and remove the texture files (idempotent)."""
        files = getattr(self, "_texture_files", None)
        if files is not None:
            files.cleanup()
        if self._cid is not None and self._cid >= 0:
            try:
                self._p.disconnect(physicsClientId=self._cid)
            except Exception:  # already disconnected
                pass
            self._cid = -1

    def __enter__(self) -> "PyBulletSimulator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass


def _parse_seed(scene: str | int) -> int:
    if isinstance(scene, (int, np.integer)) and not isinstance(scene, bool):
        return int(scene)
    s = str(scene)
    if s.startswith("pybullet_seed"):
        s = s[len("pybullet_seed"):]
    if not s.isdigit():
        raise ConfigError(f"pybullet simulator: scene must be a seed (an integer or 'pybullet_seedN'), got {scene!r}")
    return int(s)
