"""Stage 1 of a study's results, as the GPU-results summary (:mod:`.gpu_results`) reports it: each detector's
test figures from its row, its validation curve (from the run's ``scalars.json``, else its console log) as a
PNG, and the stage-1 targets."""
import glob
import os.path as osp
from typing import Dict, List, Optional, Tuple

from .curves import Validations, curve_from_log, read_curves, validation_schedule, validations
from .methods import detector_key
from .results import is_num, load_json
from .targets import at_least

SUPERVISED, SEMI, UPPER = 'detector', 'soft_teacher', 'upper'
DETECTOR_TITLES = {SUPERVISED: 'Supervised (basic-train boxes)',
                   SEMI: 'GatedSoftTeacher (semi-supervised, from the supervised one)',
                   UPPER: 'Supervised upper bound (basic + extended boxes)'}
DETECTOR_TARGETS = dict(min_mean_iou=0.75, min_ap50=0.90)


def detector_curve(work: str, stem: str) -> Tuple[Validations, Optional[int], str]:
    """(validations, last iteration, source) of a detector: its ``scalars.json`` files (any depth under its
    work dir's timestamped folders), else its training console log (``logs/train_<stem>.log``, for a tarball
    whose ``scalars.json`` was not packed)."""
    files = sorted(glob.glob(osp.join(work, stem, 'vis_data', 'scalars.json')) +
                   glob.glob(osp.join(work, stem, '*', 'vis_data', 'scalars.json')))
    vi, mi = validation_schedule(osp.join(work, 'configs', f'{stem}.py'))
    if files:
        curves = read_curves(files=files, val_interval=vi, max_iters=mi)
        curve = validations(curves)
        last = max([it for it, _ in curves.get('loss', [])] + [it for it, _ in curve] + [0])
        return curve, last or None, 'scalars.json'
    log = osp.join(work, 'logs', f'train_{stem}.log')
    curve = curve_from_log(log)
    if curve:
        return curve, max(it for it, _ in curve), 'training log (no scalars.json in the results)'
    return [], None, 'none'


def plot_detector_curve(name: str, curve: Validations, path: str) -> str:
    """Mean IoU (raw and smoothed, the selection metric) and AP50 against training iterations, with the
    stage-1 IoU target; ``name`` is a detector's key (:data:`DETECTOR_TITLES`) or a title of its own."""
    from .plots import _plt, save_fig
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=90)
    its = [it for it, _ in curve]
    series = (('bus_box/mean_iou', 'mean IoU', 'o-'),
              ('bus_box/mean_iou_smooth', 'mean IoU (smoothed, selection)', '-'),
              ('coco/bbox_mAP_50', 'COCO AP50', 's--'))
    for key, label, style in series:
        ys = [m.get(key) for _, m in curve]
        if any(is_num(y) for y in ys):
            ax.plot([i for i, y in zip(its, ys) if is_num(y)], [y for y in ys if is_num(y)], style, ms=3,
                    label=label)
    ax.axhline(DETECTOR_TARGETS['min_mean_iou'], color='grey', ls=':', lw=1,
               label=f"IoU target {DETECTOR_TARGETS['min_mean_iou']:.2f}")
    ax.set_ylim(0, 1)
    ax.set_xlabel('training iteration')
    ax.set_ylabel('validation')
    ax.set_title(f'{DETECTOR_TITLES.get(name, name)}: validation', fontsize=9)
    ax.legend(fontsize=7, loc='lower right')
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_fig(fig, path)


def detectors_section(work: str, png_dir: str) -> Dict[str, dict]:
    """One entry per detector row (``kind='detector'``) with its metrics, training time, last iteration
    and validation-curve PNG (written into ``png_dir``)."""
    out = {}
    rows = [load_json(f) for f in glob.glob(osp.join(work, 'rows', '*.json'))]
    rows = [r for r in rows if isinstance(r, dict) and r.get('kind') == 'detector']
    order = list(DETECTOR_TITLES)
    for row in sorted(rows, key=lambda r: (order.index(r.get('method')) if r.get('method') in order else len(order),
                                           str(r.get('method')), str(r.get('test_set')))):
        name = row.get('method', 'detector')
        m = row.get('metrics') or {}
        curve, last, source = detector_curve(work, detector_key(name))
        png = None
        if curve:
            png = f'detector_curve_{name}.png'
            plot_detector_curve(name, curve, osp.join(png_dir, png))
        out[name] = dict(
            title=DETECTOR_TITLES.get(name, name), test_set=row.get('test_set'),
            mean_iou=m.get('bus_box/mean_iou'), std_iou=m.get('bus_box/std_iou'),
            detected_at_0_5=m.get('bus_box/detected@0.5'),
            froc={k.split('froc_sens@')[1]: v for k, v in m.items() if 'froc_sens@' in k},
            coco_map=m.get('coco/bbox_mAP'), ap50=m.get('coco/bbox_mAP_50'), ap75=m.get('coco/bbox_mAP_75'),
            nodules=m.get('bus_box/num_nodules'), train_s=row.get('train_s'), iterations=last,
            validations=len(curve),
            best_val_mean_iou=max([c['bus_box/mean_iou'] for _, c in curve if is_num(c.get('bus_box/mean_iou'))],
                                  default=None),
            curve_source=source, curve=png)
    return out


def _verdict(value, ok) -> Optional[bool]:
    return None if not is_num(value) else bool(ok)


def detector_targets(dets: Dict[str, dict], min_mean_iou: float = DETECTOR_TARGETS['min_mean_iou'],
                     min_ap50: float = DETECTOR_TARGETS['min_ap50']) -> dict:
    """Stage 1: the supervised detector's mean IoU >= ``min_mean_iou`` and AP50 >= ``min_ap50``; the
    semi-supervised one above the supervised one on both. ``met`` is None where a value is missing."""
    sup, semi = dets.get(SUPERVISED, {}), dets.get(SEMI, {})
    out = {f'supervised_{key}': dict(value=sup.get(key), target=f'≥ {want:.2f}',
                                     met=_verdict(sup.get(key), at_least(sup.get(key), want)))
           for key, want in (('mean_iou', min_mean_iou), ('ap50', min_ap50))}
    for key in ('mean_iou', 'ap50'):
        a, b = semi.get(key), sup.get(key)
        out[f'semi_above_supervised_{key}'] = dict(
            value=a, reference=b, target='> supervised',
            met=None if not (is_num(a) and is_num(b)) else bool(a > b))
    verdicts: List[Optional[bool]] = [v['met'] for v in out.values()]
    out['met'] = None if any(v is None for v in verdicts) else all(verdicts)
    return out
