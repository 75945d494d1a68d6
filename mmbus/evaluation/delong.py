"""DeLong's AUC statistics, single and paired, from one set of structural components (DeLong et al. 1988;
the fast midrank form of Sun & Xu 2014). Importable without mmengine: the metric and the study reports both
use it, so a report's AUC, CI and paired test are the metric's to the last digit."""
import math
from statistics import NormalDist
from typing import Dict, Sequence, Tuple

import numpy as np
from scipy.stats import rankdata

Z95 = NormalDist().inv_cdf(0.975)


def midrank(x) -> np.ndarray:
    """1-based ranks of ``x`` with ties given their average rank."""
    return rankdata(np.asarray(x, dtype=np.float64), method='average')


def _components(scores: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``scores`` (k x N): the AUC, and the structural components V10 (one per positive: the share
    of negatives it outranks, ties 1/2) and V01 (one per negative)."""
    pos, neg = scores[:, labels == 1], scores[:, labels == 0]
    m, n = pos.shape[1], neg.shape[1]
    if m == 0 or n == 0:
        raise ValueError(f'AUC needs both classes, got {m} positive and {n} negative samples')
    tx = np.vstack([midrank(r) for r in pos])
    ty = np.vstack([midrank(r) for r in neg])
    tz = np.vstack([midrank(r) for r in np.hstack([pos, neg])])
    auc = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return auc, v10, v01


def delong_auc(scores: Sequence[float], labels: Sequence[int]) -> Tuple[float, float]:
    """``(auc, variance)``; ties count 1/2. Needs one sample of each class; the variance needs two of each
    (else ``nan``)."""
    y = np.asarray(labels)
    auc, v10, v01 = _components(np.asarray(scores, dtype=np.float64)[None, :], y)
    m, n = v10.shape[1], v01.shape[1]
    if m < 2 or n < 2:
        return float(auc[0]), float('nan')
    return float(auc[0]), float(np.var(v10[0], ddof=1) / m + np.var(v01[0], ddof=1) / n)


def paired_delong(scores_a, scores_b, labels) -> Dict[str, float]:
    """DeLong's test for two correlated AUCs on the same samples: ``auc_a - auc_b``, its 95 % CI and the
    two-sided p-value."""
    y = np.asarray(labels, dtype=int)
    x = np.vstack([np.asarray(scores_a, float), np.asarray(scores_b, float)])
    m, n = int((y == 1).sum()), int((y == 0).sum())
    if m < 2 or n < 2:
        raise ValueError(f'paired DeLong needs at least 2 samples per class, got {m} malignant, {n} benign')
    aucs, v10, v01 = _components(x, y)
    cov = np.cov(v10) / m + np.cov(v01) / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = float(aucs[0] - aucs[1])
    se = math.sqrt(max(var, 0.0))
    z = diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    p = 2 * (1 - NormalDist().cdf(abs(z)))
    return dict(auc_a=float(aucs[0]), auc_b=float(aucs[1]), diff=diff, diff_ci_low=diff - Z95 * se,
                diff_ci_high=diff + Z95 * se, p_value=float(p))
