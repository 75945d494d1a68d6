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
from importlib.metadata import PackageNotFoundError, version

from mmbus.utils.checkpoint import allow_mmengine_checkpoints, use_safe_loading  # noqa: F401


def switch_off_unusable_multimodal() -> bool:
    """Keep mmpretrain's multi-modal models out when the installed transformers cannot serve them; True if so.

    mmpretrain 1.2.0 imports its BLIP / BLIP-2 / ... models (with ``mmpretrain.models`` and
    ``mmpretrain.datasets``) whenever pycocotools and transformers >= 4.28 are installed. Those modules import
    ``apply_chunking_to_forward``, ``find_pruneable_heads_and_indices`` and ``prune_linear_layer`` from
    ``transformers.modeling_utils``, which transformers 5 no longer has, and the import of ``mmpretrain.models``
    then fails with a TypeError: on a machine with transformers 5 (common on GPU images) no mmpretrain config
    could be built at all. mmbus uses none of the multi-modal models, so with transformers >= 5 the switch
    mmpretrain reads at import (``mmpretrain.utils.dependency.WITH_MULTIMODAL``) is turned off before anything
    imports them; with transformers 4 nothing changes. Must run before ``mmpretrain.models`` is imported.
    """
    try:
        major = int(version('transformers').split('.')[0])
    except (PackageNotFoundError, ValueError):
        return False
    if major < 5:
        return False
    import mmpretrain.utils.dependency as dependency
    dependency.WITH_MULTIMODAL = False
    return True


switch_off_unusable_multimodal()
use_safe_loading()
