"""Which torch device a job runs on: one rule for every stage (fine-tuning, embedding, retrieval).

``auto`` is CUDA when a CUDA device is usable, else the CPU. ``cuda`` on a host without one is a
:class:`~ssl_nav.errors.ConfigError` that names the configuration key (``learning.device``,
``retrieval.device``) and the command-line flag that set it, so the CLI exits 2 with a clear message instead
of a torch ``RuntimeError`` deep in a model load. ``cuda:N`` picks a device by index; under
``torchrun`` the caller passes its ``local_rank`` instead.
"""

from __future__ import annotations

import torch

from ssl_nav.errors import ConfigError

DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def resolve_device(name: str, key: str = "device", local_rank: int | None = None) -> torch.device:
    """The torch device for the configured ``name`` (``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``).

    ``key`` names the setting in error messages (e.g. ``"retrieval.device"``). ``local_rank`` selects the CUDA
    device of a distributed worker.
    """
    name = str(name).strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}: '{name}' requested but no CUDA device is available on this host "
                              f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
                              f"use 'cpu' or 'auto'")
        index = local_rank if local_rank is not None else (int(name.split(":", 1)[1]) if ":" in name else 0)
        if not 0 <= index < torch.cuda.device_count():
            raise ConfigError(f"{key}: CUDA device {index} requested but this host has "
                              f"{torch.cuda.device_count()}")
        return torch.device("cuda", index)
    raise ConfigError(f"{key}: must be one of {', '.join(DEVICE_CHOICES)} (or cuda:N), got {name!r}")
