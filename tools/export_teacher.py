#!/usr/bin/env python
"""Export the mean teacher of a SemiClassifier checkpoint as a plain mmpretrain
ImageClassifier (checkpoint + config) for stock mmpretrain inference.

    python tools/export_teacher.py configs/mmbus/mean_teacher_bus_cpu_quick.py \
        work_dirs/mean_teacher/iter_400.pth --out-dir work_dirs/export

    # then, with stock mmpretrain:
    from mmpretrain.apis import ImageClassificationInferencer
    ImageClassificationInferencer('work_dirs/export/teacher_config.py',
                                  pretrained='work_dirs/export/teacher.pth')

The checkpoint is read weights-only and must belong to the config's model: a
crafted file, a truncated one or a detector checkpoint is refused with a
message naming the files (exit status 1) and nothing is written.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmbus.apis.export import export_teacher  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description='Export the mean teacher')
    p.add_argument('config', help='SemiClassifier training config')
    p.add_argument('checkpoint', help='checkpoint of that training run')
    p.add_argument('--out-dir', required=True)
    p.add_argument('--name', default='teacher',
                   help='output file stem (default: teacher)')
    args = p.parse_args(argv)
    try:
        ckpt, cfg = export_teacher(args.config, args.checkpoint, args.out_dir,
                                   args.name)
    except (FileNotFoundError, ValueError, KeyError) as e:
        sys.exit(f'error: {e}')
    print(f'teacher checkpoint: {ckpt}\nteacher config:     {cfg}')


if __name__ == '__main__':
    main()
