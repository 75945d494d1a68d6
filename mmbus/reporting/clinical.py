"""The clinician's view of a study's recognisers, from result rows and the files they name: calibration (the
temperature fitted on validation; ECE and Brier before and after it) and the operating points chosen on
validation (sensitivity 0.95 and 0.90, Youden) applied unchanged to the test crops, with sensitivity,
specificity, PPV and NPV and their 95 % CIs as the test metric computed them; reliability diagrams (PNG)."""
import os.path as osp
from typing import Dict, List, Tuple

from .methods import title
from .plots import _plt, save_fig
from .results import fmt, is_num, load_json, md_table, pick_metric

POINTS = ('sensitivity_0.95', 'sensitivity_0.90', 'youden')
POINT_TITLES = {'sensitivity_0.95': '95 % sensitivity (biopsy)', 'sensitivity_0.90': '90 % sensitivity',
                'youden': "Youden's index"}


def _ci(m: dict, name: str) -> str:
    return fmt(pick_metric(m, name), ci=(pick_metric(m, f'{name}_ci_low'), pick_metric(m, f'{name}_ci_high')), digits=2)


def _arrow(m: dict, name: str) -> str:
    raw, cal = pick_metric(m, f'{name}_raw'), pick_metric(m, name)
    return f'{fmt(raw)} → {fmt(cal)}' if is_num(raw) else fmt(cal)


def clinical_section(ctx, rows: List[dict], test_set: str, heading: str, prefix: str = '',
                     level: str = '') -> Tuple[dict, List[str]]:
    """Calibration and operating-point tables of the classifier rows of ``test_set`` (one line per run), and one
    reliability diagram per method (its first run in ``rows``). ``ctx``: the report's
    :class:`~mmbus.reporting.report.ReportContext` (the methods' order, the files the rows name)."""
    rows = [r for r in rows if r.get('kind') == 'classifier' and r.get('test_set') == test_set]
    rows = [r for r in rows if is_num(pick_metric(r['metrics'], 'temperature'))]
    if not rows:
        return {}, []
    rows = sorted(rows, key=lambda r: (list(ctx.methods).index(r['method']) if r['method'] in ctx.methods
                                       else 99, r.get('gid', '')))
    cal_rows, op_rows, rep = [], [], dict(calibration=[], operating_points=[])
    for r in rows:
        m, run = r['metrics'], title(r['method']) + (f" ({r['gid']})" if r.get('gid') else '')
        cal = load_json(ctx.p(r['calibration'])) if r.get('calibration') else None
        cal_rows.append([run, fmt(pick_metric(m, 'temperature'), digits=2), _arrow(m, 'ece'), _arrow(m, 'brier'),
                         fmt(pick_metric(m, 'auc'))])
        rep['calibration'].append(dict(method=r['method'], gid=r.get('gid'), **{
            k: pick_metric(m, k) for k in ('temperature', 'ece_raw', 'ece', 'brier_raw', 'brier', 'auc')}))
        for p in POINTS:
            if not is_num(pick_metric(m, f'{p}/sensitivity')):
                continue
            thr = (cal or {}).get('thresholds', {}).get(p)
            op_rows.append([run, POINT_TITLES[p], fmt(thr), _ci(m, f'{p}/sensitivity'), _ci(m, f'{p}/specificity'),
                            _ci(m, f'{p}/ppv'), _ci(m, f'{p}/npv')])
            rep['operating_points'].append(dict(method=r['method'], gid=r.get('gid'), point=p, threshold=thr, **{
                f: pick_metric(m, f'{p}/{f}') for f in ('sensitivity', 'specificity', 'ppv', 'npv')}))
    png = f'{prefix}reliability_{test_set}.png'
    drawn = reliability_panels(ctx, rows, ctx.p('report', png))
    md = [f'##{level} {heading}\n',
          'Each run\'s temperature and thresholds were fitted on its validation crops only and applied unchanged '
          'here. ECE: expected calibration error over 10 equal-mass bins; before → after the temperature.\n',
          md_table(['Run', 'T', 'ECE', 'Brier', 'AUC'], cal_rows), '',
          'Operating points (malignant when the calibrated probability reaches the threshold); 95 % Wilson CIs:\n',
          md_table(['Run', 'Operating point', 'Threshold', 'Sensitivity', 'Specificity', 'PPV', 'NPV'], op_rows), '']
    if drawn:
        md += [f'![reliability diagrams]({png})\n']
    return rep, md


def reliability_panels(ctx, rows: List[dict], path: str) -> bool:
    """One reliability diagram per method (its first run): raw and calibrated scores of the test crops, the
    diagonal, ECE in the legend; computed by the calibration module from the run's predictions."""
    from mmbus.evaluation.calibration import apply_temperature, expected_calibration_error, reliability_curve
    first: Dict[str, dict] = {}
    for r in rows:
        first.setdefault(r['method'], r)
    panels = []
    for method, r in first.items():
        scores, labels, _ = ctx.predictions(r)
        t = pick_metric(r['metrics'], 'temperature')
        if not ((labels == 0).any() and (labels == 1).any() and is_num(t)):
            continue
        if scores.min() < 0 or scores.max() > 1:  # a missed_rule score outside [0, 1]: no probabilities
            continue
        panels.append((method, scores, apply_temperature(scores, t), labels))
    if not panels:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), dpi=100, squeeze=False)
    for ax, (method, raw, cal, y) in zip(axes[0], panels):
        ax.plot([0, 1], [0, 1], '--', color='grey', lw=1)
        for s, name, style in ((raw, 'raw', 'o-'), (cal, 'calibrated', 's-')):
            c = reliability_curve(s, y, 10)
            ax.plot(c['mean_predicted'], c['observed'], style, ms=3,
                    label=f'{name}, ECE {expected_calibration_error(s, y, 10):.3f}')
        ax.set_title(title(method), fontsize=9)
        ax.set_xlabel('mean predicted p(malignant)')
        ax.set_ylabel('observed share malignant')
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7, loc='upper left')
    fig.tight_layout()
    save_fig(fig, path)
    return osp.isfile(path)
