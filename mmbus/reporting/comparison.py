"""The ``comparison`` report: stage-2 methods over a grid (seeds, labelled shares, config values).

Per test set: a table of test AUC [DeLong 95 % CI] per method and grid point; mean and sd of each method
over the grid; for each method against ``report.baseline``, the paired AUC difference on the same test
crops with its 95 % CI and the paired DeLong p-value, per grid point; a plot of the AUC against
``report.x`` (default ``seed``) and one ROC figure per grid point. Extras (``orientation_auc``,
``brightness_rho``, ``labelled_crops``) get a table of their own. Then the validation curves of every run
and where its checkpoint was selected (a run still rising at its end was too short).

``report.where`` restricts the main section to some grid points; ``report.targets`` adds the check of a
project's targets (:mod:`.targets`) on the main section's summary;
``report.subgroups`` repeats AUC and paired differences per subgroup of the test crops (the scanner);
``report.curves`` adds sections over other grid points (a learning curve).
"""
from typing import Dict, List, Optional

import numpy as np

from mmbus.evaluation.delong import delong_auc

from .methods import title
from .plots import plot_metric_by, plot_roc_panels, plot_validation_curves
from .context import ReportContext
from .results import fmt_auc, fmt_mean_sd, is_num, load_json, load_rows, mean_std, md_table, paired_delong


def paired_differences(ctx: ReportContext, rows: List[dict], baseline: str) -> List[dict]:
    """One record per (test set, grid point, method != baseline) with :func:`paired_delong`."""
    out = []
    by = {(r['test_set'], r['gid'], r['method']): r for r in rows}
    for (ts, gid, method), r in sorted(by.items()):
        b = by.get((ts, gid, baseline))
        if method == baseline or b is None:
            continue
        sa, ya, _ = ctx.predictions(r)
        sb, yb, _ = ctx.predictions(b)
        if len(sa) != len(sb) or (ya != yb).any():
            raise ValueError(f'{method} and {baseline} were not tested on the same crops ({ts}, {gid})')
        try:
            stats = paired_delong(sa, sb, ya)
        except ValueError as e:  # too few samples of a class for the variance: the difference alone
            stats = dict(diff=r['metrics']['auc'] - b['metrics']['auc'], diff_ci_low=None, diff_ci_high=None,
                         p_value=None, note=str(e))
        out.append(dict(test_set=ts, gid=gid, grid=r['grid'], method=method, baseline=baseline, **stats))
    return out


def comparison_report(source, rows: Optional[List[dict]] = None):
    """The report's main section (rows matching ``report.where``), the targets when the spec sets any, and one
    section per entry of ``report.curves`` (``dict(name, x, where, title)``: e.g. a learning curve over
    ``labelled_share`` at one seed). ``source``: a :class:`ReportContext` (or a live study); ``rows``: the
    result rows (default: the work dir's)."""
    ctx = ReportContext.of(source)
    spec = ctx.report
    rows = [r for r in (load_rows(ctx.work_dir) if rows is None else rows) if r['kind'] == 'classifier']
    baseline = spec.get('baseline', 'supervised_basic')
    main_rows = select_rows(rows, spec.get('where'))
    rep, md = comparison_section(ctx, main_rows, baseline, spec.get('x', 'seed'), spec.get('title', ctx.name))
    rep['rows'] = rows
    if spec.get('targets'):
        from .targets import check_targets, targets_section
        rep['targets'] = check_targets(rep, spec['targets'], baseline)
        md += targets_section(rep['targets'])
    if spec.get('subgroups'):
        rep['subgroups'], sub_md = subgroup_section(ctx, main_rows, baseline, spec['subgroups'])
        md += sub_md
    from .clinical import clinical_section
    for ts in dict.fromkeys(r['test_set'] for r in main_rows):
        crep, cmd = clinical_section(ctx, main_rows, ts, f'Calibration and operating points ({ts})')
        if crep:
            rep.setdefault('clinical', {})[ts] = crep
            md += cmd
    for c in spec.get('curves', []):
        name = c.get('name', c['x'])
        crep, cmd = comparison_section(ctx, select_rows(rows, c.get('where')), baseline, c['x'], c.get('title', name),
                                       prefix=f'{name}_', level='#')
        rep.setdefault('curves', {})[name] = crep
        md += cmd
    return rep, md


