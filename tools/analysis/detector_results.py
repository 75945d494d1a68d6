#!/usr/bin/env python
"""Results of one detector training run: its validation curve (PNG), its test figures and what it cost, as
Markdown + JSON (e.g. docs/results/busbra_stage1_cpu.{md,json}).

    python tools/train.py CONFIG --work-dir WORK
    python tools/test.py CONFIG WORK/best_*.pth --work-dir WORK/test --out-metrics WORK/test_metrics.json
    python tools/analysis/detector_results.py WORK WORK/test_metrics.json --name NAME --out-dir docs/results \
        [--title TEXT] [--command "the train command as run"]

Figures: mean box IoU of each nodule with the top-scoring box (± sd), the share at IoU >= 0.5, FROC
sensitivities, COCO mAP / AP50 / AP75; iterations trained and the selected (best) iteration; the training wall
time from the run's own log.
"""
import argparse
import datetime
import glob
import os.path as osp
import re
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmbus.reporting.curves import curve_from_scalars, validation_schedule  # noqa: E402
from mmbus.reporting.gpu_stage1 import plot_detector_curve  # noqa: E402
from mmbus.reporting.results import fmt, fmt_mean_sd, load_json, md_table  # noqa: E402
from mmbus.utils.checkpoint import find_checkpoint  # noqa: E402
from mmbus.utils.io import atomic_write_json, atomic_write_text  # noqa: E402

STAMP = re.compile(r'^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) - mmengine')


def wall_seconds(log: str):
    """Seconds between the first and the last time stamp of an mmengine log file."""
    stamps = []
    with open(log, errors='replace') as f:
        for line in f:
            m = STAMP.match(line)
            if m:
                stamps.append(datetime.datetime.strptime(m.group(1), '%Y/%m/%d %H:%M:%S'))
    return (stamps[-1] - stamps[0]).total_seconds() if len(stamps) > 1 else None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('work_dir', help='the training work dir (tools/train.py --work-dir)')
    p.add_argument('test_metrics', help='tools/test.py --out-metrics JSON of the selected checkpoint')
    p.add_argument('--name', required=True, help='output stem, e.g. busbra_stage1_cpu')
    p.add_argument('--out-dir', default='docs/results')
    p.add_argument('--title', default='Detector')
    p.add_argument('--command', default='', help='the training command as run (shown in the report)')
    a = p.parse_args(argv)
    if not osp.isdir(a.work_dir):
        sys.exit(f'error: {a.work_dir} is not a training work dir')
    if not osp.isfile(a.test_metrics):
        sys.exit(f'error: test metrics {a.test_metrics} do not exist (tools/test.py --out-metrics)')
    test = load_json(a.test_metrics)
    if 'bus_box/mean_iou' not in test:
        sys.exit(f'error: {a.test_metrics} holds no bus_box/mean_iou (not a detector test of BoxIoUMetric)')
    files = sorted(glob.glob(osp.join(a.work_dir, '*', 'vis_data', 'scalars.json')))
    configs = [c for c in glob.glob(osp.join(a.work_dir, '*.py'))]
    vi, mi = validation_schedule(configs[0]) if configs else (None, None)
    curve = curve_from_scalars(files, vi, mi)
    if not curve:
        sys.exit(f'error: {a.work_dir} holds no validation records (*/vis_data/scalars.json)')
    best = find_checkpoint(a.work_dir, prefer_best=True, required=False)
    m = re.search(r'iter_(\d+)\.pth$', best or '')
    best_iter = int(m.group(1)) if m else None
    # the training run's own logs (<timestamp>/<timestamp>.log), not those of a test run kept in a sub-folder
    logs = sorted(glob.glob(osp.join(a.work_dir, '[0-9]*_[0-9]*', '[0-9]*_[0-9]*.log')))
    wall = sum(w for w in (wall_seconds(x) for x in logs) if w)
    png = osp.join(a.out_dir, a.name, 'validation_curve.png')
    plot_detector_curve(a.title, curve, png)
    res = dict(title=a.title, command=a.command, test=test, iterations=max(it for it, _ in curve),
               selected_iteration=best_iter, train_wall_s=wall or None,
               validation=[dict(iteration=it, **m) for it, m in curve])
    atomic_write_json(res, osp.join(a.out_dir, f'{a.name}.json'), indent=1)
    g = test.get
    rows = [[fmt_mean_sd(g('bus_box/mean_iou'), g('bus_box/std_iou')),
             fmt(g('bus_box/detected@0.5'), pct=True),
             ' / '.join(fmt(g(f'bus_box/froc_sens@{k}fp'), pct=True) for k in ('0.5', '1', '2', '4')),
             fmt(g('coco/bbox_mAP')), fmt(g('coco/bbox_mAP_50')), fmt(g('coco/bbox_mAP_75')),
             f"{int(g('bus_box/num_nodules', 0))}"]]
    vrows = [[it, fmt(m.get('bus_box/mean_iou')), fmt(m.get('bus_box/mean_iou_smooth')), fmt(m.get('coco/bbox_mAP_50'))]
             for it, m in curve]
    md = [f'# {a.title}\n',
          md_table(['test: mean IoU ± sd', 'IoU >= 0.5', 'FROC sens. @ 0.5 / 1 / 2 / 4 FP per image', 'COCO mAP',
                    'AP50', 'AP75', 'nodules'], rows), '',
          f"Trained {res['iterations']} iterations ({wall / 60:.0f} min of training and validation, from the run's "
          f"log); the checkpoint tested is the best on the smoothed validation mean IoU (iteration {best_iter}).\n",
          '## Validation curve\n', f'![validation curve]({a.name}/validation_curve.png)\n',
          md_table(['iteration', 'mean IoU', 'mean IoU (smoothed, selection)', 'AP50'], vrows), '']
    if a.command:
        md += ['## Commands\n', '```bash', a.command, '```', '']
    atomic_write_text('\n'.join(md) + '\n', osp.join(a.out_dir, f'{a.name}.md'))
    print(f'[mmbus] wrote {osp.join(a.out_dir, a.name)}.md / .json and {png}')


if __name__ == '__main__':
    main()
