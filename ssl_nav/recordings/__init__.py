"""Recordings in and out: rosbag2 (MCAP, sqlite3) and TUM RGB-D sequences <-> the frames directory.

ROS-free (the bags are read and written with the pure-Python ``rosbags`` package), so ``ssl-nav collect --bag``
needs no ROS installation: :mod:`.images` decodes image payloads (shared with :mod:`ssl_nav.ros.conversions`),
:mod:`.tf` chains and interpolates transforms, :mod:`.bag` reads a bag into frames, :mod:`.bag_writer` writes a
frames directory as a bag, :mod:`.tum` reads a TUM RGB-D sequence. docs/formats.md, "Recordings".
"""

from ssl_nav.errors import FormatError


class RecordingError(FormatError):
    """A recording (bag, TUM sequence) cannot be converted; the message names the file, topic or frame."""


def convert_recording(kind: str, source, out_dir, cfg, progress: bool = False) -> dict:
    """Convert a recording (``kind`` ``bag`` or ``tum``) into a new frames directory ``out_dir``.

    Returns the conversion summary (``frames``, ``images``, ``skipped`` by reason, ``examples``). On any error
    what was written is removed (``out_dir`` too, unless it existed before, empty), so nothing is left behind.
    """
    import shutil
    from pathlib import Path

    out = Path(out_dir)
    existed = out.is_dir()
    if out.exists() and (not existed or any(out.iterdir())):
        raise FormatError(f"{out}: exists and is not an empty directory; the converted frames directory must be new")
    try:
        if kind == "bag":
            from ssl_nav.recordings.bag import bag_to_frames_dir

            return bag_to_frames_dir(source, out, cfg, progress)
        if kind == "tum":
            from ssl_nav.recordings.tum import tum_to_frames_dir

            return tum_to_frames_dir(source, out, cfg, progress)
        raise ValueError(f"unknown recording kind {kind!r}")
    except BaseException:
        if existed:  # an empty directory the caller made (mkdtemp, or --keep-frames): empty it again
            for p in out.iterdir():
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        else:
            shutil.rmtree(out, ignore_errors=True)
        raise
