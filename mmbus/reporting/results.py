"""Result rows and what is built from them.

Every run writes one row per test set (``<work_dir>/rows/<name>.json``): the run's spec (method, grid
values, test set), its metrics and the files the report reads (predictions, crops, misses, calibration, the
run's folder and monitored metrics for its training curves). Tables, summaries and plots are built from rows
and those files only (with the work dir's ``report_context.json``; see :mod:`.report`).
"""
import glob
import json
import math
import os.path as osp
import statistics
from typing import Dict, List, Optional, Sequence

from mmbus.classes import pathology_label  # noqa: F401 (re-exported for the reports)
from mmbus.evaluation.delong import paired_delong  # noqa: F401 (re-exported for the reports)
from mmbus.evaluation.predictions import load_predictions  # noqa: F401 (the one reader, re-exported)
from mmbus.utils.io import atomic_write_json
from mmbus.utils.markdown import md_table  # noqa: F401 (re-exported for the reports)


def write_row(work_dir: str, name: str, row: dict) -> str:
    path = osp.join(work_dir, 'rows', f'{name}.json')
    atomic_write_json(row, path, indent=1, default=_json_default)
    return path


def load_rows(work_dir: str) -> List[dict]:
    return [load_json(p) for p in sorted(glob.glob(osp.join(work_dir, 'rows', '*.json')))]


def load_json(path: str, default=None):
    if not osp.isfile(path):
        return default
    with open(path) as f:
        return json.load(f)


METRIC_PREFIXES = ('teacher/', 'diag/', 'bus_box/', 'coco/')


def pick_metric(metrics: dict, name: str) -> Optional[float]:
    """``<prefix>/<name>`` from a metrics dict (``name`` may itself hold a ``/``, e.g.
    ``sensitivity_0.95/ppv``); the teacher's prefix wins when a SemiClassifier's evaluator reports teacher and
    student; an exact key match, never a key that merely ends the same way."""
    if not metrics:
        return None
    for pref in METRIC_PREFIXES:
        if pref + name in metrics:
            return metrics[pref + name]
    if name in metrics:
        return metrics[name]
    keys = [k for k in metrics if k.split('/', 1)[-1] == name]
    keys = [k for k in keys if not k.startswith('student')] or keys
    return metrics[keys[0]] if keys else None


def plain_metrics(metrics: dict) -> dict:
    """``{'teacher/auc': x, 'student/auc': y, 'teacher/youden/ppv': z}`` -> ``{'auc': x, 'youden/ppv': z}``
    (teacher first, as :func:`pick_metric`)."""
    names = dict.fromkeys(k.split('/', 1)[-1] for k in metrics)
    return {n: pick_metric(metrics, n) for n in names}


def mean_std(values: Sequence[float]) -> Dict[str, Optional[float]]:
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return dict(mean=None, std=None, n=0)
    return dict(mean=statistics.fmean(v), std=statistics.stdev(v) if len(v) > 1 else 0.0, n=len(v))


def is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not (isinstance(v, float) and math.isnan(v))


def fmt(v, pct: bool = False, ci=None, digits: int = 3) -> str:
    """``0.812 [0.750, 0.870]`` (AUC-like) or ``81.2% [75.0, 87.0]`` (``pct``); ``n/a`` for a missing value."""
    if not is_num(v):
        return 'n/a'
    scale, digits = (100, 1) if pct else (1, digits)
    s = f'{scale * v:.{digits}f}' + ('%' if pct else '')
    if ci and all(is_num(c) for c in ci):
        s += f' [{scale * ci[0]:.{digits}f}, {scale * ci[1]:.{digits}f}]'
    return s


def fmt_auc(m: dict) -> str:
    """A row's AUC with its DeLong 95 % CI: ``0.812 [0.750, 0.870]``."""
    return fmt(m.get('auc'), ci=(m.get('auc_ci_low'), m.get('auc_ci_high')))


def fmt_mean_sd(mean, sd, digits: int = 3, missing: str = 'n/a') -> str:
    """``0.812 ± 0.034``; the mean alone where there is no sd (one value), ``missing`` where there is no mean."""
    if not is_num(mean):
        return missing
    return f'{mean:.{digits}f}' + (f' ± {sd:.{digits}f}' if is_num(sd) else '')


def fmt_pct_ci(m: dict, name: str) -> str:
    return fmt(pick_metric(m, name), pct=True, ci=(pick_metric(m, f'{name}_ci_low'), pick_metric(m, f'{name}_ci_high')))


def _json_default(o):
    if hasattr(o, 'tolist'):
        return o.tolist()
    return str(o)