def select_rows(rows: List[dict], where=None) -> List[dict]:
    """Rows whose grid point has every ``key: value`` of ``where`` (floats compared to 1e-9)."""
    def match(v, want):
        return abs(v - want) < 1e-9 if is_num(v) and is_num(want) else v == want
    return [r for r in rows if all(k in r['grid'] and match(r['grid'][k], v) for k, v in (where or {}).items())]


def comparison_section(ctx: ReportContext, rows: List[dict], baseline: str, x_key: str, heading: str, prefix: str = '',
                       level: str = ''):
    methods = [m for m in ctx.methods if any(r['method'] == m for r in rows)]
    gids = list(dict.fromkeys(r['gid'] for r in rows))
    rep = dict(study=ctx.name, schedule=ctx.schedule, summary={}, paired=[])
    md = [f'#{level} {heading}\n', f'Schedule `{ctx.schedule}`; {len(gids)} grid point(s) x '
          f'{len(methods)} method(s). AUC [DeLong 95% CI] on each test set.\n']
    paired = paired_differences(ctx, rows, baseline) if baseline in methods else []
    rep['paired'] = paired
    for ts in dict.fromkeys(r['test_set'] for r in rows):
        cell = {(r['gid'], r['method']): r for r in rows if r['test_set'] == ts}
        table = []
        summary = rep['summary'].setdefault(ts, {})
        for m in methods:
            s = summary[m] = mean_std([cell[(g, m)]['metrics'].get('auc') for g in gids if (g, m) in cell])
            table.append([title(m)] + [fmt_auc(cell[(g, m)]['metrics']) if (g, m) in cell else '' for g in gids]
                         + [fmt_mean_sd(s['mean'], s['std'])])
        md += [f'##{level} {ts}\n', md_table(['Method'] + [g or 'all' for g in gids] + ['mean ± sd'], table), '']
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
            png = f'{prefix}auc_by_{x_key}_{ts}.png'
            plot_metric_by(x_rows, x_key, ctx.p('report', png),
                           'labelled share (%)' if x_key == 'labelled_share' else x_key,
                           f'{ctx.name}: {ts}', percent_x=x_key == 'labelled_share')
            md += [f'![AUC by {x_key}]({png})\n']
        panels: Dict[str, dict] = {}
        for g in gids:
            rocs = {m: ctx.roc(cell[(g, m)]) for m in methods if (g, m) in cell}
            panels[f'{ts} {g or ""}'.strip()] = {m: roc for m, roc in rocs.items() if roc is not None}
        if panels:
            png = f'{prefix}roc_{ts}.png'
            plot_roc_panels(panels, ctx.p('report', png))
            md += [f'![ROC]({png})\n']
    md += convergence_section(ctx, rows, methods, gids, prefix, level)
    return rep, md


def subgroup_labels(ctx: ReportContext, key: str, names: Dict[str, str]) -> Dict[int, str]:
    """image id -> subgroup (the image key ``key`` of the internal COCO files, renamed by ``names``)."""
    sets = ctx.sets
    if 'internal' not in sets:
        return {}
    out = {}
    for split in ('basic_train', 'extended_train', 'val', 'test'):
        coco = load_json(sets['internal'].ann(split)) or {}
        for im in coco.get('images', []):
            if key in im:
                out[im['id']] = names.get(str(im[key]), str(im[key]))
    return out


