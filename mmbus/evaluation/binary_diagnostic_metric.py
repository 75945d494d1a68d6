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
* Calibration: ``<prefix>/ece`` (equal-mass bins) and ``<prefix>/brier`` of
  the scores, always. With ``calibration`` (a file of
  ``tools/analysis/fit_calibration.py`` or its dict, see
  :mod:`mmbus.evaluation.calibration`) the classifier's scores are
  temperature-scaled first (misses keep their ``missed_rule`` score), so
  every figure, ``threshold`` included, is on the calibrated scale; and each
  threshold ``<point>`` of the file adds ``<prefix>/<point>/sensitivity``,
  ``/specificity``, ``/ppv``, ``/npv``, each with ``_ci_low`` / ``_ci_high``
  (e.g. ``diag/sensitivity_0.95/ppv_ci_low``).
* Output: the ROC curve as ``<prefix>_roc.png`` and ``<prefix>_roc.csv``
  (threshold, fpr, tpr) and the reliability diagram (raw and, with a
  calibration, calibrated scores) as ``<prefix>_reliability.png`` in
  ``output_dir``; default the runner's log dir (found from the current
  MMLogger's file handler), else nothing is written.
"""
import csv
import math
import os.path as osp
from statistics import NormalDist
from typing import Optional, Sequence, Union

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger, print_log
from mmpretrain.registry import METRICS

from mmbus.evaluation.calibration import (apply_temperature, brier_score, expected_calibration_error,
                                          load_calibration, plot_reliability)
# the statistics live in modules importable without mmengine (delong, operating_points); the metric's own
# namespace offers them too, beside the metric that uses them
from mmbus.evaluation.delong import delong_auc, midrank  # noqa: F401
from mmbus.evaluation.operating_points import (evaluate_at, roc_curve, wilson_interval,  # noqa: F401
                                               youden_threshold)
from mmbus.evaluation.missed import check_missed_rule, missed_score, read_missed
from mmbus.utils.io import atomic_write


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
        calibration (str | dict, optional): Calibration file (or its dict):
            temperature applied to the scores, thresholds reported as
            operating points.
        ece_bins (int): Equal-mass bins of the ECE and reliability diagram.
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
                 prefix: Optional[str] = None,
                 calibration: Union[None, str, dict] = None,
                 ece_bins: int = 10) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if isinstance(threshold, str):
            if threshold != 'youden':
                raise ValueError("threshold must be a float or 'youden', got "
                                 f'{threshold!r}')
        elif not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f'threshold must be in [0, 1], got {threshold}')
        if not 0 < ci_level < 1:
            raise ValueError(f'ci_level must be in (0, 1), got {ci_level}')
        check_missed_rule(missed_rule)
        self.threshold = threshold
        self.positive_index = positive_index
        self.score_key = score_key
        self.ci_level = ci_level
        self.missed_labels = [lab for lab, _ in read_missed(missed)]
        self.missed_rule = missed_rule
        self.output_dir = output_dir
        self.save_curve = save_curve
        if int(ece_bins) != ece_bins or ece_bins < 1:
            raise ValueError(f'ece_bins must be a positive integer, got {ece_bins}')
        self.ece_bins = int(ece_bins)
        # loaded now so that a missing or malformed file fails before any evaluation
        self.calibration = None if calibration is None else load_calibration(calibration)

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

    def samples(self, results: list):
        """``(scores, labels, raw)`` every figure is computed from: the predictions' scores (temperature-scaled
        when a calibration is given; ``raw`` without it) followed by the detector misses, scored by
        ``missed_rule``."""
        raw = np.asarray([s for s, _ in results], dtype=np.float64)
        labels = [lab for _, lab in results]
        # the temperature applies to the classifier's probabilities; a miss has none (its score is
        # missed_rule's)
        calibrated = raw if self.calibration is None else apply_temperature(
            raw, self.calibration['temperature'])
        missed = [missed_score(lab, self.missed_rule) for lab in self.missed_labels]
        labels = np.asarray(labels + list(self.missed_labels), dtype=np.int64)
        return np.concatenate([calibrated, missed]), labels, np.concatenate([raw, missed])

    def compute_metrics(self, results: list) -> dict:
        scores, labels, raw = self.samples(results)
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
        # added after the existing keys, which pick_metric (the first key
        # ending in /<name>) must find first. A float missed_rule outside
        # [0, 1] is a score but no probability: no ECE / Brier then.
        is_prob = len(labels) > 0 and scores.min() >= 0 and scores.max() <= 1
        if is_prob:
            out.update(ece=expected_calibration_error(scores, labels,
                                                      self.ece_bins),
                       brier=brier_score(scores, labels))
            if self.calibration is not None:  # side by side: before the temperature
                out.update(ece_raw=expected_calibration_error(raw, labels, self.ece_bins),
                           brier_raw=brier_score(raw, labels),
                           temperature=float(self.calibration['temperature']))
        else:
            out.update(ece=float('nan'), brier=float('nan'))
        for point, t in (self.calibration or {}).get('thresholds', {}).items():
            fig = evaluate_at(scores, labels, t, self.ci_level)
            for name in ('sensitivity', 'specificity', 'ppv', 'npv'):
                for suffix in ('', '_ci_low', '_ci_high'):
                    out[f'{point}/{name}{suffix}'] = fig[name + suffix]
        if self.save_curve and n_pos and n_neg:
            self._save_curve(scores, labels, out, raw if is_prob else None)
        return out

    def _save_curve(self, scores, labels, out, raw) -> None:
        """ROC PNG/CSV, and the reliability PNG of ``raw`` (scores before
        calibration; ``None``: not probabilities, no diagram) and ``scores``."""
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
        if raw is None:
            return
        if self.calibration is None:
            plot_reliability(osp.join(out_dir, f'{name}_reliability.png'),
                             scores, labels, n_bins=self.ece_bins,
                             title=f'reliability ({name}), n={len(labels)}')
        else:
            plot_reliability(
                osp.join(out_dir, f'{name}_reliability.png'), raw, labels,
                calibrated=scores, n_bins=self.ece_bins,
                title=f'reliability ({name}), n={len(labels)}, '
                f"T={self.calibration['temperature']:.3g}")
