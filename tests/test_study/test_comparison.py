"""Grid plans with per-entry methods, row selection, the stage-2 target check and the training curves read
from mmengine's scalar logs, on small hand-made cases."""
import json

import numpy as np

import pytest

from mmbus.reporting.comparison import select_rows
from mmbus.reporting.curves import convergence, read_curves
from mmbus.study.spec import grid_plan
from mmbus.reporting.targets import check_targets

METHODS = ['mean_teacher', 'fixmatch', 'supervised_basic', 'supervised_all']


def test_grid_plan_union_with_methods_per_entry():
    plan = grid_plan([dict(labelled_share=[0.05], seed=[0, 1]),
                      dict(labelled_share=[0.05, 0.3], seed=[0], methods=['supervised_basic', 'mean_teacher'])],
                     METHODS)
    assert [p for p, _ in plan] == [dict(labelled_share=0.05, seed=0), dict(labelled_share=0.05, seed=1),
                                    dict(labelled_share=0.3, seed=0)]
    assert plan[0][1] == METHODS  # in both entries: the union, in the study's order
    assert plan[2][1] == ['mean_teacher', 'supervised_basic']
    # a later entry adds a method to one point of an earlier entry, not to its other points (a learning curve
    # of two methods with the ceiling run once beside its first share)
    plan = grid_plan([dict(labelled_share=[0.05, 0.1, 0.3], methods=['mean_teacher', 'supervised_basic']),
                      dict(labelled_share=[0.05], methods=['supervised_all'])], METHODS)
    assert [ms for _, ms in plan] == [['mean_teacher', 'supervised_basic', 'supervised_all'],
                                      ['mean_teacher', 'supervised_basic'], ['mean_teacher', 'supervised_basic']]
    assert grid_plan(dict(seed=[3]), METHODS) == [(dict(seed=3), METHODS)]
    assert grid_plan({}, METHODS) == [({}, METHODS)]
    with pytest.raises(ValueError, match="methods \\['fixmatch_x'\\] are not among"):
        grid_plan([dict(seed=[0], methods=['fixmatch_x'])], METHODS)


def test_select_rows_by_grid_values():
    rows = [dict(grid=dict(labelled_share=0.05, seed=0)), dict(grid=dict(labelled_share=0.1 + 0.2, seed=0)),
            dict(grid=dict(labelled_share=0.05, seed=1)), dict(grid=dict(seed=0))]
    assert select_rows(rows, dict(labelled_share=0.05)) == [rows[0], rows[2]]
    assert select_rows(rows, dict(labelled_share=0.3)) == [rows[1]]  # 0.1 + 0.2 != 0.3 in floats
    assert select_rows(rows, dict(seed=0)) == [rows[0], rows[1], rows[3]]
    assert select_rows(rows, None) == rows


def _rep(means, paired):
    return dict(summary=dict(gt={m: dict(mean=v) for m, v in means.items()}), paired=paired)


def test_targets_by_hand():
    paired = [dict(test_set='gt', method='mean_teacher', diff=d, p_value=p)
              for d, p in ((0.07, 0.01), (0.05, 0.03), (0.03, 0.2))]
    paired += [dict(test_set='gt', method='fixmatch', diff=0.02, p_value=0.01)] * 3
    rep = _rep(dict(mean_teacher=0.85, fixmatch=0.82, supervised_basic=0.80, supervised_all=0.86), paired)
    t = check_targets(rep, dict(test_set='gt', gain=0.05, p=0.05, min_significant=2, gap=0.02), 'supervised_basic')
    mt = t['methods']['mean_teacher']
    assert mt['gain'] == pytest.approx(0.05) and mt['gain_met']  # 0.85 - 0.80 reaches the +0.05 target
    assert mt['significant'] == 2 and mt['significance_met']
    assert mt['gap_to_upper'] == pytest.approx(0.01) and mt['gap_met']
    assert t['best_ssl'] == 'mean_teacher' and t['met']
    fm = t['methods']['fixmatch']
    assert not fm['gain_met'] and fm['significant'] == 3 and not fm['met']
    # the upper bound 0.03 ahead: the gap target fails, so the verdict does
    rep['summary']['gt']['supervised_all']['mean'] = 0.88
    t = check_targets(rep, dict(test_set='gt'), 'supervised_basic')
    assert not t['methods']['mean_teacher']['gap_met'] and not t['met']
    # a positive difference only counts when it is significant; a negative one never
    rep['paired'] = [dict(test_set='gt', method='mean_teacher', diff=-0.05, p_value=0.001)] * 3
    assert check_targets(rep, dict(test_set='gt'), 'supervised_basic')['methods']['mean_teacher']['significant'] == 0


def _scalars(path, records):
    path.parent.mkdir(parents=True)
    path.write_text(''.join(json.dumps(r) + '\n' for r in records))


