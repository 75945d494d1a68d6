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
a nodule gets status "no_nodule". The number of failed images is printed; when
every image failed the exit status is 1 (the results are written all the
same). Annotated images are written as each image
is done, every file atomically; an interrupted run (Ctrl-C, SIGTERM) still
writes results.json / results.csv for the images finished (exit status 130).
Checkpoints are loaded weights-only and checked against their configs: a
crafted file, a truncated file or a checkpoint of the other model is refused
with a message naming the files (exit status 1).

With --cam, the classifier's Grad-CAM map of the malignant class (where in the
crop the evidence for "malignant" lies) is written over each nodule's crop to
<out-dir>/cam/<image stem>_nodule<k>.png (k: the nodule's index in the
results), and results.json gives each nodule's file under "cam". This needs
the grad-cam package (see mmbus/apis/explain.py); a map that fails is
reported by image and the batch goes on.
"""
import argparse
import os.path as osp
import signal
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmbus.apis.inference import (BUSInferencer, annotated_name,  # noqa
                                  save_one_annotated, write_results)


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
    p.add_argument('--cam', action='store_true',
                   help='also write a class-activation map (Grad-CAM, '
                   'malignant class) over each nodule crop to <out-dir>/cam/')
    p.add_argument('--device', default='cpu')
    return p.parse_args(argv)


def save_cams(inferencer, result, cam_dir, used):
    """Overlay of the malignant-class map on each nodule's crop (the crop
    the classifier saw: ``crop_bbox`` of the source image), written
    atomically; the path goes into the nodule's record as ``cam``."""
    import cv2

    from mmbus.apis.crop_extraction import read_image
    from mmbus.apis.explain import cam_for_crops, overlay
    from mmbus.utils.io import atomic_imwrite, make_dirs
    img = read_image(result['image'])
    crops = [img[y1:y2, x1:x2]
             for x1, y1, x2, y2 in (n['crop_bbox'] for n in result['nodules'])]
    cams = cam_for_crops(inferencer.classifier.model, crops, target_class=1)
    make_dirs(cam_dir)
    stem = osp.splitext(annotated_name(result['image'], used))[0]
    for k, (n, crop, cam) in enumerate(zip(result['nodules'], crops, cams)):
        path = osp.join(cam_dir, f'{stem}_nodule{k}.png')
        atomic_imwrite(cv2.cvtColor(overlay(crop, cam), cv2.COLOR_RGB2BGR),
                       path)
        n['cam'] = path


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
    cam_dir, cam_used = osp.join(args.out_dir, 'cam'), set()
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
            if args.cam and r['status'] == 'ok':
                try:
                    save_cams(inferencer, r, cam_dir, cam_used)
                except Exception as e:  # a map must not end the batch
                    print(f"[cam error] {r['image']}: {type(e).__name__}: "
                          f'{e}')
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
    if n_err == len(results):  # nothing succeeded: a failed run
        sys.exit(f'error: all {n_err} images failed (see the [error] '
                 'lines above)')
    if n_err:
        print(f'{n_err} of {len(results)} images failed', file=sys.stderr)


if __name__ == '__main__':
    main()
