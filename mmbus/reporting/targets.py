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
from typing import List, Optional, Sequence

from .methods import title
from .results import is_num, md_table

TOL = 1e-9  # float tolerance of the ">=" targets (0.85 - 0.80 is 0.04999...)
#: ``report.targets`` keys per report type
TARGET_KEYS = {'comparison': ('test_set', 'ssl', 'upper', 'gain', 'p', 'min_significant', 'gap'),
               'paper': ('detector_iou', 'upper_auc', 'headroom', 'closed', 'ssl', 'upper', 'test_sets')}


def at_least(value, target: float) -> bool:
    """``value >= target`` within :data:`TOL`; False for a missing value."""
    return is_num(value) and value >= target - TOL


def at_most(value, target: float) -> bool:
    """``value <= target`` within :data:`TOL`; False for a missing value."""
    return is_num(value) and value <= target + TOL


def verdict_word(met: Optional[bool]) -> str:
    """How every targets table says a check came out: ``met``, ``**not met**``, ``not measured`` (None)."""
    return {True: 'met', False: '**not met**', None: 'not measured'}[met]


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
        res['gain_met'] = at_least(res['gain'], out['gain'])
        res['significance_met'] = sig >= out['min_significant']
        res['gap_met'] = at_most(res['gap_to_upper'], out['gap'])
        res['met'] = res['gain_met'] and res['significance_met'] and res['gap_met']
        out['methods'][m] = res
    best = max(out['methods'], key=lambda m: out['methods'][m]['mean'], default=None)
    out['best_ssl'] = best
    out['met'] = bool(best and out['methods'][best]['met'])
    return out


def targets_section(t: dict) -> List[str]:
    rows = []
    for m, r in t['methods'].items():
        rows.append([title(m), f"{r['mean']:.3f}",
                     f"{r['gain']:+.3f} (target ≥ {t['gain']:+.2f}): {verdict_word(r['gain_met'])}",
                     f"{r['significant']}/{r['of']} (target ≥ {t['min_significant']}): "
                     f"{verdict_word(r['significance_met'])}",
                     (f"{r['gap_to_upper']:+.3f} (target ≤ {t['gap']:.2f}): {verdict_word(r['gap_met'])}"
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
        det = (rep.get('table2_detection') or {}).get(ts) or {}
        # the paired differences behind the two AUC gaps (a table of means over seeds has none)
        pairs = {p['method']: p for p in rep.get('paired') or () if p.get('test_set') == ts and not p.get('gid')}
        r, why = dict(checks=[]), []
        iou = det.get('bus_box/mean_iou')
        want = (targets.get('detector_iou') or {}).get(ts)
        if want is not None:
            r['checks'].append(('detector mean IoU', iou, f'>= {want:.2f}', at_least(iou, want)))
            if is_num(iou) and not r['checks'][-1][3]:
                why += _detector_reason(det)
        upper = targets.get('upper', 'supervised_all')
        up, base = auc.get(upper), auc.get('supervised_basic')
        want = (targets.get('upper_auc') or {}).get(ts)
        if want is not None:
            r['checks'].append(('supervised-all AUC', up, f'>= {want:.2f}', at_least(up, want)))
        gap = up - base if is_num(up) and is_num(base) else None
        headroom_met = at_least(gap, out['headroom'])
        r['checks'].append(('supervised-all minus supervised-basic', gap, f'>= {out["headroom"]:.2f}',
                            headroom_met))
        if is_num(gap) and not headroom_met:
            why += _gap_reason(pairs.get(upper), upper, out['headroom'])
        ssl = {m: auc[m] for m in targets.get('ssl', ['mean_teacher', 'fixmatch']) if is_num(auc.get(m))}
        best = max(ssl, key=ssl.get, default=None)
        share = (ssl[best] - base) / gap if best and is_num(gap) and gap > 0 else None
        r['best_ssl'] = best
        r['checks'].append((f'share of that gap closed by {title(best) if best else "semi-supervised"}', share,
                            f'>= {out["closed"]:.2f}', at_least(share, out['closed'])))
        # one reason per gap: where the headroom is missed, that is the reason the share means little
        if is_num(share) and not r['checks'][-1][3] and headroom_met:
            why += _gap_reason(pairs.get(best), best, out['closed'] * gap)
        r['met'] = all(c[3] for c in r['checks'])
        r['why'] = why
        out['test_sets'][ts] = r
    out['met'] = bool(out['test_sets']) and all(r['met'] for r in out['test_sets'].values())
    return out


def _detector_reason(det: dict) -> List[str]:
    """Why the detector's mean IoU is short, from its own table: the share of nodules it finds at IoU >= 0.5
    and COCO AP50 against AP75 (missed nodules, or loose boxes)."""
    found, ap50, ap75 = (det.get(k) for k in ('bus_box/detected@0.5', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75'))
    if not is_num(found):
        return []
    line = f'the detector finds {found:.0%} of the nodules at IoU >= 0.5'
    if is_num(ap50) and is_num(ap75):
        line += f' (COCO AP50 {ap50:.2f}, AP75 {ap75:.2f})'
    return [line + ('; the boxes it finds are loose.' if found >= 0.9 else
                    f'; {1 - found:.0%} are missed or boxed at IoU < 0.5.')]


def _gap_reason(pair: Optional[dict], method: str, want: float) -> List[str]:
    """Why an AUC gap over supervised-basic is short: the paired difference with its 95 % CI and p, and
    whether the wanted value lies inside that interval (then this test set cannot tell either way)."""
    if not pair or not all(is_num(pair.get(k)) for k in ('diff', 'diff_ci_low', 'diff_ci_high', 'p_value')):
        return []
    lo, hi = pair['diff_ci_low'], pair['diff_ci_high']
    return [f"{title(method)} minus supervised-basic is {pair['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}] "
            f"(paired p = {pair['p_value']:.2g}); the target needs {want:+.3f}, "
            + ('inside that interval: this test set cannot tell whether it is reached.'
               if lo <= want <= hi else 'above that interval: it is not reached on this test set.')]


#: the columns of :func:`paper_targets_section`'s table (test set, target, value, wanted, verdict)
PAPER_TARGET_COLUMNS = ('Test set', 'Target', 'This run', 'Wanted', '')


def paper_targets_section(t: dict, titles: Optional[dict] = None, heading: str = 'Targets',
                          columns: Sequence[str] = PAPER_TARGET_COLUMNS, verdict: bool = True) -> List[str]:
    """The one rendering of :func:`check_paper_targets`: a table of every check, one row each, under
    ``## <heading>``, then a sentence on the whole (unless ``verdict`` is False). ``titles``: test set -> the
    name shown; ``columns``: the table's five headings (the summary over seeds calls its value column
    ``mean``)."""
    titles = titles or {}
    rows = [[titles.get(ts, ts), name, f'{v:.3f}' if is_num(v) else '-', want, verdict_word(bool(ok))]
            for ts, r in t['test_sets'].items() for name, v, want, ok in r['checks']]
    out = [f'## {heading}\n', md_table(list(columns), rows), '']
    if verdict:
        out += ['This run meets every target.' if t['met'] else
                'This run does not meet every target: the rows marked **not met** say which.', '']
    why = [f'- {titles.get(ts, ts)}: {line}' for ts, r in t['test_sets'].items() for line in r.get('why') or ()]
    if why:
        out += ['Why, from this report\'s own figures:\n'] + why + ['']
    return out
