"""A fine-tune run directory, and the fine-tune stage that fills it.

A run directory holds ``model.pt``, ``checkpoint.pt``, ``metrics.jsonl`` and ``energy.json``
(docs/formats.md). :func:`finetune_run` is the stage ``ssl-nav finetune`` and ``ssl-nav demo``
(:mod:`ssl_nav.pipeline`) both run: it refuses to write over an existing run unless asked to resume or
overwrite it (an index built from the old ``model.pt`` would stop matching), warns about a store too small
to learn from, then calls :func:`ssl_nav.learning.trainer.finetune`, which appends the run's EnergyRecord to
the ledger (by default ``energy.jsonl`` next to the run directory), and finally fits the open-set thresholds
of the new model on held-out robot views and recoloured look-alikes and stores them in ``model.pt``
(:func:`ssl_nav.learning.selfcalib.self_calibrate`). The ROS ``finetuner`` node runs the same function.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import EllipsisType
from typing import Callable

from ssl_nav.config import PipelineConfig
from ssl_nav.energy.ledger import check_ledger_path
from ssl_nav.errors import TrainingError
from ssl_nav.learning.selfcalib import self_calibrate
from ssl_nav.learning.trainer import finetune  # torch: kept out of the CLI's start-up
from ssl_nav.locking import DirLock
from ssl_nav.views.store import ViewStore

#: the files of a run directory; any of them in it means a run is there already
RUN_FILES = ("model.pt", "checkpoint.pt", "metrics.jsonl", "energy.json")


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def check_run_dir(out: str | os.PathLike, resume: bool, overwrite: bool) -> None:
    """Refuse to write over an existing run unless the user asked to ``resume`` it or to ``overwrite`` it
    (then rank 0 deletes the old run's files)."""
    out = Path(out)
    if resume and overwrite:
        raise TrainingError("--resume and --overwrite exclude each other")
    if out.exists() and not out.is_dir():
        raise TrainingError(f"{out}: exists and is not a directory")
    found = [name for name in RUN_FILES if (out / name).exists()]
    if not found or resume:
        return
    if not overwrite:
        raise TrainingError(f"{out}: already holds a run ({', '.join(found)}); indexes built from its model.pt "
                            f"would stop matching. Pass --resume to continue it, --overwrite to replace it, or "
                            f"choose a new --out")
    if _rank() == 0:
        for name in found:
            (out / name).unlink()


@contextlib.contextmanager
def lock_run_dir(out: str | os.PathLike):
    """Hold the run directory's writer lock (:mod:`ssl_nav.locking`; rank 0 only: the ranks of one DDP run
    write one directory together). A second ``finetune --out`` of the same directory gets a
    :class:`~ssl_nav.locking.LockedError` naming the holder's PID. A directory made here and left empty is
    removed again."""
    out = Path(out)
    if _rank() != 0:
        yield
        return
    if out.exists() and not out.is_dir():
        raise TrainingError(f"{out}: exists and is not a directory")
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with DirLock(out, "finetune"):
            yield
    finally:
        if made:
            with contextlib.suppress(OSError):
                out.rmdir()  # only when empty


def store_warning(store_dir: str | os.PathLike) -> str | None:
    """A warning when the store is too small for fine-tuning to mean anything (one instance, a single view)."""
    views = ViewStore(store_dir).views()
    per: dict[str, int] = {}
    for v in views:
        per[v["instance_id"]] = per.get(v["instance_id"], 0) + 1
    if views and (len(per) < 2 or len(views) < 2 * len(per)):
        return (f"{store_dir}: only {len(views)} view(s) of {len(per)} instance(s); fine-tuning learns to tell "
                f"instances apart from several views of each: collect at least 2 instances with 2+ views each "
                f"(the kNN monitor needs 3+)")
    return None


def duplicate_views_warning(store_dir: str | os.PathLike) -> str | None:
    """A warning when views of one instance hold the same image (a recording collected twice before ssl_nav
    recognised frames by content, a copied view): training weighs them double and the held-out views may
    repeat training views."""
    import hashlib

    store = ViewStore(store_dir)
    seen: dict[tuple[str, str], str] = {}
    dups: list[tuple[str, str]] = []
    for v in store.views():
        try:
            digest = hashlib.sha256(store.image_path(v).read_bytes()).hexdigest()
        except OSError:
            continue  # a missing image is the trainer's error to report
        key = (v["instance_id"], digest)
        if key in seen:
            dups.append((v["view_id"], seen[key]))
        else:
            seen[key] = v["view_id"]
    if not dups:
        return None
    return (f"{store_dir}: {len(dups)} duplicate view(s): the same image stored twice for one instance (e.g. "
            f"{dups[0][0]} = {dups[0][1]}); they weigh double in training. Remove them (`ssl-nav store check "
            f"{store_dir}` lists views collected twice) or collect into a new store")


def default_ledger(out: str | os.PathLike, cfg: PipelineConfig) -> Path:
    """The energy ledger of a run: ``energy.ledger`` (``energy.jsonl``) in the directory that holds the run."""
    return Path(out).resolve().parent / cfg.energy.ledger


def finetune_run(store: str | os.PathLike, out: str | os.PathLike, cfg: PipelineConfig, *, resume: bool = False,
                 overwrite: bool = False, ledger: str | os.PathLike | EllipsisType | None = ..., progress: bool = True,
                 warn: Callable[[str], None] | None = None, on_epoch: Callable[[dict], None] | None = None,
                 should_stop: Callable[[], bool] | None = None):
    """Check ``out``, warn (``warn(message)`` on rank 0) about a small store, fine-tune on ``store``, and
    self-calibrate the new model's open-set thresholds (rank 0, completed runs only).

    ``ledger``: the ``energy.jsonl`` to append the EnergyRecord to; ``...`` (the default) is
    :func:`default_ledger`, ``None`` appends nowhere. ``on_epoch`` / ``should_stop``: as
    :func:`ssl_nav.learning.trainer.finetune`. Returns :class:`ssl_nav.learning.trainer.FinetuneResult`; its
    ``summary["self_calibration"]`` is the record stored in ``model.pt`` (None when none could be fitted).
    """
    if resume and overwrite:
        raise TrainingError("--resume and --overwrite exclude each other")
    with lock_run_dir(out):
        check_run_dir(out, resume, overwrite)
        for warning in (store_warning(store), duplicate_views_warning(store)):
            if warning and warn is not None and _rank() == 0:
                warn(warning)
        if ledger is ...:
            ledger = default_ledger(out, cfg)
        if ledger is not None:
            check_ledger_path(ledger)  # before training, not after it
        res = finetune(store, out, cfg, resume=resume, progress=progress, ledger=ledger, on_epoch=on_epoch,
                       should_stop=should_stop)
        if _rank() == 0 and res.model_path is not None and res.summary.get("status", "completed") == "completed":
            res.summary["self_calibration"] = self_calibrate(store, res.model_path, cfg)
        return res
