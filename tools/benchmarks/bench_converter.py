#!/usr/bin/env python
"""Benchmark the dataset converter (decode + mask boxes + hashes + COCO + split + JSON) and
the synthetic generator; prints images/s with ratios side by side.

    python tools/benchmarks/bench_converter.py                       # BUS-BRA if present
    python tools/benchmarks/bench_converter.py --format busi --root data/bus_synthetic/hospital_a
    python tools/benchmarks/bench_converter.py --workers 1 2 4 --synthetic-images 300

Without --root it uses BUS-BRA from $MMBUS_BUSBRA (the BUSBRA folder: Images/, Masks/, bus_data.csv)
when set, and falls back to a synthetic BUSI-layout dataset generated in a temporary folder.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))

from mmbus.datasets.converters import convert_and_split  # noqa: E402
from mmbus.datasets.synthetic_dataset import make_synthetic_dataset  # noqa: E402

DEFAULT_BUSBRA = os.environ.get('MMBUS_BUSBRA', '')


def table(title, rows):
    """rows: (config, images, seconds); ratios relative to the first row."""
    print(f'\n{title}')
    print(f'| {"config":<24} | {"images":>6} | {"seconds":>7} | {"images/s":>8} | '
          f'{"vs first":>8} |')
    print('|' + '-' * 26 + '|' + '-' * 8 + '|' + '-' * 9 + '|' + '-' * 10 + '|' + '-' * 10 + '|')
    base = rows[0][1] / rows[0][2]
    for cfg, n, secs in rows:
        rate = n / secs
        print(f'| {cfg:<24} | {n:>6} | {secs:>7.2f} | {rate:>8.1f} | {rate / base:>7.2f}x |')


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--root', default=None)
    p.add_argument('--format', default=None, help='busi|busbra|generic|boxes-csv')
    p.add_argument('--workers', type=int, nargs='+', default=[1, 2])
    p.add_argument('--synthetic-images', type=int, default=200,
                   help='images for the generator benchmark (and the fallback dataset)')
    p.add_argument('--repeat', type=int, default=1, help='runs per config (best is kept)')
    p.add_argument('--keep', action='store_true', help='keep the temporary outputs')
    a = p.parse_args()

    tmp = tempfile.mkdtemp(prefix='mmbus_bench_')
    gen_rows = []
    for w in a.workers:
        best = None
        for r in range(a.repeat):
            out = os.path.join(tmp, f'syn_w{w}_{r}')
            t0 = time.perf_counter()
            s = make_synthetic_dataset(out, n_images=a.synthetic_images, workers=w,
                                       progress=False)
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
        gen_rows.append((f'synthetic, workers={w}', s['images'], best))

    root, fmt = a.root, a.format
    if root is None:
        if os.path.isfile(os.path.join(DEFAULT_BUSBRA, 'bus_data.csv')):
            root, fmt = DEFAULT_BUSBRA, 'busbra'
        else:
            root, fmt = os.path.join(tmp, f'syn_w{a.workers[0]}_0'), 'busi'
    fmt = fmt or 'busi'
    conv_rows = []
    for w in a.workers:
        best = None
        for r in range(a.repeat):
            out = os.path.join(tmp, f'conv_w{w}_{r}')
            t0 = time.perf_counter()
            s = convert_and_split(fmt, root, out, workers=w, verbose=False, progress=False)
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
        conv_rows.append((f'{fmt}, workers={w}', s['conversion']['images_written'], best))

    print(f'cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f} (shared machines '
          'inflate times)')
    table(f'Converter: {root} (decode, mask boxes, dHash, COCO, split, atomic JSON)', conv_rows)
    table('Synthetic generator (render + PNG write)', gen_rows)
    if a.keep:
        print(f'\n(temporary outputs kept in {tmp})')
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
