"""The classifier configs (paper Table 3 rows + CPU-sized variants): paper
hyperparameters, and a short run through the stock tools/train.py and
tools/test.py."""
import glob
import json
import os.path as osp
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config
from mmpretrain.registry import MODELS

import mmbus.registry  # noqa: F401
from mmbus.datasets.synthetic_crops import make_crop_set

ROOT = Path(__file__).resolve().parents[2]
CFG = ROOT / 'configs' / 'mmbus'
NAMES = ['mean_teacher_bus', 'supervised_basic_bus', 'supervised_all_bus']


def load(name):
    return Config.fromfile(str(CFG / f'{name}.py'))


@pytest.mark.parametrize('name', NAMES + [n + '_cpu_quick' for n in NAMES])
def test_config_parses_and_builds(name):
    cfg = load(name)
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.custom_imports['imports'] == ['mmbus.registry']
    model = MODELS.build(cfg.model)
    quick = name.endswith('_cpu_quick')
    assert model.backbone.out_channels if hasattr(model, 'backbone') \
        else model.student.backbone.out_channels
    assert cfg.optim_wrapper.optimizer.type == 'Adam'
    assert cfg.optim_wrapper.optimizer.lr == 0.003
    sampler = cfg.train_dataloader.sampler
    assert sampler.type == 'LabelledUnlabelledSampler'
    assert cfg.train_dataloader.batch_size == \
        sampler.num_labelled + sampler.num_unlabelled
    iters = cfg.train_cfg.max_epochs * sampler.epoch_length
    semi = name.startswith('mean_teacher')
    # cpu-quick: the mean teacher trains twice as long as its supervised twins (it converges slower)
    assert iters == ((1600 if semi else 800) if quick else 40000)
    hooks = {h['type']: h for h in cfg.custom_hooks}
    # the paper's patience, 5 epochs of 100 iterations, in iterations (cpu-quick: 400 of 800 / 1600)
    stop = hooks['IterPatienceEarlyStoppingHook']
    assert stop['patience_iters'] == (400 if quick else 500)
    monitor = stop['monitor']
    # selection on the validation AUC smoothed over the last 5 validations, for every method
    assert monitor.endswith('_smooth') and hooks['SmoothedMetricHook']['keys'] + '_smooth' == monitor
    assert hooks['SmoothedMetricHook']['window'] == 5 and hooks['SmoothedMetricHook']['partial'] == 0.0
    assert cfg.default_hooks.checkpoint.save_best == monitor
    if quick:  # the learning rate anneals to 0 over the run
        (sched, ) = cfg.param_scheduler
        assert sched.type == 'CosineAnnealingLR' and sched.end == cfg.train_cfg.max_epochs
    assert cfg.model.backbone.dropout == 0.5
    assert cfg.model.backbone.widen_factor == (0.25 if quick else 1.0)
    pipeline = cfg.val_dataloader.dataset.pipeline
    assert pipeline[1] == dict(type='LetterboxResize',
                               size=32 if quick else 64)
    if semi:
        assert monitor == 'teacher/auc_smooth'
        assert stop['begin_iters'] == cfg.model.rampup_iters == (400 if quick else 10000)
        assert cfg.model.consistency_weight == 50.0  # the authors' value; chosen on BUS-BRA validation
        assert (sampler.num_labelled, sampler.num_unlabelled) == \
            ((16, 16) if quick else (64, 64))
        # momentum = 1 - decay: paper 0.999 / 0.99; cpu-quick 0.99 / 0.97 (short run)
        assert hooks['MeanTeacherHook']['momentum'] == (0.01 if quick else 0.001)
        assert hooks['MeanTeacherHook']['rampup_momentum'] == \
            (0.03 if quick else 0.01)
        assert cfg.model.view_augment.noise_std == 0.15
        assert cfg.model.view_augment.flip_prob == 0.5
        assert [m['prefix'] for m in cfg.val_evaluator] == ['teacher',
                                                            'student']
    else:
        assert monitor == 'diag/auc_smooth'
        assert sampler.num_unlabelled == 0
        aug = cfg.model.data_preprocessor.batch_augments.augments
        assert aug.noise_std == 0.15
    if name.startswith('supervised_all'):
        assert cfg.train_dataloader.dataset.datasets[1].use_hidden_labels


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    """A cwd holding data/bus_synthetic/crops/ (the configs' default)."""
    ws = tmp_path_factory.mktemp('ws')
    make_crop_set(str(ws / 'data/bus_synthetic/crops'),
                  dict(basic_train=12, extended_train=24, val=10, test=10),
                  seed=2)
    return ws


def run_tool(ws, *args):
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=ws,
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


SHORT = ['train_cfg.max_epochs=2', 'train_dataloader.sampler.epoch_length=2',
         'train_dataloader.num_workers=0',
         'train_dataloader.persistent_workers=False',
         'train_dataloader.batch_size=8',
         'train_dataloader.sampler.num_labelled=4',
         'train_dataloader.sampler.num_unlabelled=4',
         'model.rampup_iters=2']


def test_mean_teacher_train_and_test_cli(workspace):
    work = workspace / 'work_mt'
    run_tool(workspace, ROOT / 'tools/train.py',
             CFG / 'mean_teacher_bus_cpu_quick.py', '--work-dir', work,
             '--cfg-options', *SHORT)
    best = glob.glob(str(work / 'best_teacher_auc_smooth_epoch_*.pth'))
    assert len(best) == 1
    # ROC curves of teacher and student in the run's log dir
    assert glob.glob(str(work / '*' / 'teacher_roc.png'))
    assert glob.glob(str(work / '*' / 'student_roc.csv'))
    out = workspace / 'mt_metrics.json'
    run_tool(workspace, ROOT / 'tools/test.py',
             CFG / 'mean_teacher_bus_cpu_quick.py', best[0], '--work-dir',
             workspace / 'test_mt', '--out-metrics', out)
    metrics = json.load(open(out))
    assert 0.0 <= metrics['teacher/auc'] <= 1.0
    assert metrics['teacher/num_samples'] == 10
    assert 'teacher/sensitivity_ci_low' in metrics


@pytest.mark.slow
def test_supervised_all_train_cli(workspace):
    work = workspace / 'work_sup'
    run_tool(workspace, ROOT / 'tools/train.py',
             CFG / 'supervised_all_bus_cpu_quick.py', '--work-dir', work,
             '--cfg-options', 'train_cfg.max_epochs=1',
             'train_dataloader.sampler.epoch_length=2',
             'train_dataloader.num_workers=0',
             'train_dataloader.persistent_workers=False',
             'train_dataloader.batch_size=8',
             'train_dataloader.sampler.num_labelled=8')
    assert glob.glob(str(work / 'best_diag_auc_smooth_epoch_1.pth'))
    logs = glob.glob(str(work / '*' / '*.log'))
    text = open(logs[0]).read()
    assert 'diag/auc' in text
    assert osp.isfile(glob.glob(str(work / '*' / 'diag_roc.png'))[0])
