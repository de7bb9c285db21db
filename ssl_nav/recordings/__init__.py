"""Recordings in and out: rosbag2 (MCAP, sqlite3) and TUM RGB-D sequences <-> the frames directory.

ROS-free (the bags are read and written with the pure-Python ``rosbags`` package), so ``ssl-nav collect --bag``
needs no ROS installation: :mod:`.images` decodes image payloads (shared with :mod:`ssl_nav.ros.conversions`),
:mod:`.tf` chains and interpolates transforms, :mod:`.bag` reads a bag into frames, :mod:`.bag_writer` writes a
frames directory as a bag, :mod:`.tum` reads a TUM RGB-D sequence. docs/formats.md, "Recordings".
"""

from ssl_nav.errors import FormatError


class RecordingError(FormatError):
    """A recording (bag, TUM sequence) cannot be converted; the message names the file, topic or frame."""
