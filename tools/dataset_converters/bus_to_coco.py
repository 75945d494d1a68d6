#!/usr/bin/env python
"""Convert a breast-ultrasound dataset to COCO JSON and split it leakage-safely.

Examples::

    # BUSI layout (also our synthetic data), default split 0.12/0.65/0.03/0.20, seed 0
    python tools/dataset_converters/bus_to_coco.py --format busi data/bus_synthetic/hospital_a \\
        --out-dir data/bus_synthetic/hospital_a
    # BUS-BRA, paper-like counts, balanced basic-train/validation
    python tools/dataset_converters/bus_to_coco.py --format busbra /data/BUSBRA --out-dir out \\
        --split counts --counts basic_train=400,val=100,test=375,extended_train=rest \\
        --balanced basic_train,val
    # a whole second hospital as external test set
    python tools/dataset_converters/bus_to_coco.py --format busi hospital_b --out-dir hospital_b \\
        --external-test

Writes OUT/annotations/{all,basic_train,extended_train,val,test}.json, split_summary.{md,json},
duplicates.json, conversion_report.json (external test: test.json + summaries). Exit status 1
when the strict conversion found problems (all are listed on stderr; files already in
OUT/annotations are left as they were), 2 for bad arguments. The last stdout line is a
one-line summary starting with "[mmbus]".

Leakage guard: exact copies, whole-image look-alikes (dHash) and re-cropped copies (another
zoom or offset, rescaled, other overlays; found from their speckle) form groups that always
land in one split; see docs/converter.md.
"""
import argparse
import os
import sys

# the converter runs its own worker processes: one BLAS thread each (a multi-threaded BLAS
# fighting the workers for the cores makes the re-crop search several times slower)
for _var in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ.setdefault(_var, '1')

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))

from mmbus.datasets.converters import (ConversionError, FORMATS,  # noqa: E402
                                       convert_and_split, parse_split_spec)
