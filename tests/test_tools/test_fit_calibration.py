"""tools/analysis/fit_calibration.py: the calibration file has exactly the agreed format, its temperature
and thresholds are those of fit_temperature / choose_thresholds (on the calibrated scores, misses
included), the reliability PNG lands beside it, and bad input stops the tool naming the file."""
import json
import pickle
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import expit, logit

from mmbus.evaluation.calibration import apply_temperature, fit_temperature, load_calibration
from mmbus.evaluation.operating_points import choose_thresholds

REPO = Path(__file__).resolve().parents[2]
TOOL = runpy.run_path(str(REPO / 'tools/analysis/fit_calibration.py'))


def _dump(path, scores, labels):
    """What tools/test.py --out writes for an mmpretrain classifier (DumpResults: data-sample dicts)."""
    preds = [dict(pred_score=torch.tensor([1 - s, s]), gt_label=torch.tensor([y]), img_path=f'{i}.png')
             for i, (s, y) in enumerate(zip(scores, labels))]
    with open(path, 'wb') as f:
        pickle.dump(preds, f)


def _over_confident(n=400, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.95, n)
    return expit(2 * logit(p)), (rng.random(n) < p).astype(int)


def test_fit_calibration_file(tmp_path):
    scores, labels = _over_confident()
    pkl = tmp_path / 'val_predictions.pkl'
    _dump(pkl, scores, labels)
    out = tmp_path / 'cal' / 'calibration.json'
    TOOL['main']([str(pkl), '--out', str(out)])
    cal = json.loads(out.read_text())
    assert set(cal) == {'temperature', 'thresholds', 'fitted_on'}
    assert set(cal['thresholds']) == {'sensitivity_0.95', 'sensitivity_0.90', 'youden'}
    assert cal['fitted_on'] == {'n': 400, 'malignant': int(labels.sum()), 'source': 'val_predictions.pkl'}
    seen = np.float32(scores).astype(float)  # the dump holds float32 tensors
    t = fit_temperature(seen, labels)
    assert cal['temperature'] == pytest.approx(t)
    assert cal['temperature'] > 1.3  # over-confident by 2x in the logit
    assert cal['thresholds'] == pytest.approx(choose_thresholds(apply_temperature(seen, t), labels))
    assert load_calibration(str(out)) == cal
    assert (tmp_path / 'cal' / 'calibration_reliability.png').read_bytes()[:4] == b'\x89PNG'


def test_fit_calibration_with_misses(tmp_path):
    scores, labels = _over_confident()
    pkl = tmp_path / 'val.pkl'
    _dump(pkl, scores, labels)
    missed = tmp_path / 'val_missed.json'
    missed.write_text(json.dumps([{'file_name': 'a.png', 'pathology': 'malignant'},
                                  {'file_name': 'b.png', 'pathology': 'benign'}]))
    out = tmp_path / 'calibration.json'
    fields = TOOL['main']([str(pkl), '--missed', str(missed), '--out', str(out)])
    cal = json.loads(out.read_text())
    # the temperature ignores the misses (no classifier probability); the thresholds count them as wrong
    # answers (malignant miss 0, benign miss 1)
    seen = np.float32(scores).astype(float)
    t = fit_temperature(seen, labels)
    assert cal['temperature'] == pytest.approx(t)
    assert cal['fitted_on']['n'] == 402 and cal['fitted_on']['malignant'] == int(labels.sum()) + 1
    ref = choose_thresholds(np.concatenate([apply_temperature(seen, t), [0.0, 1.0]]),
                            np.concatenate([labels, [1, 0]]))
    assert cal['thresholds'] == pytest.approx(ref)
    assert fields['thresholds'] == pytest.approx(ref)


def test_fit_calibration_bad_input(tmp_path):
    with pytest.raises(SystemExit, match='nope.pkl does not exist'):
        TOOL['main']([str(tmp_path / 'nope.pkl'), '--out', str(tmp_path / 'c.json')])
    pkl = tmp_path / 'unlabelled.pkl'
    _dump(pkl, [0.2, 0.7], [-1, -1])
    with pytest.raises(SystemExit, match='unlabelled.pkl: prediction for 0.png has gt_label -1'):
        TOOL['main']([str(pkl), '--out', str(tmp_path / 'c.json')])
    _dump(pkl, [0.2, 0.7], [1, 1])
    with pytest.raises(SystemExit, match='unlabelled.pkl: .*no benign'):
        TOOL['main']([str(pkl), '--out', str(tmp_path / 'c.json')])
    with open(tmp_path / 'det.pkl', 'wb') as f:
        pickle.dump([dict(pred_instances=dict())], f)
    with pytest.raises(SystemExit, match='det.pkl: not a classifier prediction dump'):
        TOOL['main']([str(tmp_path / 'det.pkl'), '--out', str(tmp_path / 'c.json')])
    (tmp_path / 'text.pkl').write_text('not a pickle\n' * 20)  # e.g. a log saved under the dump's name
    with pytest.raises(SystemExit, match=r'text\.pkl: not a classifier prediction dump of tools/test\.py --out '
                                         r'\(it does not unpickle: UnpicklingError'):
        TOOL['main']([str(tmp_path / 'text.pkl'), '--out', str(tmp_path / 'c.json')])
    with open(tmp_path / 'dict.pkl', 'wb') as f:
        pickle.dump(dict(pred_score=[0.5]), f)
    with pytest.raises(SystemExit, match=r'dict\.pkl: not a classifier prediction dump .*needs a list of'):
        TOOL['main']([str(tmp_path / 'dict.pkl'), '--out', str(tmp_path / 'c.json')])
    with pytest.raises(SystemExit, match='must be a .json'):
        TOOL['main']([str(pkl), '--out', str(tmp_path / 'c.yaml')])
    assert not list(tmp_path.glob('c.*'))
