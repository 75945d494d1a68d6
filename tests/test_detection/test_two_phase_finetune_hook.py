"""TwoPhaseFineTuneHook: the backbone is frozen for iterations 1..N exactly, trains from
iteration N+1, also after --resume, with both freezing methods."""
import copy

import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel, is_model_wrapper
from mmengine.runner import Runner
from torch.utils.data import Dataset

import mmbus.registry  # noqa: F401  (registers the hook; fixes checkpoint loading for resume)
from mmbus.engine.hooks.two_phase_finetune_hook import TwoPhaseFineTuneHook


class ToyDetector(BaseModel):
    """A 'backbone' with BatchNorm and a 'head', enough to watch what the hook freezes."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.Linear(4, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.head(self.backbone(inputs).mean((2, 3))).squeeze(1)
        if mode == 'loss':
            return dict(loss=((out - labels)**2).mean())
        return out


class ToyData(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(inputs=torch.randn(1, 6, 6, generator=g) + i, labels=torch.tensor(float(i)))


class Recorder(Hook):
    """Copies the state after every iteration (runs after the two-phase hook)."""
    priority = 'LOWEST'

    def __init__(self):
        self.states = {}
        self.requires_grad = {}
        self.bn_training = {}

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        model = self._model(runner)
        self.requires_grad[runner.iter] = all(p.requires_grad
                                              for p in model.backbone.parameters())
        self.bn_training[runner.iter] = model.backbone[1].training

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.states[runner.iter + 1] = copy.deepcopy(self._model(runner).state_dict())


def make_runner(work_dir, max_iters, freeze_iters, method, resume=False, ckpt_interval=100,
                load_from=None):
    recorder = Recorder()
    runner = Runner(
        model=ToyDetector(),
        work_dir=str(work_dir),
        train_dataloader=dict(dataset=ToyData(), sampler=dict(type='DefaultSampler', shuffle=True),
                              batch_size=2, num_workers=0,
                              collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        # weight decay and momentum: would move 'frozen' weights if only grads were zeroed
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9,
                                          weight_decay=0.1)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', by_epoch=False,
                                           interval=ckpt_interval),
                           logger=dict(type='LoggerHook', interval=100)),
        custom_hooks=[dict(type='TwoPhaseFineTuneHook', freeze_iters=freeze_iters,
                           method=method), recorder],
        default_scope='mmdet',
        resume=resume,
        load_from=load_from,
        randomness=dict(seed=0),
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        log_level='WARNING')
    return runner, recorder


def backbone_equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a if k.startswith('backbone.'))


def head_equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a if k.startswith('head.'))


@pytest.mark.parametrize('method', ['requires_grad', 'restore'])
def test_switch_exactly_at_n(tmp_path, method):
    torch.set_num_threads(1)
    n = 3
    runner, rec = make_runner(tmp_path, max_iters=n + 2, freeze_iters=n, method=method)
    start = copy.deepcopy(runner.model.state_dict())
    runner.train()
    for it in range(1, n + 1):  # iterations 1..N: backbone (incl. BN statistics) untouched
        assert backbone_equal(rec.states[it], start), f'backbone moved at iteration {it}'
        assert not head_equal(rec.states[it], rec.states.get(it - 1, start))
        assert not rec.bn_training[it - 1]
        assert rec.requires_grad[it - 1] == (method == 'restore')
    # iteration N+1: the backbone trains (weights and BN running statistics move)
    assert not backbone_equal(rec.states[n + 1], rec.states[n])
    assert not torch.equal(rec.states[n + 1]['backbone.1.running_mean'],
                           start['backbone.1.running_mean'])
    assert rec.requires_grad[n] and rec.bn_training[n]
    if method == 'restore':
        # Phase 1 left no momentum behind for the frozen parameters: after iteration N+1 the
        # backbone has exactly one step of state.
        opt = runner.optim_wrapper.optimizer
        for p in runner.model.backbone.parameters():
            assert 'momentum_buffer' in opt.state[p]


@pytest.mark.parametrize('method', ['requires_grad', 'restore'])
def test_resume_inside_and_after_phase_one(tmp_path, method):
    torch.set_num_threads(1)
    n = 4
    runner, rec = make_runner(tmp_path, max_iters=2, freeze_iters=n, method=method,
                              ckpt_interval=2)
    start = copy.deepcopy(runner.model.state_dict())
    runner.train()
    assert backbone_equal(rec.states[2], start)
    # Resume at iteration 2 (< N): a fresh hook and model must still freeze iterations 3..N.
    runner2, rec2 = make_runner(tmp_path, max_iters=n + 1, freeze_iters=n, method=method,
                                resume=True, ckpt_interval=n)
    runner2.train()
    assert min(rec2.states) == 3  # really resumed
    for it in range(3, n + 1):
        assert backbone_equal(rec2.states[it], start), f'backbone moved at iteration {it}'
    assert not backbone_equal(rec2.states[n + 1], start)
    # Resume at iteration N (phase 2): the backbone trains from the first resumed iteration.
    runner3, rec3 = make_runner(tmp_path, max_iters=n + 1, freeze_iters=n, method=method,
                                resume=True, load_from=str(tmp_path / f'iter_{n}.pth'))
    runner3.train()
    assert min(rec3.states) == n + 1
    assert rec3.requires_grad[n] and rec3.bn_training[n]
    assert not backbone_equal(rec3.states[n + 1], start)


def test_auto_method_and_bad_arguments(tmp_path):
    hook = TwoPhaseFineTuneHook(freeze_iters=2)

    class FakeRunner:
        model = ToyDetector()

    assert hook._resolve_method(FakeRunner) == 'requires_grad'
    assert hook.is_frozen_at(1) and not hook.is_frozen_at(2)
    with pytest.raises(ValueError, match='method'):
        TwoPhaseFineTuneHook(method='zero')
    with pytest.raises(ValueError, match='freeze_iters'):
        TwoPhaseFineTuneHook(freeze_iters=-1)
    bad = TwoPhaseFineTuneHook(modules=('neck', ))
    with pytest.raises(AttributeError, match='neck'):
        bad.before_train(FakeRunner)


def test_auto_uses_restore_under_a_model_wrapper():
    from mmengine.model import MMDistributedDataParallel
    hook = TwoPhaseFineTuneHook(freeze_iters=2)

    class FakeWrapped:
        model = object.__new__(MMDistributedDataParallel)

    assert hook._resolve_method(FakeWrapped) == 'restore'


def _ddp_worker(rank, world_size, port, work_dir, n):
    import os
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=world_size)
    recorder = Recorder()
    runner = Runner(
        model=ToyDetector(),
        work_dir=work_dir,
        experiment_name=f'ddp_{rank}',
        train_dataloader=dict(dataset=ToyData(), sampler=dict(type='DefaultSampler',
                                                              shuffle=True),
                              batch_size=2, num_workers=0,
                              collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=False, max_iters=n + 1),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9,
                                          weight_decay=0.1)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', by_epoch=False,
                                           interval=100, save_last=False),
                           logger=dict(type='LoggerHook', interval=100)),
        # method 'auto' must pick 'restore' because the model is DDP-wrapped; DDP with
        # find_unused_parameters=False would fail at iteration 2 if requires_grad changed.
        custom_hooks=[dict(type='TwoPhaseFineTuneHook', freeze_iters=n), recorder],
        cfg=dict(model_wrapper_cfg=dict(type='MMDistributedDataParallel', device_ids=None,
                                        find_unused_parameters=False)),
        launcher='pytorch',
        default_scope='mmdet',
        randomness=dict(seed=0),
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        log_level='WARNING')
    start = {k: v.clone() for k, v in runner.model.module.state_dict().items()}
    runner.train()
    torch.save(dict(start=start, states=recorder.states), os.path.join(work_dir, f'rank{rank}.pt'))
    from mmbus.utils.distributed import teardown_distributed
    teardown_distributed()  # a barrier and the gloo threads' settling first: see its docstring


def test_ddp_two_processes_restore_method(tmp_path):
    import socket
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    n = 2
    mp.start_processes(_ddp_worker, args=(2, port, str(tmp_path), n), nprocs=2,
                       start_method='fork')
    r0 = torch.load(tmp_path / 'rank0.pt', weights_only=False)
    r1 = torch.load(tmp_path / 'rank1.pt', weights_only=False)
    for it in range(1, n + 1):
        assert backbone_equal(r0['states'][it], r0['start'])
        assert not head_equal(r0['states'][it], r0['start'])
    assert not backbone_equal(r0['states'][n + 1], r0['start'])
    # parameters identical on both ranks at every iteration (BN running statistics are
    # per-rank in DDP without SyncBN and are only broadcast from rank 0 at the next forward)
    for it in range(1, n + 2):
        for k, v in r0['states'][it].items():
            if 'running_' in k or 'num_batches' in k:
                continue
            assert torch.equal(v, r1['states'][it][k]), (it, k)
