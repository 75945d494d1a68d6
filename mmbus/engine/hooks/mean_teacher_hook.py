"""MeanTeacherHook: the teacher is an exponential moving average (EMA) of the
student, updated after every optimiser step.

Convention (mmengine's): ``momentum`` is the weight of the NEW (student)
value, i.e. ``momentum = 1 - decay``::

    teacher = (1 - momentum) * teacher + momentum * student
            = teacher.lerp(student, momentum)

The original mean teacher (and so the paper) uses decay 0.99 during the
consistency ramp-up and 0.999 afterwards, i.e. ``rampup_momentum=0.01`` and
``momentum=0.001`` here.

Design notes:

* the step count is never stored in the hook: the momentum and the model's
  ramp-up iteration are derived from ``runner.iter``, and the teacher lives in
  the model's state dict; with the random-number state that
  :class:`~mmbus.engine.hooks.RandomStateHook` (in every mmbus runtime
  config's ``default_hooks``) saves and restores, a run resumed from a
  checkpoint continues exactly like an uninterrupted one, bit for bit;
* the parameter lists are collected once (``before_train``) and updated with
  one fused ``torch._foreach_lerp_`` call with a Python-float weight: no
  ``.item()``, no host/device sync, one kernel launch per group;
* under DDP the model wrapper is unwrapped; student parameters are identical
  on all ranks (synchronised gradients), so the teachers stay identical. Batch
  norm statistics are per-rank, so teacher float buffers are averaged over
  ranks after each update when running distributed.
"""
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine.dist import get_world_size, is_distributed
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS

BUFFER_POLICIES = ('skip', 'copy', 'average')


