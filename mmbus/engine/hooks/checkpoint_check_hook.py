"""CheckpointCheckHook: refuse a checkpoint that belongs to another model than the config's.

mmengine loads checkpoints with ``strict=False``: a detector checkpoint on a classifier config (or the
reverse) loads with a few "missing keys" warnings and the run goes on with untrained weights, giving
believable numbers. ``tools/test.py`` and ``tools/train.py`` (``--resume`` / ``load_from``) register this
hook; it sees the checkpoint right after mmengine has read it and before the weights are copied, and raises
:class:`mmbus.utils.checkpoint.CheckpointMismatchError` naming both files when most of the model's weights
are missing from it or most of its weights are unknown to the model.
"""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from mmbus.utils.checkpoint import check_checkpoint_fits


@HOOKS.register_module()
class CheckpointCheckHook(Hook):
    """Check every loaded checkpoint against the runner's model.

    Args:
        checkpoint (str, optional): the checkpoint's path, for the message (default: ``runner``'s
            ``load_from``).
        config (str, optional): the config's path, for the message (default: the runner's config file).
        min_share (float): see :func:`mmbus.utils.checkpoint.check_checkpoint_fits`.
    """
    priority = 'VERY_HIGH'

    def __init__(self, checkpoint: Optional[str] = None, config: Optional[str] = None,
                 min_share: float = 0.5) -> None:
        self.checkpoint = checkpoint
        self.config = config
        self.min_share = min_share

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        ckpt = self.checkpoint or getattr(runner, '_load_from', None) or 'the loaded checkpoint'
        cfg = self.config or getattr(getattr(runner, 'cfg', None), 'filename', None)
        check_checkpoint_fits(runner.model, checkpoint, ckpt, cfg, self.min_share)
