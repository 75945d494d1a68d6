#!/usr/bin/env python
"""Run the whole two-stage study with one command (resumable).

Synthetic default (two generated hospitals, B = external test)::

    python tools/run_pipeline.py                      # cpu-quick schedule
    python tools/run_pipeline.py --toy --work-dir /tmp/toy   # smoke test

Real data, e.g. BUS-BRA (the external test set is optional)::

    python tools/run_pipeline.py --format busbra --data-root /data/BUSBRA \\
        --work-dir work_dirs/busbra [--external-root /data/hospB \\
        --external-format busi] [--schedule paper]

Stages: generate hospitals A and B -> COCO + paper split -> train detector
-> test detector (internal/external) -> crops with the trained detector ->
train mean teacher, supervised-basic, supervised-all -> export teacher ->
test the three classifiers on each test set -> report
(<work-dir>/report/report.md). A rerun skips stages whose inputs did not
change; an interrupted run resumes (training continues from its last
checkpoint). State: <work-dir>/pipeline_state.json; logs: <work-dir>/logs/.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmbus.apis.pipeline import (StageFailed, StudyOptions,  # noqa: E402
                                 run_study)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Two-stage breast nodule study, end to end',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('--data-root', help='synthetic: where the two hospitals '
                   'are generated (default data/bus_synthetic, or '
                   '<work-dir>/data with --toy); other formats: the dataset '
                   'root')
    p.add_argument('--format', default='synthetic',
                   choices=['synthetic', 'busi', 'busbra', 'generic'])
    p.add_argument('--external-root', help='dataset used whole as the '
                   'external test set (real data; synthetic makes its own)')
    p.add_argument('--external-format',
                   choices=['busi', 'busbra', 'generic'],
                   help='format of --external-root (default: --format)')
    p.add_argument('--schedule', default='cpu-quick',
                   choices=['cpu-quick', 'paper'],
                   help='cpu-quick: the *_cpu_quick configs (minutes on a '
                   'CPU); paper: the paper-sized configs (GPU)')
    p.add_argument('--work-dir', default='work_dirs/pipeline')
    p.add_argument('--toy', action='store_true',
                   help='tiny data and a few iterations per stage (tests)')
    p.add_argument('--device', default='cpu',
                   help='device for crop extraction with the detector '
                   '(training/testing use CUDA when present)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--margin', type=float, default=10.,
                   help='crop margin in pixels (paper: ~10)')
    p.add_argument('--score-thr', type=float, default=0.05,
                   help='minimum detection score for a crop')
    p.add_argument('--force', nargs='*', default=[],
                   help='stage names to rerun even if up to date')
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    try:
        opts = StudyOptions(
            data_root=a.data_root, format=a.format, schedule=a.schedule,
            work_dir=a.work_dir, toy=a.toy, device=a.device,
            external_root=a.external_root, external_format=a.external_format,
            seed=a.seed, margin=a.margin, score_thr=a.score_thr,
            force=a.force)
        res = run_study(opts)
    except (StageFailed, FileNotFoundError, ValueError) as e:
        sys.exit(f'[pipeline] error: {e}')
    print(f"[pipeline] report: {res['report']}")


if __name__ == '__main__':
    main()
