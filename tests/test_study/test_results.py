"""Result rows, the paired DeLong test and the table writer, against numbers worked out by hand."""
import os
import pickle

import numpy as np
import pytest

from mmbus.evaluation.binary_diagnostic_metric import delong_auc
from mmbus.reporting.results import (fmt, fmt_mean_sd, load_predictions, load_rows, md_table, mean_std,
                                     paired_delong, pick_metric, plain_metrics, write_row)


def test_paired_delong_by_hand():
    # 2 malignant, 2 benign. A ranks perfectly (AUC 1); B: pos 0.9, 0.2 vs neg 0.5, 0.1 -> 3/4.
    y = [1, 1, 0, 0]
    a = [0.9, 0.8, 0.3, 0.1]
    b = [0.9, 0.2, 0.5, 0.1]
    r = paired_delong(a, b, y)
    assert r['auc_a'] == pytest.approx(1.0) and r['auc_b'] == pytest.approx(0.75)
    assert r['diff'] == pytest.approx(0.25)
    # structural components (V10 per positive, V01 per negative):
    # A: V10 = [1, 1], V01 = [1, 1] -> zero variance; B: V10 = [1, 0.5], V01 = [0.5, 1]
    # var(B) = var([1, .5])/2 + var([.5, 1])/2 = 0.125/2 + 0.125/2 = 0.125; cov(A, B) = 0
    se = np.sqrt(0.125)
    assert r['diff_ci_low'] == pytest.approx(0.25 - 1.959964 * se)
    z = 0.25 / se
    from statistics import NormalDist
    assert r['p_value'] == pytest.approx(2 * (1 - NormalDist().cdf(z)))
    # agrees with the unpaired DeLong variance of B alone
    assert delong_auc(b, y)[1] == pytest.approx(0.125)
    # identical scores: difference 0, p = 1
    same = paired_delong(a, a, y)
    assert same['diff'] == 0 and same['p_value'] == pytest.approx(1.0)
    with pytest.raises(ValueError, match='2 samples per class'):
        paired_delong([0.1, 0.9, 0.5], [0.2, 0.8, 0.5], [1, 0, 0])


def test_rows_and_metric_names(tmp_path):
    m = {'teacher/auc': 0.8, 'student/auc': 0.7, 'teacher/accuracy': 0.75}
    assert pick_metric(m, 'auc') == 0.8
    assert plain_metrics(m) == {'auc': 0.8, 'accuracy': 0.75}
    assert pick_metric({'diag/auc': 0.6}, 'auc') == 0.6 and pick_metric({}, 'auc') is None
    write_row(str(tmp_path), 'b', dict(method='x', metrics={'auc': np.float64(0.5)}))
    write_row(str(tmp_path), 'a', dict(method='y', metrics={}))
    assert [r['method'] for r in load_rows(str(tmp_path))] == ['y', 'x']
    assert mean_std([0.7, 0.9, float('nan'), None]) == pytest.approx(dict(mean=0.8, std=np.sqrt(0.02), n=2))
    assert md_table(['a', 'b'], [[1, 'x']]) == '| a | b |\n|---|---|\n| 1 | x |'
    from mmbus.utils.markdown import md_table as library_table
    assert md_table is library_table   # the reports and the library share one writer
    assert library_table(['a'], []) == '| a |\n|---|'


def test_the_one_number_formats():
    assert fmt(0.8125, ci=[0.75, 0.875]) == '0.812 [0.750, 0.875]' and fmt(0.5, ci=[0.4, None]) == '0.500'
    assert fmt(0.8125, pct=True) == '81.2%' and fmt(None) == 'n/a' and fmt(float('nan')) == 'n/a'
    assert fmt_mean_sd(0.8034, 0.0337) == '0.803 ± 0.034'
    assert fmt_mean_sd(0.8, None) == '0.800'                     # one value: no sd
    assert fmt_mean_sd(None, 0.1) == 'n/a' and fmt_mean_sd(None, None, missing='-') == '-'


def test_predictions_with_missed_images(tmp_path):
    preds = [dict(pred_score=np.array([0.2, 0.8]), gt_label=np.array([1]), img_path='/c/test/n1.png'),
             dict(pred_score=np.array([0.6, 0.4]), gt_label=np.array([0]), img_path='/c/test/n2.png')]
    with open(tmp_path / 'p.pkl', 'wb') as f:
        pickle.dump(preds, f)
    import json
    (tmp_path / 'crops.json').write_text(json.dumps(dict(data_list=[
        dict(img_path='test/n1.png', image_id=1, true_label=1),
        dict(img_path='test/n2.png', image_id=2, true_label=0)])))
    missed = [dict(id=3, pathology='malignant'), dict(id=4, pathology='benign')]
    (tmp_path / 'missed.json').write_text(json.dumps(missed))
    s, y, ids = load_predictions(str(tmp_path / 'p.pkl'), str(tmp_path / 'crops.json'),
                                 str(tmp_path / 'missed.json'))
    # misses are wrong answers: a missed malignant nodule scores 0, a missed benign one 1
    assert s.tolist() == [0.8, 0.4, 0.0, 1.0] and y.tolist() == [1, 0, 1, 0] and ids == [1, 2, 3, 4]
    # the metric's other rule: a miss is called benign (score 0)
    s, y, _ = load_predictions(str(tmp_path / 'p.pkl'), None, str(tmp_path / 'missed.json'), missed_rule='benign')
    assert s.tolist() == [0.8, 0.4, 0.0, 0.0] and y.tolist() == [1, 0, 1, 0]


