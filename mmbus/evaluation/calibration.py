"""Calibration of a malignancy probability: expected calibration error (equal-mass bins), Brier score,
reliability curve and plot, temperature scaling, and the calibration file.

Temperature scaling maps ``p`` to ``sigmoid(logit(p) / T)``: ``T > 1`` softens an over-confident model,
``T < 1`` sharpens an under-confident one. It is monotone, so it changes neither the ROC curve nor the AUC,
only what the probabilities mean (and so which number a threshold is).

The calibration file (JSON, written by ``tools/analysis/fit_calibration.py``, read by
:class:`BinaryDiagnosticMetric` and the model bundle)::

    {"temperature": T,
     "thresholds": {"sensitivity_0.95": t1, "sensitivity_0.90": t2, "youden": t3},
     "fitted_on": {"n": ..., "malignant": ..., "source": "<predictions file name>"}}

The thresholds apply to the *calibrated* scores. Needs numpy and scipy (matplotlib for the plot only).
"""
import json
import os.path as osp
from typing import Dict, Optional, Sequence, Union

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, logit

from mmbus.utils.io import atomic_write, atomic_write_json

# Probabilities are clipped to [_EPS, 1 - _EPS] before the fit: a saturated 0 or 1 has an infinite
# logit, and one of them on the wrong side would make the likelihood infinite for every T.
_EPS = 1e-7
# log T is searched in [log 0.05, log 20]: wider than any useful correction, and bounded so that
# separable data (likelihood improving as T -> 0) still returns a number.
_LOG_T_BOUNDS = (float(np.log(0.05)), float(np.log(20.0)))


def _check(probs, labels, where: str = 'probabilities'):
    """``(probs, labels)`` as float / int arrays; ValueError naming what is wrong."""
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if len(probs) != len(labels):
        raise ValueError(f'{where}: {len(probs)} probabilities but {len(labels)} labels')
    if len(probs) == 0:
        raise ValueError(f'{where}: no samples')
    if not (np.all(np.isfinite(probs)) and probs.min() >= 0.0 and probs.max() <= 1.0):
        raise ValueError(f'{where}: probabilities must lie in [0, 1], got values in '
                         f'[{np.nanmin(probs):.4g}, {np.nanmax(probs):.4g}]'
                         + (' and non-finite values' if not np.all(np.isfinite(probs)) else ''))
    if not np.isin(labels, (0, 1)).all():
        bad = sorted(set(labels.tolist()) - {0, 1})
        raise ValueError(f'{where}: labels must be 0 (benign) or 1 (malignant), got {bad}')
    return probs, labels.astype(np.int64)


# ----------------------------------------------------------------- measures
def reliability_curve(probs: Sequence[float], labels: Sequence[int], n_bins: int = 10) -> Dict[str, np.ndarray]:
    """Equal-mass (quantile) bins of the predicted probability: per non-empty bin the mean predicted
    probability ``mean_predicted``, the observed malignant fraction ``observed`` and ``count``.

    Bin edges are the quantiles of ``probs``; a sample on an edge goes to the upper bin, so tied
    probabilities share a bin and the result does not depend on sample order (heavy ties give fewer,
    larger bins).
    """
    probs, labels = _check(probs, labels)
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f'n_bins must be a positive integer, got {n_bins}')
    edges = np.quantile(probs, np.linspace(0.0, 1.0, int(n_bins) + 1))
    idx = np.searchsorted(edges[1:-1], probs, side='right')
    count = np.bincount(idx, minlength=int(n_bins))
    keep = count > 0
    sum_p = np.bincount(idx, weights=probs, minlength=int(n_bins))
    sum_y = np.bincount(idx, weights=labels, minlength=int(n_bins))
    return dict(mean_predicted=sum_p[keep] / count[keep], observed=sum_y[keep] / count[keep],
                count=count[keep])


def expected_calibration_error(probs: Sequence[float], labels: Sequence[int], n_bins: int = 10) -> float:
    """ECE: the count-weighted mean of ``|mean predicted - observed|`` over the equal-mass bins of
    :func:`reliability_curve`."""
    curve = reliability_curve(probs, labels, n_bins)
    w = curve['count'] / curve['count'].sum()
    return float(np.sum(w * np.abs(curve['mean_predicted'] - curve['observed'])))


def brier_score(probs: Sequence[float], labels: Sequence[int]) -> float:
    """Mean squared difference between the probability and the 0/1 label."""
    probs, labels = _check(probs, labels)
    return float(np.mean((probs - labels) ** 2))


