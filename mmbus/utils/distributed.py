"""Distributed launch that works on GPUs (nccl) and on CPU-only machines (gloo).

mmengine's ``pytorch`` launcher calls ``torch.cuda.set_device`` (fails without a GPU) and its default DDP
wrapper passes ``device_ids=[LOCAL_RANK]`` (CPU modules reject it). mmengine skips ``init_dist`` when a
process group already exists and keeps ``device_ids`` from ``model_wrapper_cfg``, so for gloo we create the
process group ourselves and set ``device_ids=None``; installed packages stay untouched.
"""
import os

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
