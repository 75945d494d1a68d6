"""Paper-style report of a pipeline run (``<work_dir>/report/``).

* ``report.md``: Table 1 (split counts), Table 2 (box IoU = the paper's ASC,
  mean and std per test set), Tables 3/4 (sensitivity, specificity,
  accuracy, AUC with 95 % CIs of the three methods per test set), figures,
  the exact commands and the library versions.
* ``roc_curves.png``: ROC curves of the three methods, one panel per test
  set.
* ``detections.png``: example test images with the ground-truth box
  (yellow, as in the paper's Fig. 3), the detector's top box (red) and the
  mean teacher's malignancy probability.
* ``report.json``: every number above.

The classification figures are the ``BinaryDiagnosticMetric`` outputs of
``tools/test.py --out-metrics`` (detector misses counted as wrong answers);
the ROC curves are recomputed from the dumped predictions with the same
rule, so curve and table agree.
"""
import json
import math
import os
import os.path as osp
import platform
import subprocess
from typing import Dict, List, Optional

import numpy as np

from .crop_extraction import CLASSES, dump_json_atomic, pathology_label


# ----------------------------------------------------------------------------
# reading results
# ----------------------------------------------------------------------------
def _load_json(path: str, default=None):
    if not osp.isfile(path):
        return default
    with open(path) as f:
        return json.load(f)


def split_counts(ann_file: str) -> Optional[Dict[str, int]]:
    """benign / malignant / total nodules (annotations) and images of a COCO
    split file; ``None`` when it does not exist."""
    coco = _load_json(ann_file)
    if coco is None:
        return None
    img_label = {im['id']: pathology_label(im.get('pathology'))
                 for im in coco['images']}
    out = dict(benign=0, malignant=0, images=len(coco['images']))
    for ann in coco['annotations']:
        lab = img_label.get(ann['image_id'])
        if lab is not None:
            out[CLASSES[lab]] += 1
    out['total'] = out['benign'] + out['malignant']
    return out


def pick_metric(metrics: dict, name: str) -> Optional[float]:
    """``<prefix>/<name>`` from a metrics dict; the teacher's prefix wins
    when a SemiClassifier evaluator reports teacher and student."""
    if not metrics:
        return None
    keys = [k for k in metrics if k.split('/')[-1] == name]
    for pref in ('teacher/', 'diag/'):
        for k in keys:
            if k.startswith(pref):
                return metrics[k]
    keys = [k for k in keys if not k.startswith('student')] or keys
    return metrics[keys[0]] if keys else None


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not (isinstance(v, float)
                                                and math.isnan(v))


def fmt_pct_ci(m: dict, name: str) -> str:
    v, lo, hi = (pick_metric(m, name), pick_metric(m, f'{name}_ci_low'),
                 pick_metric(m, f'{name}_ci_high'))
    if not _is_num(v):
        return 'n/a'
    s = f'{100 * v:.1f}%'
    if _is_num(lo) and _is_num(hi):
        s += f' [{100 * lo:.1f}, {100 * hi:.1f}]'
    return s


def load_predictions(pkl: str, crops_json: str, missed_json: str,
                     score_key: str = 'pred_score'):
    """(malignancy scores, true labels, image ids) from a ``tools/test.py
    --out`` dump, with detector misses added as wrong answers (score 0 for
    a malignant nodule, 1 for a benign one, as BinaryDiagnosticMetric's
    default ``missed_rule='wrong'``)."""
    from mmengine.fileio import load
    preds = load(pkl) if osp.isfile(pkl) else []
    crops = _load_json(crops_json, dict(data_list=[]))['data_list']
    by_name = {osp.basename(d['img_path']): d for d in crops}
    scores, labels, ids = [], [], []
    for p in preds:
        s = p.get(score_key, p.get('pred_score'))
        s = np.asarray(s.tolist() if hasattr(s, 'tolist') else s,
                       dtype=float).reshape(-1)
        rec = by_name.get(osp.basename(str(p.get('img_path', ''))), {})
        lab = p.get('gt_label')
        lab = int(np.asarray(lab.tolist() if hasattr(lab, 'tolist') else lab
                             ).reshape(-1)[0])
        if lab < 0:
            lab = rec.get('true_label', lab)
        scores.append(float(s[1]))
        labels.append(lab)
        ids.append(rec.get('image_id'))
    for m in _load_json(missed_json, []):
        lab = pathology_label(m.get('pathology'))
        if lab is None:
            continue
        scores.append(1.0 - lab)
        labels.append(lab)
        ids.append(m.get('id'))
    return np.asarray(scores), np.asarray(labels, dtype=int), ids


