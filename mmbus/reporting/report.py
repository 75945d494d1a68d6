"""Study reports (``<work_dir>/report/``): ``report.md``, ``report.json`` and PNG figures.

``report.type`` in the spec: ``paper`` (the paper's Tables 1-4: split counts, box IoU of the detector,
sensitivity / specificity / accuracy / AUC with 95 % CIs per method and test set, ROC curves, example
detections) or ``comparison`` (methods over a grid: per grid point AUC with CI, mean and sd over seeds,
paired differences against a baseline with a paired DeLong test; see :mod:`.comparison`). Both end with
the commands that ran and the library versions. Paths are written relative to the work dir.

A report is a function of the work dir alone: the result rows (``rows/*.json``) and the files they name
(predictions, crops, misses, calibration, training curves), ``study_state.json`` (the commands) and
``report_context.json`` (what the engine knew when it built the stages: the study's name, schedule, data,
methods, test sets, image sets and report settings; see :mod:`.context`). So a finished work dir, or a copy
of it, rebuilds its report without the study::

    python -m mmbus.reporting.report WORK_DIR
"""
import argparse
import os
import os.path as osp
import platform
import shlex
import subprocess
import sys
from typing import Dict, List, Optional

from mmbus.classes import CLASSES
from mmbus.utils.checkpoint import find_checkpoint
from mmbus.utils.io import atomic_write_json, atomic_write_text
from .methods import METHODS, title
from .plots import detection_examples, plot_detections, plot_roc_panels
from .results import fmt, fmt_pct_ci, is_num, load_json, load_rows, md_table, pathology_label, pick_metric
from .context import CONTEXT_FILE, REPO_ROOT, SPEC_FILE, STATE_FILE, ReportContext, resolve_path  # noqa: F401


def environment() -> Dict[str, str]:
    env = dict(python=platform.python_version(), platform=platform.platform())
    for mod in ('torch', 'torchvision', 'mmengine', 'mmcv', 'mmdet', 'mmpretrain', 'mmbus', 'numpy'):
        try:
            env[mod] = __import__(mod).__version__
        except Exception as e:  # reported, never fatal
            env[mod] = f'unavailable ({type(e).__name__})'
    try:
        commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or 'unknown'
        if subprocess.run(['git', 'status', '--porcelain'], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=10).stdout.strip():
            commit += ' (with uncommitted changes)'
    except Exception:
        commit = 'unknown'
    env['git_commit'] = commit
    return env


def split_counts(ann_file: str):
    coco = load_json(ann_file)
    if coco is None:
        return None
    img_label = {im['id']: pathology_label(im.get('pathology')) for im in coco['images']}
    out = dict(benign=0, malignant=0, images=len(coco['images']))
    for ann in coco['annotations']:
        lab = img_label.get(ann['image_id'])
        if lab is not None:
            out[CLASSES[lab]] += 1
    out['total'] = out['benign'] + out['malignant']
    return out


def shown_path(ctx: ReportContext, text: str) -> str:
    """A command-line word as the report shows it: the work dir as ``$WORK_DIR``, the data roots as
    ``$DATA_ROOT`` / ``$EXTERNAL_ROOT``, the repository as ``.`` and the interpreter as ``python``, so a
    committed report holds no path of the machine it ran on."""
    if text == sys.executable:
        return 'python'
    roots = [(ctx.work_dir, '$WORK_DIR'), (ctx.origin, '$WORK_DIR')]
    roots += [(s.images, '$DATA_ROOT' if n == 'internal' else '$EXTERNAL_ROOT')
              for n, s in ctx.sets.items() if not s.images.startswith(REPO_ROOT)]
    roots.append((REPO_ROOT, '.'))
    for root, name in roots:
        root = root.rstrip('/')
        if text == root or text.startswith(root + '/'):
            return name + text[len(root):]
    return text


def commands_section(ctx: ReportContext) -> tuple:
    state = load_json(ctx.p(STATE_FILE), {}).get('stages', {})
    cmds = [dict(stage=n, cmd=[shown_path(ctx, c) for c in s['cmd']], wall_s=s.get('wall_s'))
            for n, s in state.items() if s.get('cmd')]
    total = sum(c['wall_s'] or 0 for c in cmds)
    md = ['## Commands\n', 'Each stage as the study ran it, from the repository root ($WORK_DIR: the study\'s work '
          f'dir; wall time of its last run; sum {total:.0f} s):\n', '```bash']
    for c in cmds:
        md += [f"# {c['stage']} ({(c['wall_s'] or 0):.0f} s)", ' '.join(shlex.quote(x) for x in c['cmd'])]
    return md + ['```\n'], cmds


