#!/usr/bin/env python
"""Benchmark the dataset converter (decode + mask boxes + hashes + COCO + split + JSON) with and
without the re-crop guard, and the synthetic generator; prints images/s side by side.

    python tools/benchmarks/bench_converter.py --root /data/BUSBRA --format busbra
    python tools/benchmarks/bench_converter.py --format busi --root data/bus_synthetic/hospital_a
    python tools/benchmarks/bench_converter.py --workers 1 2 4 --synthetic-images 300

Without --root it uses BUS-BRA from $MMBUS_BUSBRA (the BUSBRA folder: Images/, Masks/,
bus_data.csv) when set, and falls back to a synthetic BUSI-layout dataset generated in a
temporary folder. Every configuration runs --repeat times (best kept), guard off and on
alternately so that a change of machine load hits both alike; the load average is printed
because shared machines inflate times.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

# the converter runs its own worker processes: one BLAS thread each (as bus_to_coco.py)
for _var in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ.setdefault(_var, '1')

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))

from mmbus.datasets.converters import convert_and_split  # noqa: E402
from mmbus.datasets.synthetic_dataset import make_synthetic_dataset  # noqa: E402

DEFAULT_BUSBRA = os.environ.get('MMBUS_BUSBRA', '')


def table(title, rows):
    """rows: (config, images, seconds[, note]); ratios relative to the first row."""
    print(f'\n{title}')
    print(f'| {"config":<30} | {"images":>6} | {"seconds":>7} | {"images/s":>8} | '
          f'{"vs first":>8} | note')
    print('|' + '-' * 32 + '|' + '-' * 8 + '|' + '-' * 9 + '|' + '-' * 10 + '|' + '-' * 10 +
          '|------')
    base = rows[0][1] / rows[0][2]
    for cfg, n, secs, *note in rows:
        rate = n / secs
        print(f'| {cfg:<30} | {n:>6} | {secs:>7.2f} | {rate:>8.1f} | {rate / base:>7.2f}x | '
              f'{note[0] if note else ""}')


def bench_converter(fmt, root, workers, repeat, tmp):
    """Best time per (workers, guard) over ``repeat`` runs; guard off/on alternate."""
    best = {}
    for r in range(repeat):
        for w in workers:
            for guard in (False, True):
                out = os.path.join(tmp, f'conv_w{w}_{int(guard)}_{r}')
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                s = convert_and_split(fmt, root, out, workers=w, verbose=False, progress=False,
                                      recrop_guard=guard)
                dt = time.perf_counter() - t0
                key = (w, guard)
                if key not in best or dt < best[key][1]:
                    c = s['conversion']
                    note = (f'{s["duplicate_groups"]} groups of copies, split+guard '
                            f'{c["seconds_split"]:.1f} s, load {load:.1f}')
                    best[key] = (c['images_written'], dt, note)
                shutil.rmtree(out, ignore_errors=True)
    return [(f'{fmt}, workers={w}, guard {"on" if g else "off"}',) + best[(w, g)]
            for w in workers for g in (False, True)]


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--root', default=None)
    p.add_argument('--format', default=None, help='busi|busbra|generic|boxes-csv')
    p.add_argument('--workers', type=int, nargs='+', default=[2])
    p.add_argument('--synthetic-images', type=int, default=200,
                   help='images for the generator benchmark (and the fallback dataset)')
    p.add_argument('--repeat', type=int, default=1, help='runs per config (best is kept)')
    p.add_argument('--no-generator', action='store_true', help='skip the generator benchmark')
    p.add_argument('--keep', action='store_true', help='keep the temporary outputs')
    a = p.parse_args()

    tmp = tempfile.mkdtemp(prefix='mmbus_bench_')
    gen_rows = []
    root, fmt = a.root, a.format
    if root is None and os.path.isfile(os.path.join(DEFAULT_BUSBRA, 'bus_data.csv')):
        root, fmt = DEFAULT_BUSBRA, 'busbra'
    if not a.no_generator or root is None:
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
    if root is None:
        root, fmt = os.path.join(tmp, f'syn_w{a.workers[0]}_0'), 'busi'
    fmt = fmt or 'busi'
    conv_rows = bench_converter(fmt, root, a.workers, a.repeat, tmp)

    print(f'cpus: {os.cpu_count()}, load average now: {os.getloadavg()[0]:.1f} (shared machines '
          'inflate times)')
    table(f'Converter: {root} (decode, mask boxes, hashes, COCO, split, JSON; guard: re-crop '
          'fingerprints + search)', conv_rows)
    if gen_rows:
        table('Synthetic generator (render + PNG write)', gen_rows)
    if a.keep:
        print(f'\n(temporary outputs kept in {tmp})')
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
