"""BinaryDiagnosticMetric: AUC / DeLong / Wilson / threshold / missed against
hand-worked numbers."""
import csv
import itertools
import json
import math

import numpy as np
import pytest
import torch
from mmpretrain.structures import DataSample

import mmbus.registry  # noqa: F401
from mmbus.evaluation.binary_diagnostic_metric import (
    BinaryDiagnosticMetric, delong_auc, midrank, roc_curve, wilson_interval,
    youden_threshold)


def samples(scores, labels, key='pred_score'):
    out = []
    for s, y in zip(scores, labels):
        ds = DataSample().set_gt_label(y)
        ds.set_field(torch.tensor([1 - s, s]), key, dtype=torch.Tensor)
        out.append(ds.to_dict())
    return out


def run_metric(metric, scores, labels, key='pred_score'):
    metric.process(None, samples(scores, labels, key))
    return metric.evaluate(len(scores))


def naive_delong(scores, labels):
    """O(m n) DeLong from the definition, for cross-checking."""
    pos = [s for s, y in zip(scores, labels) if y == 1]
    neg = [s for s, y in zip(scores, labels) if y == 0]

    def psi(x, y):
        return 1.0 if x > y else 0.5 if x == y else 0.0

    v10 = [np.mean([psi(x, y) for y in neg]) for x in pos]
    v01 = [np.mean([psi(x, y) for x in pos]) for y in neg]
    auc = np.mean(v10)
    return auc, np.var(v10, ddof=1) / len(pos) + np.var(v01, ddof=1) / len(
        neg)


def test_midrank_ties():
    assert midrank([3, 1, 3, 2]).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_delong_hand_example():
    # positives 0.9, 0.8, 0.4; negatives 0.7, 0.3
    # pairs won: 0.9 -> 2, 0.8 -> 2, 0.4 -> 1  => AUC = 5/6
    # V10 = [1, 1, 1/2] (var 1/12), V01 = [2/3, 1] (var 1/18)
    # var = (1/12)/3 + (1/18)/2 = 1/18
    auc, var = delong_auc([0.9, 0.8, 0.4, 0.7, 0.3], [1, 1, 1, 0, 0])
    assert auc == pytest.approx(5 / 6)
    assert var == pytest.approx(1 / 18)


def test_delong_matches_definition_with_ties():
    rng = np.random.default_rng(3)
    scores = np.round(rng.random(40), 1)  # many ties
    labels = (rng.random(40) < 0.4).astype(int)
    auc, var = delong_auc(scores, labels)
    auc_ref, var_ref = naive_delong(scores.tolist(), labels.tolist())
    assert auc == pytest.approx(auc_ref)
    assert var == pytest.approx(var_ref)


def test_delong_needs_both_classes():
    with pytest.raises(ValueError, match='both classes'):
        delong_auc([0.1, 0.2], [1, 1])


def test_wilson_known_value():
    # 8/10: p=0.8, z=1.95996 -> [0.4902, 0.9433] (standard Wilson table)
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4)
    assert hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 5)[0] == pytest.approx(0.0, abs=1e-12)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_roc_curve_and_youden():
    scores = [0.9, 0.8, 0.4, 0.7, 0.3]
    labels = [1, 1, 1, 0, 0]
    thr, fpr, tpr = roc_curve(scores, labels)
    assert thr[0] == np.inf
    assert fpr.tolist() == [0, 0, 0, 0.5, 0.5, 1.0]
    assert tpr.tolist() == pytest.approx([0, 1 / 3, 2 / 3, 2 / 3, 1, 1])
    # J = tpr - fpr: t=0.8 -> 2/3, t=0.4 -> 1/2 ; best 0.8
    assert youden_threshold(scores, labels) == pytest.approx(0.8)


def test_metric_hand_worked(tmp_path):
    # threshold 0.5: TP = {0.9, 0.8}, FN = {0.4}; TN = {0.3}, FP = {0.7}
    m = BinaryDiagnosticMetric(output_dir=str(tmp_path), prefix='t')
    res = run_metric(m, [0.9, 0.8, 0.4, 0.7, 0.3], [1, 1, 1, 0, 0])
    assert res['t/auc'] == pytest.approx(5 / 6)
    se = math.sqrt(1 / 18)
    assert res['t/auc_ci_low'] == pytest.approx(max(0, 5 / 6 - 1.959964 * se),
                                                abs=1e-5)
    assert res['t/auc_ci_high'] == 1.0  # clipped
    assert res['t/sensitivity'] == pytest.approx(2 / 3)
    assert res['t/specificity'] == pytest.approx(1 / 2)
    assert res['t/accuracy'] == pytest.approx(3 / 5)
    lo, hi = wilson_interval(3, 5)
    assert (res['t/accuracy_ci_low'], res['t/accuracy_ci_high']) == \
        pytest.approx((lo, hi))
    assert (res['t/tp'], res['t/fn'], res['t/tn'], res['t/fp']) == \
        (2, 1, 1, 1)
    png = tmp_path / 't_roc.png'
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    rows = list(csv.reader(open(tmp_path / 't_roc.csv')))
    assert rows[0] == ['threshold', 'fpr', 'tpr']
    assert len(rows) == 1 + 6
    assert not [p for p in tmp_path.iterdir() if p.name.endswith('.tmp')]


