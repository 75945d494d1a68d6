"""The shipped study specs build into the expected stages and derived configs; a toy study runs end to
end through the engine and its report is rebuilt from a copy of the work dir's report inputs alone (the whole
toy main job is the slow test below)."""
import glob
import json
import os.path as osp
import shutil
import subprocess
import sys
import time

import pytest
from mmengine.config import Config

from mmbus.study.engine import Study

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SPECS = osp.join(REPO, 'configs', 'studies')


def _study(name, tmp_path, **opts):
    spec = Config.fromfile(osp.join(SPECS, f'{name}.py'))
    spec.merge_from_dict(opts, allow_list_keys=True)
    study = Study(spec, str(tmp_path / name))
    return study, study.build()


def _names(items):
    from mmbus.study.stages import stage_names
    return stage_names(items)


def test_main_job_spec_stages(tmp_path):
    study, items = _study('main_job_synthetic', tmp_path)
    names = _names(items)
    assert names[:4] == ['generate_hospital_a', 'generate_hospital_b', 'convert_internal', 'convert_external']
    for n in ('train_detector', 'test_detector_internal', 'test_detector_external', 'crops_main',
              'train_mean_teacher', 'test_mean_teacher_external', 'row_supervised_all', 'export_teacher'):
        assert n in names, n
    assert names[-1] == 'report'
    assert names.index('crops_main') > names.index('train_detector')


def test_busbra_specs(tmp_path):
    _, items = _study('busbra', tmp_path, **{'data.root': str(tmp_path / 'BUSBRA')})
    names = _names(items)
    assert 'crops_gt' in names and 'crops_det' in names and 'test_supervised_basic_det' in names
    assert 'convert_external' not in names


def test_synthetic_crops_spec_sets_the_same_views_for_every_method(tmp_path):
    study, items = _study('mean_teacher_synthetic_crops', tmp_path)
    assert len(study.runs) == 15
    cfgs = {r['id']: Config.fromfile(study.classifier_config(r)) for r in study.runs if 'seed3' in r['id']}
    mt = cfgs['seed3_mean_teacher']
    assert mt.model.view_augment.contrast == 0.5 and mt.model.view_augment.brightness == 0.4
    assert mt.custom_hooks[0].momentum == 0.05 == mt.custom_hooks[0].rampup_momentum
    assert mt.train_cfg.max_epochs == 60 and mt.randomness.seed == 3
    sb = cfgs['seed3_supervised_basic'].model.data_preprocessor.batch_augments.augments
    assert sb.contrast == 0.5 and sb.brightness == 0.4 and sb.translate == 3
    assert mt.train_dataloader.dataset.datasets[0].data_root == study.p('data', 'seed3') + '/'


def test_spec_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown method 'fixmatch_x'"):
        _study('busbra', tmp_path, methods=['fixmatch_x'])
    with pytest.raises(ValueError, match="unknown schedule 'fast'"):
        _study('busbra', tmp_path, schedule='fast')
    with pytest.raises(ValueError, match='data.root is required'):
        _study('main_job_dataset', tmp_path)
    with pytest.raises(ValueError, match="crop set 'main' takes the boxes of detector 'detector', which the study "
                       "does not have"):
        _study('main_job_synthetic', tmp_path, detector=None)


def test_a_study_stopped_before_its_report_still_has_its_report_context(tmp_path, monkeypatch):
    """The context is written when a study starts (a study killed in training, e.g. by a device's time limit, is
    reported from what finished); a later invocation does not overwrite it, and a refused one writes nothing."""
    from mmbus.study.stages import StageRunner

    def interrupted(self, stage):
        raise KeyboardInterrupt

    monkeypatch.setattr(StageRunner, '_run_one', interrupted)
    spec = Config.fromfile(osp.join(SPECS, 'mean_teacher_synthetic_crops.py'))
    spec.schedule = 'toy'
    work = tmp_path / 'w'
    study = Study(spec, str(work))
    with pytest.raises(KeyboardInterrupt):
        study.run()
    ctx = json.loads((work / 'report_context.json').read_text())
    assert ctx['name'] == spec.name and ctx['schedule'] == 'toy' and ctx['methods'] == list(study.methods)
    (work / 'report_context.json').write_text('{"name": "kept"}')
    with pytest.raises(KeyboardInterrupt):
        Study(spec, str(work)).run()
    assert json.loads((work / 'report_context.json').read_text()) == {'name': 'kept'}
    # refused (a --force pattern matching no stage): neither the spec nor the context is touched
    saved = (work / 'study_spec.py').read_text()
    other = Config.fromfile(osp.join(SPECS, 'mean_teacher_synthetic_crops.py'))
    other.schedule, other.name = 'toy', 'another'
    (work / 'report_context.json').unlink()
    with pytest.raises(ValueError, match='matches no stage'):
        Study(other, str(work), force=['trian_*']).run()
    assert (work / 'study_spec.py').read_text() == saved and not (work / 'report_context.json').exists()


