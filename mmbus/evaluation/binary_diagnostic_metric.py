"""BinaryDiagnosticMetric: ROC AUC, sensitivity, specificity and accuracy with
95% confidence intervals for a benign (0) / malignant (1) classifier
(mmpretrain).

* Score: the predicted probability of the positive class (malignant,
  ``positive_index=1``) read from ``data_sample[score_key]`` (default
  ``pred_score``; ``student_pred_score`` evaluates the student of a
  :class:`SemiClassifier` in the same pass).
* Decision: malignant iff ``score >= threshold``. ``threshold`` is 0.5 by
  default; ``'youden'`` picks the score maximising sensitivity + specificity
  - 1 on the data being evaluated (optimistic on a test set: choose it on the
  validation set, read ``<prefix>/threshold`` from the log, and pass that
  number for the test run).
* AUC CI: DeLong's variance computed with the fast midrank algorithm of Sun &
  Xu (2014), normal interval clipped to [0, 1]. Proportion CIs: Wilson score
  intervals.
* Detector misses: images where the detector found no nodule
  (``<crop_dir>/<split>_missed.json``, records with ``true_label``,
  ``gt_label`` or ``pathology``) are added as predictions so they cannot
  disappear from the figures. ``missed_rule='wrong'`` (default) counts each
  as a wrong answer (score 0 for a malignant nodule, 1 for a benign one);
  ``'benign'`` reports them benign (score 0: a miss is a false negative for
  malignant nodules, a true negative for benign ones); a float gives them
  that score.
* Output: the ROC curve as ``<prefix>_roc.png`` and ``<prefix>_roc.csv``
  (threshold, fpr, tpr) in ``output_dir``; default the runner's log dir
  (found from the current MMLogger's file handler), else nothing is written.
"""
import csv
import math
import os.path as osp
from statistics import NormalDist
from typing import List, Optional, Sequence, Union

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.fileio import load
from mmengine.logging import MMLogger, print_log
from mmpretrain.registry import METRICS

from mmbus.utils.io import atomic_write

_PATHOLOGY = {'benign': 0, 'malignant': 1}


