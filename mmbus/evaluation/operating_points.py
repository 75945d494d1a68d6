"""Operating points of a benign (0) / malignant (1) score: thresholds chosen for a target sensitivity or by
Youden's J, and the diagnostic figures at a threshold with Wilson confidence intervals.

Decision rule throughout: malignant iff ``score >= threshold`` (as :class:`BinaryDiagnosticMetric`).
Choose thresholds on the validation split and evaluate them on the test split; a threshold chosen on the
data it is evaluated on is optimistic.

Needs numpy only (no mmengine): :class:`BinaryDiagnosticMetric` imports its ROC, Youden and Wilson
functions from here, so each exists once.
"""
from typing import Dict, Optional, Sequence, Tuple

import numpy as np


def wilson_interval(successes: int, total: int, level: float = 0.95):
    """Wilson score interval of a binomial proportion (scipy's); ``(nan, nan)`` for ``total == 0``."""
    if total == 0:
        return float('nan'), float('nan')
    from scipy.stats import binomtest
    ci = binomtest(int(successes), int(total)).proportion_ci(confidence_level=level, method='wilson')
    return max(0.0, float(ci.low)), min(1.0, float(ci.high))


def roc_curve(scores: Sequence[float], labels: Sequence[int]):
    """ROC points for 'malignant iff score >= t' over every distinct score
    ``t`` (descending), starting at (0, 0) with ``t = inf``.

    Returns ``(thresholds, fpr, tpr)`` arrays.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    # one pass: sort descending; the counts at each distinct score are the cumulative counts at its last copy
    order = np.argsort(-scores, kind='mergesort')
    s, y = scores[order], labels[order]
    last = np.r_[s[1:] != s[:-1], True] if len(s) else np.zeros(0, bool)
    n_pos, n_neg = (labels == 1).sum(), (labels == 0).sum()
    tpr = np.r_[0, np.cumsum(y == 1)[last]] / max(n_pos, 1)
    fpr = np.r_[0, np.cumsum(y == 0)[last]] / max(n_neg, 1)
    return np.r_[np.inf, s[last]], fpr, tpr


def youden_threshold(scores: Sequence[float], labels: Sequence[int]) -> float:
    """The score ``t`` maximising sensitivity + specificity - 1 for
    'malignant iff score >= t' (the largest such ``t`` on ties)."""
    thresholds, fpr, tpr = roc_curve(scores, labels)
    j = tpr - fpr
    j[0] = -np.inf  # t = inf predicts nothing malignant; not a usable cut
    return float(thresholds[int(np.argmax(j))])


def _check(scores, labels, where: str = 'scores'):
    """``(scores, labels)`` as float / int arrays; ValueError on a length mismatch, a non-finite score or
    a label other than 0/1."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if len(scores) != len(labels):
        raise ValueError(f'{where}: {len(scores)} scores but {len(labels)} labels')
    if not np.all(np.isfinite(scores)):
        raise ValueError(f'{where}: scores must be finite numbers')
    if not np.isin(labels, (0, 1)).all():
        bad = sorted(set(labels.tolist()) - {0, 1})
        raise ValueError(f'{where}: labels must be 0 (benign) or 1 (malignant), got {bad}')
    return scores, labels.astype(np.int64)


def point_name(target: float) -> str:
    """Name of the operating point for a sensitivity target: ``0.9 -> 'sensitivity_0.90'`` (two decimals
    unless the target needs more)."""
    text = f'{target:.2f}' if round(target, 2) == target else f'{target:g}'
    return f'sensitivity_{text}'


def parse_point_name(name: str) -> Tuple[Optional[str], Optional[float]]:
    """``(kind, target)`` of an operating point's name: ``'sensitivity_0.90' -> ('sensitivity', 0.9)``, the
    same for ``'specificity_<s>'``; ``(None, None)`` for any other name (``'youden'``, a user's own)."""
    kind, _, text = name.partition('_')
    if kind in ('sensitivity', 'specificity'):
        try:
            return kind, float(text)
        except ValueError:
            pass
    return None, None


def choose_thresholds(scores: Sequence[float], labels: Sequence[int],
                      sensitivities: Sequence[float] = (0.95, 0.90)) -> Dict[str, float]:
    """Named thresholds chosen on ``(scores, labels)`` (meant to be the validation split).

    * ``'sensitivity_<s>'`` (e.g. ``'sensitivity_0.95'``): the highest threshold whose sensitivity on
      these data is at least ``s``. That is the k-th highest malignant score, k the smallest count with
      k / n_malignant >= s; tied scores fall on the same side, so sensitivity can exceed ``s``
      (e.g. 0.9 with two positives tied at the cut gives 1.0). ``s = 1`` (or any ``s`` above
      (n_malignant - 1) / n_malignant) gives the lowest malignant score.
    * ``'youden'``: :func:`youden_threshold`.

    Raises ValueError when a class is missing or a target is outside (0, 1].
    """
    scores, labels = _check(scores, labels)
    n_pos, n_neg = int((labels == 1).sum()), int((labels == 0).sum())
    if n_pos == 0 or n_neg == 0:
        missing = 'malignant (label 1)' if n_pos == 0 else 'benign (label 0)'
        raise ValueError(f'choosing thresholds needs both classes: no {missing} samples among '
                         f'{len(labels)}')
    pos_desc = np.sort(scores[labels == 1])[::-1]
    # k / n_pos computed as evaluate_at computes sensitivity, so the chosen point always passes its
    # own ">= target" check (no float surprise such as 0.95 * 20 != 19)
    fractions = np.arange(1, n_pos + 1) / n_pos
    out = {}
    for s in sensitivities:
        if not 0.0 < float(s) <= 1.0:
            raise ValueError(f'sensitivity target must be in (0, 1], got {s}')
        k = int(np.searchsorted(fractions, float(s), side='left')) + 1
        out[point_name(float(s))] = float(pos_desc[k - 1])
    out['youden'] = youden_threshold(scores, labels)
    return out


def evaluate_at(scores: Sequence[float], labels: Sequence[int], threshold: float,
                level: float = 0.95) -> Dict[str, float]:
    """Sensitivity, specificity, PPV and NPV at ``threshold`` (malignant iff score >= threshold), each
    with its Wilson interval (``<name>_ci_low`` / ``<name>_ci_high``), and the counts ``tp fp tn fn``.

    A figure whose denominator is 0 (e.g. PPV when no score reaches the threshold) is ``nan`` with CI
    ``(nan, nan)``.
    """
    scores, labels = _check(scores, labels)
    pred = scores >= float(threshold)
    tp = int((pred & (labels == 1)).sum())
    fp = int((pred & (labels == 0)).sum())
    tn = int((~pred & (labels == 0)).sum())
    fn = int((~pred & (labels == 1)).sum())
    out = {}
    for name, k, n in (('sensitivity', tp, tp + fn), ('specificity', tn, tn + fp),
                       ('ppv', tp, tp + fp), ('npv', tn, tn + fn)):
        out[name] = k / n if n else float('nan')
        out[f'{name}_ci_low'], out[f'{name}_ci_high'] = wilson_interval(k, n, level)
    out.update(tp=tp, fp=fp, tn=tn, fn=fn)
    return out