def roc_points(scores, labels):
    """(fpr, tpr) of the ROC curve, thresholds from high to low."""
    order = np.argsort(-scores, kind='mergesort')
    s, y = scores[order], labels[order]
    n_pos, n_neg = max(1, (y == 1).sum()), max(1, (y == 0).sum())
    distinct = np.r_[np.where(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y == 1)[distinct]
    fps = np.cumsum(y == 0)[distinct]
    return np.r_[0., fps / n_neg], np.r_[0., tps / n_pos]


# ----------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------
def plot_roc(curves: Dict[str, Dict[str, tuple]], titles: Dict[str, str],
             method_titles: Dict[str, str], path: str) -> None:
    """One panel per test set, one curve per method."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    sets = list(curves)
    fig, axes = plt.subplots(1, max(1, len(sets)),
                             figsize=(5 * max(1, len(sets)), 5), dpi=100,
                             squeeze=False)
    for ax, tset in zip(axes[0], sets):
        for method, (fpr, tpr, auc) in curves[tset].items():
            lab = method_titles.get(method, method)
            if _is_num(auc):
                lab += f' (AUC {auc:.3f})'
            ax.plot(fpr, tpr, lw=2, label=lab)
        ax.plot([0, 1], [0, 1], '--', color='grey', lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel('1 - specificity')
        ax.set_ylabel('sensitivity (malignant)')
        ax.set_title(titles.get(tset, tset))
        ax.legend(loc='lower right', fontsize=8)
    fig.tight_layout()
    _save_fig(fig, path)


def _save_fig(fig, path):
    import matplotlib.pyplot as plt
    tmp = path + '.tmp.png'
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def plot_detections(examples: List[dict], path: str, cols: int = 4) -> None:
    """Grid of images: GT box yellow, predicted box red, probability."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt
    import mmcv
    n = max(1, len(examples))
    cols = min(cols, n)
    rows = int(math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows),
                             dpi=100, squeeze=False)
    for ax in axes.ravel():
        ax.axis('off')
    for ax, ex in zip(axes.ravel(), examples):
        img = mmcv.imread(ex['path'], channel_order='rgb')
        ax.imshow(img)
        for box, color in [(b, 'yellow') for b in ex['gt_boxes']] + \
                [(ex['pred_box'], 'red')] * (ex['pred_box'] is not None):
            x1, y1, x2, y2 = box
            ax.add_patch(
                patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False,
                                  edgecolor=color, lw=1.5))
        prob = ex.get('prob')
        title = f"{ex['set']}: GT {ex['pathology']}"
        if ex['pred_box'] is None:
            title += '\nno nodule found'
        else:
            title += f"\nIoU {ex['iou']:.2f}"
            if prob is not None:
                title += f', p(malignant) {prob:.2f}'
        ax.set_title(title, fontsize=8)
    fig.suptitle('ground truth (yellow), detection (red)', fontsize=10)
    fig.tight_layout()
    _save_fig(fig, path)


def _iou(a, b) -> float:
    iw = max(0., min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0., min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) \
        - inter
    return inter / union if union > 0 else 0.