# ---------------------------------------------------------------- statistics
def midrank(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` with ties given their average rank."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind='mergesort')
    z = x[order]
    n = len(x)
    ranks = np.empty(n, dtype=np.float64)
    i = 0
    while i < n:
        j = i
        while j < n and z[j] == z[i]:
            j += 1
        ranks[i:j] = 0.5 * (i + j - 1) + 1.0
        i = j
    out = np.empty(n, dtype=np.float64)
    out[order] = ranks
    return out


def delong_auc(scores: Sequence[float], labels: Sequence[int]):
    """AUC and its DeLong variance (fast midrank algorithm, Sun & Xu 2014).

    Returns ``(auc, variance)``; ties count 1/2. Needs at least one positive
    (label 1) and one negative (label 0) sample; the variance needs two of
    each (else ``nan``).
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    pos, neg = scores[labels == 1], scores[labels == 0]
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        raise ValueError(f'AUC needs both classes, got {m} positive and {n} '
                         'negative samples')
    tx, ty = midrank(pos), midrank(neg)
    tz = midrank(np.concatenate([pos, neg]))
    auc = (tz[:m].sum() - m * (m + 1) / 2.0) / (m * n)
    v_pos = (tz[:m] - tx) / n  # P(score_neg < score_pos) per positive
    v_neg = 1.0 - (tz[m:] - ty) / m  # P(score_pos > score_neg) per negative
    if m < 2 or n < 2:
        return float(auc), float('nan')
    var = np.var(v_pos, ddof=1) / m + np.var(v_neg, ddof=1) / n
    return float(auc), float(var)


def wilson_interval(successes: int, total: int, level: float = 0.95):
    """Wilson score interval of a binomial proportion; ``(nan, nan)`` for
    ``total == 0``."""
    if total == 0:
        return float('nan'), float('nan')
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    p = successes / total
    denom = 1.0 + z * z / total
    centre = (p + z * z / (2.0 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z /
                         (4.0 * total * total)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def roc_curve(scores: Sequence[float], labels: Sequence[int]):
    """ROC points for 'malignant iff score >= t' over every distinct score
    ``t`` (descending), starting at (0, 0) with ``t = inf``.

    Returns ``(thresholds, fpr, tpr)`` arrays.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    thresholds = np.concatenate([[np.inf], np.unique(scores)[::-1]])
    n_pos, n_neg = (labels == 1).sum(), (labels == 0).sum()
    tpr = np.array([((scores >= t) & (labels == 1)).sum() / max(n_pos, 1)
                    for t in thresholds])
    fpr = np.array([((scores >= t) & (labels == 0)).sum() / max(n_neg, 1)
                    for t in thresholds])
    return thresholds, fpr, tpr


def youden_threshold(scores: Sequence[float], labels: Sequence[int]) -> float:
    """The score ``t`` maximising sensitivity + specificity - 1 for
    'malignant iff score >= t' (the largest such ``t`` on ties)."""
    thresholds, fpr, tpr = roc_curve(scores, labels)
    j = tpr - fpr
    j[0] = -np.inf  # t = inf predicts nothing malignant; not a usable cut
    return float(thresholds[int(np.argmax(j))])


def _runner_log_dir() -> Optional[str]:
    """Directory of the current MMLogger's log file (the runner's log dir),
    if any."""
    import logging
    for h in MMLogger.get_current_instance().handlers:
        if isinstance(h, logging.FileHandler):
            return osp.dirname(h.baseFilename)
    return None


# -------------------------------------------------------------------- metric
@METRICS.register_module()
class BinaryDiagnosticMetric(BaseMetric):
    """Diagnostic accuracy of a binary (benign/malignant) classifier.

    Args:
        threshold (float | str): Decision threshold on the positive-class
            probability (malignant iff score >= threshold), or ``'youden'``.
        positive_index (int): Index of the positive class in the score
            vector (1 = malignant).
        score_key (str): Data-sample field holding the class probabilities.
        ci_level (float): Confidence level of the intervals (0.95).
        missed (str | list, optional): Detector misses: a path (or list of
            paths) to ``*_missed.json`` files, or a list of image records.
        missed_rule (str | float): ``'wrong'``, ``'benign'`` or a score.
        output_dir (str, optional): Where to write the ROC PNG/CSV; default
            the runner's log dir.
        save_curve (bool): Write the ROC PNG/CSV.
        prefix (str, optional): Metric key prefix (default ``'diag'``), e.g.
            ``'teacher'`` and ``'student'`` for two entries of one evaluator.
    """
    default_prefix = 'diag'

    def __init__(self,
                 threshold: Union[float, str] = 0.5,
                 positive_index: int = 1,
                 score_key: str = 'pred_score',
                 ci_level: float = 0.95,
                 missed: Union[None, str, Sequence] = None,
                 missed_rule: Union[str, float] = 'wrong',
                 output_dir: Optional[str] = None,
                 save_curve: bool = True,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if isinstance(threshold, str):
            if threshold != 'youden':
                raise ValueError("threshold must be a float or 'youden', got "
                                 f'{threshold!r}')
        elif not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f'threshold must be in [0, 1], got {threshold}')
        if not 0 < ci_level < 1:
            raise ValueError(f'ci_level must be in (0, 1), got {ci_level}')
        if isinstance(missed_rule, str) and missed_rule not in ('wrong', 'benign'):
            raise ValueError("missed_rule must be 'wrong', 'benign' or a "
                             f'score, got {missed_rule!r}')
        self.threshold = threshold
        self.positive_index = positive_index
        self.score_key = score_key
        self.ci_level = ci_level
        self.missed_labels = self._load_missed(missed)
        self.missed_rule = missed_rule
        self.output_dir = output_dir
        self.save_curve = save_curve

    @staticmethod
    def _record_label(rec, where: str) -> int:
        for key in ('true_label', 'gt_label'):
            if rec.get(key) is not None and int(rec[key]) in (0, 1):
                return int(rec[key])
        path = rec.get('pathology')
        if path in _PATHOLOGY:
            return _PATHOLOGY[path]
        raise ValueError(f'{where}: missed record {rec.get("file_name", rec)}'
                         ' has no true_label / gt_label / pathology '
                         '(benign|malignant)')

    def _load_missed(self, missed) -> List[int]:
        if missed is None:
            return []
        sources = [missed] if isinstance(missed, str) else list(missed)
        labels = []
        for src in sources:
            if isinstance(src, str):
                if not osp.isfile(src):
                    raise FileNotFoundError(
                        f'missed-detection file {src} does not exist')
                records = load(src)
                if not isinstance(records, list):
                    raise ValueError(f'{src}: expected a list of image '
                                     'records')
                labels += [self._record_label(r, src) for r in records]
            elif isinstance(src, dict):
                labels.append(self._record_label(src, 'missed'))
            else:
                raise TypeError(f'missed entries must be paths or dicts, got '
                                f'{type(src).__name__}')
        return labels

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for ds in data_samples:
            if self.score_key not in ds:
                raise KeyError(
                    f'data sample has no {self.score_key!r}; for the student '
                    'of a SemiClassifier set predict_student_too=True')
            score = ds[self.score_key]
            label = ds['gt_label']
            label = int(label.reshape(-1)[0]) if hasattr(label, 'reshape') \
                else int(label)
            if label not in (0, 1):
                raise ValueError(
                    f'BinaryDiagnosticMetric needs gt_label 0/1, got {label} '
                    f'({ds.get("img_path", "?")}); evaluate on a labelled '
                    'split')
            self.results.append(
                (float(score[self.positive_index]), label))

    def _missed_score(self, label: int) -> float:
        if self.missed_rule == 'wrong':
            return 1.0 - label
        if self.missed_rule == 'benign':
            return 0.0
        return float(self.missed_rule)

    def compute_metrics(self, results: list) -> dict:
        scores = [s for s, _ in results]
        labels = [lab for _, lab in results]
        for lab in self.missed_labels:
            scores.append(self._missed_score(lab))
            labels.append(lab)
        scores = np.asarray(scores, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.int64)
        n_pos, n_neg = int((labels == 1).sum()), int((labels == 0).sum())
        out = dict(num_samples=float(len(labels)),
                   num_missed=float(len(self.missed_labels)))
        z = NormalDist().inv_cdf(0.5 + self.ci_level / 2.0)
        if n_pos and n_neg:
            auc, var = delong_auc(scores, labels)
            se = math.sqrt(var) if var == var else float('nan')
            out.update(auc=auc, auc_ci_low=max(0.0, auc - z * se),
                       auc_ci_high=min(1.0, auc + z * se))
            thr = youden_threshold(scores, labels) \
                if self.threshold == 'youden' else float(self.threshold)
        else:
            print_log(f'BinaryDiagnosticMetric: AUC undefined with {n_pos} '
                      f'malignant and {n_neg} benign samples', 'current')
            out.update(auc=float('nan'), auc_ci_low=float('nan'),
                       auc_ci_high=float('nan'))
            thr = 0.5 if self.threshold == 'youden' else float(self.threshold)
        pred = scores >= thr
        tp = int((pred & (labels == 1)).sum())
        tn = int((~pred & (labels == 0)).sum())
        correct = tp + tn
        for name, k, n in (('sensitivity', tp, n_pos),
                           ('specificity', tn, n_neg),
                           ('accuracy', correct, len(labels))):
            lo, hi = wilson_interval(k, n, self.ci_level)
            out[name] = k / n if n else float('nan')
            out[f'{name}_ci_low'], out[f'{name}_ci_high'] = lo, hi
        out.update(threshold=thr, tp=float(tp), fn=float(n_pos - tp),
                   tn=float(tn), fp=float(n_neg - tn))
        if self.save_curve and n_pos and n_neg:
            self._save_curve(scores, labels, out)
        return out

    def _save_curve(self, scores, labels, out) -> None:
        out_dir = self.output_dir or _runner_log_dir()
        if out_dir is None:
            return
        name = (self.prefix or self.default_prefix).replace('/', '_')
        thresholds, fpr, tpr = roc_curve(scores, labels)
        csv_path = osp.join(out_dir, f'{name}_roc.csv')
        png_path = osp.join(out_dir, f'{name}_roc.png')

        def write_csv(tmp):
            with open(tmp, 'w', newline='') as f:
                w = csv.writer(f)
                w.writerow(['threshold', 'fpr', 'tpr'])
                for t, x, y in zip(thresholds, fpr, tpr):
                    w.writerow([f'{t:.6g}', f'{x:.6g}', f'{y:.6g}'])

        def write_png(tmp):
            import matplotlib
            matplotlib.use('Agg')
            import matplotlib.pyplot as plt
            fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
            ax.plot(fpr, tpr, lw=2,
                    label=f"AUC {out['auc']:.3f} "
                    f"[{out['auc_ci_low']:.3f}, {out['auc_ci_high']:.3f}]")
            ax.plot([0, 1], [0, 1], '--', color='grey', lw=1)
            ax.plot(1 - out['specificity'], out['sensitivity'], 'o',
                    label=f"threshold {out['threshold']:.3g}")
            ax.set_xlabel('1 - specificity (false positive rate)')
            ax.set_ylabel('sensitivity (true positive rate)')
            ax.set_title(f'ROC ({name}), n={len(labels)}')
            ax.legend(loc='lower right', fontsize=8)
            fig.tight_layout()
            fig.savefig(tmp, format='png')
            plt.close(fig)

        atomic_write(csv_path, write_csv)
        atomic_write(png_path, write_png)