# -------------------------------------------------------------- temperature
def fit_temperature(probs: Sequence[float], labels: Sequence[int]) -> float:
    """The temperature ``T > 0`` minimising the negative log-likelihood of ``sigmoid(logit(p) / T)``
    (bounded search on ``log T``, T in [0.05, 20]; probabilities clipped to [1e-7, 1 - 1e-7]).

    Needs both classes (with one, the likelihood keeps improving as T -> 0 or infinity).
    """
    probs, labels = _check(probs, labels)
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == len(labels):
        missing = 'malignant (label 1)' if n_pos == 0 else 'benign (label 0)'
        raise ValueError(f'fitting a temperature needs both classes: no {missing} samples among '
                         f'{len(labels)}')
    z = logit(np.clip(probs, _EPS, 1.0 - _EPS))

    def nll(log_t):
        s = z / np.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, s) - labels * s))  # binary cross-entropy on logits

    res = minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method='bounded', options=dict(xatol=1e-6))
    return float(np.exp(res.x))


def apply_temperature(probs: Sequence[float], temperature: float) -> np.ndarray:
    """``sigmoid(logit(p) / T)``; 0 and 1 stay 0 and 1, and ``T == 1`` returns the probabilities
    unchanged (no round trip through the logit, so thresholds equal to a score keep their decisions)."""
    t = float(temperature)
    if not (np.isfinite(t) and t > 0):
        raise ValueError(f'temperature must be a positive number, got {temperature}')
    probs = np.asarray(probs, dtype=np.float64)
    if probs.size and not (np.all(np.isfinite(probs)) and probs.min() >= 0.0 and probs.max() <= 1.0):
        raise ValueError(f'probabilities must lie in [0, 1], got values in [{np.nanmin(probs):.4g}, '
                         f'{np.nanmax(probs):.4g}]')
    if t == 1.0:
        return probs.copy()
    with np.errstate(divide='ignore'):  # logit(0) = -inf, logit(1) = inf, mapped back to 0 and 1
        return expit(logit(probs) / t)


# --------------------------------------------------------------------- plot
def plot_reliability(path: str, probs: Sequence[float], labels: Sequence[int],
                     calibrated: Optional[Sequence[float]] = None, n_bins: int = 10,
                     title: Optional[str] = None) -> str:
    """Write a reliability diagram (PNG, atomically) to ``path``: the diagonal, the curve of ``probs``
    and, if given, of ``calibrated`` (the same samples after calibration), with each one's ECE in the
    legend. Returns ``path``."""
    curves = [('raw', probs)] + ([('calibrated', calibrated)] if calibrated is not None else [])
    drawn = []
    for name, p in curves:
        curve = reliability_curve(p, labels, n_bins)
        drawn.append((name, curve, expected_calibration_error(p, labels, n_bins)))
    n = len(np.asarray(labels).reshape(-1))

    def write_png(tmp):
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
        ax.plot([0, 1], [0, 1], '--', color='grey', lw=1, label='perfect calibration')
        for (name, curve, ece), marker in zip(drawn, ('o', 's')):
            ax.plot(curve['mean_predicted'], curve['observed'], marker=marker, lw=1.5, ms=4,
                    label=f'{name} (ECE {ece:.3f})')
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel('mean predicted malignancy probability')
        ax.set_ylabel('observed malignant fraction')
        ax.set_title(title or f'reliability ({n_bins} equal-mass bins), n={n}', fontsize=9)
        ax.legend(loc='upper left', fontsize=8)
        fig.tight_layout()
        fig.savefig(tmp, format='png')
        plt.close(fig)

    atomic_write(path, write_png)
    return path


# ---------------------------------------------------------------------- file
_REQUIRED = (('temperature', ), ('thresholds', ), ('fitted_on', ), ('fitted_on', 'n'),
             ('fitted_on', 'malignant'), ('fitted_on', 'source'))


def validate_calibration(cal: dict, where: str = 'calibration') -> dict:
    """Check a calibration dict (see the module docstring); ValueError naming ``where`` and the missing
    or bad key. Returns ``cal``."""
    if not isinstance(cal, dict):
        raise ValueError(f'{where}: expected a JSON object, got {type(cal).__name__}')
    for keys in _REQUIRED:
        node = cal
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                raise ValueError(f'{where}: missing key {".".join(keys)!r}')
            node = node[k]
    t = cal['temperature']
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not (np.isfinite(t) and t > 0):
        raise ValueError(f'{where}: temperature must be a positive number, got {t!r}')
    if not isinstance(cal['thresholds'], dict) or not cal['thresholds']:
        raise ValueError(f'{where}: thresholds must be a non-empty object of name -> threshold')
    for name, v in cal['thresholds'].items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise ValueError(f'{where}: threshold {name!r} must be a number in [0, 1], got {v!r}')
    return cal


