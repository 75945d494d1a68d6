"""Model selection on a noisy validation curve: SmoothedMetricHook (trailing mean) and
IterPatienceEarlyStoppingHook (patience in iterations, state kept across resume), with hand-worked numbers."""
import logging
from types import SimpleNamespace

import pytest
from mmengine.logging import MessageHub
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from mmbus.engine.hooks.iter_patience_early_stopping_hook import IterPatienceEarlyStoppingHook
from mmbus.engine.hooks.smoothed_metric_hook import SmoothedMetricHook


class EpochLoop(EpochBasedTrainLoop):
    def __init__(self, val_interval, iters_per_epoch):  # the attributes the hooks read, no runner
        self.val_interval, self._max_epochs = val_interval, 10
        self.dataloader = [None] * iters_per_epoch
        self.stop_training = False


class IterLoop(IterBasedTrainLoop):
    def __init__(self, val_interval):
        self.val_interval, self._max_iters = val_interval, 1000
        # as mmengine's own iteration loop: one big "epoch" over an infinite sampler's dataloader
        self._max_epochs, self.dataloader = 1, [None] * 113
        self.stop_training = False


def runner(loop=None, name='sel'):
    hub = MessageHub.get_instance(f'{name}-{id(loop)}')
    return SimpleNamespace(message_hub=hub, train_loop=loop, logger=logging.getLogger("test"), iter=10**6)


def test_trailing_mean_by_hand():
    r = runner(name='smooth')
    hook = SmoothedMetricHook(keys='teacher/auc', window=3)
    seen = []
    for v in (0.6, 0.9, 0.6, 0.9, 0.3):
        m = {'teacher/auc': v}
        hook.after_val_epoch(r, m)
        seen.append(round(m['teacher/auc_smooth'], 6))
        assert m['teacher/auc'] == v  # the raw metric is left alone
    # 0.6; (0.6+0.9)/2; (0.6+0.9+0.6)/3; (0.9+0.6+0.9)/3; (0.6+0.9+0.3)/3
    assert seen == [0.6, 0.75, 0.7, 0.8, 0.6]
    assert r.message_hub.get_scalar('val/teacher/auc_smooth').current() == pytest.approx(0.6)


def test_smoothing_survives_resume_through_the_message_hub():
    """The history travels in the hub's state (what mmengine writes into each checkpoint)."""
    r = runner(name='smooth-resume')
    hook = SmoothedMetricHook(keys=['diag/auc'], window=2)
    hook.after_val_epoch(r, {'diag/auc': 0.8})
    state = r.message_hub.state_dict()
    r2 = runner(name='smooth-resumed')
    r2.message_hub.load_state_dict(state)
    m = {'diag/auc': 0.6}
    SmoothedMetricHook(keys=['diag/auc'], window=2).after_val_epoch(r2, m)
    assert m['diag/auc_smooth'] == pytest.approx(0.7)  # not 0.6: the pre-resume value is remembered


def test_smoothing_bad_settings_and_missing_metric():
    with pytest.raises(ValueError, match='window'):
        SmoothedMetricHook(window=0)
    with pytest.raises(ValueError, match='suffix'):
        SmoothedMetricHook(suffix='')
    with pytest.raises(KeyError, match="reported no \\['teacher/auc'\\].*diag/auc"):
        SmoothedMetricHook().after_val_epoch(runner(name='smooth-missing'), {'diag/auc': 0.5})


@pytest.mark.parametrize('loop, expected', [(EpochLoop(1, 20), 25), (EpochLoop(2, 20), 13), (IterLoop(100), 5)])
def test_patience_in_iterations(loop, expected):
    # 500 iterations: 25 validations of every 20 iterations; ceil(500 / 40) = 13; 500 / 100 = 5
    hook = IterPatienceEarlyStoppingHook('diag/auc', patience_iters=500, rule='greater', min_delta=0.0)
    hook.before_train(runner(loop))
    assert hook.patience == expected


def test_stops_after_patience_and_state_resumes():
    loop = IterLoop(100)
    r = runner(loop, 'stop')
    hook = IterPatienceEarlyStoppingHook('diag/auc', patience_iters=300, rule='greater', min_delta=0.01)
    hook.before_train(r)
    assert hook.patience == 3
    for v in (0.70, 0.75, 0.755, 0.74):  # 0.755 is within min_delta: no improvement
        hook.after_val_epoch(r, {'diag/auc': v})
    assert (hook.best_score, hook.wait_count, loop.stop_training) == (0.75, 2, False)

    # resumed: a fresh hook reads best score and wait count back from the hub's checkpointed state
    loop2 = IterLoop(100)
    r2 = runner(loop2, 'stop-resumed')
    r2.message_hub.load_state_dict(r.message_hub.state_dict())
    hook2 = IterPatienceEarlyStoppingHook('diag/auc', patience_iters=300, rule='greater', min_delta=0.01)
    hook2.before_train(r2)
    assert (hook2.best_score, hook2.wait_count) == (0.75, 2)
    hook2.after_val_epoch(r2, {'diag/auc': 0.70})
    assert loop2.stop_training  # third validation without improvement = 300 iterations


def test_patience_argument_refused():
    with pytest.raises(TypeError, match='patience_iters'):
        IterPatienceEarlyStoppingHook('diag/auc', patience_iters=10, patience=3)
    with pytest.raises(ValueError, match='positive integer'):
        IterPatienceEarlyStoppingHook('diag/auc', patience_iters=0)


def test_no_stop_before_begin_iters():
    loop = IterLoop(100)
    r = runner(loop, 'begin')
    r.iter = 0
    hook = IterPatienceEarlyStoppingHook('diag/auc', patience_iters=100, begin_iters=250, rule='greater',
                                         min_delta=0.0)
    hook.before_train(r)
    for it, v in ((100, 0.8), (200, 0.7)):  # would stop at 200 (patience 1 validation) without begin_iters
        r.iter = it
        hook.after_val_epoch(r, {'diag/auc': v})
        assert not loop.stop_training
    assert (hook.best_score, hook.wait_count) == (0.8, 0)
    r.iter = 300
    hook.after_val_epoch(r, {'diag/auc': 0.75})
    assert loop.stop_training
    with pytest.raises(ValueError, match='begin_iters'):
        IterPatienceEarlyStoppingHook('diag/auc', patience_iters=10, begin_iters=-1)


def test_partial_window_value_keeps_early_chance_peaks_out():
    r = runner(name='smooth-partial')
    hook = SmoothedMetricHook(keys='diag/auc', window=3, partial=0.0)
    seen = []
    for v in (0.9, 0.6, 0.6, 0.7):  # a lucky first validation
        m = {'diag/auc': v}
        hook.after_val_epoch(r, m)
        seen.append(round(m['diag/auc_smooth'], 6))
    assert seen == [0.0, 0.0, 0.7, 0.633333]  # (0.9+0.6+0.6)/3, (0.6+0.6+0.7)/3
