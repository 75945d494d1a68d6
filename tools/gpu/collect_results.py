#!/usr/bin/env python
"""Unpack what tools/gpu/run_busbra.sh brought back and write a small, committable summary of it.

    python tools/gpu/collect_results.py OUT/busbra_gpu.tar.gz [--out-dir docs/results] [--name busbra_gpu]
                                        [--run-log OUT/run.log] [--label TEXT] [--spec SPEC]
    python tools/gpu/collect_results.py --work-dir WORK_DIR ...      # a CPU run of the same spec

Writes OUT_DIR/NAME.json (kit, detectors, stage-2 numbers of the comparison report, the two stages together,
targets, wall times, smoke pass), OUT_DIR/NAME.md (the same, readable, with the report's tables) and the
figures in OUT_DIR/NAME/ (each detector's validation curve, the report's PNGs), under 2 MB in all, with no
path of the machines that ran or collected it. ``--run-log`` defaults to the run.log beside the tarball.
``--spec`` (default configs/studies/NAME.py) lists the rows the study should have made, so the missing
ones are named. A work dir that came back with rows but without its report (the device's report stage did not
finish) gets one drawn here, from the rows, the curves and each stage-2 test's scores file, and the summary
says so.

Exit status: 0 when written; 1 when written without a main run (the smoke pass stands in, under a loud
heading); 2 for a bad input (not a tarball, no kit.json, no such work dir), naming the file; nothing is
written then.
"""
import argparse
import os.path as osp
import sys
import tempfile

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
sys.path.insert(0, REPO)

from mmbus.reporting.gpu_kit import draw_missing_report  # noqa: E402
from mmbus.reporting.gpu_results import CollectError, collect, has_rows, unpack  # noqa: E402
from mmbus.study.engine import Study  # noqa: E402


def expected_rows(spec_file, schedule):
    """The rows the study spec makes at ``schedule`` (:meth:`Study.row_names`); None when this checkout cannot
    read the spec (that only costs the list of missing rows)."""
    if not spec_file or not osp.isfile(spec_file):
        return None
    from mmengine.config import Config
    try:
        spec = Config.fromfile(spec_file)
        if schedule:
            spec.schedule = schedule
        return Study(spec, work_dir='.').row_names()
    except Exception as e:
        print(f'collect_results: {spec_file}: cannot list the expected rows ({type(e).__name__}: {e})')
        return None


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('tarball', nargs='?', help='OUT/busbra_gpu.tar.gz of tools/gpu/run_busbra.sh')
    p.add_argument('--work-dir', help='a study work dir instead of a tarball (a CPU run of the same spec)')
    p.add_argument('--out-dir', default='docs/results')
    p.add_argument('--name', default='busbra_gpu', help='file names: NAME.json, NAME.md, NAME/*.png')
    p.add_argument('--run-log', help='OUT/run.log (default: run.log beside the tarball, when there)')
    p.add_argument('--label', help='a line for the report\'s title, e.g. what this run tried')
    p.add_argument('--spec', help='the study spec, for the rows expected (default: configs/studies/NAME.py, or '
                                  'the work dir\'s study_spec.py)')
    a = p.parse_args(argv)
    if bool(a.tarball) == bool(a.work_dir):
        p.error('give a tarball or --work-dir, one of them')
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    spec = a.spec or osp.join(REPO, 'configs', 'studies', f'{a.name}.py')
    try:
        with tempfile.TemporaryDirectory(prefix='collect_results.') as tmp:
            if a.work_dir:
                if not osp.isdir(a.work_dir):
                    raise CollectError(f'{a.work_dir}: no such work dir')
                work = osp.abspath(a.work_dir)
                own_spec = osp.join(work, 'study_spec.py')
                if not a.spec and osp.isfile(own_spec):
                    spec = own_spec  # the spec as it ran, its schedule included
                kit, main_dir, smoke_dir, nvsmi, usage, drawn_here = None, work, None, None, None, []
                source = osp.basename(work.rstrip('/'))
                roots = {work: '$WORK_DIR'}
                if not has_rows(work):
                    raise CollectError(f'{a.work_dir} holds no rows/*.json: not a study work dir, or nothing '
                                       'finished')
            else:
                kit = unpack(a.tarball, tmp)
                if not a.spec and (kit or {}).get('spec') and osp.isfile(osp.join(REPO, kit['spec'])):
                    spec = osp.join(REPO, kit['spec'])  # the study the kit ran (a stage-2-only run has its own)
                main_dir, smoke_dir = osp.join(tmp, 'work', 'main'), osp.join(tmp, 'work', 'smoke')
                smoke_dir = smoke_dir if osp.isdir(smoke_dir) else None
                source = osp.basename(a.tarball)
                nvsmi_file = osp.join(tmp, 'nvidia_smi.csv')
                nvsmi = open(nvsmi_file).read() if osp.isfile(nvsmi_file) else None
                usage_file = osp.join(tmp, 'gpu_usage.csv')  # sampled through the run
                usage = open(usage_file).read() if osp.isfile(usage_file) else None
                roots = {}
                # the device's report stage did not finish: drawn here from the rows and each test's scores
                drawn_here = [w for w in (main_dir, smoke_dir) if draw_missing_report(w)]
                if drawn_here:
                    print(f"collect_results: drew the report of {', '.join(osp.basename(w) for w in drawn_here)} "
                          'here (the tarball came without one)')
                if a.run_log is None and osp.isfile(osp.join(osp.dirname(osp.abspath(a.tarball)), 'run.log')):
                    a.run_log = osp.join(osp.dirname(osp.abspath(a.tarball)), 'run.log')
            roots.update({tmp: '$COLLECT_TMP', REPO: '.'})
            if a.run_log and not osp.isfile(a.run_log):
                raise CollectError(f'{a.run_log}: no such run log')
            s = collect(main_dir, smoke_dir, kit, a.out_dir, a.name, source, spec_file=spec, run_log=a.run_log,
                        label=a.label, nvidia_smi=nvsmi, usage=usage, roots=roots,
                        expected_rows=expected_rows, report_drawn_here=[osp.basename(w) for w in drawn_here])
    except CollectError as e:
        print(f'collect_results: error: {e}', file=sys.stderr)
        return 2
    out = osp.join(a.out_dir, a.name)
    print(f"wrote {out}.json, {out}.md and {len(s['figures'])} figure(s) in {out}/"
          + (f" (PARTIAL: {'; '.join(s['partial_why'])})" if s['partial'] else ''))
    if s['no_main_run']:
        print(f'collect_results: error: {a.tarball or a.work_dir} holds no rows of the main run (work/main/rows); '
              f"the report is the smoke pass's, under a NO MAIN RUN heading", file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
