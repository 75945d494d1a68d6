#!/usr/bin/env python
"""Split an existing COCO file into basic-train / extended-train / val / test (leakage-safe).

Use it to re-split with another seed or other sizes without converting again, or to split a
COCO file from elsewhere whose images carry "pathology" and "patient_id"::

    python tools/dataset_converters/split_coco.py OUT/annotations/all.json --out-dir OUT2 --seed 1
    python tools/dataset_converters/split_coco.py other.json --root /data/other --out-dir OUT \\
        --split counts --counts basic_train=800,val=200,test=1350,extended_train=rest \\
        --balanced basic_train,val

--root (the dataset root the file_name paths are relative to) lets it read the images: it hashes
those whose entries lack "dhash"/"pixel_sha1" and runs the re-crop guard (without --root only
exact and dHash duplicates of hashed images are found). Writes the same files as
bus_to_coco.py (annotations/{all,basic_train,extended_train,val,test}.json, split_summary.{md,
json}, duplicates.json). Exit 1 when images lack pathology/patient_id, 2 for bad arguments.
"""
import argparse
import os
import sys

for _var in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ.setdefault(_var, '1')   # one BLAS thread per worker process

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))

from mmbus.datasets.converters import (ConversionError, parse_split_spec,  # noqa: E402
                                       split_coco_file)
from mmbus.datasets.converters.cli_options import add_guard_args  # noqa: E402
from mmbus.datasets.converters.splits import DEFAULT_RATIOS  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('ann_file', help='COCO JSON to split (e.g. OUT/annotations/all.json)')
    p.add_argument('--out-dir', required=True)
    p.add_argument('--root', default=None, help='dataset root, to hash images lacking dhash')
    p.add_argument('--split', choices=('ratios', 'counts'), default='ratios')
    p.add_argument('--ratios', default=','.join(f'{k}={v}' for k, v in DEFAULT_RATIOS.items()))
    p.add_argument('--counts', default=None)
    p.add_argument('--balanced', default='')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--external-test', action='store_true')
    p.add_argument('--test-fold', type=int, default=None)
    p.add_argument('--fold-key', default='fold5')
    add_guard_args(p.add_argument_group('leakage guard'))
    p.add_argument('--workers', type=int, default=0, help='processes (0: min(4, cpus))')
    a = p.parse_args(argv)
    try:
        if a.split == 'counts':
            if not a.counts:
                raise ValueError('--split counts needs --counts')
            sizes = dict(counts=parse_split_spec(a.counts))
        else:
            sizes = dict(ratios=parse_split_spec(a.ratios))
        split_coco_file(a.ann_file, a.out_dir, root=a.root, seed=a.seed,
                        balanced=[s.strip() for s in a.balanced.split(',') if s.strip()],
                        external_test=a.external_test, test_fold=a.test_fold,
                        fold_key=a.fold_key, dup_threshold=a.dup_threshold,
                        recrop_guard=not a.no_recrop_guard, min_speckle=a.recrop_min_speckle,
                        label_conflicts=a.label_conflicts, workers=a.workers, **sizes)
    except ConversionError as exc:
        print(str(exc).replace('nothing was written', 'nothing was written (split)'),
              file=sys.stderr)
        print(f'[mmbus] split: FAILED with {len(exc.problems.errors())} problem(s)',
              file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