def _run_study(args, cwd=REPO):
    return subprocess.run([sys.executable, osp.join(REPO, 'tools', 'run_study.py'), *args],
                          capture_output=True, text=True, cwd=cwd)


def test_toy_synthetic_crops_study_runs_and_reruns_nothing(tmp_path):
    work = tmp_path / 'crops'
    args = [osp.join(SPECS, 'mean_teacher_synthetic_crops.py'), '--schedule', 'toy', '--work-dir', str(work),
            '--cfg-options', 'grid.seed=[0]', 'methods=[supervised_basic,mean_teacher]',
            'extras=[orientation_auc,labelled_crops]']
    res = _run_study(args)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = sorted(p.name for p in (work / 'rows').iterdir())
    assert rows == ['mean_teacher_test.json', 'supervised_basic_test.json']
    row = json.loads((work / 'rows' / 'mean_teacher_test.json').read_text())
    assert 0 <= row['metrics']['auc'] <= 1 and row['metrics']['num_samples'] == 16
    assert len(row['extras']['labelled_crops']) == 4
    assert not osp.isabs(row['predictions']) and (work / row['predictions']).is_file()
    rep = json.loads((work / 'report' / 'report.json').read_text())
    assert rep['paired'][0]['method'] == 'mean_teacher' and 0 <= rep['paired'][0]['p_value'] <= 1
    md = (work / 'report' / 'report.md').read_text()
    assert 'Paired differences' in md and 'tools/train.py' in md and str(work) not in md
    assert (work / 'report' / 'roc_test.png').read_bytes()[:4] == b'\x89PNG'
    res = _run_study(args)
    assert res.returncode == 0 and '0 ran, ' in res.stdout and 'up to date, skipped' in res.stdout
    res = _run_study(args[:1] + ['--work-dir', str(work), '--force', 'trian_*'])
    assert res.returncode == 1 and 'matches no stage' in res.stderr
    assert row['run_dir'] == 'runs/mean_teacher' and row['monitors']['monitor'] == row['convergence']['monitor']

    # the report again from a copy of what it reads, the study's work dir moved away: the same report
    copy = tmp_path / 'copy'
    _copy_report_inputs(work, copy)
    work.rename(tmp_path / 'moved')
    work = tmp_path / 'moved'
    res = subprocess.run([sys.executable, '-m', 'mmbus.reporting.report', str(copy)], capture_output=True, text=True,
                         cwd=REPO)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    again = json.loads((copy / 'report' / 'report.json').read_text())
    assert {k: v for k, v in again.items() if k != 'environment'} == {
        k: v for k, v in rep.items() if k != 'environment'}
    versions = md.index('## Versions')
    assert (copy / 'report' / 'report.md').read_text()[:versions] == md[:versions]
    pngs = sorted(p.name for p in (work / 'report').glob('*.png'))
    assert 'reliability_test.png' in pngs and 'roc_test.png' in pngs
    assert sorted(p.name for p in (copy / 'report').glob('*.png')) == pngs
    for name in pngs:
        assert (copy / 'report' / name).read_bytes() == (work / 'report' / name).read_bytes(), name
    # --report-only: no stage runs; the spec's report settings (here with targets) are drawn
    res = _run_study(args + ['report.targets.test_set=test', '--report-only'] + ['--work-dir', str(copy)])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert '[study] 1/' not in res.stdout
    rep = json.loads((copy / 'report' / 'report.json').read_text())
    assert rep['targets']['test_set'] == 'test' and list(rep['targets']['methods']) == ['mean_teacher']
    assert '## Targets (test)' in (copy / 'report' / 'report.md').read_text()
    # without its context (a study stopped before its first report) the report names what is missing and how
    # to write it; --report-only writes it from the spec, and the report follows
    (copy / 'report_context.json').unlink()
    res = subprocess.run([sys.executable, '-m', 'mmbus.reporting.report', str(copy)], capture_output=True, text=True,
                         cwd=REPO)
    assert res.returncode != 0 and '--report-only' in res.stderr
    assert f'{copy} holds no report_context.json' in res.stderr
    res = _run_study(args + ['--report-only', '--work-dir', str(copy)])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert json.loads((copy / 'report_context.json').read_text())['methods'] == ['supervised_basic', 'mean_teacher']
    again = json.loads((copy / 'report' / 'report.json').read_text())
    assert again['summary'] == rep['summary'] and again['paired'] == rep['paired']


