"""A project's targets of a comparison, checked on the report's summary: data in the spec
(``report.targets``), never built into the report. The comparison report calls :func:`check_targets` only when
the spec sets targets, and prints :func:`targets_section`.

``report.targets``: ``test_set`` (default: the summary's first), ``ssl`` (the semi-supervised methods, default
mean teacher and FixMatch), ``upper`` (the upper bound, default supervised-all), ``gain`` (least mean AUC gain
over the baseline, default +0.05), ``p`` and ``min_significant`` (grid points with a positive paired difference
at p < ``p``, default 0.05 and 2), ``gap`` (most mean AUC behind the upper bound, default 0.02).
"""
from typing import List

from .methods import title
from .results import is_num, md_table


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
        # a float tolerance: 0.85 - 0.80 is 0.04999... and meets a +0.05 target
        res['gain_met'] = res['gain'] >= out['gain'] - 1e-9
        res['significance_met'] = sig >= out['min_significant']
        res['gap_met'] = res['gap_to_upper'] is not None and res['gap_to_upper'] <= out['gap'] + 1e-9
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
