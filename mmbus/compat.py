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

Both live in :mod:`mmbus.utils.checkpoint` (:func:`~mmbus.utils.checkpoint.allow_mmengine_checkpoints`,
:func:`~mmbus.utils.checkpoint.use_safe_loading`, which the loader also calls itself); importing this module
applies them.
"""
from mmbus.utils.checkpoint import allow_mmengine_checkpoints, use_safe_loading  # noqa: F401

use_safe_loading()
