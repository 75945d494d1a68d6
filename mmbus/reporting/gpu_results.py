"""What a GPU study kit brought back (``tools/gpu/run_busbra.sh``: a tarball of ``kit.json`` and the study work
dirs ``work/smoke`` and ``work/main``), or a plain study work dir, as a small committable summary: one JSON,
one Markdown report and a folder of PNGs (``tools/gpu/collect_results.py`` is the command line).

Everything is read from the rows, the comparison report (``report/report.json``, whose AUCs, CIs and paired
tests are copied, never recomputed), ``study_state.json`` and the detectors' training curves; the only new
verdicts are the stage-1 and two-stage targets (:func:`detector_targets`, :func:`two_stage_targets`). The
pieces: :mod:`.gpu_kit` (the tarball, the stages, paths and sizes), :mod:`.gpu_stage1` (stage 1) and
:mod:`.gpu_stage2` (stage 2 and the two stages together); this module writes the summary.
"""
import glob
import json
import os
import os.path as osp
import shutil
from typing import Callable, Dict, List, Optional

from mmbus.utils.io import atomic_write, atomic_write_json, atomic_write_text, make_dirs
from .curves import curve_from_log, curve_from_scalars  # noqa: F401 (re-exported)
from .gpu_kit import (SIZE_LIMIT, CollectError, gpu_usage, has_rows, last_finished,  # noqa: F401
                      original_work_dir, run_log_lines, schedule_of, scrubber, shrink_pngs, stage_groups,
                      stage_times, unfinished, unpack)
from .gpu_stage1 import detector_targets, detectors_section
from .gpu_stage2 import embed_report_md, stage2_section, two_stage, two_stage_targets, within_tolerance
from .methods import title
from .results import fmt, fmt_mean_sd, is_num, load_json, md_table
from .targets import verdict_word


