"""Operating points: thresholds for a target sensitivity / Youden and the figures at a threshold, against
numbers worked out by hand."""
import math

import numpy as np
import pytest

from mmbus.evaluation.operating_points import (choose_thresholds, evaluate_at, parse_point_name, point_name,
                                               wilson_interval, youden_threshold)

# 10 malignant, 5 benign
MAL = [0.98, 0.95, 0.90, 0.85, 0.80, 0.70, 0.60, 0.50, 0.40, 0.20]
BEN = [0.75, 0.45, 0.30, 0.15, 0.05]
SCORES = MAL + BEN
LABELS = [1] * 10 + [0] * 5


def test_choose_thresholds_hand_worked():
    # sensitivity >= 0.90 needs 9 of 10 malignant: the 9th highest malignant score, 0.40
    # sensitivity >= 0.95 needs 9.5 -> all 10: the lowest malignant score, 0.20
    # Youden J = tpr - fpr per threshold (benign 0.75 enters at t=0.75, 0.45 at 0.45, ...):
    #   0.80: .5 - 0 = .5 | 0.75: .5 - .2 = .3 | 0.60: .7 - .2 = .5 | 0.50: .8 - .2 = .6 (max)
    #   0.45: .8 - .4 = .4 | 0.40: .9 - .4 = .5 | 0.20: 1 - .6 = .4
    th = choose_thresholds(SCORES, LABELS)
    assert th == {'sensitivity_0.95': 0.20, 'sensitivity_0.90': 0.40, 'youden': 0.50}
    assert th['youden'] == youden_threshold(SCORES, LABELS)  # the one Youden implementation


def test_chosen_threshold_is_the_highest():
    # just above 0.40 the 0.40 malignant is lost: 8/10 < 0.9
    assert evaluate_at(SCORES, LABELS, np.nextafter(0.40, 1))['sensitivity'] == 0.8
    assert evaluate_at(SCORES, LABELS, 0.40)['sensitivity'] == 0.9


def test_evaluate_at_hand_worked():
    # t = 0.40: malignant >= 0.40: all but 0.20 -> TP 9, FN 1; benign >= 0.40: 0.75, 0.45 -> FP 2, TN 3
    # sensitivity 9/10, specificity 3/5, PPV 9/11, NPV 3/4
    r = evaluate_at(SCORES, LABELS, 0.40)
    assert (r['tp'], r['fp'], r['tn'], r['fn']) == (9, 2, 3, 1)
    assert r['sensitivity'] == pytest.approx(0.9)
    assert r['specificity'] == pytest.approx(0.6)
    assert r['ppv'] == pytest.approx(9 / 11)
    assert r['npv'] == pytest.approx(0.75)
    # Wilson 3/4, z = 1.95996: centre (0.75 + z^2/8) / (1 + z^2/4) = 0.6275,
    # half z sqrt(0.75 * 0.25 / 4 + z^2/64) / (1 + z^2/4) = 0.3269 -> [0.3006, 0.9544]
    assert r['npv_ci_low'] == pytest.approx(0.3006, abs=1e-4)
    assert r['npv_ci_high'] == pytest.approx(0.9544, abs=1e-4)
    for name, k, n in (('sensitivity', 9, 10), ('specificity', 3, 5), ('ppv', 9, 11)):
        assert (r[f'{name}_ci_low'], r[f'{name}_ci_high']) == pytest.approx(wilson_interval(k, n))
    # t = 0.20 (sensitivity_0.95): TP 10, FN 0; benign >= 0.20: 0.75, 0.45, 0.30 -> FP 3, TN 2
    r = evaluate_at(SCORES, LABELS, 0.20)
    assert (r['tp'], r['fp'], r['tn'], r['fn']) == (10, 3, 2, 0)
    assert (r['sensitivity'], r['specificity'], r['ppv'], r['npv']) == pytest.approx((1.0, 0.4, 10 / 13, 1.0))


