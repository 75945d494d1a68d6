#!/usr/bin/env python
"""Generate a synthetic nodule-crops dataset (seeded) in the mmbus crops-JSON format.

Example (the README's stage-2 demo, one seed)::

    python tools/dataset_converters/make_synthetic_crops.py data/bus_synthetic/crops \\
        --basic 6 --balanced-basic --extended 800 --val 200 --test 400 --difficulty 0.5 --seed 0

Writes OUT/{basic_train,extended_train,val,test}.json (+ the PNG crops in OUT/<split>/ and empty
OUT/<split>_missed.json), readable by ``BUSCropDataset`` and the ``*_bus_cpu_quick.py`` configs.
extended_train crops are unlabelled (``gt_label = -1``; their ``true_label`` is kept for the
supervised-all baseline). Refuses to write into a non-empty OUT.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))

from mmbus.datasets.synthetic_crops import make_crop_set  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('out', help='directory to create')
    p.add_argument('--basic', type=int, default=40, help='labelled basic-train crops')
    p.add_argument('--balanced-basic', action='store_true',
                   help='basic-train labels alternate benign / malignant (otherwise 40 %% malignant '
                   'at random, so a handful of labels may hold one class only)')
    p.add_argument('--extended', type=int, default=600, help='unlabelled extended-train crops')
    p.add_argument('--val', type=int, default=150)
    p.add_argument('--test', type=int, default=300)
    p.add_argument('--framing', choices=('random', 'margin', 'square'), default='random',
                   help="random: crops of random shape around the nodule; margin: the nodule's box plus "
                   '15 %% (as tools/extract_crops.py cuts real crops); square: square crops 1.3-2.6x the '
                   "nodule's size, no letterbox bars")
    p.add_argument('--gain', type=float, default=1.0,
                   help='overall brightness x a factor in [1/GAIN, GAIN] (log-uniform); 1 = off')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--difficulty', type=float, default=1.0,
                   help='spread of the shape cues: 0.5 = well separated classes, 1.0 = overlapping')
    a = p.parse_args(argv)
    for name in ('basic', 'extended', 'val', 'test'):
        if getattr(a, name) < 0:
            p.error(f'--{name} must be >= 0')
    if a.difficulty <= 0:
        p.error('--difficulty must be > 0')
    if a.gain < 1:
        p.error('--gain must be >= 1')
    if os.path.isdir(a.out) and os.listdir(a.out):
        p.error(f'{a.out} exists and is not empty; choose a new directory')
    paths = make_crop_set(a.out, dict(basic_train=a.basic, extended_train=a.extended,
                                      val=a.val, test=a.test), a.seed, a.difficulty,
                          balanced_basic=a.balanced_basic, framing=a.framing, gain=a.gain)
    for split, path in paths.items():
        print(f'{split}: {path}')
    print(f'[mmbus] wrote {sum([a.basic, a.extended, a.val, a.test])} crops to {a.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
