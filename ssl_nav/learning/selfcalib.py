"""Self-calibration at fine-tune time: an open-set ("not in the map") threshold fitted from what the robot has.

A robot has no calibration split (``ssl-nav calibrate`` needs labelled in-map and not-in-map query photos).
What it does have after a fine-tune:

- **positives**: the robot views of mapped instances the trainer held out (``learning.holdout_fraction``,
  :func:`ssl_nav.learning.data.split_views`, the same seeded split as the trainer's): never trained on, of
  objects that are in the map;
- **negatives**: synthesised look-alikes, each held-out view recoloured (a hue turn and a saturated tint, luma
  kept: :func:`ssl_nav.learning.outlier_exposure.recolour`, the outliers of the trainer's outlier exposure,
  Hendrycks et al., ICLR 2019, arXiv 1812.04606), with a generator seeded apart from the trainer's.

:func:`self_calibrate` embeds both exactly as the retrieval embedder does (``retrieval.image_size``, OpenCV
resize, ``retrieval.flip_tta``), computes the open-set scores that need no index (the classifier's
``max_softmax`` / ``max_logit`` / ``energy``, the feature ``norm``) and those of a nearest-view ranking against
the training robot views (``best``, ``margin``, ``sim_softmax``), and fits, per score, the threshold that
maximises balanced accuracy ``(TPR + TNR) / 2`` (:func:`fit_threshold`), lowered to the 75th percentile of
the negatives when that is lower (:func:`self_threshold`). The result is stored in
``model.pt`` under ``self_calibration`` (the weights and their content hash are unchanged, so indexes built
from the model stay valid); :class:`ssl_nav.retrieval.query.Retriever` uses it when the index holds no
threshold fitted by ``ssl-nav calibrate``.

Held-out views are easier positives than goal photos (same camera, same distance, same framing): a query of a
mapped object scores lower than a held-out view, while a recoloured look-alike scores about like a real
not-in-map object. So the threshold leans on the negatives: it rejects 3 in 4 synthesised look-alikes
(:data:`NEG_QUANTILE`) unless the balanced-accuracy fit is lower still.

This module sits in ``learning/`` (it runs at the end of :func:`ssl_nav.learning.run_dir.finetune_run`) and
so does not import ``retrieval/``; the score definitions are those of :mod:`ssl_nav.retrieval.openset`.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch

from ssl_nav.config import PipelineConfig

#: key of the self-calibration in model.pt, and its format
KEY = "self_calibration"
FORMAT = "ssl_nav.self_calibration/1"
#: recoloured copies per held-out view (negatives)
RECOLOURS_PER_VIEW = 2
#: fewest held-out views for a fit; below, the training views are the positives (flagged in the result)
MIN_POSITIVES = 4
#: where in the gap between the classes the threshold goes, from the highest rejected negative (0) towards the
#: lowest accepted positive (1): held-out views score higher than goal photos of the same objects
GAP_POSITION = 0.25
#: the threshold rejects at most this fraction of the synthesised look-alikes (a quantile of the negatives):
#: held-out robot views score far higher than goal photos (max_softmax median 0.92 against 0.6 on the
#: ros-stack scene, seed 0), while recoloured views score like real not-in-map objects (median 0.23 against
#: 0.24), so the negatives say more about where the threshold belongs than the positives
NEG_QUANTILE = 0.75
#: the scores fitted (higher = more likely in the map), as defined in ssl_nav/retrieval/openset.py
CLASSIFIER_SCORES = ("max_logit", "energy", "max_softmax")
RANKING_SCORES = ("best", "margin", "sim_softmax")


def fit_threshold(pos: np.ndarray, neg: np.ndarray, gap_position: float = GAP_POSITION) -> dict:
    """The threshold on a "higher = in the map" score that maximises balanced accuracy on ``pos`` / ``neg``.

    Among the thresholds reaching the best balanced accuracy (an interval between two observed values) the one
    ``gap_position`` of the way from its low end to its high end is returned (0: just above the highest
    rejected negative; 0.5: the midpoint). Returns ``{"threshold", "balanced_accuracy", "tpr", "tnr"}``.
    """
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.float64)
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("fit_threshold needs both positives and negatives")
    v = np.unique(np.concatenate([pos, neg]))
    span = float(v[-1] - v[0]) or 1.0
    best, lo, hi = -1.0, 0.0, 0.0
    # interval j = -1..m-1: thresholds in (v[j], v[j+1]] accept exactly the values > v[j]
    for j in range(-1, len(v)):
        cut = v[j] if j >= 0 else -np.inf
        ba = (float((pos > cut).mean()) + float((neg <= cut).mean())) / 2
        if ba > best + 1e-12:
            best = ba
            lo = float(v[j]) if j >= 0 else float(v[0]) - 0.05 * span
            hi = float(v[j + 1]) if j + 1 < len(v) else float(v[-1]) + 0.05 * span
    t = lo + gap_position * (hi - lo)
    return {"threshold": t, "balanced_accuracy": best, "tpr": float((pos >= t).mean()),
            "tnr": float((neg < t).mean())}


def self_threshold(pos: np.ndarray, neg: np.ndarray, neg_quantile: float = NEG_QUANTILE,
                   gap_position: float = GAP_POSITION) -> dict:
    """The self-calibrated threshold: the ``neg_quantile`` quantile of the negatives' scores, or the
    balanced-accuracy fit (:func:`fit_threshold`) when that is lower. Returns :func:`fit_threshold`'s keys for
    the chosen threshold, plus ``"balanced_accuracy_max"`` (of the fit) and ``"rule"`` (``"negatives"`` or
    ``"balanced_accuracy"``)."""
    fit = fit_threshold(pos, neg, gap_position)
    q = float(np.quantile(np.asarray(neg, dtype=np.float64), neg_quantile))
    t, rule = (q, "negatives") if q < fit["threshold"] else (fit["threshold"], "balanced_accuracy")
    pos, neg = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    tpr, tnr = float((pos >= t).mean()), float((neg < t).mean())
    return {"threshold": t, "balanced_accuracy": (tpr + tnr) / 2, "tpr": tpr, "tnr": tnr,
            "balanced_accuracy_max": fit["balanced_accuracy"], "rule": rule}


def _resize_batch(images: list[np.ndarray], size: int) -> torch.Tensor:
    """uint8 RGB images -> (B, 3, S, S) float in [0, 1], resized as the retrieval embedder does."""
    import cv2

    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, a in enumerate(images):
        interp = cv2.INTER_AREA if min(a.shape[:2]) > size else cv2.INTER_LINEAR
        out[i] = a if a.shape[:2] == (size, size) else cv2.resize(a, (size, size), interpolation=interp)
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)


def _encode(backbone: torch.nn.Module, x: torch.Tensor, flip_tta: bool, batch: int = 32
            ) -> tuple[np.ndarray, np.ndarray]:
    """``(unit, raw)`` features of normalised images, as :meth:`ssl_nav.retrieval.embedder.Embedder.encode`."""
    units, raws = [], []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            xb = x[i:i + batch]
            raw = backbone(xb).float()
            f = torch.nn.functional.normalize(raw, dim=1)
            if flip_tta:
                raw_flip = backbone(torch.flip(xb, dims=[3])).float()
                f = torch.nn.functional.normalize(f + torch.nn.functional.normalize(raw_flip, dim=1), dim=1)
                raw = (raw + raw_flip) / 2
            units.append(f.numpy())
            raws.append(raw.numpy())
    return np.concatenate(units), np.concatenate(raws)


def _lse(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))[:, 0]


def query_scores(unit: np.ndarray, raw: np.ndarray, gallery: np.ndarray, gallery_labels: np.ndarray,
                 classifier: tuple[np.ndarray, np.ndarray] | None, temperature: float) -> dict[str, np.ndarray]:
    """The open-set scores of :mod:`ssl_nav.retrieval.openset` for a batch of queries: the ranking scores
    against ``gallery`` (unit rows, instance label per row; best view per instance), the feature norm, and with
    ``classifier = (W, b)`` the classifier scores."""
    out: dict[str, np.ndarray] = {"norm": np.linalg.norm(raw.astype(np.float64), axis=1)}
    if len(gallery):
        sims = unit.astype(np.float64) @ gallery.astype(np.float64).T
        labels = np.unique(gallery_labels)
        inst = np.stack([sims[:, gallery_labels == c].max(axis=1) for c in labels], axis=1)  # (N, n_instances)
        s = -np.sort(-inst, axis=1)
        out["best"] = s[:, 0]
        out["margin"] = s[:, 0] - (s[:, 1] if s.shape[1] > 1 else 0.0)
        z = s / max(float(temperature), 1e-6)
        out["sim_softmax"] = np.exp(z[:, 0] - _lse(z))
    if classifier is not None:
        w, b = classifier
        logits = raw.astype(np.float64) @ w.astype(np.float64).T + b.astype(np.float64)
        lse = _lse(logits)
        out["max_logit"] = logits.max(axis=1)
        out["energy"] = lse
        out["max_softmax"] = np.exp(logits.max(axis=1) - lse)
    return out


def self_calibrate(store: str | os.PathLike, model_path: str | os.PathLike, cfg: PipelineConfig, *,
                   write: bool = True, seed: int | None = None) -> dict | None:
    """Fit the open-set thresholds of the model at ``model_path`` on the views of ``store`` (module docstring)
    and, with ``write``, store them in ``model.pt`` under ``self_calibration`` (atomic rewrite; the weights and
    ``content_hash`` stay as they are). Returns the record, or None when the store cannot give both classes
    (no robot view of any instance).

    The record: ``{"format", "thresholds": {score: threshold}, "fit": {score: {"threshold",
    "balanced_accuracy", "tpr", "tnr"}}, "positives": "held-out robot views" | "training robot views",
    "n_positive", "n_negative", "image_size", "flip_tta", "gap_position", "softmax_temperature", "seed"}``.
    """
    from ssl_nav.atomic import atomic_write_bytes
    from ssl_nav.learning.backbones import load_encoder, read_classifier, read_model
    from ssl_nav.learning.data import open_store, split_views, subsample_views
    from ssl_nav.learning.outlier_exposure import recolour

    lc, rc = cfg.learning, cfg.retrieval
    seed = lc.seed if seed is None else int(seed)
    st = open_store(store)
    views = subsample_views(st.views(), lc.view_fraction, lc.seed)
    if not views:
        return None
    sv = split_views(views, lc.holdout_fraction, lc.seed, lc.crossia)
    lq = np.array([i for i, q in enumerate(sv.qualities) if q != "high"], dtype=np.int64)
    holdout = np.asarray(sv.holdout, dtype=np.int64)
    positives_from = "held-out robot views"
    if len(holdout) >= MIN_POSITIVES:
        pos_idx = holdout
        gal_idx = np.setdiff1d(lq, holdout)
    else:  # no (or too few) held-out views: the training views, scored leave-one-out against the others
        positives_from = "training robot views"
        pos_idx, gal_idx = lq, lq
    if len(pos_idx) == 0:
        return None

    obj = read_model(model_path)
    clf = read_classifier(obj, model_path)
    classifier = None if clf is None else (clf[0].float().numpy(), clf[1].float().numpy())
    enc = load_encoder(model_path, device="cpu")
    mean = torch.tensor(enc.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(enc.std, dtype=torch.float32).view(1, 3, 1, 1)
    size = int(rc.image_size)

    def normalised(idx: np.ndarray) -> torch.Tensor:
        return (_resize_batch([st.load_image(sv.views[int(i)]) for i in idx], size) - mean) / std

    with torch.random.fork_rng(devices=[]):
        x_pos = normalised(pos_idx)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + 424_242)
        x_neg = torch.cat([recolour(x_pos, gen) for _ in range(RECOLOURS_PER_VIEW)])
        u_pos, r_pos = _encode(enc.backbone, x_pos, rc.flip_tta)
        u_neg, r_neg = _encode(enc.backbone, x_neg, rc.flip_tta)
        if positives_from == "training robot views":
            u_gal, g_lab = u_pos, sv.labels[pos_idx]
        else:
            u_gal = _encode(enc.backbone, normalised(gal_idx), rc.flip_tta)[0] if len(gal_idx) else u_pos[:0]
            g_lab = sv.labels[gal_idx]

    temp = rc.softmax_temperature
    if positives_from == "training robot views":  # leave each positive out of its own gallery
        s_pos = _leave_one_out_scores(u_pos, r_pos, sv.labels[pos_idx], classifier, temp)
    else:
        s_pos = query_scores(u_pos, r_pos, u_gal, g_lab, classifier, temp)
    s_neg = query_scores(u_neg, r_neg, u_gal, g_lab, classifier, temp)
    fit = {}
    for name in s_pos:
        if name in s_neg and len(s_neg[name]) and np.isfinite(s_pos[name]).all() and np.isfinite(s_neg[name]).all():
            fit[name] = {k: v if isinstance(v, str) else round(float(v), 6)
                         for k, v in self_threshold(s_pos[name], s_neg[name]).items()}
    record = {"format": FORMAT, "thresholds": {k: v["threshold"] for k, v in fit.items()}, "fit": fit,
              "positives": positives_from, "negatives": f"{RECOLOURS_PER_VIEW} recoloured copies of each positive",
              "n_positive": int(len(pos_idx)), "n_negative": int(len(x_neg)), "image_size": size,
              "flip_tta": bool(rc.flip_tta), "gap_position": GAP_POSITION, "neg_quantile": NEG_QUANTILE,
              "softmax_temperature": float(temp), "seed": seed}
    if write:
        obj[KEY] = record
        buf = io.BytesIO()
        torch.save(obj, buf)
        atomic_write_bytes(Path(model_path), buf.getvalue())
    return record


def _leave_one_out_scores(unit: np.ndarray, raw: np.ndarray, labels: np.ndarray,
                          classifier: tuple[np.ndarray, np.ndarray] | None, temperature: float
                          ) -> dict[str, np.ndarray]:
    """:func:`query_scores` of each row against all the other rows (the gallery without the query itself)."""
    rows: dict[str, list[float]] = {}
    for i in range(len(unit)):
        keep = np.arange(len(unit)) != i
        s = query_scores(unit[i:i + 1], raw[i:i + 1], unit[keep], labels[keep], classifier, temperature)
        for k, v in s.items():
            rows.setdefault(k, []).append(float(v[0]))
    return {k: np.asarray(v) for k, v in rows.items()}


def read_self_calibration(model_obj: dict) -> dict | None:
    """The ``self_calibration`` record of a loaded ``model.pt`` (None when absent or of another format)."""
    rec = model_obj.get(KEY) if isinstance(model_obj, dict) else None
    if not isinstance(rec, dict) or rec.get("format") != FORMAT or not isinstance(rec.get("thresholds"), dict):
        return None
    return rec


__all__ = ["fit_threshold", "self_threshold", "query_scores", "self_calibrate", "read_self_calibration", "KEY", "FORMAT",
           "GAP_POSITION"]
