"""Report helpers: split counts, predictions with detector misses, ROC."""
import json

import numpy as np
from mmengine.fileio import dump

from mmbus.apis.report import (fmt_pct_ci, load_predictions, pick_metric,
                               roc_points, split_counts)


def test_roc_points_by_hand():
    fpr, tpr = roc_points(np.array([0.9, 0.8, 0.4, 0.2]),
                          np.array([1, 0, 1, 0]))
    np.testing.assert_allclose(fpr, [0, 0, .5, .5, 1])
    np.testing.assert_allclose(tpr, [0, .5, .5, 1, 1])
    # tied scores form one step
    fpr, tpr = roc_points(np.array([0.5, 0.5]), np.array([1, 0]))
    np.testing.assert_allclose(fpr, [0, 1])
    np.testing.assert_allclose(tpr, [0, 1])


def test_predictions_with_missed_images(tmp_path):
    dump([dict(pred_score=np.array([0.3, 0.7]), gt_label=np.array([1]),
               img_path='/x/crops/test/5_a_0.png'),
          dict(pred_score=np.array([0.6, 0.4]), gt_label=np.array([0]),
               img_path='/x/crops/test/6_b_0.png')],
         str(tmp_path / 'p.pkl'))
    (tmp_path / 'test.json').write_text(json.dumps(dict(data_list=[
        dict(img_path='test/5_a_0.png', image_id=5, true_label=1),
        dict(img_path='test/6_b_0.png', image_id=6, true_label=0)])))
    (tmp_path / 'missed.json').write_text(json.dumps(
        [dict(id=9, pathology='benign'), dict(id=10, pathology='malignant')]))
    s, y, ids = load_predictions(str(tmp_path / 'p.pkl'),
                                 str(tmp_path / 'test.json'),
                                 str(tmp_path / 'missed.json'))
    # a missed benign nodule scores 1 and a missed malignant one 0: wrong
    np.testing.assert_allclose(s, [0.7, 0.4, 1.0, 0.0])
    assert y.tolist() == [1, 0, 0, 1] and ids == [5, 6, 9, 10]


def test_split_counts_and_metric_lookup(tmp_path):
    coco = dict(images=[dict(id=1, pathology='benign'),
                        dict(id=2, pathology='malignant'),
                        dict(id=3, pathology='normal')],
                annotations=[dict(image_id=1), dict(image_id=2),
                             dict(image_id=2)])
    (tmp_path / 'a.json').write_text(json.dumps(coco))
    assert split_counts(str(tmp_path / 'a.json')) == dict(
        benign=1, malignant=2, total=3, images=3)
    assert split_counts(str(tmp_path / 'none.json')) is None
    m = {'student/auc': 0.1, 'teacher/auc': 0.9, 'teacher/sensitivity': 0.5,
         'teacher/sensitivity_ci_low': 0.25,
         'teacher/sensitivity_ci_high': 0.75}
    assert pick_metric(m, 'auc') == 0.9
    assert pick_metric({'diag/auc': 0.8}, 'auc') == 0.8
    assert pick_metric({}, 'auc') is None
    assert fmt_pct_ci(m, 'sensitivity') == '50.0% [25.0, 75.0]'
    assert fmt_pct_ci({'diag/accuracy': float('nan')}, 'accuracy') == 'n/a'