from mmbus.datasets.converters.cli_options import FORMAT_OPTIONS, add_guard_args  # noqa: E402
from mmbus.datasets.converters.masks import DEFAULT_MIN_REGION_AREA  # noqa: E402
from mmbus.datasets.converters.splits import DEFAULT_RATIOS  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('root', help='dataset root; COCO file_name paths are relative to it')
    p.add_argument('--format', required=True, choices=FORMATS)
    p.add_argument('--out-dir', required=True, help='annotations go to OUT_DIR/annotations/')
    p.add_argument('--lenient', action='store_true',
                   help='skip faulty images and report them (default: strict, exit 1 listing '
                        'every problem, write nothing)')
    p.add_argument('--one-box-per-region', action='store_true',
                   help='one box per connected mask region instead of one per mask file')
    p.add_argument('--min-region-area', type=int, default=DEFAULT_MIN_REGION_AREA,
                   help='mask regions smaller than this (pixels) are specks and left out '
                        f'(default {DEFAULT_MIN_REGION_AREA}; 1 keeps every pixel)')
    p.add_argument('--include-normal', action='store_true',
                   help='keep normal images (no boxes); default: exclude them')
    p.add_argument('--source', default=None, help='dataset/hospital name stored per image '
                                                  '(default: root folder name)')
    g = p.add_argument_group('splitting')
    g.add_argument('--split', choices=('ratios', 'counts', 'none'), default='ratios',
                   help='split by ratios (default), by counts, or write all.json only')
    g.add_argument('--ratios', default=','.join(f'{k}={v}' for k, v in DEFAULT_RATIOS.items()),
                   help='e.g. basic_train=0.12,extended_train=0.65,val=0.03,test=0.2')
    g.add_argument('--counts', default=None,
                   help='e.g. basic_train=800,val=200,test=1350,extended_train=rest')
    g.add_argument('--balanced', default='',
                   help='comma list of splits with equal benign/malignant counts '
                        '(paper: basic_train,val)')
    g.add_argument('--seed', type=int, default=0)
    g.add_argument('--external-test', action='store_true',
                   help='the whole dataset becomes annotations/test.json')
    g.add_argument('--test-fold', type=int, default=None,
                   help="use the dataset's own CV folds (BUS-BRA kFold): this fold is the test "
                        'set, the other splits come from the rest by --ratios')
    g.add_argument('--fold-key', default='fold5', choices=('fold5', 'fold10'),
                   help='which BUS-BRA fold file --test-fold refers to')
    g.add_argument('--where', action='append', default=[], metavar='KEY=REGEX',
                   help='keep only images whose KEY matches REGEX (repeatable), e.g. '
                        '"device=Toshiba|U-Systems" for a scanner held out as an external test set')
    g.add_argument('--where-not', action='append', default=[], metavar='KEY=REGEX',
                   help='leave out images whose KEY matches REGEX (repeatable)')
    add_guard_args(p.add_argument_group('leakage guard'))
    f = p.add_argument_group('format options (generic / boxes-csv / busbra)')
    f.add_argument('--images', default=None, help='image folder relative to root '
                   '(generic: images, boxes-csv: ., busbra: Images)')
    f.add_argument('--masks', default=None, help='mask folder relative to root (generic: masks, '
                   'busbra: Masks)')
    f.add_argument('--labels', default=None, help='generic: labels CSV (image,pathology[,patient])'
                   ' relative to root, default labels.csv')
    f.add_argument('--mask-pattern', default=None,
                   help='generic: glob of an image\'s masks in the mask folder, {stem} = image '
                        'name without extension, default "{stem}_mask*.png"')
    f.add_argument('--boxes', default=None, help='boxes-csv: CSV (image,x1,y1,x2,y2,pathology'
                   '[,patient]) relative to root, default boxes.csv')
    p.add_argument('--workers', type=int, default=0, help='processes (0: min(4, cpus))')
    p.add_argument('--no-progress', action='store_true')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    allowed = FORMAT_OPTIONS[args.format]
    fopts = {}
    for k in sorted({k for ks in FORMAT_OPTIONS.values() for k in ks}):
        v = getattr(args, k)
        if v is not None:
            if k not in allowed:
                print(f'error: --{k.replace("_", "-")} does not apply to --format {args.format}',
                      file=sys.stderr)
                return 2
            fopts[k] = v
    ratios = counts = None
    try:
        if args.split == 'counts':
            if not args.counts:
                raise ValueError('--split counts needs --counts')
            counts = parse_split_spec(args.counts)
        elif args.split == 'ratios':
            ratios = parse_split_spec(args.ratios)
        balanced = [s.strip() for s in args.balanced.split(',') if s.strip()]
        convert_and_split(
            args.format, args.root, args.out_dir, split=args.split != 'none', ratios=ratios,
            counts=counts, seed=args.seed, balanced=balanced, external_test=args.external_test,
            test_fold=args.test_fold, fold_key=args.fold_key,
            dup_threshold=args.dup_threshold, recrop_guard=not args.no_recrop_guard,
            min_speckle=args.recrop_min_speckle, label_conflicts=args.label_conflicts,
            lenient=args.lenient,
            one_box_per_region=args.one_box_per_region, min_region_area=args.min_region_area,
            include_normal=args.include_normal, source=args.source, workers=args.workers,
            where=args.where, where_not=args.where_not,
            progress=not args.no_progress, format_options=fopts)
    except ConversionError as exc:
        print(str(exc), file=sys.stderr)
        warn = exc.problems.of_level('warning')
        if warn:
            print('warnings:\n' + '\n'.join(f'  {w}' for w in warn), file=sys.stderr)
        kept = f'; the files already in {exc.kept} were left as they were' if exc.kept else ''
        print(f'[mmbus] {args.format}: FAILED with {len(exc.problems.errors())} problem(s); '
              f'nothing written{kept}', file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
