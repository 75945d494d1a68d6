"""Fit a calibration file (temperature and operating thresholds) on a classifier's validation predictions.

    python tools/test.py CONFIG CKPT --out val_predictions.pkl      # on the validation split
    python tools/analysis/fit_calibration.py val_predictions.pkl [--missed val_missed.json] \\
        --out calibration.json

The temperature is fitted on the classifier's predictions only (a detector miss has no classifier
probability). The thresholds (sensitivity 0.95 and 0.90, Youden) are chosen on the *calibrated* scores
with the misses of MISSED_JSON added as wrong answers (score 0 for a malignant nodule, 1 for a benign
one, as BinaryDiagnosticMetric's default), so the sensitivity targets count every malignant nodule.
Writes OUT (format in mmbus/evaluation/calibration.py) and OUT's stem + '_reliability.png' beside it.
Pass OUT to BinaryDiagnosticMetric(calibration=...) for the test run.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmbus.evaluation.calibration import write_calibration  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('predictions', help='validation predictions (.pkl) of tools/test.py --out')
    p.add_argument('--missed', help='detector misses of the same split (<crop_dir>/<split>_missed.json)')
    p.add_argument('--out', required=True, help='calibration file to write (.json)')
    p.add_argument('--bins', type=int, default=10, help='equal-mass bins of the ECE / reliability diagram')
    args = p.parse_args(argv)
    if not args.out.endswith('.json'):
        sys.exit(f'error: --out {args.out}: the calibration file must be a .json file')
    try:
        fields, ece_raw, ece_cal = write_calibration(args.predictions, args.out, args.missed, args.bins)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    png = osp.splitext(args.out)[0] + '_reliability.png'
    thr = ', '.join(f'{k} {v:.4g}' for k, v in fields['thresholds'].items())
    print(f"[mmbus] temperature {fields['temperature']:.4g} (ECE {ece_raw:.4f} -> {ece_cal:.4f}, "
          f"n={fields['n']}, malignant={fields['malignant']}); thresholds {thr}")
    print(f'[mmbus] wrote {args.out} and {png}')
    return fields


if __name__ == '__main__':
    main()
