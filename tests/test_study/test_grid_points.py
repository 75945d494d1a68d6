"""A grid point is one run with its own name, subset and key: points that differ never merge, the same point
written twice runs once, a func stage reruns when its arguments change, and the study's own validation test
keeps its name apart from the spec's test sets."""
import os.path as osp

import pytest
from mmengine.config import Config

from mmbus.study.configs import derive_config
from mmbus.study.engine import Study
from mmbus.study.spec import grid_id, grid_plan
from mmbus.study.stages import Stage, stage_names

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
METHODS = ['mean_teacher', 'supervised_basic']


def _spec(name, **opts):
    spec = Config.fromfile(osp.join(REPO, 'configs', 'studies', f'{name}.py'))
    spec.merge_from_dict(opts, allow_list_keys=True)
    return spec


def test_values_that_differ_get_names_that_differ():
    # two decimals used to make 0.001 and 0.0005 one point '0.00' (the second run silently dropped)
    assert [grid_id(p) for p, _ in grid_plan({'custom_hooks.0.momentum': [0.001, 0.0005]}, METHODS)] == [
        'momentum0.001', 'momentum0.0005']
    assert [grid_id(p) for p, _ in grid_plan(dict(labelled_share=[0.12, 0.125, 0.1]), METHODS)] == [
        'share0.12', 'share0.125', 'share0.10']  # the names of exact two-decimal values are as they were
    assert grid_id(dict(labelled_share=0.05, seed=0)) == 'share0.05_seed0'
    with pytest.raises(ValueError, match=r"would share the name 'w1'"):
        grid_plan([{'model.a.w': [1]}, {'model.b.w': [1]}], METHODS)


def test_one_point_written_in_two_orders_runs_once():
    plan = grid_plan([dict(seed=[0], labelled_share=[0.1], methods=['mean_teacher']),
                      dict(labelled_share=[0.1], seed=[0], methods=['supervised_basic'])], METHODS)
    assert plan == [(dict(seed=0, labelled_share=0.1), METHODS)]


def test_func_stage_params_enter_the_key(tmp_path):
    a = Stage('subset_all', func=lambda: None, params=dict(labelled_share=0.05, seed=0))
    assert a.key() != Stage('subset_all', func=lambda: None, params=dict(labelled_share=0.10, seed=0)).key()
    assert a.key() != Stage('subset_all', func=lambda: None, params=dict(labelled_share=0.05, seed=1)).key()
    assert a.key() == Stage('subset_all', func=lambda: None, params=dict(seed=0, labelled_share=0.05)).key()
    # a stage without params keeps the key it always had (work dirs made before params existed still skip)
    assert Stage('x', func=lambda: None).key() == Stage('x', func=lambda: None, params={}).key()


def test_a_one_point_study_redraws_its_subset_when_the_share_changes(tmp_path):
    """With one grid point the subset stage is always 'subset_all': its key must follow the share and seed,
    or a changed spec would train on the old draw (or skip everything and keep the old results)."""
    def subset_stage(share, seed):
        spec = _spec('busbra_stage2', **{'data.root': str(tmp_path / 'data')})
        spec.grid = dict(labelled_share=[share], seed=[seed])
        study = Study(spec, str(tmp_path / 'work'))
        items = study.build()
        return next(s for s in items if isinstance(s, Stage) and s.name == 'subset_all')

    keys = {subset_stage(0.05, 0).key(), subset_stage(0.10, 0).key(), subset_stage(0.05, 1).key()}
    assert len(keys) == 3


def test_synthetic_crops_are_made_once_per_seed(tmp_path):
    spec = _spec('mean_teacher_synthetic_crops')
    spec.grid = dict(seed=[0, 1], labelled_share=[0.1, 0.2])
    study = Study(spec, str(tmp_path / 'work'))
    names = stage_names(study.build())
    assert [n for n in names if n.startswith('crops_')] == ['crops_seed0', 'crops_seed1']
    assert len([n for n in names if n.startswith('subset_')]) == 4
    assert len(names) == len(set(names))  # a runner refuses duplicate stage names
    assert stage_names(study.build()) == names and len(study.runs) == 4 * 3  # a second build: the same stages


