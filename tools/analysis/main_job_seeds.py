"""The main job over several seeds: one summary of the reports of whole main-job runs, one per seed.

    bash tools/run_main_job.sh --seed 0        # work_dirs/main_job
    bash tools/run_main_job.sh --seed 1        # work_dirs/main_job_seed1
    python tools/analysis/main_job_seeds.py work_dirs/main_job work_dirs/main_job_seed1 ... \\
        --out docs/results/main_job.json

Per seed: the detector's mean box IoU and share at IoU >= 0.5 per test set, each method's AUC with its 95 % CI
per test set, the wall time of every stage and the target check of that run's report; then the means over the
seeds with the same target check applied to them. Writes ``--out`` (JSON) and the same as Markdown beside it.
"""
import argparse
import os.path as osp
import sys

from mmbus.reporting.results import fmt, fmt_mean_sd, is_num, load_json, md_table, mean_std, pick_metric
from mmbus.reporting.targets import check_paper_targets, paper_targets_section
from mmbus.utils.io import atomic_write_json, atomic_write_text


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('work_dirs', nargs='+', help='work dirs of finished main-job runs (one per seed)')
    p.add_argument('--out', required=True, help='output JSON (a .md beside it)')
    return p.parse_args(argv)


def seed_summary(work_dir: str) -> dict:
    path = osp.join(work_dir, 'report', 'report.json')
    if not osp.isfile(path):
        raise FileNotFoundError(f'{work_dir}: no report/report.json (has the main job finished there?)')
    rep = load_json(path)
    ctx = load_json(osp.join(work_dir, 'report_context.json'), {})
    det = {ts: dict(mean_iou=m.get('bus_box/mean_iou'), std_iou=m.get('bus_box/std_iou'),
                    detected_at_05=m.get('bus_box/detected@0.5'), ap50=m.get('coco/bbox_mAP_50'))
           for ts, m in (rep.get('table2_detection') or {}).items()}
    cls = {ts: {meth: dict(auc=pick_metric(m, 'auc'), ci=[pick_metric(m, 'auc_ci_low'), pick_metric(m, 'auc_ci_high')],
                           n=pick_metric(m, 'num_samples'))
                for meth, m in ms.items()}
           for ts, ms in (rep.get('tables34_classification') or {}).items()}
    wall = {c['stage']: c['wall_s'] for c in rep.get('commands', [])}
    return dict(seed=(rep.get('data') or {}).get('seed', 0), work_dir=osp.basename(osp.normpath(work_dir)),
                schedule=rep.get('schedule'), detector=det, classification=cls, wall_s=wall,
                total_wall_s=round(sum(v or 0 for v in wall.values()), 1), targets=rep.get('targets'),
                spec_targets=((ctx.get('report') or {}).get('targets')))


def mean_of(seeds, get):
    """Mean, sd and count of ``get(seed)`` over the seeds that have it (:func:`mean_std`); sd None for one
    seed (no spread to speak of), None for none."""
    s = mean_std([v for v in map(get, seeds) if is_num(v)])
    return dict(mean=s['mean'], sd=s['std'] if s['n'] > 1 else None, n=s['n']) if s['n'] else None


def auc_of(seed: dict, test_set: str, method: str):
    return (seed['classification'].get(test_set, {}).get(method) or {}).get('auc')


