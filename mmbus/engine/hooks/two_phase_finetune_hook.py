"""TwoPhaseFineTuneHook: the paper's "shallow then deep" fine-tuning of Faster R-CNN.

Paper (Network training, (1)): the VGG16 feature extractor, initialised from ImageNet, is frozen
while the region-proposal and box layers train; after 5000 iterations VGG16 is released and the
whole network is fine-tuned (70k iterations in all).

The phase is decided from ``runner.iter`` alone at every iteration (iteration indices
``0 .. freeze_iters - 1`` are frozen, from index ``freeze_iters`` on everything trains), so
``--resume`` lands in the right phase whatever the hook did before.

Two ways to freeze, chosen by ``method``:

- ``'requires_grad'``: frozen parameters get ``requires_grad=False``; their ``.grad`` stays
  None, so SGD/Adam skip them entirely (no update, no weight decay, no momentum) and autograd
  skips their weight gradients (phase 1 runs faster). Not usable under DDP: DDP registers one
  autograd hook per parameter when it wraps the model and expects every parameter that required
  grad at that moment to produce a gradient in every iteration. A parameter switched off
  afterwards never reports, and the next iteration fails with "Expected to have finished
  reduction in the prior iteration" (``find_unused_parameters=False``), or silently relies on the
  slower unused-parameter search (``find_unused_parameters=True``); ``static_graph=True``
  records the first iteration's graph and is broken by any mid-run change. Switching parameters
  on after wrapping is worse: parameters frozen at wrap time are not in DDP's buckets at all, so
  their gradients would never be all-reduced and the ranks would drift apart.
- ``'restore'``: ``requires_grad`` stays True throughout, so DDP sees exactly the same graph
  and the same set of gradients in both phases (works with ``find_unused_parameters=False`` and
  ``static_graph=True``). The hook snapshots the frozen parameters when phase 1 starts and,
  after each phase-1 optimizer step, writes the snapshot back and drops their optimizer state
  (momentum buffers / Adam moments), so weight decay and momentum cannot move them and phase 2
  starts with fresh optimizer state, exactly as if they had been frozen. Every rank restores
  the same values, so the replicas stay identical. Costs the backbone's weight gradients and one
  parameter copy per phase-1 iteration.
- ``'auto'`` (default): ``'restore'`` when the model is wrapped (DDP/FSDP, any mmengine model
  wrapper), ``'requires_grad'`` otherwise.

In both methods BatchNorm layers of the frozen modules are put in eval mode during phase 1
(running statistics frozen too) and returned to ``train()`` afterwards (which respects a
backbone's own ``norm_eval``/``frozen_stages``). Parameters that were already frozen when phase 1
started (e.g. ``frozen_stages``) are left frozen in phase 2.
"""
from typing import Dict, Optional, Sequence

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.utils.dl_utils.parrots_wrapper import _BatchNorm

from mmdet.registry import HOOKS


