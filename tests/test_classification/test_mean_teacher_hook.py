"""MeanTeacherHook: EMA maths, schedule, buffer policies, resume equality and
2-process CPU DDP (gloo) with identical teachers."""
import os
import os.path as osp
import socket
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp
from mmengine.runner import Runner
from mmpretrain.registry import MODELS

import mmbus.registry  # noqa: F401
from mmbus.engine.hooks import MeanTeacherHook
from mmbus.datasets.synthetic_crops import make_crop_set


def tiny_model(**kw):
    cfg = dict(
        type='SemiClassifier',
        backbone=dict(type='MTConvNet', in_channels=1, widen_factor=1 / 16),
        head=dict(type='LinearClsHead', num_classes=2, in_channels=8))
    cfg.update(kw)
    return MODELS.build(cfg)


# ------------------------------------------------------------ EMA maths
def test_ema_update_against_hand_computation():
    torch.manual_seed(0)
    model = tiny_model()
    hook = MeanTeacherHook(momentum=0.25, buffer_policy='skip')
    hook.prepare(model)
    with torch.no_grad():
        for p in model.student.parameters():
            p.fill_(2.0)
        for p in model.teacher.parameters():
            p.fill_(1.0)
    hook.update(0.25)  # teacher = 0.75 * 1 + 0.25 * 2 = 1.25
    assert all(torch.allclose(p, torch.full_like(p, 1.25))
               for p in model.teacher.parameters())
    with torch.no_grad():
        for p in model.student.parameters():
            p.fill_(0.0)
    hook.update(0.1)  # 0.9 * 1.25 + 0.1 * 0 = 1.125
    assert all(torch.allclose(p, torch.full_like(p, 1.125))
               for p in model.teacher.parameters())
    # the student is never touched by the EMA
    assert all(torch.equal(p, torch.zeros_like(p))
               for p in model.student.parameters())


def bn_pair(model):
    s = [m for m in model.student.modules()
         if isinstance(m, torch.nn.BatchNorm2d)][0]
    t = [m for m in model.teacher.modules()
         if isinstance(m, torch.nn.BatchNorm2d)][0]
    return s, t


@pytest.mark.parametrize('policy,expected_mean,expected_count', [
    ('skip', 1.0, 7), ('copy', 3.0, 11), ('average', 1.5, 11)])
def test_buffer_policies(policy, expected_mean, expected_count):
    model = tiny_model()
    s, t = bn_pair(model)
    s.running_mean.fill_(3.0)
    t.running_mean.fill_(1.0)
    s.num_batches_tracked.fill_(11)
    t.num_batches_tracked.fill_(7)
    hook = MeanTeacherHook(buffer_policy=policy)
    hook.prepare(model)
    hook.update(0.25)  # average: 0.75 * 1 + 0.25 * 3 = 1.5
    assert torch.allclose(t.running_mean,
                          torch.full_like(t.running_mean, expected_mean))
    assert t.num_batches_tracked.item() == expected_count


def test_schedule_and_hook_calls():
    model = tiny_model(rampup_iters=5)
    hook = MeanTeacherHook()  # decay 0.99 -> 0.999, ramp-up from the model
    runner = SimpleNamespace(model=model, iter=0)
    with torch.no_grad():
        for p in model.teacher.parameters():
            p.add_(1.0)
    hook.before_train(runner)  # iter 0: teacher := student
    assert hook.rampup_iters == 5
    for ps, pt in zip(model.student.parameters(), model.teacher.parameters()):
        assert torch.equal(ps, pt)
    assert hook.momentum_at(4) == 0.01 and hook.momentum_at(5) == 0.001
    # after_train_iter uses runner.iter, before_train_iter pushes it
    runner.iter = 4
    hook.before_train_iter(runner, 0)
    assert model._iter == 4
    with torch.no_grad():
        for p in model.teacher.parameters():
            p.fill_(0.0)
        for p in model.student.parameters():
            p.fill_(1.0)
    hook.after_train_iter(runner, 0)
    assert torch.allclose(next(model.teacher.parameters()),
                          torch.tensor(0.01))
    runner.iter = 5
    hook.after_train_iter(runner, 0)  # 0.999 * 0.01 + 0.001 * 1
    assert torch.allclose(next(model.teacher.parameters()),
                          torch.tensor(0.999 * 0.01 + 0.001))
    # resumed run: iter > 0 keeps the teacher
    runner.iter = 10
    before = [p.clone() for p in model.teacher.parameters()]
    MeanTeacherHook().before_train(runner)
    assert all(torch.equal(a, b)
               for a, b in zip(before, model.teacher.parameters()))


def test_hook_bad_arguments():
    with pytest.raises(ValueError, match='1 - decay'):
        MeanTeacherHook(momentum=0.0)
    with pytest.raises(ValueError, match='buffer_policy'):
        MeanTeacherHook(buffer_policy='ema')
    with pytest.raises(TypeError, match='student'):
        MeanTeacherHook().prepare(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match='teacher_train_mode'):
        MeanTeacherHook(buffer_policy='skip').prepare(
            tiny_model(teacher_train_mode=False))
    MeanTeacherHook(buffer_policy='copy').prepare(
        tiny_model(teacher_train_mode=False))
    model = tiny_model()
    next(model.teacher.parameters()).requires_grad_(True)
    with pytest.raises(ValueError, match='requires_grad'):
        MeanTeacherHook().prepare(model)


