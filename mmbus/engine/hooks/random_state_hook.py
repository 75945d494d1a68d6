"""RandomStateHook: checkpoints carry the random-number state, so a resumed run equals an uninterrupted one
bit for bit.

mmengine restores weights, optimiser, schedulers, epoch and iteration, but not the random-number
generators: after ``--resume`` dropout masks, :class:`~mmbus.models.BatchViewAugment` views (torch's global
generator), numpy/Python draws of the data transforms and the data-loader seeds all restart from the
config's seed, so the resumed run leaves the path the uninterrupted one takes. This hook

* stores Python's, NumPy's and torch's generator states (and every CUDA device's when CUDA is in use) and
  the train sampler's seed and epoch in every checkpoint it saves (``checkpoint['random_state']``);
* puts them back when the run is *resumed* (not for ``load_from`` fine-tuning or testing) at the point the
  uninterrupted run had them: at the start of the next epoch (epoch-based loops), or just before the first
  new batch is loaded (iteration-based loops, after mmengine has replayed the batches already trained);
* makes validation neutral: the generator states are saved before and restored after every validation, so
  a run validated every epoch draws the same training randomness as one resumed in between (and as one
  validated less often);
* re-seeds data-loader workers per epoch (epoch-based loops): each epoch's workers start from a seed that
  depends only on the run's seed, the epoch, the rank and the worker, and persistent workers are restarted
  at every epoch start, so random transforms in workers resume exactly too.

Distributed runs: the checkpoint holds rank 0's states, which every rank restores; ranks draw the same
amounts from the same seed, so their states are identical anyway.

Resuming is exact from checkpoints written at the end of an epoch (epoch-based loops) or after any
iteration (iteration-based loops); mmengine itself cannot resume an epoch-based loop in the middle of an
epoch (it would repeat the epoch's start), which the hook reports as a warning.
"""
import random
from functools import partial
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

STATE_KEY = 'random_state'


def get_random_state() -> dict:
    """Python, NumPy, torch (and CUDA, when initialised) generator states, weights-only loadable."""
    state = dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: dict) -> None:
    """Inverse of :func:`get_random_state`."""
    random.setstate(_as_python_state(state['python']))
    np.random.set_state(tuple(state['numpy']))
    torch.set_rng_state(state['torch'])
    cuda = state.get('cuda')
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            print_log(f'RandomStateHook: the checkpoint holds {len(cuda)} CUDA generator states, this machine '
                      f'has {torch.cuda.device_count()} devices; CUDA draws will differ', level=30)


def _as_python_state(s):
    # (version, tuple of 625 ints, gauss) -- containers may come back as lists
    return (s[0], tuple(s[1]), s[2])