def test_threshold_above_every_score():
    # nothing called malignant: TP = FP = 0 -> PPV 0/0 undefined; sensitivity 0, specificity 1, NPV 5/15
    for t in (0.99, np.inf):
        r = evaluate_at(SCORES, LABELS, t)
        assert (r['tp'], r['fp'], r['tn'], r['fn']) == (0, 0, 5, 10)
        assert math.isnan(r['ppv'])
        assert math.isnan(r['ppv_ci_low']) and math.isnan(r['ppv_ci_high'])
        assert r['sensitivity'] == 0.0 and r['specificity'] == 1.0
        assert r['npv'] == pytest.approx(1 / 3)


def test_ties_fall_on_the_same_side():
    # malignant 0.9, 0.7, 0.7, 0.7, 0.3; benign 0.7, 0.2
    scores = [0.9, 0.7, 0.7, 0.7, 0.3, 0.7, 0.2]
    labels = [1, 1, 1, 1, 1, 0, 0]
    # target 0.5: k = 3 (3/5 >= 0.5), 3rd highest malignant = 0.7; at 0.7 the three tied malignant and the
    # tied benign are all called malignant -> sensitivity 4/5, specificity 1/2
    # target 0.2: k = 1 -> 0.9; target 0.9: k = 5 -> 0.3 (every positive: the lowest malignant score)
    th = choose_thresholds(scores, labels, sensitivities=(0.5, 0.2, 0.9))
    assert th['sensitivity_0.50'] == 0.7
    assert th['sensitivity_0.20'] == 0.9
    assert th['sensitivity_0.90'] == 0.3
    r = evaluate_at(scores, labels, th['sensitivity_0.50'])
    assert (r['sensitivity'], r['specificity']) == (0.8, 0.5)


def test_every_positive_and_float_edges():
    # 20 malignant: 0.95 * 20 = 19 exactly -> the 19th highest, not the 20th
    mal = np.linspace(1.0, 0.05, 20)
    scores = np.concatenate([mal, [0.01]])
    labels = [1] * 20 + [0]
    th = choose_thresholds(scores, labels, sensitivities=(0.95, 1.0, 0.999))
    assert th['sensitivity_0.95'] == pytest.approx(mal[18])
    assert th['sensitivity_1.00'] == pytest.approx(0.05)      # every positive: the lowest malignant score
    assert th['sensitivity_0.999'] == pytest.approx(0.05)
    assert evaluate_at(scores, labels, th['sensitivity_0.95'])['sensitivity'] >= 0.95


def test_point_names():
    assert point_name(0.9) == 'sensitivity_0.90'
    assert point_name(0.95) == 'sensitivity_0.95'
    assert point_name(0.975) == 'sensitivity_0.975'
    # the one parser of those names (model card and page): the inverse of point_name
    for target in (0.9, 0.95, 0.975, 1.0):
        assert parse_point_name(point_name(target)) == ('sensitivity', target)
    assert parse_point_name('specificity_0.80') == ('specificity', 0.8)
    for other in ('youden', 'threshold_0.5', 'sensitivity_high', 'sensitivity', 'my_point'):
        assert parse_point_name(other) == (None, None)


def test_bad_input():
    with pytest.raises(ValueError, match='no malignant'):
        choose_thresholds([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match='no benign'):
        choose_thresholds([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match=r'\(0, 1\]'):
        choose_thresholds(SCORES, LABELS, sensitivities=(0.0, ))
    with pytest.raises(ValueError, match=r'\(0, 1\]'):
        choose_thresholds(SCORES, LABELS, sensitivities=(1.5, ))
    with pytest.raises(ValueError, match='3 scores but 2 labels'):
        evaluate_at([0.1, 0.2, 0.3], [0, 1], 0.5)
    with pytest.raises(ValueError, match=r'0 \(benign\) or 1'):
        evaluate_at([0.1, 0.2], [0, 2], 0.5)