def test_scores_file_stands_in_for_the_dump(tmp_path):
    """write_scores keeps a dump's scores, labels, image ids and misses in <stem>_scores.json; without the
    pickle, load_predictions reads it and scores the misses by the rule it is asked for; a bad file or another
    class is an error naming it."""
    import json
    from mmbus.evaluation.predictions import scores_file, write_scores
    preds = [dict(pred_score=np.array([0.2, 0.8]), gt_label=np.array([1]), img_path='/c/test/n1.png'),
             dict(pred_score=np.array([0.6, 0.4]), gt_label=np.array([0]), img_path='/c/test/n2.png')]
    pkl = str(tmp_path / 'predictions.pkl')
    with open(pkl, 'wb') as f:
        pickle.dump(preds, f)
    (tmp_path / 'crops.json').write_text(json.dumps(dict(data_list=[
        dict(img_path='test/n1.png', image_id=1, true_label=1), dict(img_path='test/n2.png', image_id=2)])))
    (tmp_path / 'missed.json').write_text(json.dumps([dict(id=3, pathology='malignant'), dict(id=4, gt_label=0)]))
    path = write_scores(pkl, str(tmp_path / 'crops.json'), str(tmp_path / 'missed.json'))
    assert path == scores_file(pkl) == str(tmp_path / 'predictions_scores.json')
    os.remove(pkl)
    (tmp_path / 'missed.json').rename(tmp_path / 'elsewhere.json')  # the misses travel in the scores file
    for rule, missed in (('wrong', [0.0, 1.0]), ('benign', [0.0, 0.0]), (0.5, [0.5, 0.5])):
        s, y, ids = load_predictions(pkl, None, str(tmp_path / 'missed.json'), missed_rule=rule)
        assert s.tolist() == [0.8, 0.4] + missed and y.tolist() == [1, 0, 1, 0] and ids == [1, 2, 3, 4]
    # the misses' file, where it came along, is read as it is now (one miss left)
    (tmp_path / 'missed.json').write_text(json.dumps([dict(id=9, true_label=1)]))
    s, y, ids = load_predictions(pkl, None, str(tmp_path / 'missed.json'))
    assert s.tolist() == [0.8, 0.4, 0.0] and ids == [1, 2, 9]
    with pytest.raises(ValueError, match=r'predictions_scores\.json holds the scores of class 1, not of class 0'):
        load_predictions(pkl, positive_index=0)
    with open(path, 'w') as f:
        json.dump(dict(scores=[0.1], labels=[1, 0], image_ids=[1], missed=[]), f)
    with pytest.raises(ValueError, match=r'predictions_scores\.json: not a scores file'):
        load_predictions(pkl)
    with pytest.raises(FileNotFoundError, match=r'predictions\.pkl: no such prediction dump'):
        write_scores(pkl)


def test_unlabelled_predictions_and_misses_are_errors_naming_the_file(tmp_path):
    import json
    with open(tmp_path / 'p.pkl', 'wb') as f:
        pickle.dump([dict(pred_score=np.array([0.6, 0.4]), gt_label=np.array([-1]), img_path='n2.png')], f)
    with pytest.raises(ValueError, match=r'p\.pkl: prediction for n2\.png has gt_label -1'):
        load_predictions(str(tmp_path / 'p.pkl'))
    with open(tmp_path / 'ok.pkl', 'wb') as f:
        pickle.dump([], f)
    (tmp_path / 'missed.json').write_text(json.dumps([dict(id=5, file_name='x.png')]))
    with pytest.raises(ValueError, match=r'missed\.json: missed record x\.png has no true_label'):
        load_predictions(str(tmp_path / 'ok.pkl'), None, str(tmp_path / 'missed.json'))


