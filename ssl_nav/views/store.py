"""ViewStore: the on-disk dataset of instance views (a stable format, docs/formats.md)::

    STORE/instances.json   {"<instance_id>": {"category", "centroid", "aabb", "n_points"}}
    STORE/views.jsonl      one view per line (view_id, instance_id, image, quality, frame_id,
                           T_world_cam, bbox, visible_fraction, sharpness, and any extra keys)
    STORE/views/<instance_id>/<view_id>.png

Every line is checked when the store is read: key types, a 4x4 finite ``T_world_cam``, a unique
``view_id`` and an ``image`` path inside ``STORE/views/`` (:func:`ssl_nav.paths.resolve_inside`). A store
opened ``strict`` (the default) refuses a bad line with ``views.jsonl:LINE`` in the message; ``strict=False``
(``ssl-nav store check``) skips it and lists it in :meth:`ViewStore.check`.

Appends are atomic: the PNG is written first (temporary file, fsync, rename),
then the whole JSON line is appended with a single ``os.write`` and fsynced. A
process killed at any point leaves either no line, or a complete line whose
image exists; at worst an orphan PNG, which no line references. A trailing
partial line (which a single write makes practically impossible) is ignored by
readers and cut off when the store is next opened for writing. Unknown keys are
kept. Instance ids are ``str(int)``.

:meth:`ViewStore.batch` groups the writes of one keyframe (the ROS collector) or of a command: the block's
PNGs are encoded and written in parallel when it ends (each still temporary file, fsync, rename), then
``instances.json`` is replaced once (when the block changed it), then all the block's lines are appended with
one ``os.write`` and one fsync (or, when the block removed views, ``views.jsonl`` is rewritten once,
atomically, and the removed images are deleted afterwards). The guarantees above hold for every line: a line
is written only after its image exists, so a process killed mid-batch leaves none of the batch's lines (at
worst orphan PNGs), or, after a torn append, complete lines whose images exist and a partial last line that
is handled as above. A block that raises writes no line and deletes the images it wrote (a batch of more
than :data:`BATCH_MAX_VIEWS` new views is written in parts of that size; the parts already written stay). View
PNGs are encoded losslessly with fast Huffman-only compression (:func:`encode_view_png`).

:meth:`ViewStore.transaction` makes a whole command all-or-nothing: when its block raises (a bad input file,
a full disk, Ctrl-C), ``views.jsonl`` and ``instances.json`` get their old bytes back, the images written in
the block are deleted, and a store the same object created is removed again. The undo writes no data (a
truncate and renames of hidden hard-link backups), and a rollback journal (:data:`JOURNAL`) lets the next
writer undo the transaction of a process killed with SIGKILL (:meth:`ViewStore.recover`).

One writer at a time: every write takes the store's advisory lock (``STORE/.lock``, :mod:`ssl_nav.locking`);
another process writing the store gets a :class:`~ssl_nav.locking.LockedError` naming its PID. Writers refuse
symbolic links among the store's own files and directories (:meth:`ViewStore.check_links`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from ssl_nav.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from ssl_nav.errors import FormatError, StoreError
from ssl_nav.frames import check_image_size, decode_image_file, encode_png
from ssl_nav.locking import DirLock
from ssl_nav.paths import resolve_inside

QUALITIES = ("low", "high")
REQUIRED_KEYS = ("view_id", "instance_id", "image", "quality")
_ID_RE = re.compile(r"^-?\d+$")
_VIEW_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
#: what a store directory may hold besides hidden temporary files (``collect`` adds map/ and sources.jsonl)
STORE_ENTRIES = ("instances.json", "views.jsonl", "views", "map", "sources.jsonl")
#: the rollback journal of a transaction in progress (a writer killed mid-transaction leaves it; the next
#: writer rolls the store back with it, :meth:`ViewStore.recover`)
JOURNAL = ".transaction.json"
#: a batch is written when it holds this many new views (bounds the memory of the crops it keeps)
BATCH_MAX_VIEWS = 64
#: threads that encode and write the PNGs of a batch (cv2 and fsync release the GIL)
BATCH_WRITERS = 4


_WRITERS: ThreadPoolExecutor | None = None
_WRITERS_LOCK = threading.Lock()


def _writers() -> ThreadPoolExecutor:
    """The threads that write batches (one pool per process, started on first use)."""
    global _WRITERS
    with _WRITERS_LOCK:
        if _WRITERS is None:
            _WRITERS = ThreadPoolExecutor(BATCH_WRITERS, thread_name_prefix="view_store_png")
        return _WRITERS


def _forget_writers() -> None:
    global _WRITERS
    _WRITERS = None  # a forked child has none of the parent's threads


os.register_at_fork(after_in_child=_forget_writers)


def encode_view_png(img: np.ndarray) -> bytes:
    """PNG bytes of a view (RGB or mono uint8), lossless and deterministic: zlib level 1, Huffman-only.

    On camera crops this is about twice as fast as the default filtered/LZ77 compression and the files are
    smaller, because sensor noise leaves LZ77 little to match (benchmarks/bench_ros.py writes them per keyframe).
    """
    import cv2

    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1,
                                         cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY])
    if not ok:
        raise StoreError("cannot encode a view as PNG")
    return buf.tobytes()


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_view_record(rec: Any, root: Path) -> dict:
    """A ``views.jsonl`` record with its types checked and ``instance_id`` as ``str``; ``ValueError`` otherwise.

    ``image`` must name a file inside ``root/views`` (paths are relative to ``root``).
    """
    if not isinstance(rec, dict):
        raise ValueError("not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        raise ValueError(f"missing key '{missing[0]}'")
    vid, iid = rec["view_id"], rec["instance_id"]
    if not isinstance(vid, str) or not _VIEW_ID_RE.match(vid):
        raise ValueError(f"key 'view_id' must be a string of letters, digits, '_', '-', '.', got {vid!r}")
    if isinstance(iid, bool) or not isinstance(iid, (str, int)) or not _ID_RE.match(str(iid)):
        raise ValueError(f"key 'instance_id' must be an integer id, got {iid!r}")
    if rec["quality"] not in QUALITIES:
        raise ValueError(f"key 'quality' must be 'low' or 'high', got {rec['quality']!r}")
    try:
        resolve_inside(root, rec["image"], "key 'image'", under="views")
    except FormatError as e:
        raise ValueError(str(e)) from None
    T = rec.get("T_world_cam")
    if T is not None:
        try:
            a = np.asarray(T, dtype=np.float64)
        except (TypeError, ValueError):
            a = None
        if a is None or a.shape != (4, 4) or not np.isfinite(a).all():
            raise ValueError(f"key 'T_world_cam' must be null or a 4x4 matrix of finite numbers, got {T!r:.60}")
    bbox = rec.get("bbox")
    if bbox is not None and not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(b) for b in bbox)):
        raise ValueError(f"key 'bbox' must be null or 4 numbers, got {bbox!r:.60}")
    for key in ("visible_fraction", "sharpness"):
        v = rec.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ValueError(f"key '{key}' must be null or a number, got {v!r:.60}")
    fid = rec.get("frame_id")
    if fid is not None and (isinstance(fid, bool) or not isinstance(fid, (str, int))):
        raise ValueError(f"key 'frame_id' must be null or a string, got {fid!r:.60}")
    return {**rec, "instance_id": str(iid)}


def _writes(method):
    """Run a writing method under the store's lock (:meth:`ViewStore.writing`)."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.writing():
            return method(self, *args, **kwargs)
    return wrapper


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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
        #: paths this object created (a new store), removed again when a transaction fails
        self._created: list[Path] = []
        self._tx: dict | None = None
        self._batch: dict | None = None  # writes waiting for the end of a batch() block (see flush)
        self.lock = DirLock(self.root, "view store writer")  #: one writer at a time (ssl_nav.locking)
        self._stamp: tuple = ()
        if not (self.root / "views.jsonl").is_file() or not (self.root / "instances.json").is_file():
            if not create:
                if not self.root.exists():
                    raise StoreError(f"{self.root}: view store not found")
                raise StoreError(f"{self.root}: not a view store (views.jsonl or instances.json missing)")
            self._create()
        self._problems: list[str] = []
        self._partial_tail = False
        self._views: list[dict] = []
        self._lines: dict[str, int] = {}  # view id -> line in views.jsonl
        self._raw: dict[str, bytes] = {}  # view id -> its line's bytes (rewrites keep lines as they were)
        self._n_lines = 0
        self._next: dict[str, int] = {}
        self._instances: dict[str, dict] | None = None
        self.reload()

    def _create(self) -> None:
        """Make the missing files of a new store; refuse a directory that holds anything else, or views without
        their ``instances.json`` (that would hide lost data behind an empty file)."""
        root = self.root
        if root.exists() and not root.is_dir():
            raise StoreError(f"{root}: exists and is not a directory")
        if root.is_dir():
            other = sorted(p.name for p in root.iterdir() if p.name not in STORE_ENTRIES and not p.name.startswith("."))
            if other:
                raise StoreError(f"{root}: not a view store and not empty (holds {other[0]!r}); "
                                 f"give a new or empty directory")
            views_jsonl = root / "views.jsonl"
            has_lines = views_jsonl.is_file() and views_jsonl.stat().st_size > 0
            has_images = (root / "views").is_dir() and any((root / "views").iterdir())
            if not (root / "instances.json").is_file() and has_lines:
                raise StoreError(f"{root / 'instances.json'}: missing, but views.jsonl holds views; restore it "
                                 f"(a store is views.jsonl + instances.json + views/)")
            if not views_jsonl.is_file() and has_images:
                raise StoreError(f"{views_jsonl}: missing, but views/ holds images; restore it")
        else:
            missing = root
            while not missing.parent.exists() and missing.parent != missing:
                missing = missing.parent
            root.mkdir(parents=True)
            self._created.append(missing)
        with self.lock:
            self._create_files()

    def _create_files(self) -> None:
        root = self.root
        self.check_links()
        for name, write in (("instances.json", lambda p: atomic_write_json(p, {})),
                            ("views.jsonl", lambda p: atomic_write_text(p, "")), ("views", Path.mkdir)):
            p = root / name
            if not p.exists():
                write(p)
                self._created.append(p)

    # ------------------------------------------------------------ reading

    @property
    def views_path(self) -> Path:
        return self.root / "views.jsonl"

    @property
    def instances_path(self) -> Path:
        return self.root / "instances.json"

    def reload(self) -> None:
        """Re-read ``views.jsonl`` (a trailing partial line is ignored); check every line (module docstring)."""
        self._stamp = self._file_stamp()
        data = self.views_path.read_bytes()
        self._partial_tail = bool(data) and not data.endswith(b"\n")
        lines = data.split(b"\n")
        if self._partial_tail:
            lines = lines[:-1]
        elif lines and lines[-1] == b"":
            lines = lines[:-1]
        views, problems = [], []
        line_of: dict[str, int] = {}
        raw_of: dict[str, bytes] = {}
        image_of: dict[str, str] = {}
        for n, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            where = f"{self.views_path}:{n}"
            try:
                try:
                    obj = json.loads(raw)
                except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
                    raise StoreError(f"{where}: malformed view line ({e})") from None
                try:
                    rec = check_view_record(obj, self.root)
                    vid = rec["view_id"]
                    if vid in line_of:
                        raise ValueError(f"duplicate view id {vid!r} (first on line {line_of[vid]})")
                    img = os.path.normpath(rec["image"])
                    if img in image_of:
                        raise ValueError(f"image {rec['image']!r} is also the image of view {image_of[img]!r}")
                except ValueError as e:
                    raise StoreError(f"{where}: bad view line ({e})") from None
            except StoreError as e:
                if self.strict:
                    raise StoreError(f"{e}; `ssl-nav store check {self.root}` lists every problem") from None
                problems.append(str(e))
                continue
            line_of[vid] = n
            raw_of[vid] = raw + b"\n"
            image_of[img] = vid
            views.append(rec)
        self._views = views
        self._problems = problems
        self._lines = line_of
        self._raw = raw_of
        self._n_lines = len(lines)
        self._next = {}
        for v in views:
            m = re.search(r"(\d+)$", str(v["view_id"]))
            if m:
                iid = v["instance_id"]
                self._next[iid] = max(self._next.get(iid, 0), int(m.group(1)) + 1)
        self._instances = None

    def _file_stamp(self) -> tuple:
        out = []
        for p in (self.views_path, self.instances_path):
            try:
                st = p.stat()
                out.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                out.append(None)
        return tuple(out)

    def instances(self) -> dict[str, dict]:
        """``instances.json`` as a dict keyed by ``str(int)`` ids."""
        if self._instances is None:
            try:
                d = json.loads(self.instances_path.read_bytes())
            except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                raise StoreError(f"{self.instances_path}: cannot read instances ({e})") from None
            if not isinstance(d, dict):
                raise StoreError(f"{self.instances_path}: expected a JSON object of instances")
            for key, entry in d.items():
                if not _ID_RE.match(key):
                    raise StoreError(f"{self.instances_path}: instance id {key!r} is not an integer")
                if not isinstance(entry, dict):
                    raise StoreError(f"{self.instances_path}: instance {key} must be a JSON object, got {entry!r:.60}")
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
        """``STORE/<image>``; :class:`StoreError` when the record's path would leave ``STORE/views``."""
        return resolve_inside(self.root, view.get("image"), f"{self.views_path}: view {view.get('view_id')}: "
                              f"key 'image'", under="views", error=StoreError)

    def line_of(self, view_id: str) -> int | None:
        """The line of ``views.jsonl`` that holds ``view_id`` (for messages)."""
        return self._lines.get(str(view_id))

    def load_image(self, view: dict) -> np.ndarray:
        """The view's image as uint8 RGB; :class:`StoreError` naming the file when missing or corrupt."""
        p = self.image_path(view)
        if not p.is_file():
            raise StoreError(f"{p}: image of view {view.get('view_id')} is missing")
        check_image_size(p, StoreError)
        img = decode_image_file(p, cv2.IMREAD_COLOR)
        if img is None:
            raise StoreError(f"{p}: image of view {view.get('view_id')} cannot be decoded")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    # ------------------------------------------------------------ the writer's lock

    def acquire_lock(self) -> None:
        """Become the store's one writer (:class:`~ssl_nav.locking.LockedError` naming the holder's PID when
        another process writes it). The first acquisition rolls back what a killed writer left (:meth:`recover`),
        refuses symbolic links (:meth:`check_links`) and re-reads files another writer changed meanwhile."""
        first = not self.lock.held
        self.lock.acquire()
        if not first:
            return
        try:
            self.check_links()
            self.recover()
            if self._batch is None and self._tx is None and self._file_stamp() != self._stamp:
                self.reload()
        except BaseException:
            self.lock.release()
            raise

    def release_lock(self) -> None:
        self.lock.release()

    close = release_lock

    @contextlib.contextmanager
    def writing(self) -> Iterator["ViewStore"]:
        """Hold the writer's lock for the block (re-entrant; every writing method takes it)."""
        self.acquire_lock()
        try:
            yield self
        finally:
            self.release_lock()

    def check_links(self) -> None:
        """Refuse symbolic links among the store's own files and directories: a write through one would land
        outside the store (readers already refuse linked images)."""
        links = self._links()
        if links:
            raise StoreError(links[0])

    def _links(self) -> list[str]:
        """A message per symbolic link among the store's files, its ``views/`` and ``views/<id>/`` directories."""
        names = [self.root / n for n in (*STORE_ENTRIES, JOURNAL)]
        views = self.root / "views"
        if views.is_dir() and not views.is_symlink():
            names += sorted(views.iterdir())
        return [f"{p}: is a symbolic link (to {os.readlink(p)}); a store's files and directories must lie inside "
                f"it, so nothing is written through it. Replace the link by what it points to"
                for p in names if p.is_symlink()]

    # ------------------------------------------------------------ writing

    @_writes
    def set_instances(self, d: dict[str, dict]) -> None:
        """Atomically replace ``instances.json`` (inside :meth:`batch`: once, when the batch is written)."""
        out = {}
        for key, entry in d.items():
            key = str(key)
            if not _ID_RE.match(key):
                raise StoreError(f"{self.instances_path}: instance id {key!r} is not an integer")
            out[key] = {k: _json_value(v) for k, v in dict(entry).items()}
        if self._batch is not None:
            self._batch["instances"] = out  # written once, when the batch is
        else:
            self._tx_backup("instances.json")
            atomic_write_json(self.instances_path, out)
        self._instances = out
        self._keep_created()

    def _repair_tail(self) -> None:
        """Cut a trailing partial line left by a crash (before our first append)."""
        if not self._partial_tail:
            return
        data = self.views_path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data[:data.rfind(b"\n") + 1]
            atomic_write_bytes(self.views_path, keep)
        self._partial_tail = False

    @_writes
    def add_view(self, instance_id: str, image: np.ndarray, quality: str, *, frame_id: str | None = None,
                 T_world_cam: np.ndarray | list | None = None, bbox: list | tuple | None = None,
                 visible_fraction: float | None = None, sharpness: float | None = None,
                 view_id: str | None = None, **extra: Any) -> dict:
        """Write the image, then append its line atomically; return the record.

        Inside :meth:`batch` both wait for the end of the block (the record is returned at once)."""
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
        if view_id in self._lines:
            raise StoreError(f"{self.views_path}: view id {view_id!r} exists already (line {self._lines[view_id]})")
        self._repair_tail()
        path = self.root / rec["image"]
        if path.parent.is_symlink() or path.is_symlink():
            raise StoreError(f"{path.parent if path.parent.is_symlink() else path}: is a symbolic link; nothing is "
                             f"written through it (a store's files must lie inside it)")
        if self._tx is not None:
            self._tx["images"].append(path)
        line = (json.dumps(rec) + "\n").encode("utf-8")
        if self._batch is not None:
            self._batch["new"].append({"view_id": view_id, "path": path, "image": img.copy(), "line": line})
        else:
            atomic_write_bytes(path, encode_view_png(img))
            self._append_lines(line)
        self._n_lines += 1
        self._lines[view_id] = self._n_lines
        self._raw[view_id] = line
        self._views.append(rec)
        self._keep_created()
        if self._batch is not None and len(self._batch["new"]) >= BATCH_MAX_VIEWS:
            self.flush()
        return dict(rec)

    def _keep_created(self) -> None:
        """A write outside a transaction makes a new store permanent: a later failed transaction keeps it."""
        if self._tx is None:
            self._created = []

    def identical_view(self, instance_id: str, image: np.ndarray, quality: str | None = None) -> dict | None:
        """A view of ``instance_id`` (of ``quality``) whose PNG file equals ``image`` encoded, else ``None``.

        Keeps a photo added twice (``add-photos``, ``collect --append`` of a recording with the same photos)
        from becoming two views. Compares with both encodings a store may hold (:func:`encode_view_png`, and
        :func:`ssl_nav.frames.encode_png` of stores written before it)."""
        img = np.asarray(image)
        pending = {e["view_id"]: e for e in self._batch["new"]} if self._batch is not None else {}
        encodings = {encode_view_png(img), encode_png(img)}
        sizes = {len(d) for d in encodings}
        for v in self.views(instance_id, quality):
            if v["view_id"] in pending:
                if np.array_equal(pending[v["view_id"]]["image"], img):
                    return v
                continue
            p = self.root / v["image"]
            try:
                if p.stat().st_size in sizes and p.read_bytes() in encodings:
                    return v
            except OSError:
                continue
        return None

    def _append_lines(self, data: bytes) -> None:
        """Append ``data`` (whole lines) with one write and one fsync."""
        fd = os.open(self.views_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise StoreError(f"{self.views_path}: short write ({written} of {len(data)} bytes)")
            os.fsync(fd)
        finally:
            os.close(fd)

    @_writes
    def remove_views(self, view_ids: list[str] | set[str]) -> int:
        """Drop views (rewrite ``views.jsonl`` atomically, then delete their images); returns how many."""
        drop = {str(v) for v in view_ids}
        if not drop:
            return 0
        if self._tx is not None:
            raise StoreError(f"{self.root}: views cannot be removed inside a transaction (it could not undo that)")
        self._repair_tail()
        kept = [v for v in self._views if v["view_id"] not in drop]
        gone = [v for v in self._views if v["view_id"] in drop]
        if not gone:
            return 0
        self._views = kept
        self._lines = {v["view_id"]: n for n, v in enumerate(kept, start=1)}
        self._n_lines = len(kept)
        if self._batch is not None:  # views.jsonl is rewritten once, when the batch is written
            pending = {e["view_id"] for e in self._batch["new"]}
            self._batch["new"] = [e for e in self._batch["new"] if e["view_id"] not in drop]  # never written
            self._batch["removed"].extend(v for v in gone if v["view_id"] not in pending)
            self._batch["rewrite"] = True
            for v in gone:
                self._raw.pop(v["view_id"], None)
            return len(gone)
        atomic_write_bytes(self.views_path, b"".join(self._raw[v["view_id"]] for v in kept))
        self._keep_created()
        self._delete_images(gone)
        return len(gone)

    def _delete_images(self, gone: list[dict]) -> None:
        """Delete the images of removed views that no remaining view uses."""
        still_used = {os.path.normpath(v["image"]) for v in self._views}
        for v in gone:
            self._raw.pop(v["view_id"], None)
            if os.path.normpath(v["image"]) not in still_used:
                # every record was checked when read; image_path checks again, right before the unlink
                self.image_path(v).unlink(missing_ok=True)

    # ------------------------------------------------------------ batches

    @contextlib.contextmanager
    def batch(self) -> Iterator["ViewStore"]:
        """Group the block's writes: they reach the disk when it ends (module docstring; nests into an outer
        batch). Every :data:`BATCH_MAX_VIEWS` new views the batch is written early (:meth:`flush`). When the block
        raises, nothing of the unwritten part reaches ``views.jsonl`` and the store is re-read from the disk."""
        if self._batch is not None:
            yield self
            return
        with self.writing():
            self._batch = self._new_batch()
            try:
                yield self
                self.flush()
            except BaseException:
                self._abort_batch()
                raise
            finally:
                self._batch = None

    @staticmethod
    def _new_batch() -> dict:
        return {"new": [], "removed": [], "rewrite": False, "instances": None}

    @_writes
    def flush(self) -> None:
        """Write the pending part of the current batch now: the PNGs (in parallel, each atomically), then
        ``instances.json`` (when changed), then the lines (one append + fsync, or one atomic rewrite of
        ``views.jsonl`` when views were removed), then delete the removed views' images. No-op outside a batch."""
        b = self._batch
        if b is None or not (b["new"] or b["rewrite"] or b["instances"] is not None):
            return
        written: list[Path] = []
        try:
            self._write_images(b["new"], written)
            if b["instances"] is not None:
                self._tx_backup("instances.json")
                atomic_write_json(self.instances_path, b["instances"])
            if b["rewrite"]:
                atomic_write_bytes(self.views_path, b"".join(self._raw[v["view_id"]] for v in self._views))
            elif b["new"]:
                self._append_lines(b"".join(e["line"] for e in b["new"]))
        except BaseException:
            for p in written:  # no line references them
                p.unlink(missing_ok=True)
            raise
        removed = b["removed"]
        self._batch = self._new_batch()
        self._keep_created()
        self._delete_images(removed)

    @staticmethod
    def _write_images(new: list[dict], written: list[Path]) -> None:
        """Encode and atomically write the batch's images, up to :data:`BATCH_WRITERS` at once; ``written``
        gets every path written (also when another one failed: all writers have finished when this returns)."""
        def write(e: dict) -> None:
            atomic_write_bytes(e["path"], encode_view_png(e["image"]))
            written.append(e["path"])

        if len(new) <= 1:
            for e in new:
                write(e)
            return
        futures = [_writers().submit(write, e) for e in new]
        try:
            wait(futures)
        except BaseException:  # Ctrl-C: no writer may leave an image after the caller deleted what was written
            for f in futures:
                f.cancel()
            while True:
                try:
                    wait(futures)
                    break
                except KeyboardInterrupt:
                    continue
            raise
        for f in futures:
            f.result()  # the first error, after every writer has finished

    def _abort_batch(self) -> None:
        """A batch block raised: delete what was written for its unwritten part and re-read the store."""
        b, self._batch = self._batch, None
        for e in (b or {}).get("new", []):
            e["path"].unlink(missing_ok=True)
        if self.views_path.is_file() and self.instances_path.is_file():
            self.reload()

    # ------------------------------------------------------------ all or nothing

    @contextlib.contextmanager
    def transaction(self) -> Iterator["ViewStore"]:
        """Undo the block's writes when it raises (see the module docstring); nests into the outer one.

        The undo writes no data (a full disk cannot stop it): ``views.jsonl`` is only appended to inside a
        transaction and is cut back to its old length; a file replaced in it (``instances.json``,
        ``sources.jsonl``) keeps its old version under a hidden hard link, a directory (``map``) under a hidden
        name, until the transaction ends. A rollback journal (:data:`JOURNAL`) lists them, so that the next
        writer undoes a transaction whose process was killed (:meth:`recover`)."""
        if self._tx is not None:
            yield self
            return
        with self.writing():
            self.flush()  # a transaction inside a batch: what came before it is kept whatever happens
            self._repair_tail()
            self._tx = {"views_size": self.views_path.stat().st_size, "backups": {}, "images": []}
            try:
                self._write_journal()
                yield self
            except BaseException:
                self._rollback()
                raise
            tx, self._tx = self._tx, None
            (self.root / JOURNAL).unlink(missing_ok=True)  # the commit point
            self._drop_backups(tx["backups"])
            self._created = []  # committed: a later failure no longer removes the store

    def _write_journal(self) -> None:
        tx = self._tx
        atomic_write_json(self.root / JOURNAL, {"pid": os.getpid(), "views_size": tx["views_size"],
                                                "backups": tx["backups"]})

    def _tx_backup(self, name: str) -> None:
        """Inside a transaction, keep the current ``STORE/name`` (a file or a directory) before it is first
        replaced: a hard link (a file) or the renamed directory, recorded in the journal before the change."""
        tx = self._tx
        if tx is None or name in tx["backups"]:
            return
        target = self.root / name
        if target.is_symlink():
            raise StoreError(f"{target}: is a symbolic link; nothing is written through it")
        backup = f".{name}.tx-{os.getpid()}" if target.exists() else None
        tx["backups"][name] = backup
        self._write_journal()
        if backup is not None and target.is_file():
            (self.root / backup).unlink(missing_ok=True)
            os.link(target, self.root / backup)

    def replace_file(self, name: str, data: bytes) -> None:
        """Atomically replace the store's sidecar ``name`` (``sources.jsonl``); undone with the transaction."""
        with self.writing():
            self._tx_backup(name)
            atomic_write_bytes(self.root / name, data)

    def replace_dir(self, name: str, new: Path) -> None:
        """Put the finished directory ``new`` in place of ``STORE/name`` (the map); undone with the
        transaction (the old directory is kept under a hidden name until it ends)."""
        from ssl_nav.atomic import replace_dir

        with self.writing():
            if self._tx is None:
                replace_dir(new, self.root / name)
                return
            self._tx_backup(name)
            backup = self._tx["backups"][name]
            if backup is not None and (self.root / name).is_dir() and not (self.root / backup).exists():
                os.replace(self.root / name, self.root / backup)
            os.replace(new, self.root / name)

    def _drop_backups(self, backups: dict) -> None:
        import shutil

        for backup in backups.values():
            if backup is None:
                continue
            p = self.root / backup
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    def _undo(self, views_size: int, backups: dict) -> None:
        """Cut ``views.jsonl`` back to ``views_size`` bytes and put every backed-up file or directory back
        (no data is written: a truncate and renames)."""
        import shutil

        if self.views_path.is_file() and self.views_path.stat().st_size > views_size:
            os.truncate(self.views_path, views_size)
        for name, backup in backups.items():
            target = self.root / name
            if backup is None:  # it did not exist before the transaction
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target, ignore_errors=True)
                else:
                    target.unlink(missing_ok=True)
                continue
            b = self.root / backup
            if not b.exists():
                continue
            if b.is_dir():
                if target.is_dir() and not target.is_symlink():
                    trash = self.root / f".{name}.undone-{os.getpid()}"
                    os.replace(target, trash)
                    shutil.rmtree(trash, ignore_errors=True)
                os.replace(b, target)
            else:
                os.replace(b, target)
        _fsync_dir(self.root)

    def _rollback(self) -> None:
        tx, self._tx = self._tx, None
        if self._batch is not None:
            self._batch = self._new_batch()
        for p in tx["images"]:
            p.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                p.parent.rmdir()  # views/<instance_id>/ when it is empty now
        self._undo(tx["views_size"], tx["backups"])
        (self.root / JOURNAL).unlink(missing_ok=True)
        self._remove_created()

    def remove_if_created(self) -> None:
        """Remove the store again when this object created it and nothing was written into it since (a command
        that failed before its transaction leaves no empty store behind)."""
        if self._created and self._tx is None and not self._views and not self.instances():
            self._remove_created()

    def _remove_created(self) -> None:
        for p in reversed(self._created):  # what this object created (a new store): remove it again
            if p.is_dir() and not p.is_symlink():
                with contextlib.suppress(OSError):
                    (p / ".lock").unlink(missing_ok=True)
                    for sub in sorted(p.rglob("*"), reverse=True):  # only empty directories are left in it
                        if sub.is_dir() and not sub.is_symlink():
                            sub.rmdir()
                        elif sub.name == ".lock":
                            sub.unlink()
                    p.rmdir()
            else:
                p.unlink(missing_ok=True)
        self._created = []
        if self.views_path.is_file() and self.instances_path.is_file():
            self.reload()
        else:
            self._views, self._lines, self._n_lines, self._next, self._instances = [], {}, 0, {}, None

    def recover(self) -> list[str]:
        """Under the lock: undo the transaction of a writer that was killed (its :data:`JOURNAL` is left), and
        delete what killed writers leave: temporary files, and images that no line of ``views.jsonl`` names.
        Returns what was done (for messages); a store with nothing left over is not touched."""
        import shutil

        done = []
        journal = self.root / JOURNAL
        if journal.is_file():
            try:
                j = json.loads(journal.read_bytes())
                views_size, backups = int(j["views_size"]), dict(j["backups"])
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise StoreError(f"{journal}: unreadable rollback journal of an interrupted write ({e}); "
                                 f"`ssl-nav store check {self.root}` lists the store's problems") from None
            for name in backups:
                if name not in STORE_ENTRIES or name == "views":
                    raise StoreError(f"{journal}: names {name!r}, not a file of a store")
            self._undo(views_size, backups)
            journal.unlink()
            done.append(f"rolled back an interrupted write (PID {j.get('pid')})")
        for p in list(self.root.glob(".*.tx-*")) + list(self.root.glob(".*.tmp")) + \
                list(self.root.glob(".map.new-*")) + list(self.root.glob(".*.undone-*")):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            done.append(f"deleted {p.name}")
        if done and self.views_path.is_file():
            self.reload()
            used = {os.path.normpath(v["image"]) for v in self._views}
            views = self.root / "views"
            for p in sorted(views.rglob("*")) if views.is_dir() else []:
                if p.is_symlink() or not p.is_file():
                    continue
                rel = os.path.normpath(p.relative_to(self.root).as_posix())
                if rel not in used and (p.suffix == ".png" or p.name.endswith(".tmp")):
                    p.unlink()
            for p in sorted(views.iterdir()) if views.is_dir() else []:
                with contextlib.suppress(OSError):
                    if p.is_dir() and not p.is_symlink():
                        p.rmdir()  # empty now
        return done

    # ------------------------------------------------------------ checking

    def check(self, decode: bool = True) -> list[str]:
        """Problems by path and line: malformed or bad lines (types, paths leaving the store, duplicate ids),
        a bad instances.json, views of unknown instances, missing, oversized or undecodable images, and the same
        image stored twice for one instance and frame (a view collected twice)."""
        problems = list(self._problems) + self._links()
        if (self.root / JOURNAL).is_file():
            problems.append(f"{self.root / JOURNAL}: a write was interrupted (its process was killed); the next "
                            f"writer undoes it, or `ssl-nav store recover {self.root}` now")
        try:
            inst = self.instances()
        except StoreError as e:
            problems.append(str(e))
            inst = None
        first: dict[tuple, dict] = {}
        for v in self._views:
            vid = v["view_id"]
            where = f"{self.views_path}:{self._lines.get(vid, '?')}: view {vid}"
            p = self.root / v["image"]  # every path was checked when the line was read
            if inst is not None and v["instance_id"] not in inst:
                problems.append(f"{where}: instance {v['instance_id']} not in {self.instances_path.name}")
            if not p.is_file():
                problems.append(f"{p}: missing (view {vid})")
                continue
            if not decode:
                continue
            try:
                check_image_size(p, StoreError)
                data = p.read_bytes()
            except (StoreError, OSError) as e:
                problems.append(f"{e} (view {vid})")
                continue
            if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is None:
                problems.append(f"{p}: corrupt, cannot be decoded (view {vid})")
                continue
            key = (v["instance_id"], v.get("frame_id"), hashlib.sha256(data).hexdigest())
            if key in first:
                other = first[key]["view_id"]
                problems.append(f"{where}: the same image as view {other} (line {self._lines.get(other, '?')}) "
                                f"of the same instance and frame: a duplicate view")
            else:
                first[key] = v
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
