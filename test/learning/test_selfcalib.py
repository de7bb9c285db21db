"""Self-calibration at fine-tune time: the threshold fit, and a real tiny fine-tune whose model.pt
carries thresholds fitted on held-out views against recoloured look-alikes."""

import numpy as np
import pytest
import torch

from ssl_nav.learning.backbones import read_model
from ssl_nav.learning.run_dir import finetune_run
from ssl_nav.learning.selfcalib import KEY, fit_threshold, read_self_calibration, self_calibrate


def test_fit_threshold_separable_sits_in_the_gap_near_the_negatives():
    pos, neg = np.array([0.6, 0.7, 0.9]), np.array([0.1, 0.2, 0.3])
    f = fit_threshold(pos, neg)
    assert f["balanced_accuracy"] == 1.0 and (f["tpr"], f["tnr"]) == (1.0, 1.0)
    assert 0.3 < f["threshold"] < 0.45  # a quarter of the way from 0.3 to 0.6
    assert fit_threshold(pos, neg, gap_position=0.5)["threshold"] == pytest.approx(0.45)


def test_fit_threshold_overlapping_maximises_balanced_accuracy():
    pos, neg = np.array([0.2, 0.5, 0.6, 0.8]), np.array([0.1, 0.3, 0.55, 0.15])
    f = fit_threshold(pos, neg)
    t = f["threshold"]
    ba = ((pos >= t).mean() + (neg < t).mean()) / 2
    assert ba == pytest.approx(f["balanced_accuracy"])
    for c in np.linspace(0, 1, 101):  # no threshold does better
        assert ((pos >= c).mean() + (neg < c).mean()) / 2 <= f["balanced_accuracy"] + 1e-12
    with pytest.raises(ValueError):
        fit_threshold(pos, np.array([]))


def test_finetune_run_stores_a_self_calibration_in_model_pt(store_factory, learning_config, tmp_path):
    store = store_factory(n_instances=4, views_per_instance=8)
    cfg = learning_config(epochs=2, holdout_fraction=0.25)
    cfg.retrieval.image_size, cfg.retrieval.device = 32, "cpu"
    res = finetune_run(store, tmp_path / "run", cfg, ledger=None, progress=False)
    rec = res.summary["self_calibration"]
    assert rec is not None and rec["positives"] == "held-out robot views"
    assert rec["n_positive"] >= 4 and rec["n_negative"] == 2 * rec["n_positive"]
    assert {"max_softmax", "best", "sim_softmax", "norm"} <= set(rec["thresholds"])
    assert 0.0 < rec["thresholds"]["max_softmax"] < 1.0
    obj = read_model(res.model_path)  # the content hash still verifies: weights untouched
    assert read_self_calibration(obj) == rec and obj[KEY]["image_size"] == 32
    # stateless and seeded: the same fit again, without writing
    again = self_calibrate(store, res.model_path, cfg, write=False)
    assert again["thresholds"] == rec["thresholds"]


def test_no_holdout_falls_back_to_training_views(store_factory, learning_config, tmp_path):
    store = store_factory(n_instances=3, views_per_instance=4)
    cfg = learning_config(epochs=1, holdout_fraction=0.0)
    cfg.retrieval.image_size, cfg.retrieval.device = 32, "cpu"
    res = finetune_run(store, tmp_path / "run", cfg, ledger=None, progress=False)
    rec = res.summary["self_calibration"]
    assert rec["positives"] == "training robot views" and rec["thresholds"]
    assert torch.load(res.model_path, weights_only=True)[KEY]["format"] == rec["format"]