@pytest.mark.parametrize('rule', ['wrong', 'benign'])
def test_report_figures_equal_the_metric_to_the_last_digit(tmp_path, rule):
    """The report reads a test's predictions and misses (misses carrying only ``true_label``) and computes its
    AUC, ROC points and paired difference; the metric computes them in tools/test.py: the same numbers."""
    import json

    from mmbus.evaluation.binary_diagnostic_metric import BinaryDiagnosticMetric
    from mmbus.evaluation.operating_points import roc_curve
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    a = np.clip(0.5 * y + rng.normal(0.3, 0.25, 40), 0, 1)
    b = np.clip(0.3 * y + rng.normal(0.35, 0.25, 40), 0, 1)
    missed = [dict(file_name=f'm{i}.png', true_label=int(i % 2)) for i in range(5)]
    (tmp_path / 'test_missed.json').write_text(json.dumps(missed))
    figures = {}
    for name, s in (('a', a), ('b', b)):
        preds = [dict(pred_score=np.array([1 - v, v]), gt_label=np.array([t]), img_path=f'c{i}.png')
                 for i, (v, t) in enumerate(zip(s, y))]
        with open(tmp_path / f'{name}.pkl', 'wb') as f:
            pickle.dump(preds, f)
        metric = BinaryDiagnosticMetric(prefix='diag', missed=str(tmp_path / 'test_missed.json'), missed_rule=rule,
                                        save_curve=False)
        metric.process(None, [dict(pred_score=p['pred_score'], gt_label=p['gt_label']) for p in preds])
        m = metric.compute_metrics(metric.results)
        scores, labels, _ = load_predictions(str(tmp_path / f'{name}.pkl'), None,
                                             str(tmp_path / 'test_missed.json'), missed_rule=rule)
        assert len(labels) == 45
        assert delong_auc(scores, labels)[0] == m['auc']  # exactly, not approximately
        # the metric's own samples (what its ROC curve and every figure come from) are the report's
        metric_scores, metric_labels, _ = metric.samples(metric.results)
        assert np.array_equal(scores, metric_scores) and np.array_equal(labels, metric_labels)
        assert all(np.array_equal(u, v) for u, v in zip(roc_curve(scores, labels),
                                                        roc_curve(metric_scores, metric_labels)))
        figures[name] = (scores, labels, m['auc'])
    d = paired_delong(figures['a'][0], figures['b'][0], figures['a'][1])
    assert d['diff'] == figures['a'][2] - figures['b'][2]


def test_metric_series_by_hand():
    from mmbus.reporting.plots import metric_series

    def row(method, share, seed, auc, lo=None, hi=None):
        return dict(method=method, grid=dict(labelled_share=share, seed=seed),
                    metrics=dict(auc=auc, auc_ci_low=lo, auc_ci_high=hi))

    # one draw per share: the value and its CI; a method at one share only: a level
    one = metric_series([row('mt', 0.1, 0, 0.80, 0.75, 0.85), row('mt', 0.3, 0, 0.84, 0.80, 0.88),
                         row('all', 0.1, 0, 0.86, 0.82, 0.90)], 'labelled_share')
    assert one['mt'] == dict(xs=[0.1, 0.3], ys=[0.80, 0.84], lo=[0.75, 0.80], hi=[0.85, 0.88], draws=[1, 1],
                             level=False, mean_sd=False)
    assert one['all']['level'] and one['all']['ys'] == [0.86]
    # three draws at 0.1 (0.70, 0.80, 0.90: mean 0.80, sd 0.10), two at 0.3 (0.84, 0.86: mean 0.85, sd 0.01414)
    rows = [row('mt', 0.1, s, a) for s, a in enumerate([0.70, 0.80, 0.90])] + [
        row('mt', 0.3, s, a, 0.5, 0.99) for s, a in enumerate([0.84, 0.86])] + [row('mt', 0.5, 0, float('nan'))]
    s = metric_series(rows, 'labelled_share')['mt']
    assert s['xs'] == [0.1, 0.3] and s['draws'] == [3, 2] and s['mean_sd'] and not s['level']
    assert s['ys'] == pytest.approx([0.80, 0.85])
    sd = 0.0141421356  # sqrt(((0.84 - 0.85)^2 + (0.86 - 0.85)^2) / 1)
    assert s['lo'] == pytest.approx([0.70, 0.85 - sd]) and s['hi'] == pytest.approx([0.90, 0.85 + sd])


def test_a_setting_by_name_is_plotted_side_by_side(tmp_path):
    """A study over a setting whose values are names (consistency_on: 'unlabelled' / 'all'): the values stand
    side by side, in sorted order, labelled by name (a numeric axis cannot place them)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from mmbus.reporting import plots
    rows = [dict(method='mt', grid=dict(consistency_on=on, seed=s), metrics=dict(auc=a))
            for on, aucs in (('unlabelled', (0.82, 0.81)), ('all', (0.81, 0.80))) for s, a in enumerate(aucs)]
    seen = {}
    close = plt.close
    plots_save = plots.save_fig

    def keep(fig, path):
        ax = fig.axes[0]
        seen['ticks'] = [t.get_text() for t in ax.get_xticklabels()]
        seen['x'] = list(ax.lines[0].get_xdata())
        return plots_save(fig, path)

    plots.save_fig = keep
    try:
        out = plots.plot_metric_by(rows, 'consistency_on', str(tmp_path / 'by_name.png'), 'consistency on', 't')
    finally:
        plots.save_fig = plots_save
        close('all')
    import os
    assert os.path.getsize(out) > 0
    assert seen['ticks'] == ['all', 'unlabelled'] and seen['x'] == [0, 1]
