#!/usr/bin/env python
"""Two-stage inference on image files or folders: nodule box, detection score,
malignancy probability and label per nodule -> results.json, results.csv and
annotated images.

    python tools/infer.py IMAGE_OR_DIR [...] \
        --det-config configs/mmbus/faster_rcnn_vgg16_bus_cpu_quick.py \
        --det-checkpoint work_dirs/pipeline/detector/iter_300.pth \
        --cls-config work_dirs/pipeline/export/teacher_config.py \
        --cls-checkpoint work_dirs/pipeline/export/teacher.pth \
        --out-dir outputs/infer

A missing, empty or unreadable image, and an image either model fails on,
is reported by name (status "error") and the batch goes on; an image without
a nodule gets status "no_nodule". Annotated images are written as each image
is done, every file atomically; an interrupted run (Ctrl-C, SIGTERM) still
writes results.json / results.csv for the images finished (exit status 130).
Checkpoints are loaded weights-only and checked against their configs: a
crafted file, a truncated file or a checkpoint of the other model is refused
with a message naming the files (exit status 1).
"""
import argparse
import os.path as osp
import signal
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmbus.apis.inference import (BUSInferencer, save_one_annotated,  # noqa
                                  write_results)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Two-stage nodule detection + '
                                'malignancy classification')
    p.add_argument('inputs', nargs='+', help='image files and/or folders')
    p.add_argument('--det-config', required=True)
    p.add_argument('--det-checkpoint', required=True)
    p.add_argument('--cls-config', required=True,
                   help='SemiClassifier config (teacher is used) or a plain '
                   'ImageClassifier config (e.g. exported teacher)')
    p.add_argument('--cls-checkpoint', required=True)
    p.add_argument('--out-dir', default='outputs/infer')
    p.add_argument('--score-thr', type=float, default=0.05)
    p.add_argument('--all-boxes', action='store_true',
                   help='report every box above --score-thr (default: the '
                   'top box only, one nodule per image as in the paper)')
    p.add_argument('--margin', type=float, default=10.,
                   help='pixels of tissue kept around the box (default 10)')
    p.add_argument('--relative-margin', type=float, default=0.)
    p.add_argument('--malignancy-thr', type=float, default=0.5)
    p.add_argument('--no-draw', action='store_true',
                   help='do not write annotated images')
    p.add_argument('--device', default='cpu')
    return p.parse_args(argv)


def _terminate(signum, frame):
    raise KeyboardInterrupt(f'signal {signum}')


def main(argv=None):
    args = parse_args(argv)
    try:
        inferencer = BUSInferencer(
            args.det_config, args.det_checkpoint, args.cls_config,
            args.cls_checkpoint, device=args.device,
            score_thr=args.score_thr,
            keep='all' if args.all_boxes else 'top', margin=args.margin,
            relative_margin=args.relative_margin,
            malignancy_thr=args.malignancy_thr)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    vis_dir, used = osp.join(args.out_dir, 'vis'), set()
    results, interrupted = [], False
    try:  # SIGTERM ends the loop like Ctrl-C (main thread only)
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:
        previous = None
    try:
        for r in inferencer.iter_results(args.inputs, show_progress=True):
            results.append(r)
            if not args.no_draw and r['status'] != 'error':
                try:
                    save_one_annotated(r, vis_dir, used)
                except Exception as e:
                    print(f"[draw error] {r['image']}: {e}")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if not results:
        if interrupted:
            sys.exit(130)
        sys.exit(f'error: no images found in {args.inputs}')
    paths = write_results(results, args.out_dir)
    for r in results:
        if r['status'] == 'error':
            print(f"[error] {r['image']}: {r['error']}")
        elif r['status'] == 'no_nodule':
            print(f"[no nodule] {r['image']}")
        else:
            for n in r['nodules']:
                print(f"{r['image']}: box={n['bbox']} det={n['det_score']:.3f}"
                      f" p(malignant)={n['malignancy_prob']:.3f} "
                      f"-> {n['label']}")
    n_err = sum(r['status'] == 'error' for r in results)
    n_none = sum(r['status'] == 'no_nodule' for r in results)
    print(f'{len(results)} images: {len(results) - n_err - n_none} with a '
          f'nodule, {n_none} without, {n_err} with an error. Results: '
          f"{paths['json']}, {paths['csv']}")
    if interrupted:
        print(f'interrupted: the results hold the {len(results)} images '
              'finished before the interruption', file=sys.stderr)
        sys.exit(130)


if __name__ == '__main__':
    main()
