"""ViewStore: the on-disk dataset of instance views (DESIGN.md, a stable format)::

    STORE/instances.json   {"<instance_id>": {"category", "centroid", "aabb", "n_points"}}
    STORE/views.jsonl      one view per line (view_id, instance_id, image, quality, frame_id,
                           T_world_cam, bbox, visible_fraction, sharpness, and any extra keys)
    STORE/views/<instance_id>/<view_id>.png

Appends are atomic: the PNG is written first (temporary file, fsync, rename),
then the whole JSON line is appended with a single ``os.write`` and fsynced. A
process killed at any point leaves either no line, or a complete line whose
image exists; at worst an orphan PNG, which no line references. A trailing
partial line (which a single write makes practically impossible) is ignored by
readers and cut off when the store is next opened for writing. Unknown keys are
kept. Instance ids are ``str(int)``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ssl_nav.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from ssl_nav.errors import StoreError

QUALITIES = ("low", "high")
REQUIRED_KEYS = ("view_id", "instance_id", "image", "quality")
_ID_RE = re.compile(r"^-?\d+$")
_VIEW_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def _json_value(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    return v


class ViewStore:
    """A directory of LQ robot views and HQ user photos per instance (see the module docstring)."""

    def __init__(self, root: str | os.PathLike, create: bool = False, strict: bool = True):
        """Open ``root``; ``create`` makes an empty store when missing. ``strict=False`` skips malformed lines
        (recorded for :meth:`check`) instead of raising :class:`StoreError`."""
        self.root = Path(root)
        self.strict = strict
        if not (self.root / "views.jsonl").is_file() or not (self.root / "instances.json").is_file():
            if not create:
                if not self.root.exists():
                    raise StoreError(f"{self.root}: view store not found")
                raise StoreError(f"{self.root}: not a view store (views.jsonl or instances.json missing)")
            (self.root / "views").mkdir(parents=True, exist_ok=True)
            if not (self.root / "instances.json").is_file():
                atomic_write_json(self.root / "instances.json", {})
            if not (self.root / "views.jsonl").is_file():
                atomic_write_text(self.root / "views.jsonl", "")
        self._problems: list[str] = []
        self._partial_tail = False
        self._views: list[dict] = []
        self._next: dict[str, int] = {}
        self._instances: dict[str, dict] | None = None
        self.reload()

    # ------------------------------------------------------------ reading

    @property
    def views_path(self) -> Path:
        return self.root / "views.jsonl"

    @property
    def instances_path(self) -> Path:
        return self.root / "instances.json"

    def reload(self) -> None:
        """Re-read ``views.jsonl`` (a trailing partial line is ignored)."""
        data = self.views_path.read_bytes()
        self._partial_tail = bool(data) and not data.endswith(b"\n")
        lines = data.split(b"\n")
        if self._partial_tail:
            lines = lines[:-1]
        views, problems = [], []
        for n, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
                if not isinstance(rec, dict):
                    raise ValueError("not a JSON object")
                missing = [k for k in REQUIRED_KEYS if k not in rec]
                if missing:
                    raise ValueError(f"missing key '{missing[0]}'")
                if rec["quality"] not in QUALITIES:
                    raise ValueError(f"quality must be 'low' or 'high', got {rec['quality']!r}")
            except (ValueError, UnicodeDecodeError) as e:
                msg = f"{self.views_path}:{n}: malformed view line ({e})"
                if self.strict:
                    raise StoreError(msg) from None
                problems.append(msg)
                continue
            rec["instance_id"] = str(rec["instance_id"])
            views.append(rec)
        self._views = views
        self._problems = problems
        self._next = {}
        for v in views:
            m = re.search(r"(\d+)$", str(v["view_id"]))
            if m:
                iid = v["instance_id"]
                self._next[iid] = max(self._next.get(iid, 0), int(m.group(1)) + 1)
        self._instances = None

    def instances(self) -> dict[str, dict]:
        """``instances.json`` as a dict keyed by ``str(int)`` ids."""
        if self._instances is None:
            try:
                d = json.loads(self.instances_path.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise StoreError(f"{self.instances_path}: cannot read instances ({e})") from None
            if not isinstance(d, dict):
                raise StoreError(f"{self.instances_path}: expected a JSON object of instances")
            self._instances = d
        return dict(self._instances)

    def views(self, instance_id: str | None = None, quality: str | None = None) -> list[dict]:
        """View records (copies), optionally of one instance and/or one quality, in file order."""
        iid = None if instance_id is None else str(instance_id)
        return [dict(v) for v in self._views
                if (iid is None or v["instance_id"] == iid) and (quality is None or v["quality"] == quality)]

    def __len__(self) -> int:
        return len(self._views)

    def image_path(self, view: dict) -> Path:
        return self.root / view["image"]

    def load_image(self, view: dict) -> np.ndarray:
        """The view's image as uint8 RGB; :class:`StoreError` naming the file when missing or corrupt."""
        import cv2

        p = self.image_path(view)
        if not p.is_file():
            raise StoreError(f"{p}: image of view {view.get('view_id')} is missing")
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise StoreError(f"{p}: image of view {view.get('view_id')} cannot be decoded")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    # ------------------------------------------------------------ writing

    def set_instances(self, d: dict[str, dict]) -> None:
        """Atomically replace ``instances.json``."""
        out = {}
        for key, entry in d.items():
            key = str(key)
            if not _ID_RE.match(key):
                raise StoreError(f"{self.instances_path}: instance id {key!r} is not an integer")
            out[key] = {k: _json_value(v) for k, v in dict(entry).items()}
        atomic_write_json(self.instances_path, out)
        self._instances = out

    def _repair_tail(self) -> None:
        """Cut a trailing partial line left by a crash (before our first append)."""
        if not self._partial_tail:
            return
        data = self.views_path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data[:data.rfind(b"\n") + 1]
            atomic_write_bytes(self.views_path, keep)
        self._partial_tail = False

    def add_view(self, instance_id: str, image: np.ndarray, quality: str, *, frame_id: str | None = None,
                 T_world_cam: np.ndarray | list | None = None, bbox: list | tuple | None = None,
                 visible_fraction: float | None = None, sharpness: float | None = None,
                 view_id: str | None = None, **extra: Any) -> dict:
        """Write the image, then append its line atomically; return the record."""
        from ssl_nav.frames import encode_png

        iid = str(instance_id)
        if not _ID_RE.match(iid):
            raise StoreError(f"{self.root}: instance id {iid!r} is not an integer id")
        if quality not in QUALITIES:
            raise StoreError(f"{self.root}: quality must be 'low' or 'high', got {quality!r}")
        img = np.asarray(image)
        if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3) or img.size == 0:
            raise StoreError(f"{self.root}: view image must be uint8 HxWx3 (or HxW), got {img.dtype} {img.shape}")
        if view_id is None:
            n = self._next.get(iid, 0)
            view_id = f"{iid}_{n:06d}"
        view_id = str(view_id)
        if not _VIEW_ID_RE.match(view_id):
            raise StoreError(f"{self.root}: view id {view_id!r} may only hold letters, digits, '_', '-', '.'")
        m = re.search(r"(\d+)$", view_id)
        if m:
            self._next[iid] = max(self._next.get(iid, 0), int(m.group(1)) + 1)
        rec = {"view_id": view_id, "instance_id": iid, "image": f"views/{iid}/{view_id}.png", "quality": quality,
               "frame_id": None if frame_id is None else str(frame_id),
               "T_world_cam": None if T_world_cam is None else np.asarray(T_world_cam, dtype=np.float64).tolist(),
               "bbox": None if bbox is None else [float(v) for v in bbox],
               "visible_fraction": None if visible_fraction is None else float(visible_fraction),
               "sharpness": None if sharpness is None else float(sharpness)}
        for k, v in extra.items():
            rec[k] = _json_value(v)
        self._repair_tail()
        atomic_write_bytes(self.root / rec["image"], encode_png(img))
        self._append_line(json.dumps(rec) + "\n")
        self._views.append(rec)
        return dict(rec)

    def _append_line(self, line: str) -> None:
        data = line.encode("utf-8")
        fd = os.open(self.views_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise StoreError(f"{self.views_path}: short write ({written} of {len(data)} bytes)")
            os.fsync(fd)
        finally:
            os.close(fd)

    def remove_views(self, view_ids: list[str] | set[str]) -> int:
        """Drop views (rewrite ``views.jsonl`` atomically, then delete their images); returns how many."""
        drop = {str(v) for v in view_ids}
        if not drop:
            return 0
        self._repair_tail()
        kept = [v for v in self._views if v["view_id"] not in drop]
        gone = [v for v in self._views if v["view_id"] in drop]
        atomic_write_text(self.views_path, "".join(json.dumps(v) + "\n" for v in kept))
        self._views = kept
        for v in gone:
            self.image_path(v).unlink(missing_ok=True)
        return len(gone)

    # ------------------------------------------------------------ checking

    def check(self, decode: bool = True) -> list[str]:
        """Problems by path: malformed lines, missing or undecodable images, duplicate ids, bad instances.json."""
        import cv2

        problems = list(self._problems)
        try:
            inst = self.instances()
            for key in inst:
                if not _ID_RE.match(str(key)):
                    problems.append(f"{self.instances_path}: instance id {key!r} is not an integer")
        except StoreError as e:
            problems.append(str(e))
            inst = None
        seen: set[str] = set()
        for v in self._views:
            p = self.image_path(v)
            if v["view_id"] in seen:
                problems.append(f"{self.views_path}: duplicate view id {v['view_id']}")
            seen.add(v["view_id"])
            if not _ID_RE.match(v["instance_id"]):
                problems.append(f"{self.views_path}: view {v['view_id']}: "
                                f"instance id {v['instance_id']!r} is not an integer")
            if inst is not None and v["instance_id"] not in inst:
                problems.append(f"{self.views_path}: view {v['view_id']}: "
                                f"instance {v['instance_id']} not in {self.instances_path.name}")
            if not p.is_file():
                problems.append(f"{p}: missing (view {v['view_id']})")
            elif decode and cv2.imread(str(p), cv2.IMREAD_UNCHANGED) is None:
                problems.append(f"{p}: corrupt, cannot be decoded (view {v['view_id']})")
        return problems

    def stats(self) -> dict:
        """Instances, views per instance, LQ/HQ split."""
        per: dict[str, dict[str, int]] = {}
        for v in self._views:
            d = per.setdefault(v["instance_id"], {"low": 0, "high": 0})
            d[v["quality"]] += 1
        inst = self.instances()
        return {"instances": len(inst), "instances_with_views": len(per), "views": len(self._views),
                "low": sum(d["low"] for d in per.values()), "high": sum(d["high"] for d in per.values()),
                "per_instance": {k: per.get(k, {"low": 0, "high": 0}) for k in
                                 sorted(set(inst) | set(per), key=lambda s: int(s) if _ID_RE.match(s) else 0)}}
