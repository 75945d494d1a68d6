"""DeadlineHook: stop training at a wall-clock time, keeping what was learnt so far.

A run on a lent machine has a hard end (the machine is taken back); a schedule sized by guess either wastes
the time or is killed before its test. With a deadline, training ends cleanly at the first iteration past it:
the loop's ``stop_training`` flag (the mechanism of mmengine's EarlyStoppingHook) ends the loop, the state
reached is saved through the run's CheckpointHook (with its ``last_checkpoint`` marker: a rerun resumes from
it), and the best checkpoint on validation is already on disk, so the test that follows runs as usual. A file
``stopped_at_deadline`` in the work dir says the run did not finish its schedule (the study engine resumes it on
a rerun instead of taking it as done); it is removed when training starts again.

The deadline is a Unix time given as ``stop_at`` or, when that is ``None``, read from the environment
variable ``MMBUS_STOP_AT`` when training starts (so one value set by a launcher reaches every run of a study
without rewriting configs). Unset: the hook does nothing. An iteration-based loop stops within one
iteration; an epoch-based loop checks the flag between epochs, so it stops at the end of the current epoch.
"""
import os
import time
from typing import Optional

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from mmbus.engine import DEADLINE_ENV as ENV_KEY
from mmbus.engine import DEADLINE_MARKER, parse_deadline


@HOOKS.register_module()
class DeadlineHook(Hook):
    """End training at the first iteration after the wall-clock time ``stop_at`` (or ``$MMBUS_STOP_AT``)."""
    priority = 'LOW'

    def __init__(self, stop_at: Optional[float] = None):
        self.stop_at = parse_deadline(stop_at, 'DeadlineHook stop_at')
        self._deadline: Optional[float] = None
        self.stopped_at_iter: Optional[int] = None

    def before_train(self, runner) -> None:
        self._deadline = self.stop_at if self.stop_at is not None else parse_deadline(os.environ.get(ENV_KEY), ENV_KEY)
        self._marker = os.path.join(runner.work_dir, DEADLINE_MARKER)
        if runner.rank == 0 and os.path.isfile(self._marker):
            os.remove(self._marker)  # training again: what stopped it before no longer holds
        if self._deadline is not None:
            left = self._deadline - time.time()
            runner.logger.info(f'DeadlineHook: training stops {left:.0f} s from now at the latest')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self._deadline is None or self.stopped_at_iter is not None or time.time() < self._deadline:
            return
        self.stopped_at_iter = runner.iter + 1
        runner.train_loop.stop_training = True
        runner.logger.info(f'DeadlineHook: deadline reached after iteration {runner.iter + 1} of '
                           f'{runner.max_iters}; training ends here')
        if runner.rank == 0:
            with open(self._marker, 'w') as f:
                f.write(f'stopped by the deadline after iteration {runner.iter + 1} of {runner.max_iters}\n')
        if not _by_epoch(runner):
            # an iteration loop saves only at its interval or its last iteration: save the state reached now
            _save(runner)

    def after_train_epoch(self, runner) -> None:
        if self.stopped_at_iter is not None and _by_epoch(runner):
            _save(runner)


def _by_epoch(runner) -> bool:
    # not the loop's attributes: mmengine's iteration loop also keeps ``_max_epochs`` (one big epoch)
    from mmengine.runner import EpochBasedTrainLoop
    return isinstance(runner.train_loop, EpochBasedTrainLoop)


def _save(runner) -> None:
    from mmengine.hooks import CheckpointHook
    for hook in runner.hooks:
        if isinstance(hook, CheckpointHook):
            # its own saver: file name, max_keep_ckpts and the last_checkpoint marker as at any interval
            hook._save_checkpoint(runner)
            return