def load_calibration(src: Union[str, dict]) -> dict:
    """A calibration file (path) or dict, checked by :func:`validate_calibration`."""
    if isinstance(src, dict):
        return validate_calibration(src)
    if not osp.isfile(src):
        raise FileNotFoundError(f'calibration file {src} does not exist')
    with open(src) as f:
        try:
            cal = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f'{src}: not valid JSON ({e})') from None
    return validate_calibration(cal, src)


def save_calibration(path: str, temperature: float, thresholds: Dict[str, float], n: int, malignant: int,
                     source: str) -> str:
    """Write the calibration file (atomically); ``source`` is stored as its file name. Returns ``path``."""
    cal = dict(temperature=float(temperature),
               thresholds={k: float(v) for k, v in thresholds.items()},
               fitted_on=dict(n=int(n), malignant=int(malignant), source=osp.basename(str(source))))
    validate_calibration(cal, path)
    atomic_write_json(cal, path, indent=2)
    return path


def fit_calibration(pkl: str, missed: Optional[str] = None, sensitivities: Sequence[float] = (0.95, 0.90),
                    missed_rule='wrong'):
    """Fit the calibration file's contents on a recogniser's validation predictions (``tools/test.py --out``):
    the temperature on its predictions only (a detector miss has no probability), then the operating
    thresholds on the *calibrated* scores with the misses of ``missed`` added by the metric's rule, so the
    sensitivity targets count every malignant nodule. Returns ``(fields for save_calibration, raw scores,
    calibrated scores, labels)``; bad input raises an error naming the file."""
    from mmbus.evaluation.operating_points import choose_thresholds
    from mmbus.evaluation.predictions import load_predictions
    if not osp.isfile(pkl):
        raise FileNotFoundError(f'predictions file {pkl} does not exist')
    if missed is not None and not osp.isfile(missed):
        raise FileNotFoundError(f'missed-detection file {missed} does not exist')
    try:
        raw, labels, _ = load_predictions(pkl)
    except (KeyError, IndexError, TypeError) as e:
        raise ValueError(f'{pkl}: not a classifier prediction dump of tools/test.py --out (needs pred_score '
                         f'with 2 classes and gt_label per sample): {e!r}') from None
    if len(labels) == 0:
        raise ValueError(f'{pkl} holds no predictions')
    try:
        temperature = fit_temperature(raw, labels)
    except ValueError as e:
        raise ValueError(f'{pkl}: {e}') from None
    calibrated = apply_temperature(raw, temperature)
    raw_all, cal_all, all_labels = raw, calibrated, labels
    if missed is not None:
        # the same reader with the misses added (appended after the predictions)
        with_missed, all_labels, _ = load_predictions(pkl, missed_json=missed, missed_rule=missed_rule)
        raw_all = np.concatenate([raw, with_missed[len(raw):]])
        cal_all = np.concatenate([calibrated, with_missed[len(raw):]])
    try:
        thresholds = choose_thresholds(cal_all, all_labels, sensitivities)
    except ValueError as e:
        raise ValueError(f'{pkl}: {e}') from None
    fields = dict(temperature=temperature, thresholds=thresholds, n=len(all_labels),
                  malignant=int(all_labels.sum()), source=pkl)
    return fields, raw_all, cal_all, all_labels


def write_calibration(pkl: str, out: str, missed: Optional[str] = None, n_bins: int = 10, missed_rule='wrong'):
    """:func:`fit_calibration`, then the file ``out`` and its reliability diagram (``<out stem>_reliability.png``:
    raw and calibrated). Returns the fields and the ECE before and after."""
    fields, raw, calibrated, labels = fit_calibration(pkl, missed, missed_rule=missed_rule)
    save_calibration(out, **fields)
    plot_reliability(osp.splitext(out)[0] + '_reliability.png', raw, labels, calibrated=calibrated, n_bins=n_bins,
                     title=f'{osp.basename(pkl)}, n={len(labels)}, T={fields["temperature"]:.3g}')
    return fields, expected_calibration_error(raw, labels, n_bins), expected_calibration_error(
        calibrated, labels, n_bins)
