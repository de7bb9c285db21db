"""Every user-facing failure of ssl_nav is an :class:`SslNavError`.

The CLI catches ``SslNavError`` and prints its message without a traceback, so
messages must name the file, key, topic or field that is wrong.
"""

from __future__ import annotations


class SslNavError(Exception):
    """Base class: a failure with a message meant for the user."""


class ConfigError(SslNavError):
    """A configuration file, key or value is invalid."""


class FrameError(SslNavError):
    """A frame (RGB-D + pose) is unusable: bad shape, NaN pose, singular K, missing file."""


class FormatError(SslNavError):
    """An on-disk file does not follow its documented format (frames.jsonl, views.jsonl, ...)."""


class StoreError(SslNavError):
    """A ViewStore is missing, inconsistent or corrupt."""


class CheckpointError(SslNavError):
    """A model or checkpoint file cannot be loaded."""


class TrainingError(SslNavError):
    """Fine-tuning cannot go on (non-finite loss, empty store, ...)."""


class RetrievalIndexError(SslNavError):
    """A FAISS index directory is missing, corrupt, or built by another model."""


class DependencyError(SslNavError):
    """An optional dependency (habitat_sim, launch_ros, ...) is not installed."""
