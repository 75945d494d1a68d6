"""A project's targets, checked on a report's own figures: data in the spec
(``report.targets``), never built into the report. The comparison report calls :func:`check_targets` only when
the spec sets targets, and prints :func:`targets_section`.

``report.targets``: ``test_set`` (default: the summary's first), ``ssl`` (the semi-supervised methods, default
mean teacher and FixMatch), ``upper`` (the upper bound, default supervised-all), ``gain`` (least mean AUC gain
over the baseline, default +0.05), ``p`` and ``min_significant`` (grid points with a positive paired difference
at p < ``p``, default 0.05 and 2), ``gap`` (most mean AUC behind the upper bound, default 0.02).

The paper report (the main job) calls :func:`check_paper_targets` and prints :func:`paper_targets_section`; its
``report.targets``: ``detector_iou`` and ``upper_auc`` (``{test_set: least value}``), ``headroom`` (least AUC of
supervised-all over supervised-basic, default 0.08), ``closed`` (least share of that gap the better
semi-supervised method closes, default 0.5), ``ssl``, ``upper`` and ``test_sets`` (default: every classified
test set).
"""
from typing import List

from .methods import title
from .results import is_num, md_table

TOL = 1e-9  # float tolerance of the ">=" targets (0.85 - 0.80 is 0.04999...)
#: ``report.targets`` keys per report type
TARGET_KEYS = {'comparison': ('test_set', 'ssl', 'upper', 'gain', 'p', 'min_significant', 'gap'),
               'paper': ('detector_iou', 'upper_auc', 'headroom', 'closed', 'ssl', 'upper', 'test_sets')}


def check_targets(rep: dict, targets: dict, baseline: str) -> dict:
    """The stage-2 targets on ``targets['test_set']``: the better semi-supervised method (``targets['ssl']``)
    at least ``gain`` above ``baseline`` on the mean over grid points, with paired p < ``p`` on at least
    ``min_significant`` of them, and within ``gap`` of ``targets['upper']`` (supervised-all)."""
    ts = targets.get('test_set', next(iter(rep['summary']), None))
    summ = rep['summary'].get(ts, {})
    upper = targets.get('upper', 'supervised_all')
    base = summ.get(baseline, {}).get('mean')
    out = dict(test_set=ts, baseline=baseline, upper=upper, gain=targets.get('gain', 0.05),
               gap=targets.get('gap', 0.02), p=targets.get('p', 0.05),
               min_significant=targets.get('min_significant', 2), methods={})
    for m in targets.get('ssl', ['mean_teacher', 'fixmatch']):
        mean = summ.get(m, {}).get('mean')
        if not (is_num(mean) and is_num(base)):
            continue
        pts = [p for p in rep['paired'] if p['test_set'] == ts and p['method'] == m]
        sig = sum(p['p_value'] is not None and p['p_value'] < out['p'] and p['diff'] > 0 for p in pts)
        up = summ.get(upper, {}).get('mean')
        res = dict(mean=mean, gain=mean - base, significant=sig, of=len(pts),
                   gap_to_upper=(up - mean) if is_num(up) else None)
        res['gain_met'] = res['gain'] >= out['gain'] - TOL
        res['significance_met'] = sig >= out['min_significant']
        res['gap_met'] = res['gap_to_upper'] is not None and res['gap_to_upper'] <= out['gap'] + TOL
        res['met'] = res['gain_met'] and res['significance_met'] and res['gap_met']
        out['methods'][m] = res
    best = max(out['methods'], key=lambda m: out['methods'][m]['mean'], default=None)
    out['best_ssl'] = best
    out['met'] = bool(best and out['methods'][best]['met'])
    return out