@HOOKS.register_module()
class MeanTeacherHook(Hook):
    """EMA teacher update for models with ``student`` and ``teacher``
    submodules (e.g. :class:`mmbus.models.SemiClassifier`).

    Args:
        momentum (float): EMA momentum (= 1 - decay) after the ramp-up.
            Default 0.001 (decay 0.999).
        rampup_momentum (float): Momentum during the ramp-up. Default 0.01
            (decay 0.99).
        rampup_iters (int, optional): Length of the ramp-up in iterations.
            ``None`` reads ``model.rampup_iters`` (the consistency ramp-up
            ``T``), or 0 when the model has none.
        buffer_policy (str): What happens to buffers (batch-norm running
            statistics): ``'skip'`` leaves them to the teacher's own forward
            passes in train mode (original mean teacher), ``'copy'`` copies
            the student's, ``'average'`` EMA-averages floating buffers and
            copies integer ones (``num_batches_tracked``).
        interval (int): Update every ``interval`` iterations.
        sync_buffers (bool): Average teacher floating buffers over ranks
            after each update when distributed, keeping the teachers
            identical.
    """
    priority = 'NORMAL'  # before CheckpointHook (VERY_LOW) saves the model

    def __init__(self,
                 momentum: float = 0.001,
                 rampup_momentum: float = 0.01,
                 rampup_iters: Optional[int] = None,
                 buffer_policy: str = 'skip',
                 interval: int = 1,
                 sync_buffers: bool = True) -> None:
        for name, m in (('momentum', momentum),
                        ('rampup_momentum', rampup_momentum)):
            if not 0 < m <= 1:
                raise ValueError(f'{name} (= 1 - decay) must be in (0, 1], '
                                 f'got {m}')
        if buffer_policy not in BUFFER_POLICIES:
            raise ValueError(f'buffer_policy must be one of '
                             f'{BUFFER_POLICIES}, got {buffer_policy!r}')
        if interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}')
        self.momentum = momentum
        self.rampup_momentum = rampup_momentum
        self.rampup_iters = rampup_iters
        self.buffer_policy = buffer_policy
        self.interval = interval
        self.sync_buffers = sync_buffers
        self._lists = None

    # ------------------------------------------------------------ helpers
    @staticmethod
    def _unwrap(model):
        return model.module if is_model_wrapper(model) else model

    def momentum_at(self, iteration: int) -> float:
        """Momentum (= 1 - decay) used after training iteration
        ``iteration`` (0-based)."""
        if iteration < (self.rampup_iters or 0):
            return self.rampup_momentum
        return self.momentum

    def prepare(self, model) -> None:
        """Collect aligned (teacher, student) tensor lists once."""
        model = self._unwrap(model)
        if not (hasattr(model, 'student') and hasattr(model, 'teacher')):
            raise TypeError(f'MeanTeacherHook needs a model with `student` '
                            f'and `teacher` submodules, got '
                            f'{type(model).__name__}')
        updates = getattr(model, 'teacher_updates_buffers',
                          getattr(model, 'teacher_train_mode', True))
        if self.buffer_policy == 'skip' and not updates:
            # the teacher's BN statistics would never be updated: it would
            # normalise with its initial statistics and predict a constant
            raise ValueError(
                "buffer_policy='skip' keeps the teacher's own batch-norm "
                'statistics, which only its train-mode forward passes '
                f'update, and {type(model).__name__} never runs the teacher '
                'in train mode here (teacher_train_mode=False, or FixMatch '
                "pseudo-labels from the student): use buffer_policy='copy' "
                "or 'average'")
        if self.rampup_iters is None:
            self.rampup_iters = int(getattr(model, 'rampup_iters', 0))
        s_params = dict(model.student.named_parameters())
        t_params = dict(model.teacher.named_parameters())
        s_bufs = dict(model.student.named_buffers())
        t_bufs = dict(model.teacher.named_buffers())
        if s_params.keys() != t_params.keys() or \
                s_bufs.keys() != t_bufs.keys():
            raise ValueError('student and teacher have different structures')
        names = list(t_params)
        if any(t_params[n].requires_grad for n in names):
            raise ValueError('teacher parameters must have '
                             'requires_grad=False')
        float_bufs = [n for n in t_bufs if t_bufs[n].is_floating_point()]
        other_bufs = [n for n in t_bufs if not t_bufs[n].is_floating_point()]
        self._lists = dict(
            t_params=[t_params[n].data for n in names],
            s_params=[s_params[n].data for n in names],
            t_fbufs=[t_bufs[n] for n in float_bufs],
            s_fbufs=[s_bufs[n] for n in float_bufs],
            t_ibufs=[t_bufs[n] for n in other_bufs],
            s_ibufs=[s_bufs[n] for n in other_bufs])

    @torch.no_grad()
    def update(self, momentum: float, buffer_policy: Optional[str] = None):
        """One EMA step: ``teacher.lerp_(student, momentum)`` on all
        parameters (and buffers per ``buffer_policy``)."""
        lists = self._lists
        policy = buffer_policy or self.buffer_policy
        if lists['t_params']:
            torch._foreach_lerp_(lists['t_params'], lists['s_params'],
                                 momentum)
        if policy == 'copy':
            if lists['t_fbufs']:
                torch._foreach_copy_(lists['t_fbufs'], lists['s_fbufs'])
        elif policy == 'average':
            if lists['t_fbufs']:
                torch._foreach_lerp_(lists['t_fbufs'], lists['s_fbufs'],
                                     momentum)
        if policy != 'skip' and lists['t_ibufs']:
            torch._foreach_copy_(lists['t_ibufs'], lists['s_ibufs'])
        if self.sync_buffers and lists['t_fbufs'] and is_distributed():
            flat = torch._utils._flatten_dense_tensors(lists['t_fbufs'])
            torch_dist.all_reduce(flat)
            flat.div_(get_world_size())
            for buf, synced in zip(
                    lists['t_fbufs'],
                    torch._utils._unflatten_dense_tensors(
                        flat, lists['t_fbufs'])):
                buf.copy_(synced)

    # -------------------------------------------------------------- hooks
    def before_train(self, runner) -> None:
        self.prepare(runner.model)
        # A fresh run starts with teacher == student (also after `load_from`
        # of a supervised checkpoint). A resumed run (iter > 0) keeps the
        # teacher restored from the checkpoint.
        if runner.iter == 0:
            self.update(1.0, buffer_policy='copy')

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        model = self._unwrap(runner.model)
        if hasattr(model, 'set_iter'):
            model.set_iter(runner.iter)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        # runner.iter is still the index of the iteration just finished.
        if (runner.iter + 1) % self.interval != 0:
            return
        if self._lists is None:
            self.prepare(runner.model)
        self.update(self.momentum_at(runner.iter))