# -- the summary ------------------------------------------------------------------------------------------
def collect(main: Optional[str], smoke: Optional[str], kit: Optional[dict], out_dir: str, name: str,
            source: str, spec_file: Optional[str] = None, run_log: Optional[str] = None,
            label: Optional[str] = None, nvidia_smi: Optional[str] = None, usage: Optional[str] = None,
            roots: Optional[Dict[str, str]] = None,
            expected_rows: Optional[Callable[[str, Optional[str]], Optional[dict]]] = None,
            report_drawn_here: Optional[List[str]] = None) -> dict:
    """Write ``<out_dir>/<name>.json``, ``<name>.md`` and ``<name>/*.png`` from a main work dir (``main``; None
    when there is no main run: the smoke pass stands in) and the smoke pass's (``smoke``); returns the
    summary (``no_main_run`` says whether the main run was missing). ``expected_rows(spec_file, schedule)``
    lists the rows the spec makes (``Study.row_names`` of the study engine, passed in by
    ``tools/gpu/collect_results.py``: reports never import the engine), so the missing ones are named.
    ``report_drawn_here`` names the work dirs (``main``, ``smoke``) whose report the collector drew because the
    device's report stage did not finish."""
    given_kit, kit = kit, kit or {}
    no_main = not has_rows(main)
    work = smoke if no_main and has_rows(smoke) else main
    png_dir = osp.join(out_dir, name)
    make_dirs(png_dir)
    before = set(glob.glob(osp.join(png_dir, '*.png')))
    schedule = 'toy' if work is smoke and work is not main else (schedule_of(kit.get('command', '')) or None)
    rep = load_json(osp.join(work, 'report', 'report.json'), {}) if work else {}
    schedule = rep.get('schedule') or schedule
    dets = detectors_section(work, png_dir) if work and osp.isdir(work) else {}
    ts = two_stage(rep)
    # the spec as it ran (a work dir keeps a copy) beats the checkout's, which may have moved on since
    ran_spec = osp.join(work or '', 'study_spec.py')
    spec_file = ran_spec if work and osp.isfile(ran_spec) else spec_file
    expected = expected_rows(spec_file, schedule) if work and expected_rows and spec_file else None
    present = {osp.splitext(osp.basename(f))[0] for f in glob.glob(osp.join(work or '', 'rows', '*.json'))}
    missing = ({k: [r for r in v if r not in present] for k, v in expected.items()} if expected else None)
    # rows the spec does not name: the study ran another version of it, so its list of missing rows is not this
    # run's (the tarball keeps no copy of the spec that ran)
    unexpected = sorted(present - {r for v in expected.values() for r in v}) if expected else []
    stages = stage_times(work)
    failed = unfinished(stages)
    study_exit = str(kit.get('study_exit', 'n/a'))
    partial_why = []
    if no_main:
        partial_why.append('no main run: the numbers are the smoke pass\'s (toy schedule)' if work
                           else 'no main run and no smoke rows')
    if kit and study_exit != '0':
        partial_why.append(f'study exit {study_exit}')
    if missing and any(missing.values()) and not unexpected:
        partial_why.append(f"{sum(map(len, missing.values()))} expected row(s) missing")
    if failed:
        partial_why.append(f'{len(failed)} stage(s) not done')
    if not rep:
        partial_why.append('no comparison report (report/report.json)')
    # figures: the report's, beside the detectors' curves
    for f in sorted(glob.glob(osp.join(work or '', 'report', '*.png'))):
        dst = osp.join(png_dir, osp.basename(f))
        atomic_write(dst, lambda tmp, f=f: shutil.copyfile(f, tmp))
    summary = dict(
        name=name, label=label, source=source, kit=given_kit, nvidia_smi=nvidia_smi, gpu_usage=gpu_usage(usage),
        schedule=schedule,
        no_main_run=no_main, partial=bool(partial_why), partial_why=partial_why, missing=missing,
        rows_not_in_spec=unexpected, report_drawn_here=list(report_drawn_here or []),
        expected_from=(None if not expected else 'the work dir\'s study_spec.py' if spec_file == ran_spec
                       else osp.basename(spec_file) + ' of the checkout that collected the results'),
        detectors=dets, stage2=stage2_section(rep) if rep else {}, two_stage=ts,
        targets=dict(stage1=detector_targets(dets), stage2=rep.get('targets'), two_stage=two_stage_targets(ts)),
        stages=stages, stages_not_done=failed,
        smoke=dict(exit=kit.get('smoke_exit'), present=bool(smoke and osp.isdir(smoke)),
                   rows=len(glob.glob(osp.join(smoke or '', 'rows', '*.json'))),
                   stages_not_done=unfinished(stage_times(smoke)) if smoke else [],
                   report=bool(smoke and osp.isfile(osp.join(smoke, 'report', 'report.md')))),
        run_log=run_log_lines(run_log),
        # where the results came without a kit.json (a plain work dir): what the study itself recorded
        # (a report drawn where the results were collected has that checkout's commit, not the run's)
        run=dict(commit=None if osp.basename(work or '') in (report_drawn_here or []) else
                 (rep.get('environment') or {}).get('git_commit'), finished=last_finished(work)))
    ran_in = (original_work_dir(main), original_work_dir(smoke))
    walk = scrubber(dict(roots or {}, **{r: '$WORK_DIR' for r in ran_in if r}))
    pngs = sorted(glob.glob(osp.join(png_dir, '*.png')))
    md_text = markdown(summary, osp.join(work or '', 'report', 'report.md'), name, {})
    budget = SIZE_LIMIT - len(json.dumps(walk(summary), default=str)) - 2 * len(md_text.encode())
    summary['figures_left_out'] = shrink_pngs(pngs, max(budget, 0))
    pngs = [p for p in pngs if osp.isfile(p)]
    links = {osp.basename(p): f'{name}/{osp.basename(p)}' for p in pngs}
    summary['figures'] = sorted(links)
    md_text = walk(markdown(summary, osp.join(work or '', 'report', 'report.md'), name, links))
    summary = walk(summary)
    atomic_write_json(summary, osp.join(out_dir, f'{name}.json'), indent=1, default=str)
    atomic_write_text(md_text, osp.join(out_dir, f'{name}.md'))
    for stale in before - set(pngs):  # figures of an earlier collection that this one does not have
        if osp.isfile(stale):
            os.remove(stale)
    return summary


def usage_words(u: Optional[dict]) -> str:
    """The sampled GPU use in words: what the next run's number of concurrent jobs is set from."""
    if not u:
        return 'n/a (no samples: no nvidia-smi, or a tarball from before the kit sampled it)'
    share = f" ({u['peak_share']:.0%})" if u.get('peak_share') is not None else ''
    return (f"peak {u['peak_mib'] / 1024:.1f} of {u['total_mib'] / 1024:.1f} GiB{share}; load "
            f"{u['mean_load']:.0f} % on average, >= 50 % in {u['busy_share']:.0%} of {u['samples']} samples "
            '(every 10 s)')