def _copy_report_inputs(work, dest):
    """What a report reads into ``dest``: the rows and the files they name (predictions, crops, misses,
    calibration, the run's training curves), the saved spec, the stage state and the report context."""
    names = ['study_spec.py', 'study_state.json', 'report_context.json']
    for p in (work / 'rows').glob('*.json'):
        row = json.loads(p.read_text())
        names.append(f'rows/{p.name}')
        names += [row[k] for k in ('predictions', 'crops', 'missed', 'calibration') if row.get(k)]
        curves = glob.glob(str(work / row['run_dir'] / '*' / 'vis_data' / 'scalars.json'))
        names += [osp.relpath(f, work) for f in curves]
    for n in names:
        if (work / n).is_file():
            (dest / n).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(work / n, dest / n)


@pytest.mark.slow
def test_toy_main_job_end_to_end_and_rerun_skips(tmp_path):
    """The whole main job (generation ... report) at toy scale, then a rerun that skips every stage."""
    work = tmp_path / 'main'
    args = [osp.join(SPECS, 'main_job_synthetic.py'), '--schedule', 'toy', '--work-dir', str(work)]
    res = _run_study(args)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = work / 'report'
    for name in ('report.md', 'report.json', 'roc_curves.png', 'detections.png'):
        assert (report / name).stat().st_size > 0, name
    md = (report / 'report.md').read_text()
    for text in ('Table 1', 'Table 2', 'Table 3', 'Table 4', 'Mean teacher', 'Supervised, basic train',
                 'External test (hospital B)', 'make_synthetic_bus.py', 'tools/train.py', 'mmdet'):
        assert text in md, text
    assert str(work) not in md
    rep = json.loads((report / 'report.json').read_text())
    t1 = rep['table1_splits']
    assert sum(t1[f'A/{s}']['images'] for s in ('basic_train', 'extended_train', 'val', 'test')) == 24
    assert t1['B/test']['images'] == 12
    for key in ('A/extended_train', 'A/test', 'B/test'):  # one crop per image or listed as missed
        assert t1[key]['crop_boxes'] == 'detector'
        assert t1[key]['crops'] + t1[key]['missed_by_detector'] == t1[key]['images']
    for tset in ('internal', 'external'):
        for method in ('mean_teacher', 'supervised_basic', 'supervised_all'):
            assert 'accuracy' in rep['tables34_classification'][tset][method], (tset, method)
    assert 'bus_box/mean_iou' in rep['table2_detection']['internal']
    assert (work / 'export' / 'teacher.pth').exists()
    t0 = time.time()
    res = _run_study(args)
    assert res.returncode == 0, res.stdout[-3000:]
    # 24 stages, and per stage-2 method its validation predictions and calibration: 30
    assert res.stdout.count('up to date, skipped') == 30 and '[study] 0 ran' in res.stdout
    assert time.time() - t0 < 60


def test_derived_test_configs_leave_the_roc_output_to_the_work_dir(tmp_path):
    """A derived test config names no output folder, so `tools/test.py --work-dir D` writes the ROC files
    under D (the runner's log dir) and a second test elsewhere cannot overwrite the study's."""
    study, _ = _study('main_job_synthetic', tmp_path)
    run = next(r for r in study.runs if r['method'] == 'mean_teacher')
    test = next(t for t in study.test_sets() if t['name'] == 'external')
    cfg = Config.fromfile(study.classifier_config(run, test))
    metric = cfg.test_evaluator[0]
    assert metric.type == 'BinaryDiagnosticMetric' and metric.get('output_dir') is None
    assert cfg.test_dataloader.dataset.ann_file == 'test_external.json'
    assert cfg.test_dataloader.dataset.data_root == study.p('crops', 'main') + '/'