def subgroup_section(ctx: ReportContext, rows: List[dict], baseline: str, sub: dict):
    """Per subgroup of the test crops (``sub = dict(key, names, title)``, e.g. the scanner): each
    method's mean AUC over the grid points and the mean paired difference against ``baseline``, with
    how many grid points had p < 0.05. A gain that holds in every scanner is not one scanner's artefact."""
    labels = subgroup_labels(ctx, sub['key'], sub.get('names', {}))
    if not labels:
        return {}, []
    out: Dict[str, dict] = {}
    by = {(r['test_set'], r['gid'], r['method']): r for r in rows}
    for (ts, gid, m), r in sorted(by.items()):
        s, y, ids = ctx.predictions(r)
        groups = np.array([labels.get(i, 'unknown') for i in ids])
        b = by.get((ts, gid, baseline))
        sb = ctx.predictions(b)[0] if b is not None else None
        for g in sorted({str(x) for x in groups}):
            k = groups == g
            if len(set(np.asarray(y)[k])) < 2:
                continue
            cell = out.setdefault(ts, {}).setdefault(g, {}).setdefault(m, dict(auc=[], diff=[], sig=0, n=int(k.sum())))
            cell['auc'].append(float(delong_auc(np.asarray(s)[k], np.asarray(y)[k])[0]))
            if sb is not None and m != baseline:
                try:
                    st = paired_delong(np.asarray(s)[k], np.asarray(sb)[k], np.asarray(y)[k])
                except ValueError:
                    continue
                cell['diff'].append(st['diff'])
                cell['sig'] += int(st['p_value'] < 0.05 and st['diff'] > 0)
    md = []
    methods = [m for m in ctx.methods if any(m in c for g in out.values() for c in g.values())]
    for ts, groups in out.items():
        table = []
        for g, cells in groups.items():
            for m in methods:
                c = cells.get(m)
                if c is None:
                    continue
                d = (f"{np.mean(c['diff']):+.3f} ({c['sig']}/{len(c['diff'])} with p < 0.05)"
                     if c['diff'] else '')
                table.append([g, str(c['n']), title(m), f"{np.mean(c['auc']):.3f}", d])
        md += [f"## {ts}: by {sub.get('title', sub['key'])}\n",
               md_table([sub.get('title', sub['key']), 'test crops', 'Method', 'mean AUC',
                         f'mean paired difference vs {title(baseline)}'], table), '']
    return out, md


def convergence_section(ctx: ReportContext, rows: List[dict], methods: List[str], gids: List[str], prefix: str = '',
                        level: str = '') -> List[str]:
    """Validation curves (one panel per grid point) and where each run's selected checkpoint lies."""
    first = {}
    for r in rows:
        first.setdefault((r['gid'], r['method']), r)
    panels: Dict[str, dict] = {}
    table = []
    for g in gids:
        for m in methods:
            if (g, m) not in first:
                continue
            c = ctx.curves(first[(g, m)])  # the run's curves, from the folder its row names
            if c and c['curves'].get(c['monitor']):
                panels.setdefault(g or 'all', {})[m] = c
            v = first[(g, m)].get('convergence') or {}
            if not v.get('validations'):
                continue
            table.append([g or 'all', title(m), v['monitor'], f"{v['best']:.3f}", str(v['best_iter']),
                          str(v['trained_iters']), 'yes: schedule too short' if v['still_rising'] else 'no'])
    md = []
    if panels:
        plot_validation_curves(panels, ctx.p('report', f'{prefix}validation_curves.png'))
        md += [f'##{level} Validation curves\n', f'![validation curves]({prefix}validation_curves.png)\n']
    if table:
        md += ['Selection: the checkpoint with the best value of the monitored validation metric.\n',
               md_table(['Grid point', 'Method', 'monitor', 'best', 'at iteration', 'trained iterations',
                         'still rising at the end'], table), '']
    return md


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
    pv = 'p<0.001' if p['p_value'] < 0.001 else f"p={p['p_value']:.3f}"
    return f"{p['diff']:+.3f} [{p['diff_ci_low']:+.3f}, {p['diff_ci_high']:+.3f}], {pv}"


def _extra(v) -> str:
    if isinstance(v, list):
        return ', '.join(map(str, v))
    if isinstance(v, float):
        return f'{v:+.2f}'
    return '' if v is None else str(v)
