"""DeadlineHook ends a real mmengine training loop at a wall-clock time and leaves a checkpoint to test;
AutoAmpOptimWrapper builds plain float32 training where no accelerator is present."""
import time

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from mmengine.runner import Runner

import mmbus.registry  # noqa: F401  (registers the hook and the wrapper)
from mmbus.engine.hooks.deadline_hook import ENV_KEY, DeadlineHook


class Tiny(BaseModel):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(2, 1)

    def forward(self, x, y=None, mode='tensor'):
        out = self.fc(x)  # default_collate has stacked the batch already
        if mode == 'loss':
            return dict(loss=((out.squeeze(-1) - y) ** 2).mean())
        return out


def _runner(tmp_path, stop_at=None, max_iters=50):
    data = [dict(x=torch.randn(2), y=torch.tensor(0.5)) for _ in range(8)]
    return Runner(
        model=Tiny(), work_dir=str(tmp_path),
        train_dataloader=dict(dataset=data, sampler=dict(type='InfiniteSampler', shuffle=False), batch_size=2,
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1000),
                           logger=dict(type='LoggerHook', interval=1000)),
        custom_hooks=[dict(type='DeadlineHook', stop_at=stop_at)],
        experiment_name=f'deadline-{time.time_ns()}', default_scope='mmengine')


def _hook(runner):
    return next(h for h in runner.hooks if isinstance(h, DeadlineHook))


def test_past_deadline_stops_after_one_iteration_and_saves_the_last_checkpoint(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_KEY, raising=False)
    r = _runner(tmp_path, stop_at=time.time() - 1)
    r.train()
    assert r.iter == 1 and _hook(r).stopped_at_iter == 1
    # the state reached is saved (an iteration loop saves only at its interval): the test has a model,
    # and the marker a rerun resumes from names it
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['iter_1.pth']
    assert (tmp_path / 'last_checkpoint').read_text().strip().endswith('iter_1.pth')
    # the run did not finish its schedule, and says so for the study engine (which then resumes it)
    assert 'after iteration 1 of 50' in (tmp_path / 'stopped_at_deadline').read_text()
    r2 = _runner(tmp_path, max_iters=2)  # training again without a deadline: the marker goes
    r2.train()
    assert not (tmp_path / 'stopped_at_deadline').exists()


def test_deadline_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_KEY, str(time.time() - 1))
    r = _runner(tmp_path)
    r.train()
    assert r.iter == 1


def test_no_deadline_runs_the_whole_schedule(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_KEY, raising=False)
    r = _runner(tmp_path, max_iters=5)
    r.train()
    assert r.iter == 5 and _hook(r).stopped_at_iter is None
    monkeypatch.setenv(ENV_KEY, str(time.time() + 3600))  # a deadline far ahead changes nothing
    r2 = _runner(tmp_path / 'far', max_iters=5)
    r2.train()
    assert r2.iter == 5


def test_bad_deadline_is_named(monkeypatch):
    with pytest.raises(ValueError, match='stop_at'):
        DeadlineHook(stop_at='tomorrow')
    monkeypatch.setenv(ENV_KEY, 'soon')
    with pytest.raises(ValueError, match=ENV_KEY):
        DeadlineHook().before_train(None)


def test_auto_amp_wrapper_is_plain_without_an_accelerator(monkeypatch):
    from mmbus.engine.optimizers import auto_amp_optim_wrapper as mod
    opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    monkeypatch.setattr(mod, 'is_cuda_available', lambda: False)
    w = OPTIM_WRAPPERS.build(dict(type='AutoAmpOptimWrapper', dtype='bfloat16', optimizer=opt, clip_grad=None))
    assert type(w) is OptimWrapper
    built = {}
    monkeypatch.setattr(mod, 'is_cuda_available', lambda: True)
    monkeypatch.setattr(mod, 'AmpOptimWrapper', lambda **kw: built.update(kw) or 'amp')
    assert OPTIM_WRAPPERS.build(dict(type='AutoAmpOptimWrapper', dtype='bfloat16', optimizer=opt)) == 'amp'
    assert built['dtype'] == 'bfloat16' and built['loss_scale'] == 'dynamic'
    assert AmpOptimWrapper is not None


def test_epoch_loop_stops_at_the_end_of_the_epoch_and_saves_it(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_KEY, raising=False)
    data = [dict(x=torch.randn(2), y=torch.tensor(0.5)) for _ in range(8)]
    r = Runner(
        model=Tiny(), work_dir=str(tmp_path),
        train_dataloader=dict(dataset=data, sampler=dict(type='DefaultSampler', shuffle=False), batch_size=2,
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=5),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=3)),
        custom_hooks=[dict(type='DeadlineHook', stop_at=time.time() - 1)],
        experiment_name=f'deadline-epoch-{time.time_ns()}', default_scope='mmengine')
    r.train()
    # 8 samples / batch 2: the first epoch's 4 iterations finish, then the loop ends (interval 3 not reached)
    assert (r.epoch, r.iter) == (1, 4)
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['epoch_1.pth']


def test_seconds_to_deadline(monkeypatch):
    from mmbus.engine import seconds_to_deadline
    now = time.time()
    assert seconds_to_deadline({ENV_KEY: str(now + 100)}) == pytest.approx(100, abs=2)
    assert seconds_to_deadline({ENV_KEY: str(now - 5)}) == pytest.approx(-5, abs=2)
    assert seconds_to_deadline({}) is None and seconds_to_deadline({ENV_KEY: ''}) is None
    assert seconds_to_deadline({ENV_KEY: 'tomorrow'}) is None  # DeadlineHook names the bad value itself
    monkeypatch.setenv(ENV_KEY, str(now + 50))
    assert seconds_to_deadline() == pytest.approx(50, abs=2)


def test_a_stage_share_of_the_deadline_keeps_a_startable_minimum(monkeypatch):
    """A detector with budget_share 0.5: half the window it starts with, but never under 2 x MIN_TRAIN_S while
    that much is left (half of a short window would be refused by the study engine with time to spare)."""
    from mmbus.engine import MIN_TRAIN_S
    from mmbus.study.engine import deadline_env
    assert deadline_env(None) is None
    now = 1_000_000.0
    monkeypatch.setattr(time, 'time', lambda: now)
    monkeypatch.delenv(ENV_KEY, raising=False)
    assert deadline_env(0.5)() == {}  # no deadline: none for the stage either
    for window, expected in ((1000, 500),                      # half of a long window
                             (150, 2 * MIN_TRAIN_S),           # half would be 75 s: the minimum, 120 s
                             (50, 50),                         # less than the minimum left: all of it
                             (-10, 0)):                        # past the deadline: now (the engine refuses it)
        monkeypatch.setenv(ENV_KEY, str(now + window))
        assert float(deadline_env(0.5)()[ENV_KEY]) == now + expected, window