def targets_section(t: dict) -> List[str]:
    yes = {True: 'met', False: '**not met**'}
    rows = []
    for m, r in t['methods'].items():
        rows.append([title(m), f"{r['mean']:.3f}",
                     f"{r['gain']:+.3f} (target ≥ {t['gain']:+.2f}): {yes[r['gain_met']]}",
                     f"{r['significant']}/{r['of']} (target ≥ {t['min_significant']}): {yes[r['significance_met']]}",
                     (f"{r['gap_to_upper']:+.3f} (target ≤ {t['gap']:.2f}): {yes[r['gap_met']]}"
                      if r['gap_to_upper'] is not None else 'n/a')])
    verdict = (f"The better semi-supervised method ({title(t['best_ssl'])}) "
               f"{'meets' if t['met'] else 'does not meet'} every target." if t['best_ssl'] else
               'No semi-supervised method was run.')
    return [f"## Targets ({t['test_set']})\n",
            md_table(['Method', 'mean AUC', f"gain over {title(t['baseline'])}", f"seeds with paired p < {t['p']}",
                      f"behind {title(t['upper'])}"], rows), '', verdict, '']


def check_paper_targets(rep: dict, targets: dict) -> dict:
    """The two-stage targets of a paper report (``report.targets`` of a ``type='paper'`` spec) on its own
    tables: per test set, the detector's mean box IoU at least ``detector_iou[test_set]``; supervised-all's
    AUC at least ``upper_auc[test_set]``; supervised-basic at least ``headroom`` below supervised-all; the
    better semi-supervised method (``ssl``) closing at least ``closed`` of that gap. A test set without a
    figure for a target is reported as not met."""
    from .results import pick_metric
    out = dict(test_sets={}, headroom=targets.get('headroom', 0.08), closed=targets.get('closed', 0.5))
    names = targets.get('test_sets') or list(rep.get('tables34_classification', {}))
    for ts in names:
        cls = rep.get('tables34_classification', {}).get(ts, {})
        auc = {m: pick_metric(v, 'auc') for m, v in cls.items()}
        r = dict(checks=[])
        iou = (rep.get('table2_detection', {}).get(ts) or {}).get('bus_box/mean_iou')
        want = (targets.get('detector_iou') or {}).get(ts)
        if want is not None:
            r['checks'].append(('detector mean IoU', iou, f'>= {want:.2f}', is_num(iou) and iou >= want - TOL))
        up, base = auc.get(targets.get('upper', 'supervised_all')), auc.get('supervised_basic')
        want = (targets.get('upper_auc') or {}).get(ts)
        if want is not None:
            r['checks'].append(('supervised-all AUC', up, f'>= {want:.2f}', is_num(up) and up >= want - TOL))
        gap = up - base if is_num(up) and is_num(base) else None
        r['checks'].append(('supervised-all minus supervised-basic', gap, f'>= {out["headroom"]:.2f}',
                            is_num(gap) and gap >= out['headroom'] - TOL))
        ssl = {m: auc[m] for m in targets.get('ssl', ['mean_teacher', 'fixmatch']) if is_num(auc.get(m))}
        best = max(ssl, key=ssl.get, default=None)
        share = (ssl[best] - base) / gap if best and is_num(gap) and gap > 0 else None
        r['best_ssl'] = best
        r['checks'].append((f'share of that gap closed by {title(best) if best else "semi-supervised"}', share,
                            f'>= {out["closed"]:.2f}', is_num(share) and share >= out['closed'] - TOL))
        r['met'] = all(c[3] for c in r['checks'])
        out['test_sets'][ts] = r
    out['met'] = bool(out['test_sets']) and all(r['met'] for r in out['test_sets'].values())
    return out


def paper_targets_section(t: dict, titles: dict) -> List[str]:
    yes = {True: 'met', False: '**not met**'}
    rows = [[titles.get(ts, ts), name, f'{v:.3f}' if is_num(v) else '-', want, yes[bool(ok)]]
            for ts, r in t['test_sets'].items() for name, v, want, ok in r['checks']]
    verdict = 'This run meets every target.' if t['met'] else \
        'This run does not meet every target: the rows marked **not met** say which.'
    return ['## Targets\n', md_table(['Test set', 'Target', 'This run', 'Wanted', ''], rows), '', verdict, '']
