#!/usr/bin/env python
"""Export the malignancy recogniser as a portable bundle: ONNX model,
bundle.json (input contract, parity), calibration.json, MODEL_CARD.md.

    python tools/export_bundle.py configs/mmbus/mean_teacher_bus_cpu_quick.py \
        work_dirs/mean_teacher/best.pth --out-dir work_dirs/bundle \
        --calibration work_dirs/calibration.json \
        --metrics work_dirs/test_metrics.json --card-info card_info.json

    # then, with onnxruntime + numpy + OpenCV only:
    from mmbus.apis.bundle import BundleClassifier
    BundleClassifier('work_dirs/bundle').predict([crop])  # uint8 crops

CONFIG/CHECKPOINT: a SemiClassifier training run (its EMA teacher is
exported, as by tools/export_teacher.py) or a plain ImageClassifier. A
missing or corrupt input is reported naming the file (exit status 1) and no
bundle is written; so is a failed PyTorch/onnxruntime parity check.
--card-info JSON keys (all optional): name, version, description,
training_data, num_labelled, num_unlabelled, split, test_data, known_limits,
contact, license.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def main(argv=None):
    p = argparse.ArgumentParser(description='Export the recogniser bundle')
    p.add_argument('config', help='SemiClassifier or classifier config')
    p.add_argument('checkpoint', help='checkpoint of that model')
    p.add_argument('--out-dir', required=True, help='bundle folder')
    p.add_argument('--calibration', help='calibration JSON (temperature, '
                   'thresholds, fitted_on)')
    p.add_argument('--metrics', help='metrics JSON of tools/test.py '
                   '--out-metrics')
    p.add_argument('--card-info', help='JSON with the model card\'s data '
                   'description')
    args = p.parse_args(argv)
    from mmbus.apis.bundle import export_bundle
    try:
        info = export_bundle(args.config, args.checkpoint, args.out_dir,
                             calibration=args.calibration,
                             metrics=args.metrics, card_info=args.card_info,
                             log=lambda msg: print(msg, flush=True))
    except (FileNotFoundError, ValueError, KeyError, ImportError) as e:
        # CheckpointError and BundleError are ValueErrors naming the file
        sys.exit(f'error: {e}')
    print(f'parity max |diff|: {info["parity"]["max_abs_diff"]:.3g}')


if __name__ == '__main__':
    main()