@HOOKS.register_module()
class TwoPhaseFineTuneHook(Hook):
    """Freeze ``modules`` for the first ``freeze_iters`` iterations, then train them.

    Args:
        freeze_iters (int): number of iterations (not epochs) with the modules frozen; 5000 in
            the paper. 0 disables freezing.
        modules (sequence of str): dotted attribute paths inside the (unwrapped) model,
            default ``('backbone', )``.
        method (str): 'auto' (default), 'requires_grad' or 'restore'; see the module docstring.
    """
    priority = 'NORMAL'

    def __init__(self,
                 freeze_iters: int = 5000,
                 modules: Sequence[str] = ('backbone', ),
                 method: str = 'auto') -> None:
        if freeze_iters < 0:
            raise ValueError(f'freeze_iters must be >= 0, got {freeze_iters}')
        if method not in ('auto', 'requires_grad', 'restore'):
            raise ValueError(
                f"method must be 'auto', 'requires_grad' or 'restore', got {method!r}")
        if isinstance(modules, str):
            modules = (modules, )
        self.freeze_iters = int(freeze_iters)
        self.module_names = tuple(modules)
        self.method = method
        # Caches only; the phase itself always comes from runner.iter.
        self._snapshot: Optional[Dict[str, torch.Tensor]] = None
        self._frozen_by_us: Dict[str, torch.nn.Parameter] = {}
        self._phase: Optional[int] = None

    # ------------------------------------------------------------------ helpers
    def _model(self, runner) -> torch.nn.Module:
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def _resolve_method(self, runner) -> str:
        if self.method != 'auto':
            return self.method
        return 'restore' if is_model_wrapper(runner.model) else 'requires_grad'

    def _frozen_modules(self, runner) -> Dict[str, torch.nn.Module]:
        model = self._model(runner)
        found = {}
        for name in self.module_names:
            module = model
            for part in name.split('.'):
                if not hasattr(module, part):
                    raise AttributeError(
                        f'TwoPhaseFineTuneHook: the model ({type(model).__name__}) has no '
                        f'submodule "{name}" to freeze')
                module = getattr(module, part)
            found[name] = module
        return found

    def _named_params(self, runner):
        for name, module in self._frozen_modules(runner).items():
            for pname, param in module.named_parameters():
                yield f'{name}.{pname}', param

    def is_frozen_at(self, iteration: int) -> bool:
        """Whether the iteration with 0-based index ``iteration`` runs with frozen modules."""
        return iteration < self.freeze_iters

    # ------------------------------------------------------------------ hook points
    def before_train(self, runner) -> None:
        self._frozen_modules(runner)  # fail early on a wrong module name
        max_iters = getattr(runner, 'max_iters', None)
        if max_iters is not None and self.freeze_iters >= max_iters:
            print_log(
                f'TwoPhaseFineTuneHook: freeze_iters={self.freeze_iters} >= max_iters='
                f'{max_iters}: {self.module_names} stay frozen for the whole run',
                logger='current', level=30)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        method = self._resolve_method(runner)
        if self.is_frozen_at(runner.iter):
            self._freeze(runner, method)
        else:
            self._unfreeze(runner)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        # runner.iter has not been incremented yet here: it is still the index of the
        # iteration that just ran.
        if self._resolve_method(runner) == 'restore' and self.is_frozen_at(runner.iter):
            self._restore(runner)

    # ------------------------------------------------------------------ actions
    def _freeze(self, runner, method: str) -> None:
        if method == 'requires_grad':
            for name, param in self._named_params(runner):
                if param.requires_grad:
                    param.requires_grad_(False)
                    self._frozen_by_us[name] = param
        elif self._snapshot is None:
            self._snapshot = {
                name: param.detach().clone()
                for name, param in self._named_params(runner)
            }
        for module in self._frozen_modules(runner).values():
            for m in module.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        if self._phase != 1:
            self._phase = 1
            print_log(
                f'TwoPhaseFineTuneHook: iteration {runner.iter + 1}: {self.module_names} '
                f'frozen (method {method!r}) until iteration {self.freeze_iters}',
                logger='current')

    def _unfreeze(self, runner) -> None:
        for param in self._frozen_by_us.values():
            param.requires_grad_(True)
        self._frozen_by_us = {}
        self._snapshot = None
        if self._phase != 2:
            model = self._model(runner)
            for module in self._frozen_modules(runner).values():
                module.train(model.training)
            if self._phase == 1 or self.freeze_iters > 0:
                print_log(
                    f'TwoPhaseFineTuneHook: iteration {runner.iter + 1}: {self.module_names} '
                    'released, whole network fine-tuned from now on', logger='current')
            self._phase = 2

    @torch.no_grad()
    def _restore(self, runner) -> None:
        if self._snapshot is None:
            return
        optimizer = getattr(runner.optim_wrapper, 'optimizer', None)
        for name, param in self._named_params(runner):
            param.copy_(self._snapshot[name])
            if optimizer is not None:
                optimizer.state.pop(param, None)