def summarise(seeds):
    tsets = list(dict.fromkeys(ts for s in seeds for ts in s['classification']))
    methods = list(dict.fromkeys(m for s in seeds for ts in s['classification'] for m in s['classification'][ts]))
    means = dict(
        detector={ts: {k: mean_of(seeds, lambda s, ts=ts, k=k: (s['detector'].get(ts) or {}).get(k))
                       for k in ('mean_iou', 'detected_at_05', 'ap50')}
                  for ts in dict.fromkeys(t for s in seeds for t in s['detector'])},
        classification={ts: {m: mean_of(seeds, lambda s, ts=ts, m=m: auc_of(s, ts, m)) for m in methods}
                        for ts in tsets},
        total_wall_s=mean_of(seeds, lambda s: s['total_wall_s']))
    spec_targets = next((s['spec_targets'] for s in seeds if s.get('spec_targets')), None)
    targets = None
    if spec_targets:
        # the same check as each run's report, on the means: a report-shaped dict of mean figures
        rep = dict(table2_detection={ts: {'bus_box/mean_iou': (v['mean_iou'] or {}).get('mean')}
                                     for ts, v in means['detector'].items()},
                   tables34_classification={ts: {m: {'auc': (v or {}).get('mean')} for m, v in ms.items()}
                                            for ts, ms in means['classification'].items()})
        targets = check_paper_targets(rep, spec_targets)
    return dict(seeds=seeds, means=means, targets_on_means=targets)


def markdown(res) -> str:
    seeds = res['seeds']
    lines = ['# The main job over seeds', '',
             f"{len(seeds)} runs of the whole main job (seeds {', '.join(str(s['seed']) for s in seeds)}); "
             'each figure from that run\'s own report.', '', '## Detector: mean box IoU / share at IoU >= 0.5', '']
    tsets = list(res['means']['detector'])
    rows = [[s['seed']] + [f"{(s['detector'].get(ts) or {}).get('mean_iou', float('nan')):.3f} / "
                           f"{100 * ((s['detector'].get(ts) or {}).get('detected_at_05') or 0):.1f} %"
                           for ts in tsets] for s in seeds]
    rows.append(['mean'] + [_ms(res['means']['detector'][ts]['mean_iou']) for ts in tsets])
    lines += [md_table(['seed'] + tsets, rows), '']
    for ts, ms in res['means']['classification'].items():
        lines += [f'## Classification AUC, {ts}', '']
        rows = []
        for m in ms:
            cells = []
            for s in seeds:
                r = s['classification'].get(ts, {}).get(m) or {}
                ci = r.get('ci') or [None, None]
                cells.append(fmt(r['auc'], ci=ci) if is_num(r.get('auc')) and all(is_num(c) for c in ci) else '-')
            rows.append([m] + cells + [_ms(ms[m])])
        lines += [md_table(['method'] + [f"seed {s['seed']}" for s in seeds] + ['mean ± sd'], rows), '']
    lines += ['## Wall time per run', '',
              md_table(['seed', 'total (min)', 'slowest stage'],
                       [[s['seed'], f"{s['total_wall_s'] / 60:.1f}",
                         max(s['wall_s'].items(), key=lambda kv: kv[1] or 0, default=('-', 0))[0]]
                        for s in seeds]), '']
    t = res.get('targets_on_means')
    if t:
        # the report's own renderer; no verdict sentence: it speaks of "this run"
        lines += paper_targets_section(t, heading='Targets on the means over seeds',
                                       columns=('test set', 'target', 'mean', 'wanted', ''), verdict=False)
    return '\n'.join(lines) + '\n'


def _ms(v):
    return fmt_mean_sd((v or {}).get('mean'), (v or {}).get('sd'), missing='-')


def main(argv=None):
    a = parse_args(argv)
    seeds = sorted((seed_summary(w) for w in a.work_dirs), key=lambda s: s['seed'])
    dup = [s['seed'] for s in seeds if [t['seed'] for t in seeds].count(s['seed']) > 1]
    if dup:
        sys.exit(f'[main_job_seeds] error: the same seed {sorted(set(dup))} in several work dirs: '
                 f"{', '.join(a.work_dirs)}")
    res = summarise(seeds)
    atomic_write_json(res, a.out, indent=1)
    atomic_write_text(markdown(res), osp.splitext(a.out)[0] + '.md')
    print(f'[main_job_seeds] {len(seeds)} seeds -> {a.out}')
    return res


if __name__ == '__main__':
    main()