def test_metric_youden_and_score_key(tmp_path):
    m = BinaryDiagnosticMetric(threshold='youden', score_key='student_score',
                               save_curve=False)
    res = run_metric(m, [0.9, 0.8, 0.4, 0.7, 0.3], [1, 1, 1, 0, 0],
                     key='student_score')
    assert res['diag/threshold'] == pytest.approx(0.8)
    assert res['diag/sensitivity'] == pytest.approx(2 / 3)
    assert res['diag/specificity'] == 1.0


def test_metric_missed_rules(tmp_path):
    missed = tmp_path / 'test_missed.json'
    json.dump([{'file_name': 'a.png', 'pathology': 'malignant'},
               {'file_name': 'b.png', 'pathology': 'benign'}],
              open(missed, 'w'))
    scores, labels = [0.9, 0.2], [1, 0]  # perfect on the detected ones
    wrong = run_metric(BinaryDiagnosticMetric(missed=str(missed),
                                              save_curve=False),
                       scores, labels)
    # 'wrong': malignant miss -> score 0 (FN), benign miss -> score 1 (FP)
    assert wrong['diag/num_missed'] == 2
    assert wrong['diag/num_samples'] == 4
    assert wrong['diag/sensitivity'] == 0.5
    assert wrong['diag/specificity'] == 0.5
    assert wrong['diag/accuracy'] == 0.5
    # AUC: pos {0.9, 0}, neg {0.2, 1}: pairs won 0.9>0.2 only -> 1/4
    assert wrong['diag/auc'] == pytest.approx(0.25)
    benign = run_metric(BinaryDiagnosticMetric(missed=str(missed),
                                               missed_rule='benign',
                                               save_curve=False),
                        scores, labels)
    assert benign['diag/sensitivity'] == 0.5
    assert benign['diag/specificity'] == 1.0


def test_metric_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope_missed.json'):
        BinaryDiagnosticMetric(missed=str(tmp_path / 'nope_missed.json'))
    bad = tmp_path / 'bad_missed.json'
    json.dump([{'file_name': 'x.png'}], open(bad, 'w'))
    with pytest.raises(ValueError, match='x.png'):
        BinaryDiagnosticMetric(missed=str(bad))
    with pytest.raises(ValueError):
        BinaryDiagnosticMetric(threshold='otsu')
    m = BinaryDiagnosticMetric(save_curve=False)
    with pytest.raises(ValueError, match='gt_label 0/1'):
        m.process(None, samples([0.3], [-1]))
    with pytest.raises(KeyError, match='predict_student_too'):
        BinaryDiagnosticMetric(score_key='student_pred_score').process(
            None, samples([0.3], [1]))


def test_metric_single_class_gives_nan_auc():
    res = run_metric(BinaryDiagnosticMetric(save_curve=False), [0.7, 0.2],
                     [1, 1])
    assert math.isnan(res['diag/auc'])
    assert res['diag/sensitivity'] == 0.5
    assert math.isnan(res['diag/specificity'])


def test_auc_invariant_to_order():
    scores = [0.1, 0.4, 0.35, 0.8]
    labels = [0, 0, 1, 1]  # sklearn's classic example: AUC 0.75
    for perm in itertools.permutations(range(4)):
        s = [scores[i] for i in perm]
        y = [labels[i] for i in perm]
        assert delong_auc(s, y)[0] == pytest.approx(0.75)


# ------------------------------------------------------------- calibration
# 10 malignant, 5 benign (the hand-worked set of test_operating_points)
CAL_SCORES = [0.98, 0.95, 0.90, 0.85, 0.80, 0.70, 0.60, 0.50, 0.40, 0.20,
              0.75, 0.45, 0.30, 0.15, 0.05]
CAL_LABELS = [1] * 10 + [0] * 5
CAL_POINTS = {'sensitivity_0.95': 0.20, 'sensitivity_0.90': 0.40,
              'youden': 0.50}


def calibration(temperature):
    return dict(temperature=temperature, thresholds=CAL_POINTS,
                fitted_on=dict(n=15, malignant=10, source='val.pkl'))


