"""Figures of a study, all built from result rows and dumped predictions (PNG, written atomically)."""
import math
import os.path as osp
from typing import Dict, List, Sequence

import numpy as np

from mmbus.utils.io import atomic_write
from .methods import title
from .results import fmt_auc, is_num


def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def save_fig(fig, path: str) -> str:
    plt = _plt()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format='png'))
    plt.close(fig)
    return path


def plot_roc_panels(panels: Dict[str, Dict[str, tuple]], path: str) -> str:
    """One panel per entry of ``panels`` (panel title -> {method: (scores, labels, auc_metrics)}); the
    curve is the metric's :func:`roc_curve`, the legend its AUC with the DeLong 95 % CI."""
    from mmbus.evaluation.operating_points import roc_curve
    plt = _plt()
    k = max(1, len(panels))
    fig, axes = plt.subplots(1, k, figsize=(5 * k, 5), dpi=100, squeeze=False)
    for ax, (panel, curves) in zip(axes[0], panels.items()):
        for method, (scores, labels, m) in curves.items():
            _, fpr, tpr = roc_curve(scores, labels)
            lab = title(method)
            if is_num(m.get('auc')):
                lab += f' (AUC {fmt_auc(m)})'
            ax.plot(fpr, tpr, lw=2, label=lab)
        ax.plot([0, 1], [0, 1], '--', color='grey', lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel('1 - specificity')
        ax.set_ylabel('sensitivity (malignant)')
        ax.set_title(panel, fontsize=9)
        ax.legend(loc='lower right', fontsize=7)
    fig.tight_layout()
    return save_fig(fig, path)


def metric_series(rows: Sequence[dict], x_key: str, metric: str = 'auc') -> Dict[str, dict]:
    """Per method, what :func:`plot_metric_by` draws: ``xs``, ``ys`` and the error bar's ``lo`` / ``hi``. One row
    per x: its value and 95 % CI. Several rows at an x (draws): their mean and mean -/+ sd (``draws``: how many
    at each x). A method at one x while others span several (supervised-all in a learning curve): ``level``."""
    xs_all = {r['grid'][x_key] for r in rows}
    out: Dict[str, dict] = {}
    for method in dict.fromkeys(r['method'] for r in rows):
        by_x: Dict[float, list] = {}
        for r in rows:
            m = r['metrics']
            if r['method'] == method and is_num(m.get(metric)):
                ci = (m.get(f'{metric}_ci_low'), m.get(f'{metric}_ci_high'))
                by_x.setdefault(r['grid'][x_key], []).append((m[metric], *ci))
        if not by_x:
            continue
        several = any(len(v) > 1 for v in by_x.values())
        s = dict(xs=sorted(by_x), ys=[], lo=[], hi=[], draws=[len(by_x[x]) for x in sorted(by_x)],
                 level=len(by_x) == 1 and len(xs_all) > 1, mean_sd=several)
        for x in s['xs']:
            vals = [v[0] for v in by_x[x]]
            y = float(np.mean(vals))
            if several:
                sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
                lo, hi = y - sd, y + sd
            else:
                lo, hi = by_x[x][0][1], by_x[x][0][2]
            s['ys'].append(y)
            s['lo'].append(lo if is_num(lo) else y)
            s['hi'].append(hi if is_num(hi) else y)
        out[method] = s
    return out


def plot_metric_by(rows: Sequence[dict], x_key: str, path: str, xlabel: str, title_text: str,
                   metric: str = 'auc', percent_x: bool = False) -> str:
    """``metric`` against a grid value, one line per method (learning curves, seeds): the value with its 95 %
    CI, or the mean +- sd where several draws share an x (:func:`metric_series`)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=110)
    series = metric_series(rows, x_key, metric)
    # a setting by name (e.g. consistency_on 'all' / 'unlabelled'): every value side by side, in sorted order
    xs = {x for s in series.values() for x in s['xs']}
    names = sorted(xs, key=str) if any(not is_num(x) for x in xs) else []
    at = {str(name): i for i, name in enumerate(names)}
    for j, (method, s) in enumerate(series.items()):
        what = f' (mean ± sd of {max(s["draws"])})' if s['mean_sd'] else ''
        if s['level']:  # independent of x: a level across the plot
            ax.axhline(s['ys'][0], ls='--', color=f'C{j}',
                       label=f'{title(method)}: {s["ys"][0]:.3f}{what} (same at every x)')
            ax.axhspan(s['lo'][0], s['hi'][0], color=f'C{j}', alpha=0.08)
            continue
        off = (j - (len(series) - 1) / 2) * (0.0 if percent_x else 0.08)
        x = [at[str(v)] + off if names else (100 * v if percent_x else v + off) for v in s['xs']]
        err = np.array([[y - lo for y, lo in zip(s['ys'], s['lo'])], [hi - y for y, hi in zip(s['ys'], s['hi'])]])
        ax.errorbar(x, s['ys'], yerr=err, marker='o', capsize=3, label=title(method) + what)
    if names:
        ax.set_xticks(range(len(names)), [str(n) for n in names])
    ax.set_xlabel(xlabel)
    several = any(s['mean_sd'] for s in series.values())
    ax.set_ylabel(metric.upper() + (' (mean ± sd over draws)' if several else ' (95% CI)'))
    ax.set_title(title_text, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_fig(fig, path)


def plot_validation_curves(panels: Dict[str, Dict[str, dict]], path: str) -> str:
    """One panel per grid point: for each method the monitored validation metric against training
    iterations (raw, thin; smoothed, thick, where the run smoothed it), the selected checkpoint marked.
    ``panels``: panel title -> {method: dict(curves=..., monitor=..., raw=...)} (see :mod:`.curves`)."""
    plt = _plt()
    k = max(1, len(panels))
    cols = min(k, 3)
    rows_n = int(math.ceil(k / cols))
    fig, axes = plt.subplots(rows_n, cols, figsize=(5.2 * cols, 3.8 * rows_n), dpi=100, squeeze=False)
    for ax in axes.ravel()[k:]:
        ax.axis('off')
    for ax, (panel, runs) in zip(axes.ravel(), panels.items()):
        for j, (method, r) in enumerate(runs.items()):
            color = f'C{j}'
            raw = r['curves'].get(r['raw']) or []
            sel = r['curves'].get(r['monitor']) or []
            if raw:
                ax.plot(*zip(*raw), color=color, lw=0.8, alpha=0.45)
            if sel and r['monitor'] != r['raw']:
                ax.plot(*zip(*sel), color=color, lw=2, label=f"{title(method)} ({r['monitor'].split('/')[-1]})")
            elif raw:
                ax.lines[-1].set_label(title(method))
            if sel:
                best = max(sel, key=lambda p: p[1])
                ax.plot([best[0]], [best[1]], marker='*', ms=11, color=color)
        ax.set_xlabel('training iteration')
        ax.set_ylabel('validation AUC')
        ax.set_title(f'{panel}: thin raw, thick smoothed, * selected', fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc='lower right')
    fig.tight_layout()
    return save_fig(fig, path)


def _iou(a, b) -> float:
    iw = max(0., min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0., min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.


def detection_examples(coco: dict, data_root: str, det_preds: List[dict], probs: Dict[int, float],
                       set_name: str, k: int = 4) -> List[dict]:
    """Up to ``k`` images spread evenly over a split: ground-truth boxes, the detector's top box and the
    malignancy probability of its crop."""
    if not coco or not det_preds:
        return []
    gts = {}
    for a in coco['annotations']:
        x, y, w, h = a['bbox']
        gts.setdefault(a['image_id'], []).append([x, y, x + w, y + h])
    top = {}
    for p in det_preds:
        inst = p.get('pred_instances', {})
        scores = inst.get('scores')
        if scores is None or len(scores) == 0:
            top[p.get('img_id')] = None
            continue
        i = int(np.argmax(np.asarray(scores)))
        top[p.get('img_id')] = [float(v) for v in np.asarray(inst['bboxes'])[i]]
    images = [im for im in coco['images'] if im['id'] in gts]
    if not images:
        return []
    idx = np.unique(np.linspace(0, len(images) - 1, min(k, len(images))).round().astype(int))
    out = []
    for i in idx:
        im = images[i]
        pred = top.get(im['id'])
        out.append(dict(path=osp.join(data_root, im['file_name']), set=set_name,
                        pathology=im.get('pathology', '?'), gt_boxes=gts[im['id']], pred_box=pred,
                        iou=max(_iou(pred, g) for g in gts[im['id']]) if pred else 0.,
                        prob=probs.get(im['id'])))
    return out


def plot_detections(examples: List[dict], path: str, cols: int = 4) -> str:
    """Grid of test images: ground truth yellow, detection red (the paper's Figure 3)."""
    import matplotlib.patches as patches
    import mmcv
    plt = _plt()
    n = max(1, len(examples))
    cols = min(cols, n)
    rows = int(math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), dpi=100, squeeze=False)
    for ax in axes.ravel():
        ax.axis('off')
    for ax, ex in zip(axes.ravel(), examples):
        ax.imshow(mmcv.imread(ex['path'], channel_order='rgb'))
        boxes = [(b, 'yellow') for b in ex['gt_boxes']]
        if ex['pred_box'] is not None:
            boxes.append((ex['pred_box'], 'red'))
        for (x1, y1, x2, y2), color in boxes:
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, lw=1.5))
        t = f"{ex['set']}: GT {ex['pathology']}"
        if ex['pred_box'] is None:
            t += '\nno nodule found'
        else:
            t += f"\nIoU {ex['iou']:.2f}"
            if ex.get('prob') is not None:
                t += f", p(malignant) {ex['prob']:.2f}"
        ax.set_title(t, fontsize=8)
    fig.suptitle('ground truth (yellow), detection (red)', fontsize=10)
    fig.tight_layout()
    return save_fig(fig, path)
