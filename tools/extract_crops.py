#!/usr/bin/env python
"""Crop nodules from COCO splits into the mmpretrain crops dataset.

Ground-truth boxes (no detector given)::

    python tools/extract_crops.py data/bus_synthetic/hospital_a \
        --ann-dir data/bus_synthetic/hospital_a/annotations \
        --out-dir data/bus_synthetic/crops_gt

Trained detector (boxes for extended_train/test; basic_train and val keep
their ground-truth boxes unless ``--gt-splits`` says otherwise), plus an
external test hospital::

    python tools/extract_crops.py data/bus_synthetic/hospital_a \
        --ann-dir data/bus_synthetic/hospital_a/annotations \
        --det-config configs/mmbus/faster_rcnn_vgg16_bus_cpu_quick.py \
        --det-checkpoint work_dirs/det/epoch_1.pth \
        --external-ann-file data/bus_synthetic/hospital_b/annotations/test.json \
        --external-data-root data/bus_synthetic/hospital_b \
        --out-dir data/bus_synthetic/crops
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmbus.apis.crop_extraction import extract_crops, load_detector  # noqa


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    p.add_argument('data_root', help='dataset root the COCO file_name entries '
                   'are relative to')
    p.add_argument('--ann-dir', help='directory with <split>.json files '
                   '(default: DATA_ROOT/annotations)')
    p.add_argument('--splits', nargs='+',
                   default=['basic_train', 'extended_train', 'val', 'test'],
                   help='split names to crop (files <ann-dir>/<split>.json)')
    p.add_argument('--out-dir', required=True, help='crops dataset root')
    p.add_argument('--det-config', help='mmdet config of a trained detector')
    p.add_argument('--det-checkpoint', help='its checkpoint')
    p.add_argument('--gt-splits', nargs='*', default=['basic_train', 'val'],
                   help='splits cropped with ground-truth boxes even when a '
                   'detector is given (default: basic_train val, the fully '
                   'annotated sets); pass no value to use the detector '
                   'everywhere')
    p.add_argument('--score-thr', type=float, default=0.05,
                   help='minimum detection score (default 0.05)')
    p.add_argument('--all-boxes', action='store_true',
                   help='keep every box above --score-thr instead of only the '
                   'top-scoring box per image')
    p.add_argument('--margin', type=float, default=10.,
                   help='pixels of tissue kept around each box (paper: ~10)')
    p.add_argument('--relative-margin', type=float, default=0.,
                   help='extra margin as a fraction of the longer box side')
    p.add_argument('--external-ann-file', help='COCO file of an external test '
                   'set, written as split "test_external"')
    p.add_argument('--external-data-root', help='its dataset root (default: '
                   'two levels above --external-ann-file)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--no-progress', action='store_true')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    ann_dir = args.ann_dir or osp.join(args.data_root, 'annotations')
    splits = {
        s: (osp.join(ann_dir, f'{s}.json'), args.data_root)
        for s in args.splits
    }
    if args.external_ann_file:
        ext_root = args.external_data_root or osp.dirname(
            osp.dirname(osp.abspath(args.external_ann_file)))
        splits['test_external'] = (args.external_ann_file, ext_root)
    for name, (ann, _) in splits.items():
        if not osp.isfile(ann):
            sys.exit(f'error: annotation file for split "{name}" not found: '
                     f'{ann}')
    detector = None
    if args.det_config or args.det_checkpoint:
        if not (args.det_config and args.det_checkpoint):
            sys.exit('error: --det-config and --det-checkpoint go together')
        try:
            detector = load_detector(args.det_config, args.det_checkpoint,
                                     args.device)
        except (FileNotFoundError, ValueError) as e:  # CheckpointError too
            sys.exit(f'error: {e}')
    try:
        summaries = extract_crops(
            splits,
            args.out_dir,
            detector=detector,
            gt_splits=args.gt_splits,
            score_thr=args.score_thr,
            keep='all' if args.all_boxes else 'top',
            margin=args.margin,
            relative_margin=args.relative_margin,
            show_progress=not args.no_progress)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    print(f"{'split':<16}{'images':>8}{'crops':>8}{'labelled':>10}"
          f"{'missed':>8}{'normal':>8}")
    for s in summaries:
        print(f"{s['split']:<16}{s['images']:>8}{s['crops']:>8}"
              f"{s['labelled']:>10}{s['missed']:>8}{s['skipped_normal']:>8}")
    print(f'crops dataset written to {osp.abspath(args.out_dir)}')


if __name__ == '__main__':
    main()
