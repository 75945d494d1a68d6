"""The ``comparison`` report: stage-2 methods over a grid (seeds, labelled shares, config values).

Per test set: a table of test AUC [DeLong 95 % CI] per method and grid point; mean and sd of each method
over the grid; for each method against ``report.baseline``, the paired AUC difference on the same test
crops with its 95 % CI and the paired DeLong p-value, per grid point; a plot of the AUC against
``report.x`` (default ``seed``) and one ROC figure per grid point. Extras (``orientation_auc``,
``brightness_rho``, ``labelled_crops``) get a table of their own.
"""
from typing import Dict, List

from .methods import title
from .plots import plot_metric_by, plot_roc_panels
from .results import fmt, is_num, load_rows, mean_std, md_table, paired_delong


def paired_differences(study, rows: List[dict], baseline: str) -> List[dict]:
    """One record per (test set, grid point, method != baseline) with :func:`paired_delong`."""
    out = []
    by = {(r['test_set'], r['gid'], r['method']): r for r in rows}
    for (ts, gid, method), r in sorted(by.items()):
        b = by.get((ts, gid, baseline))
        if method == baseline or b is None:
            continue
        sa, ya, _ = study.predictions(r)
        sb, yb, _ = study.predictions(b)
        if len(sa) != len(sb) or (ya != yb).any():
            raise ValueError(f'{method} and {baseline} were not tested on the same crops ({ts}, {gid})')
        try:
            stats = paired_delong(sa, sb, ya)
        except ValueError as e:  # too few samples of a class for the variance: the difference alone
            stats = dict(diff=r['metrics']['auc'] - b['metrics']['auc'], diff_ci_low=None, diff_ci_high=None,
                         p_value=None, note=str(e))
        out.append(dict(test_set=ts, gid=gid, grid=r['grid'], method=method, baseline=baseline, **stats))
    return out


def comparison_report(study):
    spec = study.spec.get('report', {})
    baseline = spec.get('baseline', 'supervised_basic')
    x_key = spec.get('x', 'seed')
    rows = [r for r in load_rows(study.work_dir) if r['kind'] == 'classifier']
    methods = [m for m in study.methods if any(r['method'] == m for r in rows)]
    gids = list(dict.fromkeys(r['gid'] for r in rows))
    rep = dict(study=study.name, schedule=study.schedule, rows=rows, summary={}, paired=[])
    md = [f'# {spec.get("title", study.name)}\n', f'Schedule `{study.schedule}`; {len(gids)} grid point(s) x '
          f'{len(methods)} method(s). Test AUC [DeLong 95% CI].\n']
    paired = paired_differences(study, rows, baseline) if baseline in methods else []
    rep['paired'] = paired
    for ts in dict.fromkeys(r['test_set'] for r in rows):
        cell = {(r['gid'], r['method']): r for r in rows if r['test_set'] == ts}
        table = []
        summary = rep['summary'].setdefault(ts, {})
        for m in methods:
            aucs = [cell[(g, m)]['metrics'].get('auc') for g in gids if (g, m) in cell]
            summary[m] = mean_std(aucs)
            s = summary[m]
            table.append([title(m)] + [
                fmt(cell[(g, m)]['metrics'].get('auc'), ci=(cell[(g, m)]['metrics'].get('auc_ci_low'),
                                                            cell[(g, m)]['metrics'].get('auc_ci_high')))
                if (g, m) in cell else '' for g in gids] + [
                f"{s['mean']:.3f} ± {s['std']:.3f}" if is_num(s['mean']) else 'n/a'])
        md += [f'## {ts}\n', md_table(['Method'] + [g or 'all' for g in gids] + ['mean ± sd'], table), '']
        pts = [p for p in paired if p['test_set'] == ts]
        if pts:
            prow = []
            for m in dict.fromkeys(p['method'] for p in pts):
                mine = {p['gid']: p for p in pts if p['method'] == m}
                diffs = [p['diff'] for p in mine.values()]
                sig = sum(p['p_value'] is not None and p['p_value'] < 0.05 and p['diff'] > 0 for p in mine.values())
                prow.append([f'{title(m)} − {title(baseline)}'] + [_paired_cell(mine.get(g)) for g in gids] + [
                    f"{mean_std(diffs)['mean']:+.3f} ({sig}/{len(diffs)} with p < 0.05)"])
            md += ['Paired differences on the same test crops (paired DeLong test):\n',
                   md_table(['Difference'] + [g or 'all' for g in gids] + ['mean'], prow), '']
        extras = sorted({k for r in cell.values() for k in r.get('extras', {})})
        if extras:
            erow = [[title(m), k] + [_extra(cell.get((g, m), {}).get('extras', {}).get(k)) for g in gids]
                    for m in methods for k in extras]
            md += ['Extras (features unrelated to the class):\n',
                   md_table(['Method', 'extra'] + [g or 'all' for g in gids], erow), '']
        x_rows = [r for r in cell.values() if x_key in r['grid']]
        if x_rows:
            png = f'auc_by_{x_key}_{ts}.png'
            plot_metric_by(x_rows, x_key, study.p('report', png),
                           'labelled share (%)' if x_key == 'labelled_share' else x_key,
                           f'{study.name}: {ts}', percent_x=x_key == 'labelled_share')
            md += [f'![AUC by {x_key}]({png})\n']
        panels: Dict[str, dict] = {}
        for g in gids:
            curves = {}
            for m in methods:
                r = cell.get((g, m))
                if r is None:
                    continue
                s, y, _ = study.predictions(r)
                if len(s) and (y == 1).any() and (y == 0).any():
                    curves[m] = (s, y, r['metrics'])
            panels[f'{ts} {g or ""}'.strip()] = curves
        if panels:
            png = f'roc_{ts}.png'
            plot_roc_panels(panels, study.p('report', png))
            md += [f'![ROC]({png})\n']
    return rep, md


def paired_table(paired: List[dict], tests: Dict[str, dict]) -> str:
    """One row per (test set, method) of :func:`paired_differences` (single grid point)."""
    return md_table(['Test set', 'Difference', 'AUC difference [95% CI], p'],
                    [[tests.get(p['test_set'], {}).get('title', p['test_set']),
                      f"{title(p['method'])} − {title(p['baseline'])}", _paired_cell(p)] for p in paired])


def _paired_cell(p) -> str:
    if p is None:
        return ''
    if p['p_value'] is None:
        return f"{p['diff']:+.3f} (no test: {p['note']})"
    return f"{p['diff']:+.3f} [{p['diff_ci_low']:+.3f}, {p['diff_ci_high']:+.3f}], p={p['p_value']:.3f}"


def _extra(v) -> str:
    if isinstance(v, list):
        return ', '.join(map(str, v))
    if isinstance(v, float):
        return f'{v:+.2f}'
    return '' if v is None else str(v)
