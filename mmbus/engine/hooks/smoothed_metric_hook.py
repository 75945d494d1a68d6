"""SmoothedMetricHook: a validation metric averaged over the last few validations, for model selection.

A validation split of a few hundred nodules gives an AUC whose 95 % CI is about +-0.05; picking the best
epoch on the raw curve picks the luckiest draw of that noise, not the best model. This hook adds
``<key><suffix>`` (default ``teacher/auc`` -> ``teacher/auc_smooth``), the mean of the last ``window``
values of ``key``, to the metrics of every validation, so ``CheckpointHook(save_best=...)`` and early
stopping can monitor the smoothed curve instead; the same rule serves every method.

While fewer than ``window`` validations exist the mean would rest on one or two noisy values, the very
chance peaks this hook is for; ``partial`` is reported instead (``0.0`` for an AUC: never selected, so
selection starts at the ``window``-th validation); ``partial=None`` reports the mean of the values there are.

The trailing mean only looks back, so the checkpoint kept is the last epoch of the best window. The
history lives in the message hub's runtime info, which mmengine stores in every checkpoint: a resumed
run smooths exactly as the uninterrupted one. The smoothed values are logged like any validation metric
(``vis_data/scalars.json``), so the curves can be plotted.
"""
from typing import Dict, Optional, Sequence, Union

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

INFO_KEY = 'smoothed_metric_history'


@HOOKS.register_module()
class SmoothedMetricHook(Hook):
    """Add the trailing mean of ``keys`` over ``window`` validations to the metrics.

    Args:
        keys: metric name(s) to smooth, as the evaluator reports them (``'teacher/auc'``).
        window: number of validations averaged (1 = no smoothing; the first validations average what there
            is).
        suffix: appended to each key for the smoothed metric.
        partial: the value reported while fewer than ``window`` values exist (``None``: their mean).
    """
    # after RuntimeInfoHook (VERY_HIGH), before LoggerHook (BELOW_NORMAL), CheckpointHook (VERY_LOW) and
    # EarlyStoppingHook (LOWEST), which all read the metrics of the same validation
    priority = 'ABOVE_NORMAL'

    def __init__(self, keys: Union[str, Sequence[str]] = 'teacher/auc', window: int = 5, suffix: str = '_smooth',
                 partial: Optional[float] = None):
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        if not self.keys:
            raise ValueError('SmoothedMetricHook: keys is empty')
        if int(window) != window or window < 1:
            raise ValueError(f'SmoothedMetricHook: window must be a positive integer, got {window!r}')
        if not suffix:
            raise ValueError('SmoothedMetricHook: suffix must not be empty (the raw metric would be replaced)')
        self.window = int(window)
        self.suffix = suffix
        self.partial = None if partial is None else float(partial)

    def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        if not metrics:
            return
        missing = [k for k in self.keys if k not in metrics]
        if missing:
            raise KeyError(f'SmoothedMetricHook: the validation reported no {missing} (it reported '
                           f'{sorted(metrics)}); set keys to metrics the val_evaluator produces')
        hub = runner.message_hub
        history = dict(hub.get_info(INFO_KEY) or {})
        for key in self.keys:
            values = list(history.get(key, [])) + [float(metrics[key])]
            values = values[-self.window:]
            history[key] = values
            if len(values) < self.window and self.partial is not None:
                smooth = self.partial
            else:
                smooth = sum(values) / len(values)
            metrics[key + self.suffix] = smooth
            # RuntimeInfoHook has already copied the raw metrics into the hub; the logger reads them there
            hub.update_scalar(f'val/{key}{self.suffix}', smooth)
        hub.update_info(INFO_KEY, history)