def _seed_worker(worker_id: int, base_seed: int) -> None:
    """Data-loader worker init: seed Python, NumPy and torch from ``base_seed`` and the worker id."""
    seed = (base_seed + 7919 * worker_id) % (2**31)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _RestoreBeforeNext:
    """Wraps an iteration-based loop's data iterator: the first ``skip`` batches (mmengine's replay of the
    batches already trained) pass through, then the saved random state is restored right before the next
    batch is loaded, where the uninterrupted run had it."""

    def __init__(self, iterator, skip: int, state: dict, loop):
        self._iterator, self._skip, self._state, self._loop = iterator, skip, state, loop

    def __next__(self):
        if self._skip > 0:
            self._skip -= 1
        elif self._state is not None:
            set_random_state(self._state)
            self._state = None
            self._loop.dataloader_iterator = self._iterator  # done: unwrap
        return next(self._iterator)

    def __iter__(self):
        return self

    def __getattr__(self, name):
        return getattr(self._iterator, name)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save / restore the random-number state with the checkpoints (see the module documentation).

    Args:
        neutral_validation (bool): Restore the generator states after each validation.
        reseed_workers (bool): Per-epoch worker seeds and restarted persistent workers (epoch-based loops).
    """
    priority = 'VERY_HIGH'  # restore before any other hook draws; neutral-val restore before best-ckpt save

    def __init__(self, neutral_validation: bool = True, reseed_workers: bool = True) -> None:
        self.neutral_validation = neutral_validation
        self.reseed_workers = reseed_workers
        self._pending: Optional[dict] = None
        self._pending_sampler: Optional[dict] = None
        self._before_val: Optional[dict] = None

    # ------------------------------------------------------------------ save / load
    @staticmethod
    def _train_sampler(runner):
        loop = getattr(runner, '_train_loop', None)
        if loop is None or isinstance(loop, dict):
            return None
        return getattr(getattr(loop, 'dataloader', None), 'sampler', None)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = get_random_state()
        sampler = self._train_sampler(runner)
        if sampler is not None and hasattr(sampler, 'seed'):
            state['sampler'] = dict(seed=sampler.seed, epoch=getattr(sampler, 'epoch', None))
        checkpoint[STATE_KEY] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not getattr(runner, '_resume', False):
            return  # load_from (fine-tuning) / testing: a new run, keep its own seed
        state = checkpoint.get(STATE_KEY)
        if state is None:
            print_log('RandomStateHook: the resumed checkpoint holds no random state (written without this '
                      'hook); the resumed run will not repeat the uninterrupted one exactly', logger='current',
                      level=30)
            return
        self._pending = dict(state)
        self._pending_sampler = self._pending.pop('sampler', None)

    # ------------------------------------------------------------------ training
    def before_train(self, runner) -> None:
        sampler = self._train_sampler(runner)
        saved = self._pending_sampler
        if saved and sampler is not None and hasattr(sampler, 'seed') and saved.get('seed') is not None \
                and sampler.seed != saved['seed']:
            print_log(f'RandomStateHook: train sampler seed {sampler.seed} -> {saved["seed"]} (from the '
                      'checkpoint)', logger='current')
            sampler.seed = saved['seed']
        if self._pending is None:
            return
        loop = runner.train_loop
        if hasattr(loop, 'dataloader_iterator'):  # iteration-based: restore after the replay
            loop.dataloader_iterator = _RestoreBeforeNext(loop.dataloader_iterator, runner.iter,
                                                          self._pending, loop)
            self._pending = None
        else:
            n = len(loop.dataloader) if hasattr(loop.dataloader, '__len__') else None
            if n and runner.iter != runner.epoch * n:
                print_log(f'RandomStateHook: resumed at iteration {runner.iter}, inside epoch {runner.epoch} '
                          f'({n} iterations each); mmengine restarts that epoch, so the run cannot repeat the '
                          'uninterrupted one exactly', logger='current', level=30)

    def before_train_epoch(self, runner) -> None:
        if self._pending is not None:  # epoch-based resume: the state the next epoch started with
            set_random_state(self._pending)
            self._pending = None
        if self.reseed_workers and not hasattr(runner.train_loop, 'dataloader_iterator'):
            self._reseed_workers(runner)

    def _reseed_workers(self, runner) -> None:
        loader = runner.train_loop.dataloader
        if getattr(loader, 'num_workers', 0) <= 0:
            return
        seed = runner.seed if runner.seed is not None else 0
        rank = getattr(runner, 'rank', 0)
        base = (int(seed) * 1000003 + 104729 * (runner.epoch + 1) + 15485863 * rank) % (2**31)
        loader.worker_init_fn = partial(_seed_worker, base_seed=base)
        it = getattr(loader, '_iterator', None)
        if it is not None:  # persistent workers: restart them so they pick up this epoch's seed
            shutdown = getattr(it, '_shutdown_workers', None)
            if shutdown is not None:
                shutdown()
            loader._iterator = None

    # ------------------------------------------------------------------ validation
    def before_val_epoch(self, runner) -> None:
        if self.neutral_validation:
            self._before_val = get_random_state()

    def after_val_epoch(self, runner, metrics=None) -> None:
        if self._before_val is not None:
            set_random_state(self._before_val)
            self._before_val = None