def detection_examples(ann_file: str, data_root: str, det_pkl: str,
                       probs: Dict[int, float], set_name: str,
                       k: int = 4) -> List[dict]:
    """Up to ``k`` images (evenly spread over the split, benign and
    malignant) with GT boxes, the detector's top box and the mean teacher's
    probability."""
    from mmengine.fileio import load
    coco = _load_json(ann_file)
    if coco is None or not osp.isfile(det_pkl):
        return []
    gts = {}
    for a in coco['annotations']:
        x, y, w, h = a['bbox']
        gts.setdefault(a['image_id'], []).append([x, y, x + w, y + h])
    top = {}
    for p in load(det_pkl):
        inst = p.get('pred_instances', {})
        scores = inst.get('scores')
        if scores is None or len(scores) == 0:
            top[p.get('img_id')] = None
            continue
        i = int(np.argmax(np.asarray(scores)))
        top[p.get('img_id')] = [float(v) for v in
                                np.asarray(inst['bboxes'])[i]]
    images = [im for im in coco['images'] if im['id'] in gts]
    if not images:
        return []
    idx = np.unique(np.linspace(0, len(images) - 1, min(k, len(images)))
                    .round().astype(int))
    out = []
    for i in idx:
        im = images[i]
        pred = top.get(im['id'])
        out.append(
            dict(path=osp.join(data_root, im['file_name']),
                 set=set_name, pathology=im.get('pathology', '?'),
                 gt_boxes=gts[im['id']], pred_box=pred,
                 iou=max(_iou(pred, g) for g in gts[im['id']])
                 if pred else 0., prob=probs.get(im['id'])))
    return out


# ----------------------------------------------------------------------------
# versions
# ----------------------------------------------------------------------------
def environment() -> Dict[str, str]:
    env = dict(python=platform.python_version(), platform=platform.platform())
    for mod in ('torch', 'torchvision', 'mmengine', 'mmcv', 'mmdet',
                'mmpretrain', 'mmbus', 'numpy'):
        try:
            env[mod] = __import__(mod).__version__
        except Exception as e:  # report, never fail the report on it
            env[mod] = f'unavailable ({type(e).__name__})'
    try:
        repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
        env['git_commit'] = subprocess.run(
            ['git', 'rev-parse', 'HEAD'], cwd=repo, capture_output=True,
            text=True, timeout=10).stdout.strip() or 'unknown'
        dirty = subprocess.run(['git', 'status', '--porcelain'], cwd=repo,
                               capture_output=True, text=True,
                               timeout=10).stdout.strip()
        if dirty:
            env['git_commit'] += ' (with uncommitted changes)'
    except Exception:
        env['git_commit'] = 'unknown'
    return env


