"""Stage 2 and the two stages together, as the GPU-results summary (:mod:`.gpu_results`) reports them: the
comparison report's numbers (``report.json``: AUCs, CIs and paired tests are copied, never recomputed), its
Markdown embedded, and each method's AUC on detector crops against ground-truth crops with that target."""
import json
import os.path as osp
import re
from typing import Dict, List, Optional

from .results import is_num
from .targets import at_most

TWO_STAGE_TOLERANCE = 0.03


def within_tolerance(gt: float, det: float, tolerance: float = TWO_STAGE_TOLERANCE) -> bool:
    """The two-stage target of one method: its AUC on detector crops at most ``tolerance`` below its AUC on
    ground-truth crops (a better AUC on detector crops meets it too)."""
    return at_most(gt - det, tolerance)


# -- the two stages together ---------------------------------------------------------------------------------
def two_stage(rep: dict) -> Dict[str, dict]:
    """Per method: the mean AUC of its runs on ground-truth crops and on detector crops over the draws that
    have both, per setting of the grid apart from the seed (the labelled share); the setting with the most
    draws is the method's headline. AUCs are the report's rows' (``report.json``)."""
    cells: Dict[tuple, Dict[str, float]] = {}
    for r in rep.get('rows', []):
        auc = (r.get('metrics') or {}).get('auc')
        if is_num(auc):
            cells.setdefault((r['method'], r.get('gid', ''), json.dumps(
                {k: v for k, v in r.get('grid', {}).items() if k != 'seed'}, sort_keys=True)), {})[r['test_set']] = auc
    groups: Dict[str, Dict[str, List[tuple]]] = {}
    for (m, gid, setting), c in cells.items():
        if 'gt' in c and 'det' in c:
            groups.setdefault(m, {}).setdefault(setting, []).append((gid, c['gt'], c['det']))
    out = {}
    for m, by_setting in groups.items():
        settings = []
        for setting, pts in by_setting.items():
            gt, det = (sum(p[i] for p in pts) / len(pts) for i in (1, 2))
            settings.append(dict(grid=json.loads(setting), draws=len(pts), gids=[p[0] for p in pts], gt=gt,
                                 det=det, diff=det - gt))
        settings.sort(key=lambda s: (-s['draws'], json.dumps(s['grid'], sort_keys=True)))
        out[m] = dict(settings[0], by_setting=settings)
    return out


def two_stage_targets(ts: Dict[str, dict], tolerance: float = TWO_STAGE_TOLERANCE) -> dict:
    """The two stages together: every method's AUC on detector crops within ``tolerance`` of its AUC on
    ground-truth crops (a better AUC on detector crops meets it too)."""
    methods = {m: dict(gt=v['gt'], det=v['det'], diff=v['diff'], met=within_tolerance(v['gt'], v['det'], tolerance))
               for m, v in ts.items()}
    return dict(target=f'AUC on detector crops within {tolerance:.2f} of ground-truth crops', tolerance=tolerance,
                methods=methods, met=all(v['met'] for v in methods.values()) if methods else None)


# -- stage 2 ------------------------------------------------------------------------------------------------
RUN_KEYS = ('auc', 'auc_ci_low', 'auc_ci_high', 'sensitivity', 'specificity', 'accuracy', 'num_samples',
            'num_missed')


def stage2_section(rep: dict) -> dict:
    """The comparison report's numbers per test set: its summary (mean and sd over the draws of the main
    section), every run's AUC with CI, and its paired differences; the learning curve likewise."""
    def per_test_set(section: dict, rows: Optional[List[dict]]) -> dict:
        sets = list(dict.fromkeys(list(section.get('summary', {})) + [r['test_set'] for r in rows or []]))
        out = {}
        for ts in sets:
            out[ts] = dict(summary=section.get('summary', {}).get(ts, {}),
                           paired=[p for p in section.get('paired', []) if p.get('test_set') == ts])
            if rows is not None:
                out[ts]['runs'] = [dict(method=r['method'], gid=r.get('gid'), grid=r.get('grid'),
                                        **{k: r.get('metrics', {}).get(k) for k in RUN_KEYS})
                                   for r in rows if r['test_set'] == ts]
        return out
    return dict(title=rep.get('study'), schedule=rep.get('schedule'), test_sets=per_test_set(rep, rep.get('rows', [])),
                curves={n: per_test_set(c, None) for n, c in rep.get('curves', {}).items()})


def embed_report_md(md: str, png_names: Dict[str, str]) -> str:
    """The comparison report's Markdown without its commands and versions (``study_state.json`` gives the wall
    times), headings two levels down, images pointing at their copies (``png_names``: name -> link)."""
    lines = []
    for line in md.split('\n'):
        if line.startswith('## Commands') or line.startswith('## Versions'):
            break
        if line.startswith('#'):
            line = '##' + line
        m = re.match(r'!\[([^\]]*)\]\(([^)]+)\)', line)
        if m:
            link = png_names.get(osp.basename(m.group(2)))
            line = f'![{m.group(1)}]({link})' if link else f'_(figure {m.group(2)} not in the results)_'
        lines.append(line)
    return '\n'.join(lines).rstrip() + '\n'