# -------------------------------------------------------- runner-based
@pytest.fixture(scope='module')
def crop_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('mt_crops')
    make_crop_set(str(root), dict(basic_train=12, extended_train=24, val=8),
                  seed=1)
    return str(root)


def runner_cfg(crop_root, work_dir, max_epochs, resume=False,
               distributed=False):
    pipeline = [dict(type='LoadImageFromFile', color_type='grayscale'),
                dict(type='LetterboxResize', size=16),
                dict(type='PackInputs')]
    cfg = dict(
        default_scope='mmpretrain',
        work_dir=work_dir,
        # deterministic student updates (no dropout / no view noise), so the
        # uninterrupted and the resumed runs must agree exactly
        model=dict(
            type='SemiClassifier',
            data_preprocessor=dict(type='ClsDataPreprocessor', mean=[127.5],
                                   std=[127.5], to_rgb=False),
            backbone=dict(type='MTConvNet', in_channels=1,
                          widen_factor=1 / 16, dropout=0.0),
            head=dict(type='LinearClsHead', num_classes=2, in_channels=8),
            view_augment=None, rampup_iters=5, consistency_weight=10.0),
        train_dataloader=dict(
            batch_size=8, num_workers=0,
            sampler=dict(type='LabelledUnlabelledSampler', num_labelled=4,
                         num_unlabelled=4, epoch_length=2, seed=0),
            dataset=dict(type='ConcatDataset', datasets=[
                dict(type='BUSCropDataset', data_root=crop_root,
                     ann_file='basic_train.json', pipeline=pipeline),
                dict(type='BUSCropDataset', data_root=crop_root,
                     ann_file='extended_train.json', pipeline=pipeline)])),
        train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=max_epochs),
        optim_wrapper=dict(optimizer=dict(type='Adam', lr=0.003)),
        custom_hooks=[dict(type='MeanTeacherHook', buffer_policy='skip')],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1),
                           logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        log_level='WARNING',
        resume=resume,
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
    )
    if distributed:
        cfg['launcher'] = 'pytorch'
        cfg['model_wrapper_cfg'] = dict(type='MMDistributedDataParallel',
                                        device_ids=None,
                                        broadcast_buffers=False)
    return cfg


def teacher_state(runner):
    model = runner.model.module if hasattr(runner.model, 'module') \
        else runner.model
    return {k: v.detach().clone() for k, v in
            model.teacher.state_dict().items()}


def test_resume_gives_the_uninterrupted_teacher(crop_root, tmp_path):
    torch.set_num_threads(1)
    full = Runner.from_cfg(runner_cfg(crop_root, str(tmp_path / 'full'), 4))
    full.train()
    expected = teacher_state(full)
    assert full.iter == 8

    half = Runner.from_cfg(runner_cfg(crop_root, str(tmp_path / 'half'), 2))
    half.train()
    assert osp.isfile(tmp_path / 'half' / 'epoch_2.pth')
    ckpt = torch.load(tmp_path / 'half' / 'epoch_2.pth', map_location='cpu')
    assert any(k.startswith('teacher.') for k in ckpt['state_dict'])
    resumed = Runner.from_cfg(
        runner_cfg(crop_root, str(tmp_path / 'half'), 4, resume=True))
    resumed.train()
    assert resumed.iter == 8
    got = teacher_state(resumed)
    for k in expected:
        assert torch.allclose(got[k].float(), expected[k].float(), atol=1e-6,
                              rtol=0), k
    # the teacher is a lagging average, not a copy of the student
    student_w = resumed.model.student.head.fc.weight
    assert not torch.allclose(got['head.fc.weight'], student_w)


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world_size, port, crop_root, work_dir, out_dir):
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
                      RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    import mmbus.registry  # noqa: F401,F811  (again in the spawned worker process)
    dist.init_process_group('gloo', rank=rank, world_size=world_size)
    cfg = runner_cfg(crop_root, work_dir, 2, distributed=True)
    runner = Runner.from_cfg(cfg)
    runner.train()
    from mmengine.model import is_model_wrapper
    state = teacher_state(runner)
    state['_wrapped'] = torch.tensor(int(is_model_wrapper(runner.model)))
    state['_student_head'] = runner.model.module.student.head.fc.weight\
        .detach().clone()
    torch.save(state, osp.join(out_dir, f'rank{rank}.pth'))
    from mmbus.utils.distributed import teardown_distributed
    teardown_distributed()  # a barrier and the gloo threads' settling first: see its docstring


def test_two_process_cpu_ddp_identical_teachers(crop_root, tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    mp.spawn(_ddp_worker, args=(2, _free_port(), crop_root,
                                str(tmp_path / 'work'), str(out)),
             nprocs=2, join=True)
    r0 = torch.load(out / 'rank0.pth')
    r1 = torch.load(out / 'rank1.pth')
    assert r0['_wrapped'].item() == 1 and r1['_wrapped'].item() == 1
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    # teacher buffers (BN statistics) were synchronised, not only params
    assert any('running_mean' in k for k in r0)
