"""Distributed launch that works on GPUs (nccl) and on CPU-only machines (gloo).

mmengine's ``pytorch`` launcher calls ``torch.cuda.set_device`` (fails without a GPU) and its default DDP
wrapper passes ``device_ids=[LOCAL_RANK]`` (CPU modules reject it). mmengine skips ``init_dist`` when a
process group already exists and keeps ``device_ids`` from ``model_wrapper_cfg``, so for gloo we create the
process group ourselves and set ``device_ids=None``; installed packages stay untouched.
"""
import os
import time

import torch
import torch.distributed as dist


def resolve_backend(backend='auto'):
    """'auto' -> nccl when CUDA is usable, else gloo. ``MMBUS_DIST_BACKEND`` overrides 'auto'."""
    if backend in (None, 'auto'):
        backend = os.environ.get('MMBUS_DIST_BACKEND', 'auto')
    if backend == 'auto':
        backend = 'nccl' if torch.cuda.is_available() else 'gloo'
    if backend not in ('nccl', 'gloo'):
        raise ValueError(f'unknown distributed backend {backend!r}; use auto, nccl or gloo')
    return backend


def setup_distributed(cfg, launcher, backend='auto'):
    """Prepare ``cfg`` (in place) for ``launcher``; return the backend used, or None when not distributed.

    For gloo (CPU) with the ``pytorch`` launcher (torchrun), the gloo process group is initialised here from
    torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and the model wrapper is told not to
    pin a device. For nccl the stock mmengine path is used unchanged.
    """
    if launcher == 'none':
        return None
    backend = resolve_backend(backend)
    env_cfg = cfg.setdefault('env_cfg', {})
    env_cfg.setdefault('dist_cfg', {})['backend'] = backend
    if backend == 'gloo':
        if launcher != 'pytorch':
            raise ValueError(f'CPU (gloo) training supports --launcher pytorch (torchrun), not {launcher!r}')
        if not dist.is_initialized():
            dist.init_process_group(backend='gloo', init_method='env://')
        wrapper = dict(cfg.get('model_wrapper_cfg') or dict(
            type='MMDistributedDataParallel', broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False)))
        wrapper['device_ids'] = None  # CPU modules: DDP must not be given a device
        cfg.model_wrapper_cfg = wrapper
    return backend


def teardown_distributed(finished=True, settle_s=0.5):
    """Tear the process group down while the interpreter is still whole; a no-op when not distributed.

    Why: each gloo collective is run by one of the process group's worker threads, which drops its reference to
    the finished work (and to the tensors the work holds) after the caller has been woken. Dropping a tensor made
    in Python takes the GIL; when that happens while the interpreter is finalising, the thread is unwound inside
    a destructor and the whole rank aborts ("terminate called without an active exception") after a run that
    finished. Core dumps of such aborts show ``ProcessGroupGloo::runLoop`` destroying an ``AsyncBroadcastWork``
    (mmengine's last metric broadcast) in ``take_gil`` during ``Py_FinalizeEx``; ``destroy_process_group`` alone
    does not stop these threads (the DDP wrapper still holds the group). So, after a finished run: a barrier
    (every rank is past its last collective), then a short sleep, which releases the GIL so that the workers can
    drop their works, then ``destroy_process_group``. After a failure the barrier is skipped: a rank that raised
    must not wait for ranks that may never arrive.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    gloo = dist.get_backend() == 'gloo'
    if finished:
        dist.barrier()
    if gloo and settle_s > 0:
        time.sleep(settle_s)
    dist.destroy_process_group()
