"""Fixes for the pinned stack that must run at import time.

torch >= 2.6 loads checkpoints with ``weights_only=True`` by default, but mmengine 0.10.7 calls
``torch.load`` without the argument and its checkpoints hold more than tensors: the message hub's
``HistoryBuffer`` objects (numpy arrays of logged scalars), numpy scalars and dtypes. ``--resume`` and
``tools/test.py`` then fail with ``UnpicklingError: Weights only load failed``. Rather than turning the
safety check off, we allow-list exactly the types mmengine writes, so a checkpoint holding anything else
is still refused.

Every local checkpoint mmengine loads (``Runner.load_checkpoint`` / ``resume``, ``init_detector``, ``init_model``,
the inferencers) then goes through :func:`mmbus.utils.checkpoint.load_checkpoint_safely`, which turns a refused or
truncated file into an error that names it.
"""
import pickle

import numpy as np
import torch


def _numpy_types():
    """numpy objects that appear in pickled arrays, scalars and dtypes (numpy 1.x and 2.x names)."""
    types = [np.ndarray, np.dtype]
    core = getattr(np, '_core', None) or np.core
    types += [core.multiarray._reconstruct, core.multiarray.scalar]
    dtypes = getattr(np, 'dtypes', None)  # numpy >= 1.25: one class per dtype (Float64DType, ...)
    if dtypes is not None:
        types += [getattr(dtypes, n) for n in dir(dtypes)
                  if n.endswith('DType') and isinstance(getattr(dtypes, n), type)]
    return types


def _history_buffer_getattr(obj, name):
    """Stands in for ``builtins.getattr`` while unpickling: a ``HistoryBuffer`` pickles its statistics
    methods as ``getattr(HistoryBuffer, 'min')``; nothing else may be looked up."""
    from mmengine.logging import HistoryBuffer
    allowed = {'min', 'max', 'current', 'mean'} | set(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and name in allowed:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'checkpoint asks for attribute {name!r} of {obj!r}; only HistoryBuffer statistics are allowed')


def allow_mmengine_checkpoints():
    """Allow-list the non-tensor types of mmengine checkpoints for ``torch.load(weights_only=True)``."""
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is None:  # torch < 2.4 loads everything anyway
        return
    from mmengine.logging import HistoryBuffer
    safe = [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr')] + _numpy_types()
    try:  # numpy 1.x pickles reference numpy.core.multiarray even when numpy 2 loads them
        import numpy.core.multiarray as legacy_multiarray
        safe.append(legacy_multiarray._reconstruct)
    except Exception:  # pragma: no cover - numpy without the legacy alias
        pass
    add_safe_globals(safe)


def use_safe_checkpoint_loader():
    """mmengine's loader for local paths -> :func:`mmbus.utils.checkpoint.load_checkpoint_safely`."""
    from mmbus.utils.checkpoint import register_safe_local_loader
    register_safe_local_loader()


allow_mmengine_checkpoints()
use_safe_checkpoint_loader()
