#!/usr/bin/env python
"""Export the teacher of a semi-supervised detector checkpoint (SoftTeacher /
GatedSoftTeacher) as a plain detector checkpoint, used with the supervised
detector's config (e.g. for crop extraction).

    python tools/export_teacher_detector.py \
        work_dirs/soft_teacher_faster_rcnn_vgg16_bus/iter_20000.pth \
        work_dirs/soft_teacher_faster_rcnn_vgg16_bus/teacher.pth

    # then, e.g.:
    python tools/extract_crops.py DATA_ROOT --ann-dir DATA_ROOT/annotations \
        --det-config configs/mmbus/faster_rcnn_vgg16_bus.py \
        --det-checkpoint work_dirs/soft_teacher_faster_rcnn_vgg16_bus/teacher.pth \
        --out-dir CROPS

The checkpoint is read weights-only; a missing, truncated or crafted file, or
one that is not a SoftTeacher checkpoint (no ``teacher.*`` weights of a
detector), is refused with a message naming it (exit status 1) and nothing is
written. The output is written atomically.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmbus.apis.export import export_teacher_detector  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(
        description='Export the teacher of a SoftTeacher detector checkpoint '
        'as a plain detector checkpoint')
    p.add_argument('checkpoint', help='SoftTeacher / GatedSoftTeacher checkpoint')
    p.add_argument('out', help='output checkpoint (.pth)')
    args = p.parse_args(argv)
    try:
        out = export_teacher_detector(args.checkpoint, args.out)
    except (FileNotFoundError, ValueError, KeyError) as e:
        sys.exit(f'error: {e}')
    print(f'teacher detector checkpoint: {out}')


if __name__ == '__main__':
    main()
