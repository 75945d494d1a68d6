#!/usr/bin/env python
"""Run a study spec (configs/studies/*.py): data, detector, crops, stage-2 methods over a grid, report.

    python tools/run_study.py configs/studies/main_job_synthetic.py
    python tools/run_study.py configs/studies/busbra.py --cfg-options data.root=/data/BUS-BRA/BUSBRA
    python tools/run_study.py configs/studies/main_job_synthetic.py --schedule toy --work-dir /tmp/toy
    python tools/run_study.py SPEC --force 'train_*'        # retrain from scratch (fnmatch patterns)
    python tools/run_study.py SPEC --jobs 2                 # two stage-2 runs at a time
    python tools/run_study.py SPEC --keep-going             # a failed run stops only what depends on it
    python tools/run_study.py SPEC --report-only            # redraw the report of a finished work dir

A rerun skips every stage whose command and inputs did not change (<work-dir>/study_state.json); an
interrupted run resumes (training continues from its last checkpoint). Logs: <work-dir>/logs/; report:
<work-dir>/report/report.md.
"""
import argparse
import os.path as osp
import signal
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import Config, DictAction  # noqa: E402

from mmbus.study.configs import SCHEDULES  # noqa: E402
from mmbus.study.engine import Study  # noqa: E402
from mmbus.reporting.report import CONTEXT_FILE, make_report  # noqa: E402
from mmbus.study.stages import CHILDREN, StageFailed, StudyBusy  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('spec', help='study spec (an mmengine config file)')
    p.add_argument('--work-dir', help='default: the spec\'s work_dir, else work_dirs/<name>')
    p.add_argument('--schedule', choices=sorted(SCHEDULES),
                   help="cpu-quick: the *_cpu_quick configs (CPU); paper: the paper-sized configs (GPU); "
                   "toy: a few iterations per stage (tests). Default: the spec's")
    p.add_argument('--force', nargs='*', default=[], metavar='STAGE',
                   help='rerun these stages (names or fnmatch patterns) from scratch')
    p.add_argument('--jobs', type=int, default=1, help='stage-2 runs at a time')
    p.add_argument('--device', default='cpu', help='device for crop extraction with the detector')
    p.add_argument('--keep-going', action='store_true',
                   help='a failed stage stops only what depends on it; the rest runs and the study exits '
                   'non-zero naming every failure at the end')
    p.add_argument('--report-only', action='store_true',
                   help="run no stage: rebuild <work-dir>/report/ from the work dir alone (its rows, the files they "
                   "name, study_state.json and report_context.json) with this spec's report settings; "
                   "python -m mmbus.reporting.report WORK_DIR does the same with the settings the study saved")
    p.add_argument('--seed', type=int, default=None,
                   help="the seed of the whole study (data.seed: the generated data, the split, the detector and "
                   "every stage-2 run without a grid seed); with the spec's work dir, runs in <work_dir>_seed<S>")
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                   help='override spec keys, e.g. data.root=/data/BUSI grid.seed=[0,1,2]')
    return p.parse_args(argv)


def apply_seed(spec, seed: int, work_dir=None):
    """Set the study's seed (``data.seed``); returns the work dir to use. Seed 0 keeps the spec's folders; any
    other seed gets its own work dir (unless ``work_dir`` is given) and, for generated data, its own data folder,
    so that seeds run side by side never overwrite each other."""
    spec.data['seed'] = seed
    if seed == 0:
        return work_dir
    if str(spec.data.get('type', '')).startswith('synthetic') and spec.data.get('root'):
        spec.data['root'] = f"{spec.data['root'].rstrip('/')}_seed{seed}"
    return work_dir or f"{spec.get('work_dir') or osp.join('work_dirs', spec.get('name', 'study'))}_seed{seed}"


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def main(argv=None):
    a = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    spec = Config.fromfile(a.spec)
    if a.cfg_options:
        spec.merge_from_dict(a.cfg_options, allow_list_keys=True)
    if a.schedule:
        spec.schedule = a.schedule
    if a.seed is not None:
        a.work_dir = apply_seed(spec, a.seed, a.work_dir)
    try:
        study = Study(spec, a.work_dir, a.force, a.jobs, a.device, keep_going=a.keep_going)
        if a.report_only:
            # a work dir without a context (studies write one when they start): this spec, as given, says it
            # (not the work dir's study_spec.py: any later invocation, even a refused one, rewrites that)
            if not osp.isfile(study.p(CONTEXT_FILE)):
                study.build()
                study.write_report_context()
            make_report(study.work_dir, report=spec.get('report', {}))
            print(f"[study] report: {study.p('report', 'report.md')}")
            return
        res = study.run()
    except (StageFailed, StudyBusy, FileNotFoundError, ValueError, KeyError) as e:
        sys.exit(f'[study] error: {e}')
    except BaseException:
        CHILDREN.terminate_all()  # interrupted: the running tools go with us
        raise
    print(f"[study] report: {res['report']}")


if __name__ == '__main__':
    main()
