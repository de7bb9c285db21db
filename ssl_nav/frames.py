"""The Frame contract and the frames-directory format.

A :class:`Frame` is one RGB-D image with its camera pose (docs/formats.md, "Frames directory"). The
frames directory is what ``ssl-nav simulate`` writes and ``ssl-nav collect``
reads; a user's own recordings can be written in it too::

    DIR/frames.jsonl     one JSON object per frame, in time order:
                         {"frame_id": str, "stamp": float (s),
                          "rgb": "rgb/<frame_id>.png",            8-bit RGB PNG
                          "depth": "depth/<frame_id>.png",        16-bit PNG in mm (0 = invalid), or .npy float32 m
                          "instance": "instance/<frame_id>.png" | null,   16-bit PNG of instance ids (0 = none)
                          "K": 3x3, "T_world_cam": 4x4 (OpenCV camera, world z-up),
                          "quality": "low" | "high"}
    DIR/photos.jsonl     optional high-quality user photos:
                         {"instance_id": str, "image": "photos/<instance_id>/<n>.png"}
    DIR/queries.jsonl    optional queries (docs/formats.md, "queries.jsonl")
    DIR/scene.json       optional scene description (objects, boxes, categories)

Paths are relative to DIR and must stay inside it (:func:`ssl_nav.paths.resolve_inside`); a frame naming a
path outside DIR, or a field of the wrong type, is skipped with its reason (``frames.jsonl:LINE``), like any
other unusable frame. Lines must be UTF-8. Unknown keys are ignored. Images whose header claims more than
:data:`MAX_IMAGE_PIXELS` pixels are refused before they are decoded.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ssl_nav.atomic import atomic_write_bytes
from ssl_nav.errors import FormatError, FrameError
from ssl_nav.geometry import check_intrinsics, check_pose
from ssl_nav.paths import resolve_inside

QUALITIES = ("low", "high")
#: the largest image (in pixels) any reader decodes: 100 MP, above a 48 MP phone photo. The size is read from
#: the file's header first, since a small file can claim a huge image (a decompression bomb).
MAX_IMAGE_PIXELS = 100_000_000
_FRAME_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass
class Frame:
    """One RGB-D frame with its pose (docs/formats.md, "frames.jsonl")."""

    rgb: np.ndarray  #: uint8 HxWx3
    depth: np.ndarray  #: float32 HxW metres; 0 or NaN = invalid
    K: np.ndarray  #: 3x3 intrinsics
    T_world_cam: np.ndarray  #: 4x4, OpenCV camera to world
    instance_mask: np.ndarray | None = None  #: int32 HxW, 0 = none
    stamp: float = 0.0
    frame_id: str = ""
    quality: str = "low"
    extra: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])

    def validate(self) -> "Frame":
        """Check shapes, dtypes, K and pose; raise :class:`FrameError` naming the field. Returns self."""
        where = f"frame {self.frame_id or '?'}"
        if not isinstance(self.rgb, np.ndarray) or self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.uint8:
            raise FrameError(f"{where}: rgb must be uint8 HxWx3, got {getattr(self.rgb, 'dtype', type(self.rgb))} "
                             f"{getattr(self.rgb, 'shape', '')}")
        h, w = self.shape
        if not isinstance(self.depth, np.ndarray) or self.depth.shape != (h, w):
            raise FrameError(f"{where}: depth shape {getattr(self.depth, 'shape', None)} does not match rgb {(h, w)}")
        if self.depth.dtype != np.float32:
            raise FrameError(f"{where}: depth must be float32 metres, got {self.depth.dtype}")
        valid = np.isfinite(self.depth) & (self.depth > 0)
        if not valid.any():
            raise FrameError(f"{where}: depth has no valid pixel (all zero or NaN)")
        if self.instance_mask is not None:
            if self.instance_mask.shape != (h, w):
                raise FrameError(f"{where}: instance_mask shape {self.instance_mask.shape} does not match rgb {(h, w)}")
            if not np.issubdtype(self.instance_mask.dtype, np.integer):
                raise FrameError(f"{where}: instance_mask must be integer, got {self.instance_mask.dtype}")
        self.K = check_intrinsics(self.K, f"{where}: K")
        self.T_world_cam = check_pose(self.T_world_cam, f"{where}: T_world_cam")
        if self.quality not in QUALITIES:
            raise FrameError(f"{where}: quality must be 'low' or 'high', got {self.quality!r}")
        if not math.isfinite(self.stamp):
            raise FrameError(f"{where}: stamp is not finite")
        return self


@dataclass
class SkippedFrame:
    """A frame the reader could not use, with the reason (counted, never fatal)."""

    frame_id: str
    line: int
    reason: str


# ---------------------------------------------------------------- image I/O

def image_size_from_header(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(width, height)`` read from the image file's header, without decoding its pixels.

    ``None`` when Pillow does not know the format (OpenCV may still read it). A header beyond Pillow's own
    decompression-bomb limit (about 179 MP) reports ``(-1, -1)``: larger than :data:`MAX_IMAGE_PIXELS` anyway.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                return int(im.size[0]), int(im.size[1])
        except Image.DecompressionBombError:
            return -1, -1
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            return None


def check_image_size(path: str | os.PathLike, error: type[Exception] = FrameError) -> None:
    """Refuse an image whose header claims more than :data:`MAX_IMAGE_PIXELS` pixels, before decoding it."""
    size = image_size_from_header(path)
    if size is None:
        return
    w, h = size
    if w < 0 or w * h > MAX_IMAGE_PIXELS:
        claim = "more than 179 million" if w < 0 else f"{w}x{h}"
        raise error(f"{path}: image too large ({claim} pixels; the limit is {MAX_IMAGE_PIXELS // 1_000_000} MP), "
                    f"not decoded")


def decode_image_file(path: str | os.PathLike, flags: int = cv2.IMREAD_COLOR) -> np.ndarray | None:
    """``cv2.imdecode`` of the file's bytes (None when they are no image). ``cv2.imread`` is never given the path:
    it crashes the process (SIGSEGV) on a name that is not valid UTF-8, such as ``q\\xff.png``."""
    with open(path, "rb") as fh:
        data = fh.read()
    if not data:
        return None
    return cv2.imdecode(np.frombuffer(data, np.uint8), flags)


def read_image_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 RGB; raise :class:`FrameError` naming the file."""
    p = Path(path)
    if not p.is_file():
        raise FrameError(f"{p}: file not found")
    check_image_size(p)
    try:
        img = decode_image_file(p, cv2.IMREAD_COLOR)
    except OSError as e:
        raise FrameError(f"{p}: cannot read image ({e.strerror})") from None
    if img is None:
        raise FrameError(f"{p}: cannot decode image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def encode_png(img: np.ndarray) -> bytes:
    """PNG bytes of an RGB uint8, a mono uint8 or a uint16 image (deterministic)."""
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise FrameError("cannot encode PNG")
    return buf.tobytes()


def write_png(path: str | os.PathLike, img: np.ndarray) -> None:
    """Atomically write an image as PNG (RGB uint8, mono uint8, or uint16)."""
    atomic_write_bytes(path, encode_png(img))


def _read_unchanged(p: Path) -> np.ndarray:
    if not p.is_file():
        raise FrameError(f"{p}: file not found")
    check_image_size(p)
    try:
        img = decode_image_file(p, cv2.IMREAD_UNCHANGED)
    except OSError as e:
        raise FrameError(f"{p}: cannot read image ({e.strerror})") from None
    if img is None:
        raise FrameError(f"{p}: cannot decode image")
    return img


def read_depth(path: str | os.PathLike, depth_scale: float = 0.001) -> np.ndarray:
    """Depth as float32 metres from a 16-bit PNG (``depth_scale`` m per unit) or a float32 .npy."""
    p = Path(path)
    if p.suffix == ".npy":
        if not p.is_file():
            raise FrameError(f"{p}: file not found")
        try:
            d = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise FrameError(f"{p}: cannot read depth ({e})") from None
        return np.asarray(d, dtype=np.float32)
    d = _read_unchanged(p)
    if d.ndim != 2 or d.dtype != np.uint16:
        raise FrameError(f"{p}: depth PNG must be single-channel 16-bit, got {d.dtype} {d.shape}")
    return d.astype(np.float32) * np.float32(depth_scale)


#: the median valid depth of a frame must lie in this range (metres): far outside it the depth is in other units
DEPTH_MEDIAN_RANGE_M = (0.05, 50.0)


def check_depth_range(depth: np.ndarray, depth_scale: float | None, where: str) -> None:
    """Refuse depth whose median valid value is implausible for an RGB-D camera (:data:`DEPTH_MEDIAN_RANGE_M`),
    naming the likely cause: a wrong ``depth_scale`` (``1.0`` on millimetre PNGs gives kilometres)."""
    valid = depth[np.isfinite(depth) & (depth > 0)]
    if not valid.size:
        return
    med = float(np.median(valid))
    lo, hi = DEPTH_MEDIAN_RANGE_M
    if lo <= med <= hi:
        return
    if depth_scale is None:
        cause = "a .npy depth must hold metres"
    else:
        likely = 10.0 ** round(math.log10(depth_scale * 2.0 / med))  # a typical indoor median of about 2 m
        cause = (f"depth_scale {depth_scale:g} m per unit is likely wrong; {likely:g} would give a median of "
                 f"{med * likely / depth_scale:.2f} m" + (" (millimetre PNGs need 0.001)" if likely == 0.001 else ""))
    raise FrameError(f"{where}: implausible depth: median {med:.4g} m (expected {lo:g}-{hi:g} m); {cause}")


def frame_fingerprint(frame: "Frame") -> str:
    """A frame by its content: the sha256 of its RGB and depth pixels and its stamp (16 hex digits). The same
    recording serialised differently (whitespace in ``frames.jsonl``, re-encoded PNGs, a longer recording that
    holds it) gives the same fingerprints."""
    h = hashlib.sha256()
    for a in (frame.rgb, frame.depth):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    h.update(repr(float(frame.stamp)).encode())
    return h.hexdigest()[:16]


def read_instance(path: str | os.PathLike) -> np.ndarray:
    """Instance ids as int32 from a 16-bit (or 8-bit) single-channel PNG."""
    p = Path(path)
    m = _read_unchanged(p)
    if m.ndim != 2:
        raise FrameError(f"{p}: instance PNG must be single-channel, got shape {m.shape}")
    return m.astype(np.int32)


def depth_to_png16(depth: np.ndarray, depth_scale: float = 0.001) -> np.ndarray:
    """float32 metres -> uint16 in units of ``depth_scale`` (invalid and out-of-range -> 0)."""
    d = np.nan_to_num(depth, nan=0.0, posinf=0.0, neginf=0.0) / depth_scale
    d = np.where((d > 0) & (d < 65535), np.round(d), 0)
    return d.astype(np.uint16)


# ---------------------------------------------------------------- frames directory

class FramesWriter:
    """Writes a frames directory; every file is written atomically, ``frames.jsonl`` line by line."""

    def __init__(self, root: str | os.PathLike, depth_scale: float = 0.001):
        self.root = Path(root)
        self.depth_scale = depth_scale
        for sub in ("rgb", "depth", "instance"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._fh = open(self.root / "frames.jsonl", "w")

    def write(self, frame: Frame) -> dict:
        fid = frame.frame_id
        if not _FRAME_ID_RE.match(fid):  # it names the image files
            raise FrameError(f"frame {fid!r}: a frame id may only hold letters, digits, '_', '-' and '.'")
        rec = {
            "frame_id": fid,
            "stamp": float(frame.stamp),
            "rgb": f"rgb/{fid}.png",
            "depth": f"depth/{fid}.png",
            "instance": f"instance/{fid}.png" if frame.instance_mask is not None else None,
            "K": np.asarray(frame.K).tolist(),
            "T_world_cam": np.asarray(frame.T_world_cam).tolist(),
            "quality": frame.quality,
            "depth_scale": self.depth_scale,
        }
        write_png(self.root / rec["rgb"], frame.rgb)
        write_png(self.root / rec["depth"], depth_to_png16(frame.depth, self.depth_scale))
        if frame.instance_mask is not None:
            if frame.instance_mask.max(initial=0) > 65535 or frame.instance_mask.min(initial=0) < 0:
                raise FrameError(f"frame {fid}: instance ids must fit in 16 bits for the PNG format")
            write_png(self.root / rec["instance"], frame.instance_mask.astype(np.uint16))
        self._fh.write(json.dumps(rec) + "\n")
        self._fh.flush()
        return rec

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "FramesWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-empty line; raise :class:`FormatError` naming file and line."""
    p = Path(path)
    if not p.is_file():
        raise FormatError(f"{p}: file not found")
    with open(p, "rb") as fh:
        for n, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise FormatError(f"{p}:{n}: not UTF-8 text (byte {e.start})") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise FormatError(f"{p}:{n}: malformed JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise FormatError(f"{p}:{n}: expected a JSON object, got {type(obj).__name__}")
            yield n, obj


def _number(rec: dict, key: str, default: float, where: str, positive: bool = False) -> float:
    v = rec.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (positive and v <= 0):
        raise FrameError(f"{where}: key '{key}' must be a {'positive ' if positive else ''}finite number, got {v!r}")
    return float(v)


def frame_from_record(root: Path, rec: dict, line: int = 0) -> Frame:
    """Load one ``frames.jsonl`` record; raise :class:`FrameError` whose message starts ``frames.jsonl:LINE``."""
    where = f"{root / 'frames.jsonl'}:{line}"
    for key in ("rgb", "depth", "K", "T_world_cam"):
        if key not in rec:
            raise FrameError(f"{where}: missing key '{key}'")
    fid = rec.get("frame_id", line)
    if isinstance(fid, bool) or not isinstance(fid, (str, int)):
        raise FrameError(f"{where}: key 'frame_id' must be a string, got {fid!r}")
    fid = str(fid)
    try:
        rgb_p = resolve_inside(root, rec["rgb"], f"{where}: key 'rgb'", error=FrameError)
        depth_p = resolve_inside(root, rec["depth"], f"{where}: key 'depth'", error=FrameError)
        inst = rec.get("instance")
        inst_p = None if inst in (None, "") else resolve_inside(root, inst, f"{where}: key 'instance'",
                                                                error=FrameError)
        depth_scale = _number(rec, "depth_scale", 0.001, where, positive=True)
        stamp = _number(rec, "stamp", 0.0, where)
        quality = rec.get("quality", "low")
        if quality not in QUALITIES:
            raise FrameError(f"{where}: key 'quality' must be 'low' or 'high', got {quality!r}")
        try:
            K = np.asarray(rec["K"], dtype=np.float64)
            T = np.asarray(rec["T_world_cam"], dtype=np.float64)
        except (TypeError, ValueError):
            raise FrameError(f"{where}: K or T_world_cam is not a numeric matrix") from None
        rgb = read_image_rgb(rgb_p)
        depth = read_depth(depth_p, depth_scale)
        check_depth_range(depth, None if depth_p.suffix == ".npy" else depth_scale, f"{where}: key 'depth'")
        mask = read_instance(inst_p) if inst_p is not None else None
        frame = Frame(rgb=rgb, depth=depth, K=K, T_world_cam=T, instance_mask=mask, stamp=stamp, frame_id=fid,
                      quality=quality)
        return frame.validate()
    except FrameError as e:
        msg = str(e)
        if msg.startswith(where):
            raise
        if msg.startswith(f"frame {fid}"):  # Frame.validate names the frame already
            raise FrameError(f"{where}: {msg}") from None
        raise FrameError(f"{where}: frame {fid}: {msg}") from None


def read_frames_dir(root: str | os.PathLike) -> Iterator[Frame | SkippedFrame]:
    """Yield each frame of a frames directory, or a :class:`SkippedFrame` with the reason it is unusable.

    Every reason starts with ``frames.jsonl:LINE``; a malformed or non-UTF-8 line is skipped like a bad frame.
    """
    root = Path(root)
    path = root / "frames.jsonl"
    if not path.is_file():
        raise FormatError(f"{path}: not a frames directory (frames.jsonl missing)")
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
                if not isinstance(rec, dict):
                    raise ValueError("not a JSON object")
            except UnicodeDecodeError as e:
                yield SkippedFrame(frame_id="?", line=n, reason=f"{path}:{n}: malformed line (not UTF-8 text, "
                                                                f"byte {e.start})")
                continue
            except ValueError as e:
                yield SkippedFrame(frame_id="?", line=n, reason=f"{path}:{n}: malformed line ({e})")
                continue
            try:
                yield frame_from_record(root, rec, n)
            except FrameError as e:
                yield SkippedFrame(frame_id=str(rec.get("frame_id", "?")), line=n, reason=str(e))


def count_frames(root: str | os.PathLike) -> int:
    """Number of non-empty lines in ``frames.jsonl`` (for progress bars)."""
    with open(Path(root) / "frames.jsonl", "rb") as fh:
        return sum(1 for line in fh if line.strip())