def test_curves_from_scalars_with_a_resume(tmp_path):
    # epochs of 20 iterations; the run is resumed after epoch 2 (a second timestamp folder), which logs
    # epoch 3 again: the later record wins
    _scalars(tmp_path / '20260101_000000' / 'vis_data' / 'scalars.json', [
        dict(loss=0.7, epoch=1, iter=20, step=20), {'diag/auc': 0.6, 'diag/auc_smooth': 0.6, 'step': 1},
        dict(loss=0.6, epoch=2, iter=40, step=40), {'diag/auc': 0.8, 'diag/auc_smooth': 0.7, 'step': 2},
        dict(loss=0.5, epoch=3, iter=60, step=60), {'diag/auc': 0.5, 'diag/auc_smooth': 0.6333, 'step': 3}])
    _scalars(tmp_path / '20260101_010000' / 'vis_data' / 'scalars.json', [
        dict(loss=0.55, epoch=3, iter=60, step=60), {'diag/auc': 0.7, 'diag/auc_smooth': 0.7, 'step': 3},
        dict(loss=0.4, epoch=4, iter=80, step=80), {'diag/auc': 0.9, 'diag/auc_smooth': 0.8, 'step': 4}])
    c = read_curves(str(tmp_path))
    assert c['loss'] == [(20, 0.7), (40, 0.6), (60, 0.55), (80, 0.4)]
    assert c['diag/auc'] == [(20, 0.6), (40, 0.8), (60, 0.7), (80, 0.9)]
    v = convergence(c, 'diag/auc_smooth', tail=2)
    assert (v['best'], v['best_iter'], v['trained_iters'], v['validations']) == (0.8, 80, 80, 4)
    assert v['still_rising']  # the best value is the last one: the schedule was too short
    v = convergence(c, 'diag/auc', tail=1)
    assert v['still_rising']
    c['diag/auc'].append((100, 0.85))
    assert not convergence(c, 'diag/auc', tail=1)['still_rising']
    assert convergence(c, 'teacher/auc') == dict(monitor='teacher/auc', validations=0)


def test_subgroups_by_hand(tmp_path):
    """Two scanners; on scanner A the method ranks perfectly and the baseline does not."""
    from types import SimpleNamespace

    from mmbus.reporting.comparison import subgroup_section
    ann = tmp_path / 'annotations'
    ann.mkdir()
    images = [dict(id=i, device='A' if i < 4 else 'B') for i in range(8)]
    (ann / 'test.json').write_text(json.dumps(dict(images=images, annotations=[])))
    labels = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    preds = {'mt': np.array([.9, .8, .2, .1, .6, .4, .5, .3]), 'sb': np.array([.9, .2, .8, .1, .6, .4, .5, .3])}
    rows = [dict(test_set='gt', gid='s0', method=m, grid={}) for m in ('mt', 'sb')]
    ctx = SimpleNamespace(methods=['mt', 'sb'],
                          sets={'internal': SimpleNamespace(ann=lambda split: str(ann / f'{split}.json'))},
                          predictions=lambda r: (preds[r['method']], labels, list(range(8))))
    out, md = subgroup_section(ctx, rows, 'sb', dict(key='device', names={'B': 'scanner B'}))
    a, b = out['gt']['A'], out['gt']['scanner B']
    assert a['mt']['auc'] == [1.0] and a['sb']['auc'] == [0.75] and a['mt']['n'] == 4
    assert a['mt']['diff'] == [pytest.approx(0.25)]
    # scanner B: identical scores, AUC (1 + 1 + 0 + 1) / 4 = 0.75 for both, difference 0
    assert b['mt']['auc'] == [0.75] and b['mt']['diff'] == [0.0] and b['mt']['sig'] == 0
    assert 'scanner B' in '\n'.join(md)
    empty = SimpleNamespace(methods=[], sets={})
    assert subgroup_section(empty, rows, 'sb', dict(key='device')) == ({}, [])


def test_report_context_reads_what_the_rows_name(tmp_path):
    """A row names its run's folder and monitored metrics: the report's curves come from there, without the
    smoothing hook's leading placeholders; paths of the folder the study ran in are read in this one."""
    from mmbus.reporting.report import ReportContext
    _scalars(tmp_path / 'runs' / 'mt' / '20260101_000000' / 'vis_data' / 'scalars.json', [
        dict(loss=0.7, epoch=1, iter=20, step=20), {'diag/auc': 0.6, 'diag/auc_smooth': 0.0, 'step': 1},
        dict(loss=0.6, epoch=2, iter=40, step=40), {'diag/auc': 0.8, 'diag/auc_smooth': 0.7, 'step': 2}])
    ctx = ReportContext(str(tmp_path), dict(name='s', work_dir='/far/away/work', methods=['mt'], sets=dict(
        internal=dict(images='/far/away/work/data/a', ann_root='/data/a', title='Internal test'))))
    row = dict(run_dir='runs/mt', monitors=dict(monitor='diag/auc_smooth', raw='diag/auc', skip=1))
    c = ctx.curves(row)
    assert c['monitor'] == 'diag/auc_smooth' and c['raw'] == 'diag/auc'
    assert c['curves']['diag/auc_smooth'] == [(40, 0.7)] and c['curves']['diag/auc'] == [(20, 0.6), (40, 0.8)]
    assert ctx.curves(dict(run_dir='runs/mt')) is None  # a row that names no monitor: no curves
    assert ctx.sets['internal'].images == str(tmp_path / 'data' / 'a') and ctx.sets['internal'].ann_root == '/data/a'
    assert ctx.report == {} and ReportContext(str(tmp_path), dict(report=dict(type='paper'))).report == dict(
        type='paper')