def markdown(s: dict, report_md: str, name: str, links: Dict[str, str]) -> str:
    kit = s['kit'] or {}
    md = [f"# Results of `{name}`{': ' + s['label'] if s.get('label') else ''}\n"]
    if s['no_main_run']:
        md += ['# NO MAIN RUN\n', '> The tarball holds no rows of the main run (work/main). '
               + ('What follows is the **smoke pass** (toy schedule): its numbers say the pieces run, nothing '
                  'about the methods.' if s['smoke']['rows'] else 'The smoke pass left no rows either.') + '\n']
    if s['partial']:
        md += [f"> **PARTIAL RESULTS**: {'; '.join(s['partial_why'])}.\n"]
    if s.get('report_drawn_here'):
        md += [f"> The report of {', '.join(f'`work/{w}`' for w in s['report_drawn_here'])} was drawn where the "
               'results were collected, from the rows and each test\'s scores: the device\'s report stage did '
               'not finish.\n']
    dev = kit.get('device', 'n/a')
    if s.get('nvidia_smi'):
        lines = [ln.split(',') for ln in s['nvidia_smi'].strip().split('\n') if ln.strip()]
        gpus = ['; '.join(f'{h.strip()} {v.strip()}' for h, v in zip(lines[0], ln)) for ln in lines[1:]]
        dev += f" ({' | '.join(gpus)})" if gpus else ''
    run = s.get('run') or {}
    md += [md_table(['', ''], [
        ['Command', f"`{kit['command']}`" if kit.get('command') else 'n/a (a study work dir, not a kit tarball)'],
        ['Commit', f"`{kit.get('commit') or run.get('commit') or 'n/a'}`"],
        ['Device', dev], ['Finished', kit.get('finished') or run.get('finished') or 'n/a'],
        ['Wall time', f"{kit.get('wall_s', 'n/a')} s of a {kit.get('budget_s', 'n/a')} s budget"],
        ['Exit status', f"study {kit.get('study_exit', 'n/a')}, smoke pass {kit.get('smoke_exit', 'n/a')}"],
        ['GPU use', usage_words(s.get('gpu_usage'))],
        ['Schedule', f"`{s.get('schedule') or 'n/a'}`"], ['Collected from', f"`{s['source']}`"]]
        + ([['Study', f"`{kit['spec']}`"]] if kit.get('spec') else [])), '']
    if kit.get('stage2_only_why'):
        md += [f"> **Stage 2 alone** ({kit['stage2_only_why']}): this run trained no detector; the stage-1 and "
               'two-stage targets are not measured.\n']
    # targets
    t1, t2, t3 = s['targets']['stage1'], s['targets'].get('stage2'), s['targets']['two_stage']

    def versus(t):
        a, b = t['value'], t['reference']
        if not (is_num(a) and is_num(b)):
            return f'{fmt(a)} vs {fmt(b)}'
        d = a - b  # a tie at three decimals still decides "above": show how far apart they are
        return f"{fmt(a)} vs {fmt(b)} ({f'{d:+.4f}' if abs(d) >= 1e-4 or d == 0 else f'{d:+.1e}'})"
    stage1 = (('mean_iou', 'mean IoU'), ('ap50', 'AP50'))
    rows = [[f"Stage 1: supervised {what} {t1[f'supervised_{k}']['target']}", fmt(t1[f'supervised_{k}']['value']),
             verdict_word(t1[f'supervised_{k}']['met'])] for k, what in stage1]
    rows += [[f'Stage 1: semi-supervised {what} above supervised', versus(t1[f'semi_above_supervised_{k}']),
              verdict_word(t1[f'semi_above_supervised_{k}']['met'])] for k, what in stage1]
    if t2 and t2.get('best_ssl'):
        b = t2['methods'][t2['best_ssl']]
        rows.append([f"Stage 2 ({t2['test_set']} crops): the better semi-supervised method, {title(t2['best_ssl'])}: "
                     f"gain ≥ {t2['gain']:+.2f} over {title(t2['baseline'])}, paired p < {t2['p']} on ≥ "
                     f"{t2['min_significant']} draws, ≤ {t2['gap']:.2f} behind {title(t2['upper'])}",
                     f"gain {b['gain']:+.3f}, {b['significant']}/{b['of']} significant, behind by "
                     f"{fmt(b.get('gap_to_upper'))}", verdict_word(t2['met'])])
    else:
        rows.append(['Stage 2: semi-supervised gain, significance and gap to supervised-all',
                     'no semi-supervised runs in the main comparison', verdict_word(None)])
    for m, v in t3['methods'].items():
        rows.append([f'Two stages: {title(m)} AUC on detector crops within {t3["tolerance"]:.2f} of ground-truth crops',
                     f"{v['det']:.3f} vs {v['gt']:.3f} ({v['diff']:+.3f})", verdict_word(v['met'])])
    if not t3['methods']:
        rows.append([f'Two stages: AUC on detector crops within {t3["tolerance"]:.2f} of ground-truth crops',
                     'no method tested on both', verdict_word(None)])
    met = [r[2] for r in rows]
    verdict = ('Every target is met.' if all(x == 'met' for x in met) else
               f"Targets met: {met.count('met')} of {len(met)}; not met: {met.count('**not met**')}; "
               f"not measured: {met.count('not measured')}.")
    md += ['## Targets\n', md_table(['Target', 'Value', 'Verdict'], rows), '', verdict, '']
    # detectors
    dets = s['detectors']
    if dets:
        froc_keys = sorted({k for d in dets.values() for k in d['froc']}, key=lambda k: float(k.rstrip('fp')))
        drows = [[d['title'], fmt_mean_sd(d['mean_iou'], d['std_iou']), fmt(d['detected_at_0_5'], pct=True)]
                 + [fmt(d['froc'].get(k), pct=True) for k in froc_keys]
                 + [fmt(d['coco_map']), fmt(d['ap50']), fmt(d['ap75']),
                    d['iterations'] if d['iterations'] is not None else 'n/a',
                    f"{d['train_s']:.0f}" if is_num(d['train_s']) else 'n/a'] for d in dets.values()]
        head = (['Detector', 'Mean IoU ± sd', 'IoU ≥ 0.5'] + [f'FROC sens. @ {k[:-2]} FP/image' for k in froc_keys]
                + ['COCO mAP', 'AP50', 'AP75', 'iterations', 'train s'])
        md += ['## Stage 1: detectors (test split)\n', md_table(head, drows), '',
               'IoU of each nodule with the top-scoring detection of its image (0 when none); iterations: the last '
               'one in the training curves.\n']
        for n, d in dets.items():
            if d['curve'] and d['curve'] in links:
                md += [f"![{d['title']}: validation]({links[d['curve']]})\n"]
            elif not d['curve']:
                md += [f"_{d['title']}: no validation curve in the results._\n"]
        srcs = {d['curve_source'] for d in dets.values() if d['curve']}
        if srcs - {'scalars.json'}:
            md += [f"Curves read from: {', '.join(sorted(srcs))}.\n"]
    else:
        md += ['## Stage 1: detectors\n', '**No detector rows.**\n']
    # two stages
    ts_rows = [[title(m), ', '.join(f'{k}={v}' for k, v in st['grid'].items()) or 'all', st['draws'],
                f"{st['gt']:.3f}", f"{st['det']:.3f}", f"{st['diff']:+.3f}",
                'yes' if within_tolerance(st['gt'], st['det'], t3['tolerance']) else '**no**']
               for m, v in s['two_stage'].items() for st in v['by_setting']]
    md += ['## The two stages together\n',
           'Each stage-2 model on the test crops of the supervised detector\'s boxes (misses count as wrong '
           'answers) against the ground-truth boxes\' crops: mean AUC over the draws tested on both.\n',
           md_table(['Method', 'setting', 'draws', 'AUC, ground-truth crops', 'AUC, detector crops',
                     'detector − ground truth', f"within {t3['tolerance']:.2f}"], ts_rows) if ts_rows
           else '**No run was tested on both crop sets.**', '']
    # stage 2
    md += ['## Stage 2: the comparison report\n']
    if osp.isfile(report_md):
        with open(report_md) as f:
            md += [embed_report_md(f.read(), links)]
    else:
        md += ['**No comparison report in the results.**\n']
    # missing, wall times, smoke pass, run log
    if s['rows_not_in_spec']:
        md += ['## Missing\n', f"Unknown: {s['expected_from']} does not name every row of this run (e.g. "
               f"{', '.join(s['rows_not_in_spec'][:4])}): the run had another version of the spec.\n"]
    elif s['missing'] and any(s['missing'].values()):
        md += ['## Missing\n', f"Rows the study should have made (per {s['expected_from']}) and did not:\n"]
        md += [f"- {k}: {', '.join(v)}" for k, v in s['missing'].items() if v] + ['']
    if s['stages_not_done']:
        md += ['Stages not done (failed, or cut off while running): '
               + ', '.join(f"{n} ({s['stages'][n]['status']})" for n in s['stages_not_done']) + '\n']
    if s['stages']:
        walls = [v['wall_s'] for v in s['stages'].values() if is_num(v.get('wall_s'))]
        md += ['## Wall times\n', f"{len(s['stages'])} stages, {sum(walls):.0f} s summed (stages run side by side); "
               f"the whole kit {kit.get('wall_s', 'n/a')} s.\n",
               md_table(['Stage(s)', 'count', 'sum s', 'longest s', 'status'], stage_groups(s['stages'])), '']
    sm = s['smoke']
    md += ['## Smoke pass\n']
    if not sm['present']:
        md += [f"No smoke pass in the results (exit `{sm['exit'] if sm['exit'] is not None else 'n/a'}`).\n"]
    else:
        md += [f"Exit `{sm['exit']}`; {sm['rows']} row(s); report {'written' if sm['report'] else '**missing**'}; "
               + (f"stages not done: {', '.join(sm['stages_not_done'])}." if sm['stages_not_done']
                  else 'every stage done.') + '\n']
    if s['run_log']:
        md += ['## Run log (the launcher\'s lines)\n', '```'] + s['run_log'] + ['```', '']
    if s.get('figures_left_out'):
        md += [f"Figures left out to keep the results small: {', '.join(s['figures_left_out'])}.\n"]
    return '\n'.join(md).rstrip() + '\n'
