"""A resumed run equals the uninterrupted one bit for bit (dropout, views, random worker transforms
and validation on), and every shipped config sets a seed and carries the random-state hook."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from rel_helpers import REPO
from rel_tiny import mt_cfg


def model_state(runner):
    return {k: v.detach().clone() for k, v in runner.model.state_dict().items()}


def differing(a, b):
    return [k for k in a if not torch.equal(a[k], b[k])]


def test_resumed_mean_teacher_equals_uninterrupted_bit_for_bit(crop_root, tmp_path):
    torch.set_num_threads(1)
    full = Runner.from_cfg(mt_cfg(crop_root, str(tmp_path / 'full'), 4))
    full.train()
    expected = model_state(full)

    Runner.from_cfg(mt_cfg(crop_root, str(tmp_path / 'half'), 2)).train()
    ckpt = torch.load(tmp_path / 'half' / 'epoch_2.pth', weights_only=True)
    assert set(ckpt['random_state']) >= {'python', 'numpy', 'torch', 'sampler'}
    resumed = Runner.from_cfg(mt_cfg(crop_root, str(tmp_path / 'half'), 4, resume=True))
    resumed.train()
    assert resumed.iter == full.iter == 8
    got = model_state(resumed)
    teacher = [k for k in expected if k.startswith('teacher.')]
    assert len(teacher) > 20
    assert differing(expected, got) == []  # student, teacher and BN buffers, bit for bit

    # the same resume without the hook leaves the uninterrupted path (what the test would catch)
    Runner.from_cfg(mt_cfg(crop_root, str(tmp_path / 'bare'), 2, random_state=False)).train()
    bare = Runner.from_cfg(mt_cfg(crop_root, str(tmp_path / 'bare'), 4, resume=True, random_state=False))
    bare.train()
    assert len(differing(expected, model_state(bare))) > len(teacher) // 2


def tiny_iter_cfg(crop_root, work_dir, max_iters, resume=False):
    """Iteration-based, main-process data loading (the random flip draws from NumPy's global generator),
    Mixup batch augment (torch's generator), checkpoint every 3 iterations, validation every 2."""
    pipeline = [dict(type='LoadImageFromFile', color_type='grayscale'),
                dict(type='LetterboxResize', size=16),
                dict(type='RandomFlip', prob=0.5, direction='horizontal'),
                dict(type='PackInputs')]
    ds = dict(type='BUSCropDataset', data_root=crop_root, ann_file='basic_train.json', pipeline=pipeline)
    return dict(
        default_scope='mmpretrain', work_dir=work_dir,
        model=dict(type='ImageClassifier',
                   data_preprocessor=dict(type='ClsDataPreprocessor', mean=[127.5], std=[127.5], to_rgb=False,
                                          num_classes=2, batch_augments=dict(augments=dict(type='Mixup',
                                                                                           alpha=0.5))),
                   backbone=dict(type='MTConvNet', in_channels=1, widen_factor=1 / 16, dropout=0.5),
                   head=dict(type='LinearClsHead', num_classes=2, in_channels=8)),
        train_dataloader=dict(batch_size=4, num_workers=0, sampler=dict(type='InfiniteSampler', shuffle=True),
                              dataset=ds),
        val_dataloader=dict(batch_size=4, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
                            dataset=dict(ds, ann_file='val.json', test_mode=True)),
        val_evaluator=dict(type='Accuracy'), val_cfg=dict(),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=2),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=3),
                           logger=dict(type='LoggerHook', interval=1),
                           random_state=dict(type='RandomStateHook')),
        randomness=dict(seed=3), log_level='WARNING', resume=resume)


def test_resumed_iteration_based_run_equals_uninterrupted(crop_root, tmp_path):
    torch.set_num_threads(1)
    full = Runner.from_cfg(tiny_iter_cfg(crop_root, str(tmp_path / 'full'), 6))
    full.train()
    Runner.from_cfg(tiny_iter_cfg(crop_root, str(tmp_path / 'half'), 3)).train()
    resumed = Runner.from_cfg(tiny_iter_cfg(crop_root, str(tmp_path / 'half'), 6, resume=True))
    resumed.train()
    assert differing(model_state(full), model_state(resumed)) == []


SHIPPED = sorted(glob.glob(osp.join(REPO, 'configs', 'mmbus', '*.py')))


@pytest.mark.parametrize('path', SHIPPED, ids=osp.basename)
def test_every_shipped_config_seeds_and_saves_the_random_state(path):
    cfg = Config.fromfile(path)
    assert cfg.get('randomness', {}).get('seed') is not None, f'{path} sets no seed'
    hooks = cfg.default_hooks
    assert hooks.get('random_state', {}).get('type') == 'RandomStateHook'
    assert hooks.get('data_check', {}).get('type') == 'TrainDataCheckHook'
    assert SHIPPED
