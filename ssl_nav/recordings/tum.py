"""Read a TUM RGB-D sequence (Sturm et al., IROS 2012, "A benchmark for the evaluation of RGB-D SLAM systems").

A sequence directory holds::

    rgb.txt           "timestamp filename" per line (rgb/<stamp>.png, 640x480 8-bit colour); '#' comments
    depth.txt         "timestamp filename" (depth/<stamp>.png, 16-bit, 5000 units per metre, 0 = invalid),
                      registered to the colour camera
    groundtruth.txt   "timestamp tx ty tz qx qy qz qw": the pose of the colour camera's optical centre in the
                      motion-capture world (x right, y down, z forward in the camera, as OpenCV)

Colour and depth are associated like TUM's ``associate.py``: every pair closer than
``recordings.tum_max_difference`` (0.02 s), closest first, each stamp used once. The pose is the ground truth
interpolated at the colour stamp (lerp + slerp, :class:`~ssl_nav.recordings.tf.TransformTree`); a colour image
with no ground-truth sample within ``tum_max_difference`` of it is skipped ("no ground truth"). Intrinsics are
TUM's published calibration of the colour camera per sensor (``recordings.tum_camera``; ``auto`` takes
``freiburg1/2/3`` from the directory name, else the ROS default), without distortion (the files are not
undistorted; TUM lists k1..k3, which this reader ignores).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np

from ssl_nav.config import PipelineConfig
from ssl_nav.errors import FrameError
from ssl_nav.frames import Frame, SkippedFrame, read_depth, read_image_rgb
from ssl_nav.paths import resolve_inside
from ssl_nav.recordings import RecordingError
from ssl_nav.recordings.tf import TransformTree, make_transform

#: 16-bit depth units per metre (TUM: "a pixel value of 5000 in the depth image corresponds to 1 m")
DEPTH_FACTOR = 5000.0
#: fx, fy, cx, cy of the colour camera (TUM RGB-D "File Formats / Intrinsic Camera Calibration")
INTRINSICS: dict[str, tuple[float, float, float, float]] = {
    "freiburg1": (517.3, 516.5, 318.6, 255.3),
    "freiburg2": (520.9, 521.0, 325.1, 249.7),
    "freiburg3": (535.4, 539.2, 320.1, 247.6),
    "default": (525.0, 525.0, 319.5, 239.5),
}


def camera_for(seq_dir: Path, choice: str) -> str:
    """The intrinsics key for ``recordings.tum_camera`` (``auto``: from the directory name)."""
    if choice != "auto":
        return choice
    name = seq_dir.resolve().name.lower()
    return next((k for k in ("freiburg1", "freiburg2", "freiburg3") if k in name), "default")


def read_list(path: Path, n_values: int) -> list[tuple[float, list[str]]]:
    """``(stamp, values)`` per data line of a TUM list file; :class:`RecordingError` naming ``file:line``."""
    if not path.is_file():
        raise RecordingError(f"{path}: file not found (a TUM RGB-D sequence has rgb.txt, depth.txt and "
                             f"groundtruth.txt)")
    out = []
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise RecordingError(f"{path}:{n}: not UTF-8 text") from None
            if not line or line.startswith("#"):
                continue
            parts = line.replace(",", " ").split()
            if len(parts) != 1 + n_values:
                raise RecordingError(f"{path}:{n}: expected a timestamp and {n_values} value(s), got {len(parts)} "
                                     f"fields")
            try:
                stamp = float(parts[0])
            except ValueError:
                raise RecordingError(f"{path}:{n}: timestamp {parts[0]!r} is not a number") from None
            if not np.isfinite(stamp):
                raise RecordingError(f"{path}:{n}: timestamp is not finite")
            out.append((stamp, parts[1:]))
    return out


def associate(first: list[float], second: list[float], max_difference: float) -> list[tuple[int, int]]:
    """TUM ``associate.py``: pairs ``(i, j)`` with ``|first[i] - second[j]| < max_difference``, closest first,
    each index used once; returned sorted by ``i``."""
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    cands = []
    if len(a) and len(b):
        order = np.argsort(b)
        bs = b[order]
        for i, s in enumerate(a):
            lo = np.searchsorted(bs, s - max_difference, "left")
            hi = np.searchsorted(bs, s + max_difference, "right")
            for k in range(lo, hi):
                d = abs(s - bs[k])
                if d < max_difference:
                    cands.append((d, i, int(order[k])))
    cands.sort()
    used_a, used_b, out = set(), set(), []
    for _, i, j in cands:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            out.append((i, j))
    return sorted(out)


def iter_tum_frames(seq_dir: str | os.PathLike, cfg: PipelineConfig,
                    stats: Counter | None = None) -> Iterator[Frame | SkippedFrame]:
    """Every associated colour/depth pair of a TUM sequence as a :class:`Frame` (or a :class:`SkippedFrame`)."""
    root = Path(seq_dir)
    if not root.is_dir():
        raise RecordingError(f"{root}: not a directory (a TUM RGB-D sequence)")
    stats = stats if stats is not None else Counter()
    maxd = cfg.recordings.tum_max_difference
    rgb = read_list(root / "rgb.txt", 1)
    depth = read_list(root / "depth.txt", 1)
    gt = read_list(root / "groundtruth.txt", 7)
    if not rgb:
        raise RecordingError(f"{root / 'rgb.txt'}: lists no images")
    tree = TransformTree(tolerance=maxd)
    for n, (s, v) in enumerate(gt):
        try:
            vals = np.array([float(x) for x in v])
        except ValueError:
            raise RecordingError(f"{root / 'groundtruth.txt'}: entry {n + 1} ({s}) holds a non-number") from None
        if not np.all(np.isfinite(vals)) or np.linalg.norm(vals[3:]) < 1e-6:
            continue
        tree.add("world", "camera", s, make_transform(vals[:3], vals[3:]))
    fx, fy, cx, cy = INTRINSICS[camera_for(root, cfg.recordings.tum_camera)]
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    pairs = dict(associate([s for s, _ in rgb], [s for s, _ in depth], maxd))
    gt_stamps = np.array(sorted(s for s, _ in gt)) if gt else np.zeros(0)
    for i, (s, (name,)) in enumerate(rgb):
        fid = f"{s:.6f}".replace(".", "_")
        where = f"{root / 'rgb.txt'}: image {name}"

        def skip(reason: str) -> SkippedFrame:
            stats[reason] += 1
            return SkippedFrame(frame_id=fid, line=i + 1, reason=f"{where}: {reason}")

        j = pairs.get(i)
        if j is None:
            yield skip(f"no depth within {maxd} s (recordings.tum_max_difference)")
            continue
        k = np.searchsorted(gt_stamps, s)
        near = min((abs(gt_stamps[q] - s) for q in (k - 1, k) if 0 <= q < len(gt_stamps)), default=np.inf)
        if near > maxd:
            yield skip(f"no ground truth within {maxd} s")
            continue
        try:
            T = tree.lookup("world", "camera", s)
            rgb_img = read_image_rgb(resolve_inside(root, name, f"{where}", error=FrameError))
            d_img = read_depth(resolve_inside(root, depth[j][1][0], f"{root / 'depth.txt'}", error=FrameError),
                               1.0 / DEPTH_FACTOR)
            if rgb_img.shape[:2] != d_img.shape:
                raise RecordingError(f"{root}: depth {depth[j][1][0]} is {d_img.shape[1]}x{d_img.shape[0]} but "
                                     f"colour {name} is {rgb_img.shape[1]}x{rgb_img.shape[0]}")
            frame = Frame(rgb=rgb_img, depth=d_img, K=K, T_world_cam=T, stamp=s, frame_id=fid).validate()
        except LookupError as e:
            yield skip(f"no ground truth ({e})")
            continue
        except FrameError as e:
            yield skip(str(e).split(": ", 1)[-1] if str(e).startswith("frame ") else str(e))
            continue
        stats["frames"] += 1
        yield frame


def tum_to_frames_dir(seq_dir: str | os.PathLike, out_dir: str | os.PathLike, cfg: PipelineConfig,
                      progress: bool = False) -> dict:
    """Convert a TUM sequence into a frames directory; ``{"frames", "images", "skipped", "examples", "camera"}``."""
    from ssl_nav.recordings.bag import write_frames_dir

    stats: Counter = Counter()
    examples: list[str] = []

    def on_skip(s: SkippedFrame) -> None:
        if len(examples) < 3:
            examples.append(s.reason)

    frames = iter_tum_frames(seq_dir, cfg, stats)
    if progress:
        from tqdm import tqdm

        frames = tqdm(frames, desc="read TUM", unit="frame", leave=False)
    n = write_frames_dir(frames, out_dir, on_skip)
    skipped = {k: v for k, v in stats.items() if k != "frames"}
    if n == 0:
        raise RecordingError(f"{seq_dir}: none of its {sum(skipped.values())} colour images became a frame "
                             f"({'; '.join(examples) or 'no images'})")
    return {"frames": n, "images": n + sum(skipped.values()), "skipped": skipped, "examples": examples,
            "camera": camera_for(Path(seq_dir), cfg.recordings.tum_camera)}