def test_busbra_stage2_spec_plan_and_shipped_selection(tmp_path):
    study, items = _study('busbra_stage2', tmp_path, **{'data.root': str(tmp_path / 'BUSBRA')})
    names = _names(items)
    assert 'train_detector' not in names and names[-1] == 'report'
    ids = [r['id'] for r in study.runs]
    assert len(ids) == 3 * 4 and 'share0.05_seed2_fixmatch' in ids
    # the learning curve: two methods at four shares over three draws, supervised-all once per draw
    curve, _ = _study('busbra_stage2_learning_curve', tmp_path / 'lc', **{'data.root': str(tmp_path / 'BUSBRA')})
    curve_ids = [r['id'] for r in curve.runs]
    assert len(curve_ids) == 4 * 3 * 2 + 3 and 'share0.30_seed2_supervised_basic' in curve_ids
    assert 'share0.30_seed0_supervised_all' not in curve_ids and 'share0.05_seed1_supervised_all' in curve_ids
    run = next(r for r in study.runs if r['id'] == 'share0.05_seed1_fixmatch')
    cfg = Config.fromfile(study.classifier_config(run))
    assert cfg.randomness.seed == 1
    assert cfg.train_dataloader.dataset.datasets[0].ann_file.endswith('subsets/share0.05_seed1/labelled.json')
    # every method selects on its smoothed validation AUC, with patience counted in iterations
    for r in study.runs[:4]:
        cfg = Config.fromfile(study.classifier_config(r))
        monitor = cfg.default_hooks.checkpoint.save_best
        assert monitor.endswith('/auc_smooth'), r['id']
        hooks = {h['type']: h for h in cfg.custom_hooks}
        assert hooks['SmoothedMetricHook']['keys'] + '_smooth' == monitor
        assert hooks['IterPatienceEarlyStoppingHook']['monitor'] == monitor
        assert study.monitors(r) == (monitor, hooks['SmoothedMetricHook']['keys'], 4)  # 4 placeholder values


def test_crops_data_type(tmp_path):
    from mmbus.datasets.synthetic_crops import make_crop_set
    with pytest.raises(FileNotFoundError, match='lacks basic_train.json, extended_train.json, val.json, test.json'):
        _study('busbra_stage2', tmp_path, data=dict(_delete_=True, type='crops', root=str(tmp_path)))
    root = tmp_path / 'crops64'
    make_crop_set(str(root), dict(basic_train=4, extended_train=4, val=4, test=4), seed=0, balanced_basic=True)
    study, items = _study('busbra_stage2', tmp_path / 'w', data=dict(_delete_=True, type='crops', root=str(root)))
    names = _names(items)
    assert 'convert_internal' not in names and 'crops_gt' not in names and 'subset_share0.05_seed0' in names
    run = study.runs[0]
    cfg = Config.fromfile(study.classifier_config(run))
    assert cfg.val_dataloader.dataset.data_root == str(root) + '/'


def test_busbra_scanner_spec_holds_the_scanners_out(tmp_path):
    study, items = _study('busbra_stage2_scanners', tmp_path, **{'data.root': str(tmp_path / 'BUSBRA')})
    from mmbus.study.stages import Parallel
    flat = [x for it in items for x in ([y for chain in it for y in chain] if isinstance(it, Parallel) else [it])]
    stages = {s.name: s for s in flat}
    internal, external = list(stages['convert_internal'].cmd), list(stages['convert_external'].cmd)
    assert internal[internal.index('--where-not') + 1] == 'device=Toshiba|U-Systems' and '--where' not in internal
    assert external[external.index('--where') + 1] == 'device=Toshiba|U-Systems' and '--external-test' in external
    assert {t['name'] for t in study.test_sets()} == {'gt', 'external'}
    assert len(study.runs) == 12 and 'test_share0.05_seed2_fixmatch_external' in stages