def test_a_test_set_called_val_is_scored_with_the_calibration(tmp_path):
    spec = _spec('busbra_stage2_selection', **{'data.root': str(tmp_path / 'data')})
    study = Study(spec, str(tmp_path / 'work'))
    names = stage_names(study.build())
    run = study.runs[0]['id']
    # the spec's 'val' test set and the calibration's validation predictions are two stages, two configs
    assert f'test_{run}_val' in names and f'val_{run}' in names
    val_test = next(t for t in study.test_sets() if t['name'] == 'val')
    cfg = Config.fromfile(study.classifier_config(study.runs[0], val_test))
    assert cfg.test_evaluator[0]['calibration'] == study.calibration_file(study.runs[0])
    assert osp.basename(study.classifier_config(study.runs[0], val_test)) == f'{run}_test_val.py'
    spec.test_sets = [dict(name='calibration_val', crops='gt', split='val')]
    with pytest.raises(ValueError, match="the name 'calibration_val' is the study's own"):
        Study(spec, str(tmp_path / 'work2')).build()


def test_row_names_follow_the_test_sets_the_study_has(tmp_path):
    # main_job_dataset tests on an external set only when it is given: without one, no external row is expected
    spec = _spec('main_job_dataset', **{'data.root': str(tmp_path / 'data')})
    rows = Study(spec, str(tmp_path / 'work')).row_names()
    assert len(rows['stage2']) == 3 and not [r for r in rows['stage2'] if r.endswith('_external')]
    assert rows['detectors'] == ['detector_internal']
    spec.merge_from_dict({'data.external_root': str(tmp_path / 'ext')})
    rows = Study(spec, str(tmp_path / 'work')).row_names()
    assert sorted(rows['stage2']) == sorted(f'{m}_{t}' for m in ('mean_teacher', 'supervised_basic', 'supervised_all')
                                            for t in ('internal', 'external'))


def test_the_grid_seed_seeds_the_run_over_a_method_override(tmp_path):
    spec = _spec('busbra_stage2', **{'data.root': str(tmp_path / 'data')})
    spec.methods = dict(mean_teacher=dict(overrides={'randomness.seed': 7}), supervised_basic=None)
    spec.grid = dict(labelled_share=[0.05], seed=[3])
    study = Study(spec, str(tmp_path / 'work'))
    study.build()
    seeds = {r['method']: Config.fromfile(study.classifier_config(r)).randomness.seed for r in study.runs}
    assert seeds == dict(mean_teacher=3, supervised_basic=3)
    spec.grid = dict(labelled_share=[0.05])  # no grid seed: the method's own, else the study's (data.seed 0)
    study = Study(spec, str(tmp_path / 'work'))
    study.build()
    assert {r['method']: Config.fromfile(study.classifier_config(r)).randomness.seed for r in study.runs} == dict(
        mean_teacher=7, supervised_basic=0)


def test_what_a_study_would_ignore_is_refused(tmp_path):
    spec = _spec('busbra_clinical', **{'data.root': str(tmp_path / 'data')})
    spec.calibrate = False
    with pytest.raises(ValueError, match='export_bundle needs calibrate=True'):
        Study(spec, str(tmp_path / 'work'))
    # a labelled share over a method config whose training data is not basic_train / extended_train would be
    # ignored
    own = str(tmp_path / 'my_supervised.py')
    derive_config(osp.join(REPO, 'configs', 'mmbus', 'supervised_basic_bus_cpu_quick.py'),
                  {'train_dataloader.dataset.ann_file': 'my_train.json'}, own)
    spec = _spec('busbra_stage2', **{'data.root': str(tmp_path / 'data')})
    spec.methods = dict(supervised_basic=dict(config=own))
    spec.grid = dict(labelled_share=[0.05])
    study = Study(spec, str(tmp_path / 'work'))
    study.build()
    with pytest.raises(ValueError, match=r"labelled_share needs a training ann_file basic_train.json or "
                       r"extended_train.json to replace with its subsets; it has \['my_train.json'\]"):
        study.classifier_config(study.runs[0])
