"""Result rows and what is built from them.

Every run writes one row per test set (``<work_dir>/rows/<name>.json``): the run's spec (method, grid
values, test set) and its metrics. Tables, summaries and plots are built from rows only.
"""
import glob
import json
import math
import os.path as osp
import statistics
from typing import Dict, List, Optional, Sequence

import numpy as np

from mmbus.utils.io import atomic_write_json

CLASSES = ('benign', 'malignant')


def write_row(work_dir: str, name: str, row: dict) -> str:
    path = osp.join(work_dir, 'rows', f'{name}.json')
    atomic_write_json(row, path, indent=1, default=_json_default)
    return path


def load_rows(work_dir: str) -> List[dict]:
    rows = []
    for p in sorted(glob.glob(osp.join(work_dir, 'rows', '*.json'))):
        with open(p) as f:
            rows.append(json.load(f))
    return rows


def load_json(path: str, default=None):
    if not osp.isfile(path):
        return default
    with open(path) as f:
        return json.load(f)


def pick_metric(metrics: dict, name: str) -> Optional[float]:
    """``<prefix>/<name>`` from a metrics dict; the teacher's prefix wins when a SemiClassifier's
    evaluator reports teacher and student."""
    if not metrics:
        return None
    keys = [k for k in metrics if k.split('/')[-1] == name]
    for pref in ('teacher/', 'diag/', 'bus_box/', 'coco/'):
        for k in keys:
            if k.startswith(pref):
                return metrics[k]
    keys = [k for k in keys if not k.startswith('student')] or keys
    return metrics[keys[0]] if keys else None


def plain_metrics(metrics: dict) -> dict:
    """``{'teacher/auc': x, 'student/auc': y}`` -> ``{'auc': x}`` (teacher first, as :func:`pick_metric`)."""
    names = dict.fromkeys(k.split('/')[-1] for k in metrics)
    return {n: pick_metric(metrics, n) for n in names}


def pathology_label(pathology) -> Optional[int]:
    return {'benign': 0, 'malignant': 1}.get(str(pathology).lower()) if pathology is not None else None


def load_predictions(pkl: str, crops_json: Optional[str] = None, missed_json: Optional[str] = None):
    """(malignancy scores, labels, image ids) of a ``tools/test.py --out`` dump, with the detector misses
    of ``missed_json`` added as wrong answers (score 0 for a malignant nodule, 1 for a benign one, as
    ``BinaryDiagnosticMetric``'s default ``missed_rule='wrong'``)."""
    from mmengine.fileio import load
    preds = load(pkl) if osp.isfile(pkl) else []
    crops = (load_json(crops_json) or dict(data_list=[]))['data_list'] if crops_json else []
    by_name = {osp.basename(d['img_path']): d for d in crops}
    scores, labels, ids = [], [], []
    for p in preds:
        s = np.asarray(_tolist(p['pred_score']), dtype=float).reshape(-1)
        rec = by_name.get(osp.basename(str(p.get('img_path', ''))), {})
        lab = int(np.asarray(_tolist(p['gt_label'])).reshape(-1)[0])
        if lab < 0:
            lab = rec.get('true_label', lab)
        scores.append(float(s[1]))
        labels.append(lab)
        ids.append(rec.get('image_id'))
    for m in (load_json(missed_json, []) if missed_json else []):
        lab = pathology_label(m.get('pathology'))
        if lab is None:
            lab = m.get('true_label', m.get('gt_label'))
        if lab is None:
            continue
        scores.append(1.0 - int(lab))
        labels.append(int(lab))
        ids.append(m.get('id'))
    return np.asarray(scores), np.asarray(labels, dtype=int), ids


def _tolist(x):
    return x.tolist() if hasattr(x, 'tolist') else x


def paired_delong(scores_a, scores_b, labels) -> Dict[str, float]:
    """DeLong's test for two correlated AUCs on the same samples (DeLong et al. 1988, fast midrank form of
    Sun & Xu 2014): ``auc_a - auc_b``, its 95 % CI and the two-sided p-value."""
    from statistics import NormalDist

    from mmbus.evaluation.binary_diagnostic_metric import midrank
    y = np.asarray(labels, dtype=int)
    x = np.vstack([np.asarray(scores_a, float), np.asarray(scores_b, float)])
    pos, neg = x[:, y == 1], x[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    if m < 2 or n < 2:
        raise ValueError(f'paired DeLong needs at least 2 samples per class, got {m} malignant, {n} benign')
    tx = np.vstack([midrank(r) for r in pos])
    ty = np.vstack([midrank(r) for r in neg])
    tz = np.vstack([midrank(r) for r in np.hstack([pos, neg])])
    aucs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1.0) / (2.0 * n)
    v01 = (tz[:, :m] - tx) / n
    v10 = 1.0 - (tz[:, m:] - ty) / m
    cov = np.cov(v01) / m + np.cov(v10) / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = float(aucs[0] - aucs[1])
    se = math.sqrt(max(var, 0.0))
    z = diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    p = 2 * (1 - NormalDist().cdf(abs(z)))
    return dict(auc_a=float(aucs[0]), auc_b=float(aucs[1]), diff=diff, diff_ci_low=diff - 1.959964 * se,
                diff_ci_high=diff + 1.959964 * se, p_value=float(p))


def mean_std(values: Sequence[float]) -> Dict[str, Optional[float]]:
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return dict(mean=None, std=None, n=0)
    return dict(mean=statistics.fmean(v), std=statistics.stdev(v) if len(v) > 1 else 0.0, n=len(v))


def md_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """The one Markdown table writer."""
    lines = ['| ' + ' | '.join(str(h) for h in header) + ' |', '|' + '|'.join('---' for _ in header) + '|']
    lines += ['| ' + ' | '.join(str(c) for c in r) + ' |' for r in rows]
    return '\n'.join(lines)


def is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not (isinstance(v, float)
                                                                            and math.isnan(v))


def fmt(v, pct: bool = False, ci=None, digits: int = 3) -> str:
    """``0.812 [0.75, 0.87]`` (AUC-like) or ``81.2%`` (``pct``); ``n/a`` for a missing value."""
    if not is_num(v):
        return 'n/a'
    s = f'{100 * v:.1f}%' if pct else f'{v:.{digits}f}'
    if ci and all(is_num(c) for c in ci):
        s += f' [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]'
    return s


def fmt_pct_ci(m: dict, name: str) -> str:
    v, lo, hi = (pick_metric(m, name), pick_metric(m, f'{name}_ci_low'), pick_metric(m, f'{name}_ci_high'))
    if not is_num(v):
        return 'n/a'
    s = f'{100 * v:.1f}%'
    if is_num(lo) and is_num(hi):
        s += f' [{100 * lo:.1f}, {100 * hi:.1f}]'
    return s


def _json_default(o):
    if hasattr(o, 'tolist'):
        return o.tolist()
    return str(o)
