"""IterPatienceEarlyStoppingHook: mmengine's early stopping with its patience counted in iterations, and a
state that survives ``--resume``.

mmengine's ``EarlyStoppingHook`` counts patience in validations, so the same ``patience=5`` means 100
iterations in a config whose epochs are 20 iterations long and 5000 in one whose epochs are 1000; the
paper's rule (stop after 5 epochs of 100 iterations without improvement) is a number of iterations. It
also forgets its best score and wait count when a run is resumed, so a resumed run trains longer than the
uninterrupted one. This subclass takes ``patience_iters``, turns it into validations from the train loop
(epoch-based: ``val_interval`` x iterations per epoch; iteration-based: ``val_interval``), and keeps its
state in the message hub's runtime info, which every checkpoint carries. ``begin_iters`` keeps it from
stopping before an iteration (a mean teacher's consistency ramp-up, during which its validation curve is
expected to stall).
"""
import math

from mmengine.hooks import EarlyStoppingHook
from mmengine.registry import HOOKS

INFO_KEY = 'early_stopping_state'


@HOOKS.register_module()
class IterPatienceEarlyStoppingHook(EarlyStoppingHook):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience_iters`` training iterations.

    Other arguments as mmengine's ``EarlyStoppingHook`` (``monitor``, ``rule``, ``min_delta``, ``strict``,
    ``check_finite``, ``stopping_threshold``); ``patience`` is derived and cannot be given. Before
    ``begin_iters`` the best score is tracked but no validation counts against the patience.
    """

    def __init__(self, monitor: str, patience_iters: int, begin_iters: int = 0, **kwargs):
        if 'patience' in kwargs:
            raise TypeError('IterPatienceEarlyStoppingHook takes patience_iters (training iterations), not '
                            'patience (validations)')
        if int(patience_iters) != patience_iters or patience_iters < 1:
            raise ValueError(f'patience_iters must be a positive integer, got {patience_iters!r}')
        super().__init__(monitor, patience=1, **kwargs)
        self.patience_iters = int(patience_iters)
        if begin_iters < 0:
            raise ValueError(f'begin_iters must be >= 0, got {begin_iters!r}')
        self.begin_iters = int(begin_iters)
        self.val_every_iters = None

    def before_train(self, runner) -> None:
        loop = runner.train_loop
        interval = getattr(loop, 'val_interval', None)
        if not interval:
            raise ValueError('IterPatienceEarlyStoppingHook needs a train loop that validates (val_interval)')
        from mmengine.runner import EpochBasedTrainLoop
        # not the loop's attributes: mmengine's iteration loop keeps a ``_max_epochs`` too (one big epoch)
        if isinstance(loop, EpochBasedTrainLoop):
            self.val_every_iters = interval * len(loop.dataloader)
        else:
            self.val_every_iters = interval
        self.patience = max(1, math.ceil(self.patience_iters / self.val_every_iters))
        state = runner.message_hub.get_info(INFO_KEY)
        if state and state.get('monitor') == self.monitor:
            self.best_score = state['best_score']
            self.wait_count = state['wait_count']
        runner.logger.info(f'IterPatienceEarlyStoppingHook: {self.monitor}, patience {self.patience_iters} '
                           f'iterations = {self.patience} validation(s) of every {self.val_every_iters} '
                           f'iterations')

    def after_val_epoch(self, runner, metrics) -> None:
        score = metrics.get(self.monitor)
        if runner.iter < self.begin_iters and score is not None and math.isfinite(score):
            # warm-up: remember the best, never stop (a non-finite score still stops, below)
            if self.rule_map[self.rule](score, self.best_score):
                self.best_score = score
            self.wait_count = 0
        else:
            super().after_val_epoch(runner, metrics)
        runner.message_hub.update_info(
            INFO_KEY, dict(monitor=self.monitor, best_score=float(self.best_score), wait_count=self.wait_count))