def test_metric_operating_points_equal_evaluate_at(tmp_path):
    from mmbus.evaluation.operating_points import evaluate_at
    m = BinaryDiagnosticMetric(output_dir=str(tmp_path), prefix='t',
                               calibration=calibration(1.0))
    res = run_metric(m, CAL_SCORES, CAL_LABELS)
    # the metric sees the float32 scores of the data samples
    seen = np.float32(CAL_SCORES).astype(np.float64)
    figures = [f'{n}{s}' for n in ('sensitivity', 'specificity', 'ppv', 'npv')
               for s in ('', '_ci_low', '_ci_high')]
    for point, t in CAL_POINTS.items():
        ref = evaluate_at(seen, CAL_LABELS, t)
        for f in figures:
            assert res[f't/{point}/{f}'] == pytest.approx(ref[f], nan_ok=True)
    # hand-worked at sensitivity_0.90 (t = 0.40): TP 9 FN 1 FP 2 TN 3
    assert res['t/sensitivity_0.90/ppv'] == pytest.approx(9 / 11)
    assert res['t/sensitivity_0.90/npv'] == pytest.approx(3 / 4)
    plain = run_metric(BinaryDiagnosticMetric(save_curve=False, prefix='t'),
                       CAL_SCORES, CAL_LABELS)
    assert {'t/ece', 't/brier'} <= set(plain)  # reported with or without
    assert set(res) - set(plain) == \
        {f't/{p}/{f}' for p in CAL_POINTS for f in figures} | {'t/ece_raw', 't/brier_raw', 't/temperature'}
    # with a calibration, the figures before it stand beside: at T = 1 they are the calibrated ones
    assert (res['t/ece_raw'], res['t/brier_raw'], res['t/temperature']) == (res['t/ece'], res['t/brier'], 1.0)
    # T = 1 changes nothing else
    assert {k: res[k] for k in plain} == pytest.approx(plain)
    assert (tmp_path / 't_reliability.png').read_bytes()[:4] == b'\x89PNG'


def test_metric_temperature_keeps_auc_changes_ece(tmp_path):
    path = tmp_path / 'calibration.json'
    json.dump(calibration(2.5), open(path, 'w'))
    one = run_metric(BinaryDiagnosticMetric(save_curve=False,
                                            calibration=calibration(1.0)),
                     CAL_SCORES, CAL_LABELS)
    hot = run_metric(BinaryDiagnosticMetric(save_curve=False,
                                            calibration=str(path)),
                     CAL_SCORES, CAL_LABELS)
    assert hot['diag/auc'] == pytest.approx(one['diag/auc'])  # monotone
    assert hot['diag/auc_ci_low'] == pytest.approx(one['diag/auc_ci_low'])
    assert hot['diag/ece'] != pytest.approx(one['diag/ece'])
    assert hot['diag/brier'] != pytest.approx(one['diag/brier'])
    # T = 2.5 pulls scores towards 0.5: the fixed threshold 0.40 now sits at
    # a raw score of sigmoid(2.5 logit(0.4)) = 0.27, calling benign 0.30 and
    # 0.45 malignant too but the malignant 0.20 still benign
    assert hot['diag/sensitivity_0.90/sensitivity'] == pytest.approx(0.9)
    assert hot['diag/sensitivity_0.90/specificity'] == pytest.approx(0.4)


def test_metric_ece_brier_without_calibration(tmp_path):
    from mmbus.evaluation.calibration import brier_score
    res = run_metric(BinaryDiagnosticMetric(output_dir=str(tmp_path)),
                     [0.9, 0.8, 0.4, 0.7, 0.3], [1, 1, 1, 0, 0])
    # Brier: (0.01 + 0.04 + 0.36 + 0.49 + 0.09) / 5 = 0.198
    assert res['diag/brier'] == pytest.approx(0.198, abs=1e-6)
    assert res['diag/brier'] == pytest.approx(
        brier_score(np.float32([0.9, 0.8, 0.4, 0.7, 0.3]), [1, 1, 1, 0, 0]))
    assert 0 <= res['diag/ece'] <= 1
    assert not [k for k in res if k.count('/') > 1]  # no operating points
    assert (tmp_path / 'diag_reliability.png').is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith('.tmp')]


def test_metric_calibration_misses_keep_their_score(tmp_path):
    missed = tmp_path / 'val_missed.json'
    json.dump([{'file_name': 'a.png', 'pathology': 'malignant'}],
              open(missed, 'w'))
    res = run_metric(BinaryDiagnosticMetric(save_curve=False,
                                            missed=str(missed),
                                            calibration=calibration(2.5)),
                     CAL_SCORES, CAL_LABELS)
    # the malignant miss scores 0 (a false negative at every threshold):
    # sensitivity at t=0.20 (calibrated) drops to 10/11
    assert res['diag/sensitivity_0.95/sensitivity'] == pytest.approx(10 / 11)


def test_metric_bad_calibration(tmp_path):
    bad = tmp_path / 'cal.json'
    json.dump({'temperature': 1.0, 'thresholds': {'youden': 0.5}}, open(bad, 'w'))
    with pytest.raises(ValueError, match="cal.json: missing key 'fitted_on'"):
        BinaryDiagnosticMetric(calibration=str(bad))
    with pytest.raises(FileNotFoundError, match='nope.json'):
        BinaryDiagnosticMetric(calibration=str(tmp_path / 'nope.json'))


def test_metric_non_probability_miss_score(tmp_path):
    # missed_rule 1.5 is a valid score for the ROC but no probability
    res = run_metric(BinaryDiagnosticMetric(output_dir=str(tmp_path),
                                            missed=[{'pathology': 'benign'}],
                                            missed_rule=1.5),
                     [0.9, 0.2], [1, 0])
    assert math.isnan(res['diag/ece']) and math.isnan(res['diag/brier'])
    assert (tmp_path / 'diag_roc.png').is_file()
    assert not (tmp_path / 'diag_reliability.png').exists()
