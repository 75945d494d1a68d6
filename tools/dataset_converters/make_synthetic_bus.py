#!/usr/bin/env python
"""Generate a synthetic breast-ultrasound dataset in BUSI layout (seeded, fast).

Examples::

    # internal hospital A (300 images), then convert + split it
    python tools/dataset_converters/make_synthetic_bus.py data/bus_synthetic/hospital_a -n 300
    python tools/dataset_converters/bus_to_coco.py --format busi data/bus_synthetic/hospital_a \\
        --out-dir data/bus_synthetic/hospital_a
    # external hospital B (other scanner style) as an external test set, converted at once
    python tools/dataset_converters/make_synthetic_bus.py data/bus_synthetic/hospital_b -n 100 \\
        --style b --seed 1 --convert external-test

Writes ROOT/{benign,malignant[,normal]}/<P><pid>-{l,r,s}.png + _mask.png, ROOT/patients.csv,
ROOT/labels.csv, ROOT/synthetic_meta.csv (+ ROOT/annotations/ with --convert). The last stdout
line starts with "[mmbus]".
"""
import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))

from mmbus.datasets.synthetic import STYLES  # noqa: E402
from mmbus.datasets.synthetic_dataset import make_synthetic_dataset  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('out_root', help='dataset root to create (BUSI layout)')
    p.add_argument('-n', '--num-images', type=int, default=300,
                   help='benign + malignant images (default 300)')
    p.add_argument('--malignant-fraction', type=float, default=0.4)
    p.add_argument('--num-normal', type=int, default=0, help='extra normal images (no nodule)')
    p.add_argument('--style', choices=sorted(STYLES), default='a',
                   help="hospital/scanner style: 'a' internal, 'b' external")
    p.add_argument('--difficulty', type=float, default=0.5,
                   help='class overlap in [0, 1]; ideal-observer AUC ~0.998 at 0, ~0.90 at '
                        '0.5, 0.5 at 1')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--two-view-fraction', type=float, default=0.35,
                   help='fraction of patients with two views (-l/-r) of the same nodule')
    p.add_argument('--multi-nodule-prob', type=float, default=0.03)
    p.add_argument('--caliper-prob', type=float, default=0.3)
    p.add_argument('--overwrite', action='store_true',
                   help='replace an existing synthetic dataset in OUT_ROOT (its benign/, '
                        'malignant/, normal/, annotations/ and CSV files are deleted first)')
    p.add_argument('--workers', type=int, default=0,
                   help='processes (0: min(4, cpus)); output does not depend on it')
    p.add_argument('--convert', choices=('none', 'split', 'external-test'), default='none',
                   help='then run the BUSI converter into ROOT/annotations/: the 4 splits '
                        '(default ratios, --seed) or the whole set as external test.json')
    p.add_argument('--no-progress', action='store_true')
    a = p.parse_args(argv)
    bad = [f'{name} must be in [0, 1]' for name, v in (
        ('--difficulty', a.difficulty), ('--malignant-fraction', a.malignant_fraction),
        ('--two-view-fraction', a.two_view_fraction),
        ('--multi-nodule-prob', a.multi_nodule_prob), ('--caliper-prob', a.caliper_prob))
        if not 0 <= v <= 1]
    bad += [f'{name} must be >= 0' for name, v in (('--num-images', a.num_images),
                                                   ('--num-normal', a.num_normal)) if v < 0]
    if bad:   # checked before anything is deleted by --overwrite
        print('error: ' + '; '.join(bad), file=sys.stderr)
        return 2
    ours = ('benign', 'malignant', 'normal', 'annotations', 'converted_images',
            'patients.csv', 'labels.csv', 'synthetic_meta.csv')
    stale = [d for d in ours if os.path.exists(os.path.join(a.out_root, d))]
    if stale and not a.overwrite:
        print(f'error: {a.out_root} already holds {", ".join(stale)}; pass --overwrite '
              '(old images would mix with new ones) or choose another folder', file=sys.stderr)
        return 2
    for d in stale:   # only what this tool writes; anything else in the folder stays
        path = os.path.join(a.out_root, d)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    try:
        s = make_synthetic_dataset(
            a.out_root, n_images=a.num_images, malignant_fraction=a.malignant_fraction,
            n_normal=a.num_normal, style=a.style, difficulty=a.difficulty, seed=a.seed,
            two_view_fraction=a.two_view_fraction, multi_nodule_prob=a.multi_nodule_prob,
            caliper_prob=a.caliper_prob, progress=not a.no_progress,
            workers=a.workers)
    except ValueError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    print(f'[mmbus] synthetic style {s["style"]}: {s["images"]} images ({s["benign"]} benign, '
          f'{s["malignant"]} malignant, {s["normal"]} normal) of {s["patients"]} patients '
          f'written to {s["root"]} in {s["seconds"]:.1f} s ({s["images_per_s"]:.0f} img/s)')
    if a.convert != 'none':
        from mmbus.datasets.converters import convert_and_split
        convert_and_split('busi', a.out_root, a.out_root, seed=a.seed,
                          external_test=a.convert == 'external-test',
                          include_normal=a.num_normal > 0, workers=a.workers,
                          progress=not a.no_progress)
    return 0


if __name__ == '__main__':
    sys.exit(main())