# ----------------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------------
def _md_table(header: List[str], rows: List[List[str]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + '|'.join('---' for _ in header) + '|']
    lines += ['| ' + ' | '.join(str(c) for c in r) + ' |' for r in rows]
    return '\n'.join(lines)


def make_report(study) -> dict:
    """Write ``report.md``, ``report.json``, ``roc_curves.png`` and
    ``detections.png`` for a finished :class:`mmbus.apis.pipeline.Study`."""
    from .pipeline import METHOD_TITLES, METHODS, STATE_FILE
    o = study.o
    out_dir = study.report_dir
    os.makedirs(out_dir, exist_ok=True)
    rep = dict(options=dict(format=o.format, schedule=o.schedule,
                            toy=o.toy, data_root=o.data_root,
                            external_root=study.root_b,
                            work_dir=o.work_dir))
    md = [f'# Two-stage breast nodule study: report\n',
          f'Data: `{o.data_root}` ({o.format}); schedule `{o.schedule}`'
          f"{' (toy run: numbers are meaningless)' if o.toy else ''}; "
          f'work dir `{o.work_dir}`.\n']

    # Table 1 ------------------------------------------------------------
    rows, t1 = [], {}
    for split in ('basic_train', 'extended_train', 'val', 'test'):
        c = split_counts(osp.join(study.ann_a, 'annotations',
                                  f'{split}.json'))
        if c:
            t1[f'A/{split}'] = c
    if study.root_b:
        c = split_counts(osp.join(study.ann_b, 'annotations', 'test.json'))
        if c:
            t1['B/test'] = c
    crop_split = {'A/basic_train': 'basic_train',
                  'A/extended_train': 'extended_train', 'A/val': 'val',
                  'A/test': 'test', 'B/test': 'test_external'}
    for name, c in t1.items():
        cj = _load_json(osp.join(study.crop_dir,
                                 f'{crop_split[name]}.json'))
        c['crops'] = len(cj['data_list']) if cj else None
        c['missed_by_detector'] = (cj['metainfo'].get('num_missed')
                                   if cj else None)
        c['crop_boxes'] = cj['metainfo'].get('box_source') if cj else None
        ds, split = name.split('/')
        rows.append([ds, split, c['malignant'], c['benign'], c['total'],
                     c['crops'] if c['crops'] is not None else '-',
                     c['missed_by_detector']
                     if c['missed_by_detector'] is not None else '-',
                     c['crop_boxes'] or '-'])
    rep['table1_splits'] = t1
    md += ['## Table 1. Datasets of breast nodules\n',
           _md_table(['Dataset', 'Usage', 'Malignant', 'Benign', 'Total',
                      'Crops', 'Missed by detector', 'Crop boxes'], rows),
           '\nExtended-train labels are hidden from the mean teacher '
           '(gt_label -1) and used only by the "basic + extended" '
           'supervised baseline. Missed images count as wrong answers in '
           'Tables 3/4.\n']

    # Table 2 ------------------------------------------------------------
    rows, t2 = [], {}
    for tname, _, title in study.test_sets:
        m = _load_json(osp.join(study.eval_dir, f'detector_{tname}',
                                'metrics.json'), {})
        t2[tname] = m
        get = (lambda k: m.get(f'bus_box/{k}'))
        rows.append([
            title, _f(get('mean_iou')), _f(get('std_iou')),
            _f(get('detected@0.5'), pct=True),
            _f(m.get('coco/bbox_mAP_50')),
            int(get('num_nodules')) if _is_num(get('num_nodules')) else '-'
        ])
    rep['table2_detection'] = t2
    md += ['## Table 2. Detection: box IoU (ASC) with the doctors\' boxes\n',
           _md_table(['Test set', 'Mean IoU', 'Std IoU', 'IoU >= 0.5',
                      'COCO AP50', 'Nodules'], rows),
           '\nIoU of each ground-truth nodule with the top-scoring '
           'detection of its image (0 when nothing was detected).\n']

    # Tables 3/4 + ROC ------------------------------------------------------
    curves, t34, probs_mt = {}, {}, {}
    train_sets = dict(mean_teacher='A-basic (labelled) + A-extended '
                      '(unlabelled)', supervised_basic='A-basic',
                      supervised_all='A-basic + A-extended (labelled)')
    for n, (tname, split, title) in enumerate(study.test_sets, 3):
        rows, t34[tname], curves[tname] = [], {}, {}
        for method, _ in METHODS:
            base = osp.join(study.eval_dir, f'{method}_{tname}')
            m = _load_json(osp.join(base, 'metrics.json'), {})
            t34[tname][method] = m
            n_samples = pick_metric(m, 'num_samples')
            rows.append([
                METHOD_TITLES[method], train_sets[method],
                fmt_pct_ci(m, 'sensitivity'), fmt_pct_ci(m, 'specificity'),
                fmt_pct_ci(m, 'accuracy'), _f(pick_metric(m, 'auc'),
                                               ci=(pick_metric(
                                                   m, 'auc_ci_low'),
                                                   pick_metric(
                                                       m, 'auc_ci_high'))),
                int(n_samples) if _is_num(n_samples) else '-'
            ])
            s, y, ids = load_predictions(
                osp.join(base, 'predictions.pkl'),
                osp.join(study.crop_dir, f'{split}.json'),
                osp.join(study.crop_dir, f'{split}_missed.json'))
            if len(s) and (y == 1).any() and (y == 0).any():
                fpr, tpr = roc_points(s, y)
                curves[tname][method] = (fpr, tpr, pick_metric(m, 'auc'))
            if method == 'mean_teacher':
                probs_mt[tname] = {
                    i: float(p) for i, p in zip(ids, s) if i is not None}
        md += [f'## Table {n}. Classification, {title}\n',
               _md_table(['Method', 'Train sets', 'Sensitivity',
                          'Specificity', 'Accuracy', 'AUC', 'N'], rows),
               '\n95% CIs: Wilson for proportions, DeLong for AUC; '
               'malignant = positive class; threshold 0.5 on '
               'p(malignant).\n']
    rep['tables34_classification'] = t34
    roc_png = osp.join(out_dir, 'roc_curves.png')
    plot_roc(curves, {t: title for t, _, title in study.test_sets},
             METHOD_TITLES, roc_png)
    md += ['## ROC curves\n', '![ROC curves](roc_curves.png)\n']

    # detections grid --------------------------------------------------------
    examples = []
    for tname, _, _ in study.test_sets:
        ann, root = ((osp.join(study.ann_a, 'annotations', 'test.json'),
                      study.root_a) if tname == 'internal' else
                     (osp.join(study.ann_b, 'annotations', 'test.json'),
                      study.root_b))
        examples += detection_examples(
            ann, root,
            osp.join(study.eval_dir, f'detector_{tname}', 'predictions.pkl'),
            probs_mt.get(tname, {}), tname)
    det_png = osp.join(out_dir, 'detections.png')
    plot_detections(examples, det_png)
    md += ['## Example detections\n',
           'Ground truth yellow, detection red, mean-teacher malignancy '
           'probability in the title.\n',
           '![detections](detections.png)\n']

    # commands + versions ------------------------------------------------------
    state = _load_json(osp.join(o.work_dir, STATE_FILE), {}).get('stages',
                                                                 {})
    cmds = []
    for name, s in state.items():
        if s.get('cmd'):
            cmds.append(dict(stage=name, cmd=s['cmd'],
                             wall_s=s.get('wall_s')))
    rep['commands'] = cmds
    rep['environment'] = environment()
    total = sum(c['wall_s'] or 0 for c in cmds)
    import shlex
    md += ['## Commands\n',
           'Each stage as run by `tools/run_pipeline.py` (wall time of its '
           f'last run; sum {total:.0f} s):\n', '```bash']
    for c in cmds:
        md.append(f"# {c['stage']} ({(c['wall_s'] or 0):.0f} s)")
        md.append(' '.join(shlex.quote(x) for x in c['cmd']))
    md += ['```\n', '## Using the trained models\n',
           'Mean teacher exported as a plain mmpretrain classifier: '
           f"`{osp.join(o.work_dir, 'export', 'teacher.pth')}` with "
           f"`{osp.join(o.work_dir, 'export', 'teacher_config.py')}`. "
           'Two-stage inference on new images:\n', '```bash',
           'python tools/infer.py IMAGES_OR_FOLDER --det-config '
           f"{osp.join(study.cfg_dir, 'detector.py')} --det-checkpoint "
           f"{_safe_ckpt(study.det_work)} --cls-config "
           f"{osp.join(o.work_dir, 'export', 'teacher_config.py')} "
           f"--cls-checkpoint {osp.join(o.work_dir, 'export', 'teacher.pth')}"
           ' --out-dir outputs/infer', '```\n', '## Versions\n',
           _md_table(['package', 'version'],
                     [[k, v] for k, v in rep['environment'].items()]), '']
    md_path = osp.join(out_dir, 'report.md')
    tmp = md_path + '.tmp'
    with open(tmp, 'w') as f:
        f.write('\n'.join(md) + '\n')
    os.replace(tmp, md_path)
    dump_json_atomic(rep, osp.join(out_dir, 'report.json'), indent=1,
                     default=_json_default)
    print(f'report written to {md_path}')
    return rep


def _safe_ckpt(work_dir: str) -> str:
    from .pipeline import checkpoint_of
    try:
        return checkpoint_of(work_dir)
    except FileNotFoundError:
        return osp.join(work_dir, 'CHECKPOINT.pth')


def _json_default(o):
    if hasattr(o, 'tolist'):
        return o.tolist()
    return str(o)


def _f(v, pct: bool = False, ci=None) -> str:
    if not _is_num(v):
        return 'n/a'
    s = f'{100 * v:.1f}%' if pct else f'{v:.3f}'
    if ci and all(_is_num(c) for c in ci):
        s += f' [{ci[0]:.3f}, {ci[1]:.3f}]'
    return s
