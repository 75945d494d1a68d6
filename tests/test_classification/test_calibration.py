"""Calibration: ECE on synthetic calibrated / over-confident scores, temperature scaling recovering the
temperature that made them over-confident, Brier and ECE by hand, the calibration file and bad input."""
import json

import numpy as np
import pytest
from scipy.special import expit, logit

from mmbus.evaluation.calibration import (apply_temperature, brier_score, expected_calibration_error,
                                          fit_temperature, load_calibration, plot_reliability,
                                          reliability_curve, save_calibration)


def synthetic(seed=0, n=20000):
    """True probabilities and labels drawn as Bernoulli(p)."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.98, n)
    return p, (rng.random(n) < p).astype(int)


def test_calibrated_scores_have_small_ece():
    p, y = synthetic()
    # 10 bins of 2000: the observed fraction's sampling error is about sqrt(0.25 / 2000) = 0.011 per bin
    assert expected_calibration_error(p, y) < 0.02


def test_temperature_recovers_over_confidence():
    p, y = synthetic()
    shown = expit(3 * logit(p))  # over-confident: logits 3x too large
    assert expected_calibration_error(shown, y) > 0.1
    t = fit_temperature(shown, y)
    assert t == pytest.approx(3.0, rel=0.1)
    fixed = apply_temperature(shown, t)
    assert expected_calibration_error(fixed, y) < 0.02
    assert brier_score(fixed, y) < brier_score(shown, y)
    # under-confident scores give T < 1
    assert fit_temperature(expit(logit(p) / 2), y) == pytest.approx(0.5, rel=0.1)


def test_brier_by_hand():
    # (0.9-1)^2 + (0.2-0)^2 + (0.6-0)^2 + (0.4-1)^2 = 0.01 + 0.04 + 0.36 + 0.36 = 0.77 -> / 4 = 0.1925
    assert brier_score([0.9, 0.2, 0.6, 0.4], [1, 0, 0, 1]) == pytest.approx(0.1925)


def test_ece_and_reliability_by_hand():
    # 2 equal-mass bins: {0.1, 0.2} (labels 0, 1) and {0.3, 0.4} (labels 0, 1)
    # bin 1: mean 0.15, observed 0.5 -> |.| 0.35; bin 2: mean 0.35, observed 0.5 -> 0.15
    # ECE = 0.5 * 0.35 + 0.5 * 0.15 = 0.25
    probs, labels = [0.4, 0.1, 0.3, 0.2], [1, 0, 0, 1]
    curve = reliability_curve(probs, labels, n_bins=2)
    assert curve['mean_predicted'] == pytest.approx([0.15, 0.35])
    assert curve['observed'] == pytest.approx([0.5, 0.5])
    assert curve['count'].tolist() == [2, 2]
    assert expected_calibration_error(probs, labels, n_bins=2) == pytest.approx(0.25)


def test_reliability_ties_share_a_bin_whatever_the_order():
    # six samples at 0.0 (detector misses scored 0, say) and two at 0.8: quantile edges collapse, the
    # empty bins are dropped, and a permutation gives the same curve
    probs = np.array([0.0] * 6 + [0.8, 0.8])
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 0])
    curve = reliability_curve(probs, labels, n_bins=4)
    assert curve['count'].tolist() == [6, 2]
    assert curve['observed'] == pytest.approx([1 / 6, 0.5])
    perm = np.random.default_rng(1).permutation(8)
    assert expected_calibration_error(probs[perm], labels[perm], 4) == \
        pytest.approx(expected_calibration_error(probs, labels, 4))


def test_apply_temperature():
    p = np.array([0.0, 0.2, 0.5, 0.9, 1.0])
    assert apply_temperature(p, 1.0).tolist() == p.tolist()  # unchanged, not rounded through the logit
    out = apply_temperature(p, 2.0)
    assert out[0] == 0.0 and out[-1] == 1.0 and out[2] == 0.5
    assert out[3] == pytest.approx(expit(logit(0.9) / 2))
    assert np.all(np.diff(out) > 0)  # monotone: ranking (and so the AUC) unchanged


def test_bad_input():
    with pytest.raises(ValueError, match=r'in \[0, 1\]'):
        brier_score([0.2, 1.2], [0, 1])
    with pytest.raises(ValueError, match=r'in \[0, 1\]'):
        expected_calibration_error([-0.1, 0.5], [0, 1])
    with pytest.raises(ValueError, match='non-finite'):
        fit_temperature([np.nan, 0.5], [0, 1])
    with pytest.raises(ValueError, match='3 probabilities but 2 labels'):
        brier_score([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match='labels must be 0'):
        brier_score([0.1, 0.2], [0, 3])
    with pytest.raises(ValueError, match='no malignant'):
        fit_temperature([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match='n_bins'):
        reliability_curve([0.1, 0.2], [0, 1], n_bins=0)
    with pytest.raises(ValueError, match='temperature'):
        apply_temperature([0.5], 0.0)
    with pytest.raises(ValueError, match=r'in \[0, 1\]'):
        apply_temperature([1.5], 2.0)


def test_calibration_file_round_trip_and_errors(tmp_path):
    path = tmp_path / 'calibration.json'
    save_calibration(str(path), 2.5, {'sensitivity_0.95': 0.1, 'sensitivity_0.90': 0.2, 'youden': 0.4},
                     n=100, malignant=30, source='/some/dir/val_predictions.pkl')
    on_disk = json.loads(path.read_text())
    assert on_disk == {'temperature': 2.5,
                       'thresholds': {'sensitivity_0.95': 0.1, 'sensitivity_0.90': 0.2, 'youden': 0.4},
                       'fitted_on': {'n': 100, 'malignant': 30, 'source': 'val_predictions.pkl'}}
    assert load_calibration(str(path)) == on_disk
    bad = dict(on_disk, fitted_on={'n': 100, 'source': 'x.pkl'})
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"calibration.json: missing key 'fitted_on.malignant'"):
        load_calibration(str(path))
    path.write_text(json.dumps({k: v for k, v in on_disk.items() if k != 'temperature'}))
    with pytest.raises(ValueError, match="calibration.json: missing key 'temperature'"):
        load_calibration(str(path))
    path.write_text(json.dumps(dict(on_disk, temperature=-1)))
    with pytest.raises(ValueError, match='calibration.json: temperature must be a positive'):
        load_calibration(str(path))
    path.write_text(json.dumps(dict(on_disk, thresholds={'youden': 1.5})))
    with pytest.raises(ValueError, match="calibration.json: threshold 'youden'"):
        load_calibration(str(path))
    path.write_text('{not json')
    with pytest.raises(ValueError, match='calibration.json: not valid JSON'):
        load_calibration(str(path))
    with pytest.raises(FileNotFoundError, match='nope.json'):
        load_calibration(str(tmp_path / 'nope.json'))


def test_plot_reliability_writes_png(tmp_path):
    p, y = synthetic(n=500)
    shown = expit(3 * logit(p))
    out = plot_reliability(str(tmp_path / 'r.png'), shown, y, calibrated=apply_temperature(shown, 3.0))
    assert open(out, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'
    assert [f.name for f in tmp_path.iterdir()] == ['r.png']  # no temp file left