def make_report(work_dir: str, report: Optional[dict] = None) -> dict:
    """Write ``<work_dir>/report/`` from the work dir alone (see the module docstring); ``report`` replaces
    the saved spec's ``report`` settings."""
    ctx = ReportContext.load(work_dir, report)
    return write_report(load_rows(ctx.work_dir), ctx)


def write_report(rows: List[dict], ctx: ReportContext) -> dict:
    """The report of ``rows`` (result rows) in ``ctx``'s work dir."""
    kind = ctx.report.get('type', 'paper')
    os.makedirs(ctx.p('report'), exist_ok=True)
    if kind == 'paper':
        rep, md = paper_report(ctx, rows)
    elif kind == 'comparison':
        from .comparison import comparison_report
        rep, md = comparison_report(ctx, rows)
    else:
        raise ValueError(f'unknown report.type {kind!r}; choose from paper, comparison')
    cmd_md, rep['commands'] = commands_section(ctx)
    rep['environment'] = environment()
    md += cmd_md + ['## Versions\n', md_table(['package', 'version'], list(rep['environment'].items())), '']
    path = ctx.p('report', 'report.md')
    atomic_write_text('\n'.join(md) + '\n', path)
    atomic_write_json(rep, ctx.p('report', 'report.json'), indent=1, default=str)
    print(f'report written to {path}')
    return rep


