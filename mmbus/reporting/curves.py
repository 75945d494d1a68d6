"""Training and validation curves of a run, read from mmengine's ``vis_data/scalars.json`` (or, where those
were not kept, its console log), and the convergence verdict the report prints: where the selected checkpoint
lies, and whether the monitored curve was still rising when the run ended (a schedule too short for that
method)."""
import glob
import json
import os.path as osp
import re
from typing import Dict, List, Optional, Tuple

Curve = List[Tuple[int, float]]
#: (training iteration, the validation metrics logged there), in iteration order
Validations = List[Tuple[int, Dict[str, float]]]


def read_curves(run_dir: Optional[str] = None, files: Optional[List[str]] = None,
                val_interval: Optional[int] = None, max_iters: Optional[int] = None) -> Dict[str, Curve]:
    """``{'loss': [(iter, value)], '<val metric>': [(iter, value)], ...}`` from the scalar files of a run
    (``<run_dir>/<timestamp>/vis_data/scalars.json``, earlier files of a resumed run first, so the curves cover
    the whole run; or the ``files`` given). The iteration of a validation record:

    * its ``iter``, if it has one;
    * epoch loops: the last training iteration logged in the epoch its ``step`` names;
    * iteration loops logging by iteration: its ``step``;
    * iteration loops logging by "epoch" (``step`` 0 throughout): the k-th validation at ``k * val_interval``
      (the last at ``max_iters``) when the interval is given, else the last training iteration logged before it.
    """
    if files is None:
        files = sorted(glob.glob(osp.join(run_dir, '*', 'vis_data', 'scalars.json')))
    train: Curve = []
    val: Dict[str, Curve] = {}
    epoch_end: Dict[int, int] = {}
    pending = []  # (validation record, last training iteration logged before it)
    last = 0
    for f in files:
        with open(f) as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                rec = json.loads(line)
                if 'loss' in rec and 'iter' in rec:
                    it = int(rec['iter'])
                    last = max(last, it)
                    train.append((it, float(rec['loss'])))
                    if 'epoch' in rec:
                        epoch_end[int(rec['epoch'])] = max(it, epoch_end.get(int(rec['epoch']), 0))
                else:
                    pending.append((rec, last))
    steps = [int(r.get('step', 0)) for r, _ in pending if 'iter' not in r]
    by_iter_steps = bool(steps) and steps[0] > 0 and all(a < b for a, b in zip(steps, steps[1:]))
    for k, (rec, last_before) in enumerate(pending):
        step = int(rec.get('step', 0))
        if 'iter' in rec:
            it = int(rec['iter'])
        elif step in epoch_end:
            it = epoch_end[step]
        elif by_iter_steps and not (val_interval and step < val_interval):
            it = step
        elif val_interval:
            it = (k + 1) * val_interval if not max_iters else min((k + 1) * val_interval, max_iters)
        else:
            it = last_before or step
        for name, v in rec.items():
            if name in ('step', 'epoch', 'iter') or not isinstance(v, (int, float)):
                continue
            val.setdefault(name, []).append((it, float(v)))
    out = {'loss': _dedup(train)}
    out.update({k: _dedup(v) for k, v in val.items()})
    return out


def run_curves(run_dir: str, monitor: str, skip: int = 0) -> Dict[str, Curve]:
    """:func:`read_curves` of a run less the first ``skip`` values of ``monitor``: a SmoothedMetricHook's
    ``partial`` placeholders, not measurements."""
    curves = read_curves(run_dir)
    if skip and monitor in curves:
        curves[monitor] = curves[monitor][skip:]
    return curves


def _dedup(curve: Curve) -> Curve:
    """Sorted by iteration; the last value wins where a resumed run logged an iteration again."""
    return sorted(dict(curve).items())


def convergence(curves: Dict[str, Curve], monitor: str, tail: int = 3) -> dict:
    """Where ``monitor`` peaked. ``still_rising`` when the best value is among the last ``tail``
    validations: the run may have stopped before the method converged."""
    curve = curves.get(monitor) or []
    if not curve:
        return dict(monitor=monitor, validations=0)
    best = max(range(len(curve)), key=lambda i: (curve[i][1], -i))
    return dict(monitor=monitor, validations=len(curve), best_iter=curve[best][0], best=curve[best][1],
                last_iter=curve[-1][0], trained_iters=max([i for i, _ in curves.get('loss', [])] or [0]),
                still_rising=best >= len(curve) - tail and len(curve) > tail)


def validation_schedule(config: str) -> Tuple[Optional[int], Optional[int]]:
    """(val_interval, max_iters) of an iteration-based training config, which :func:`read_curves` needs to
    place validations logged by "epoch"; (None, None) for an epoch loop or a config that cannot be read."""
    if not osp.isfile(config):
        return None, None
    try:
        from mmengine.config import Config
        tc = Config.fromfile(config, import_custom_modules=False).get('train_cfg') or {}
    except Exception:  # an unreadable config only costs the curve's x axis
        return None, None
    if tc.get('type', 'IterBasedTrainLoop') != 'IterBasedTrainLoop' or 'max_epochs' in tc:
        return None, None
    return tc.get('val_interval'), tc.get('max_iters')


def validations(curves: Dict[str, Curve]) -> Validations:
    """The validation metrics of :func:`read_curves`'s output (the names with a ``/``) grouped by iteration."""
    by_iter: Dict[int, Dict[str, float]] = {}
    for name, points in curves.items():
        if '/' in name:
            for it, v in points:
                by_iter.setdefault(it, {})[name] = v
    return sorted(by_iter.items())


def curve_from_scalars(files: List[str], val_interval: Optional[int] = None,
                       max_iters: Optional[int] = None) -> Validations:
    """(training iteration, validation metrics) from mmengine's ``scalars.json`` files, placed by
    :func:`read_curves`."""
    return validations(read_curves(files=files, val_interval=val_interval, max_iters=max_iters))


def _metric_pairs(text: str) -> Dict[str, float]:
    return {k: float(v) for k, v in re.findall(r'([\w./@-]+): (-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)\b', text)}


def curve_from_log(path: str) -> Validations:
    """The same from a training console log, for a run whose ``scalars.json`` was not kept: ``Iter(val)``
    lines take the last training or checkpoint iteration before them, ``Epoch(val) [e]`` lines the end of
    epoch ``e``."""
    if not osp.isfile(path):
        return []
    out, last, epoch_len = [], 0, None
    with open(path, errors='replace') as f:
        for line in f:
            m = re.search(r'Iter\(train\)\s*\[\s*(\d+)/', line) or re.search(r'Saving checkpoint at (\d+) iter', line)
            if m:
                last = max(last, int(m.group(1)))
                continue
            m = re.search(r'Epoch\(train\)\s*\[(\d+)\]\[\s*(\d+)/\s*(\d+)\]', line)
            if m:
                epoch_len = int(m.group(3))
                last = max(last, (int(m.group(1)) - 1) * epoch_len + int(m.group(2)))
                continue
            m = re.search(r'(Iter|Epoch)\(val\)\s*(?:\[(\d+)\])?\s*\[\s*\d+/\s*\d+\]\s*(.*)', line)
            if m:
                metrics = {k: v for k, v in _metric_pairs(m.group(3)).items() if '/' in k}
                if not metrics:
                    continue
                it = int(m.group(2)) * epoch_len if m.group(1) == 'Epoch' and epoch_len else last
                out.append((it, metrics))
    return out