def paper_report(ctx: ReportContext, rows: List[dict]):
    sets = ctx.sets
    crop_dir = ctx.p('crops', ctx.train_crops)
    rep = dict(study=ctx.name, schedule=ctx.schedule,
               data={k: shown_path(ctx, resolve_path(v, ctx.origin)) if k.endswith('root') and v else v
                     for k, v in ctx.data.items()})
    md = ['# Two-stage breast nodule study: report\n',
          f"Study `{ctx.name}`; data `{ctx.data['type']}`; schedule `{ctx.schedule}`"
          f"{' (toy run: numbers are meaningless)' if ctx.schedule == 'toy' else ''}.\n"]
    # Table 1
    t1, trows = {}, []
    names = [('A', s, s) for s in ('basic_train', 'extended_train', 'val', 'test')]
    if 'external' in sets:
        names.append(('B', 'test', 'test_external'))
    for ds, split, crop_split in names:
        c = split_counts(sets['internal' if ds == 'A' else 'external'].ann(split))
        if not c:
            continue
        cj = load_json(osp.join(crop_dir, f'{crop_split}.json'))
        c['crops'] = len(cj['data_list']) if cj else None
        c['missed_by_detector'] = cj['metainfo'].get('num_missed') if cj else None
        c['crop_boxes'] = cj['metainfo'].get('box_source') if cj else None
        t1[f'{ds}/{split}'] = c
        trows.append([ds, split, c['malignant'], c['benign'], c['total'],
                      '-' if c['crops'] is None else c['crops'],
                      '-' if c['missed_by_detector'] is None else c['missed_by_detector'], c['crop_boxes'] or '-'])
    rep['table1_splits'] = t1
    md += ['## Table 1. Datasets of breast nodules\n',
           md_table(['Dataset', 'Usage', 'Malignant', 'Benign', 'Total', 'Crops', 'Missed by detector',
                     'Crop boxes'], trows),
           '\nExtended-train labels are hidden from the mean teacher (gt_label -1) and used only by the '
           '"basic + extended" supervised baseline. Missed images count as wrong answers in Tables 3/4.\n']
    # Table 2
    det = {r['test_set']: r for r in rows if r['kind'] == 'detector'}
    t2, trows = {}, []
    for ts, s in sets.items():
        m = det.get(ts, {}).get('metrics') or {}
        t2[ts] = m
        n = m.get('bus_box/num_nodules')
        trows.append([s.title, fmt(m.get('bus_box/mean_iou')), fmt(m.get('bus_box/std_iou')),
                      fmt(m.get('bus_box/detected@0.5'), pct=True), fmt(m.get('coco/bbox_mAP_50')),
                      int(n) if is_num(n) else '-'])
    rep['table2_detection'] = t2
    md += ["## Table 2. Detection: box IoU (ASC) with the doctors' boxes\n",
           md_table(['Test set', 'Mean IoU', 'Std IoU', 'IoU >= 0.5', 'COCO AP50', 'Nodules'], trows),
           '\nIoU of each ground-truth nodule with the top-scoring detection of its image (0 when nothing '
           'was detected).\n']
    # Tables 3/4 + ROC
    panels, t34, probs = {}, {}, {}
    # a test set without a title takes its image set's (the user's dataset, its data.external_title)
    tests = {t['name']: dict(t, title=t.get('title') or (sets[t['name']].title if t['name'] in sets else t['name']))
             for t in ctx.test_sets}
    for n, ts in enumerate(tests, 3):
        t = tests[ts]
        label = t['title']
        trows, t34[ts], panels[label] = [], {}, {}
        for method in ctx.methods:
            r = next((r for r in rows if r['kind'] == 'classifier' and r['method'] == method
                      and r['test_set'] == ts), None)
            m = r['metrics'] if r else {}
            t34[ts][method] = m
            ns = pick_metric(m, 'num_samples')
            trows.append([title(method), METHODS[method]['train_sets'], fmt_pct_ci(m, 'sensitivity'),
                          fmt_pct_ci(m, 'specificity'), fmt_pct_ci(m, 'accuracy'),
                          fmt(pick_metric(m, 'auc'), ci=(pick_metric(m, 'auc_ci_low'),
                                                         pick_metric(m, 'auc_ci_high'))),
                          int(ns) if is_num(ns) else '-'])
            if r is None:
                continue
            roc = ctx.roc(r)
            if roc is not None:
                panels[label][method] = roc
            if method == 'mean_teacher':
                s, _, ids = ctx.predictions(r)
                probs[ts] = {i: float(p) for i, p in zip(ids, s) if i is not None}
        md += [f'## Table {n}. Classification, {label}\n',
               md_table(['Method', 'Train sets', 'Sensitivity', 'Specificity', 'Accuracy', 'AUC', 'N'], trows),
               '\n95% CIs: Wilson for proportions, DeLong for AUC; malignant = positive class; threshold 0.5 '
               'on p(malignant).\n']
    rep['tables34_classification'] = t34
    from .comparison import paired_differences, paired_table
    cls_rows = [r for r in rows if r['kind'] == 'classifier']
    if 'supervised_basic' in ctx.methods:
        rep['paired'] = paired_differences(ctx, cls_rows, 'supervised_basic')
        md += ['## Paired differences against supervised-basic\n', paired_table(rep['paired'], tests), '',
               'AUC difference on the same test crops with its 95% CI and the paired DeLong p-value.\n']
    if ctx.report.get('targets'):
        from .targets import check_paper_targets, paper_targets_section
        rep['targets'] = check_paper_targets(rep, ctx.report['targets'])
        md += paper_targets_section(rep['targets'], {ts: t['title'] for ts, t in tests.items()})
    plot_roc_panels(panels, ctx.p('report', 'roc_curves.png'))
    md += ['## ROC curves\n', '![ROC curves](roc_curves.png)\n']
    from .clinical import clinical_section
    for ts, t in tests.items():
        crep, cmd = clinical_section(ctx, cls_rows, ts, f"Calibration and operating points, {t['title']}")
        if crep:
            rep.setdefault('clinical', {})[ts] = crep
            md += cmd
    # detections: the main detector's test predictions, as its rows name them
    from mmengine.fileio import load
    main_det = {r['test_set']: r for r in rows if r['kind'] == 'detector' and r['method'] == 'detector'}
    examples = []
    for ts, s in sets.items():
        pkl = ctx.p(main_det[ts]['predictions']) if ts in main_det else None
        if pkl and osp.isfile(pkl):
            examples += detection_examples(load_json(s.ann('test')), s.images, load(pkl),
                                           probs.get(ts, {}), ts)
    if examples:
        plot_detections(examples, ctx.p('report', 'detections.png'))
        md += ['## Example detections\n', 'Ground truth yellow, detection red, mean-teacher malignancy '
               'probability in the title.\n', '![detections](detections.png)\n']
    if ctx.export_teacher:
        md += ['## Using the trained models\n', 'Two-stage inference on new images, from the work dir:\n',
               '```bash', 'python tools/infer.py IMAGES_OR_FOLDER --det-config configs/detector.py '
               f'--det-checkpoint {detector_checkpoint(ctx, main_det.get("internal"))} '
               '--cls-config export/teacher_config.py --cls-checkpoint export/teacher.pth '
               '--out-dir outputs/infer', '```\n']
    return rep, md


def detector_checkpoint(ctx: ReportContext, row: Optional[dict]) -> str:
    """The main detector's checkpoint relative to the work dir: the one its row names; for a row written
    without it, the detector's best checkpoint in its folder; ``CKPT`` when there is no detector."""
    if row and row.get('checkpoint'):
        return row['checkpoint']
    if osp.isdir(ctx.p('detector')):
        return ctx.rel(find_checkpoint(ctx.p('detector'), prefer_best=True))
    return 'CKPT'


def main(argv=None):
    p = argparse.ArgumentParser(description='Rebuild a study\'s report (report/) from its finished work dir '
                                'alone: rows, the files they name, study_state.json and '
                                f'{CONTEXT_FILE}.')
    p.add_argument('work_dir', help='a study work dir (tools/run_study.py --work-dir)')
    a = p.parse_args(argv)
    make_report(a.work_dir)
    print(f"[study] report: {osp.join(osp.abspath(a.work_dir), 'report', 'report.md')}")


if __name__ == '__main__':
    main()
