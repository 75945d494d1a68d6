"""What a GPU study kit brought back (``tools/gpu/run_busbra.sh``: a tarball of ``kit.json`` and the study work
dirs ``work/smoke`` and ``work/main``), or a plain study work dir, as a small committable summary: one JSON,
one Markdown report and a folder of PNGs (``tools/gpu/collect_results.py`` is the command line).

Everything is read from the rows, the comparison report (``report/report.json``, whose AUCs, CIs and paired
tests are copied, never recomputed), ``study_state.json`` and the detectors' training curves; the only new
verdicts are the stage-1 and two-stage targets (:func:`detector_targets`, :func:`two_stage_targets`).
"""
import glob
import json
import os
import os.path as osp
import re
import shutil
import tarfile
from typing import Dict, List, Optional, Tuple

from mmbus.utils.io import atomic_write, atomic_write_json, atomic_write_text, make_dirs
from .methods import title
from .results import fmt, is_num, load_json, md_table

SUPERVISED, SEMI, UPPER = 'detector', 'soft_teacher', 'upper'
DETECTOR_TITLES = {SUPERVISED: 'Supervised (basic-train boxes)',
                   SEMI: 'GatedSoftTeacher (semi-supervised, from the supervised one)',
                   UPPER: 'Supervised upper bound (basic + extended boxes)'}
DETECTOR_TARGETS = dict(min_mean_iou=0.75, min_ap50=0.90)
TWO_STAGE_TOLERANCE = 0.03
#: what docs/results may hold for one study (JSON, Markdown and PNGs together)
SIZE_LIMIT = 1_900_000
TOL = 1e-9  # float tolerance of the ">=" targets (0.85 - 0.80 is 0.04999...)


class CollectError(Exception):
    """A bad input: the message names the file."""


# -- input ------------------------------------------------------------------------------------------------
def unpack(tarball: str, dest: str) -> dict:
    """Extract ``tarball`` into ``dest`` and return its ``kit.json``. Refuses what is not a tar archive, one
    without ``kit.json`` and members that would land outside ``dest``."""
    if not osp.isfile(tarball):
        raise CollectError(f'{tarball}: no such file')
    if not tarfile.is_tarfile(tarball):
        raise CollectError(f'{tarball} is not a tar archive (expected the busbra_gpu.tar.gz of '
                           'tools/gpu/run_busbra.sh)')
    try:
        with tarfile.open(tarball) as t:
            names = t.getnames()
            if 'kit.json' not in names:
                raise CollectError(f'{tarball} holds no kit.json: not a tarball of tools/gpu/run_busbra.sh '
                                   f'({len(names)} member(s), e.g. {names[:3]})')
            bad = [n for n in names if n.startswith('/') or '..' in n.split('/')]
            if bad:
                raise CollectError(f'{tarball}: members outside the archive root ({bad[:3]}); not extracted')
            t.extractall(dest, filter='data')
    except (tarfile.TarError, EOFError, OSError) as e:
        raise CollectError(f'{tarball} cannot be read as a tar archive: {e}') from None
    try:
        kit = load_json(osp.join(dest, 'kit.json'))
    except ValueError as e:
        raise CollectError(f'{tarball}: kit.json is not JSON ({e})') from None
    if not isinstance(kit, dict):
        raise CollectError(f'{tarball}: kit.json is not a JSON object')
    return kit


def has_rows(work: Optional[str]) -> bool:
    return bool(work and glob.glob(osp.join(work, 'rows', '*.json')))


def schedule_of(command: str) -> Optional[str]:
    m = re.search(r'--schedule\s+(\S+)', command or '')
    return m.group(1) if m else None


# -- what the study should have produced --------------------------------------------------------------------
def expected_rows(spec_file: Optional[str], schedule: Optional[str]) -> Optional[Dict[str, List[str]]]:
    """Row names the study spec makes at ``schedule`` (``detectors``: one per detector on the internal test
    split; ``stage2``: one per grid point, method and test set); None when the spec cannot be read."""
    if not spec_file or not osp.isfile(spec_file):
        return None
    from mmengine.config import Config

    from .engine import Study, grid_id
    try:
        spec = Config.fromfile(spec_file)
        if schedule:
            spec.schedule = schedule
        study = Study(spec, work_dir='.')
    except Exception as e:  # a spec this checkout cannot read only costs the list of missing rows
        print(f'collect_results: {spec_file}: cannot list the expected rows ({type(e).__name__}: {e})')
        return None
    dets = [f'{Study.det_key(n)}_internal' for n in study.detector_specs()]
    tests = [t['name'] for t in spec.get('test_sets', [dict(name='internal')])]
    runs = []
    for point, methods in study.plan:
        gid = grid_id(point) if study.multi else ''
        runs += [f"{gid + '_' if gid else ''}{m}_{t}" for m in methods for t in tests]
    return dict(detectors=dets, stage2=runs)


# -- stage 1 -----------------------------------------------------------------------------------------------
def _metric_pairs(text: str) -> Dict[str, float]:
    return {k: float(v) for k, v in re.findall(r'([\w./@-]+): (-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)\b', text)}


def curve_from_scalars(files: List[str], val_interval: Optional[int] = None,
                       max_iters: Optional[int] = None) -> List[Tuple[int, Dict[str, float]]]:
    """(training iteration, validation metrics) of a detector from mmengine's ``scalars.json`` files, read by
    the study's one reader (:func:`mmbus.study.curves.read_curves`, which places each validation)."""
    from .curves import read_curves
    by_iter: Dict[int, Dict[str, float]] = {}
    for name, points in read_curves(files=files, val_interval=val_interval, max_iters=max_iters).items():
        if '/' in name:
            for it, v in points:
                by_iter.setdefault(it, {})[name] = v
    return sorted(by_iter.items())


def curve_from_log(path: str) -> List[Tuple[int, Dict[str, float]]]:
    """The same from a training console log (``logs/train_<detector>.log``), for a tarball whose
    ``scalars.json`` was not packed: ``Iter(val)`` lines take the last training or checkpoint iteration
    before them, ``Epoch(val) [e]`` lines the end of epoch ``e``."""
    if not osp.isfile(path):
        return []
    out, last, epoch_len = [], 0, None
    with open(path, errors='replace') as f:
        for line in f:
            m = re.search(r'Iter\(train\)\s*\[\s*(\d+)/', line) or re.search(r'Saving checkpoint at (\d+) iter', line)
            if m:
                last = max(last, int(m.group(1)))
                continue
            m = re.search(r'Epoch\(train\)\s*\[(\d+)\]\[\s*(\d+)/\s*(\d+)\]', line)
            if m:
                epoch_len = int(m.group(3))
                last = max(last, (int(m.group(1)) - 1) * epoch_len + int(m.group(2)))
                continue
            m = re.search(r'(Iter|Epoch)\(val\)\s*(?:\[(\d+)\])?\s*\[\s*\d+/\s*\d+\]\s*(.*)', line)
            if m:
                metrics = {k: v for k, v in _metric_pairs(m.group(3)).items() if '/' in k}
                if not metrics:
                    continue
                it = int(m.group(2)) * epoch_len if m.group(1) == 'Epoch' and epoch_len else last
                out.append((it, metrics))
    return out


def _train_cfg(config: str) -> Tuple[Optional[int], Optional[int]]:
    """(val_interval, max_iters) of a derived detector config, for the iterations of its validations."""
    if not osp.isfile(config):
        return None, None
    try:
        from mmengine.config import Config
        tc = Config.fromfile(config, import_custom_modules=False).get('train_cfg') or {}
    except Exception:  # an unreadable config only costs the curve's x axis
        return None, None
    if tc.get('type', 'IterBasedTrainLoop') != 'IterBasedTrainLoop' or 'max_epochs' in tc:
        return None, None
    return tc.get('val_interval'), tc.get('max_iters')


def detector_curve(work: str, stem: str) -> Tuple[List[Tuple[int, Dict[str, float]]], Optional[int], str]:
    """(validations, last iteration, source) of a detector: its ``scalars.json`` files (any depth under its
    work dir's timestamped folders), else its training console log."""
    files = sorted(glob.glob(osp.join(work, stem, 'vis_data', 'scalars.json')) +
                   glob.glob(osp.join(work, stem, '*', 'vis_data', 'scalars.json')))
    vi, mi = _train_cfg(osp.join(work, 'configs', f'{stem}.py'))
    if files:
        from .curves import read_curves
        curves = read_curves(files=files, val_interval=vi, max_iters=mi)
        curve = curve_from_scalars(files, vi, mi)
        last = max([it for it, _ in curves.get('loss', [])] + [it for it, _ in curve] + [0])
        return curve, last or None, 'scalars.json'
    log = osp.join(work, 'logs', f'train_{stem}.log')
    curve = curve_from_log(log)
    if curve:
        return curve, max(it for it, _ in curve), 'training log (no scalars.json in the results)'
    return [], None, 'none'


def plot_detector_curve(name: str, curve, path: str) -> str:
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
        stem = 'detector' if name == 'detector' else f'det-{name}'
        curve, last, source = detector_curve(work, stem)
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


# -- targets ---------------------------------------------------------------------------------------------
def _verdict(value, ok) -> Optional[bool]:
    return None if not is_num(value) else bool(ok)


def detector_targets(dets: Dict[str, dict], min_mean_iou: float = DETECTOR_TARGETS['min_mean_iou'],
                     min_ap50: float = DETECTOR_TARGETS['min_ap50']) -> dict:
    """Stage 1: the supervised detector's mean IoU >= ``min_mean_iou`` and AP50 >= ``min_ap50``; the
    semi-supervised one above the supervised one on both. ``met`` is None where a value is missing."""
    sup, semi = dets.get(SUPERVISED, {}), dets.get(SEMI, {})
    out = dict(supervised_mean_iou=dict(value=sup.get('mean_iou'), target=f'≥ {min_mean_iou:.2f}',
                                        met=_verdict(sup.get('mean_iou'),
                                                     is_num(sup.get('mean_iou'))
                                                     and sup['mean_iou'] >= min_mean_iou - TOL)),
               supervised_ap50=dict(value=sup.get('ap50'), target=f'≥ {min_ap50:.2f}',
                                    met=_verdict(sup.get('ap50'),
                                                 is_num(sup.get('ap50')) and sup['ap50'] >= min_ap50 - TOL)))
    for key, label in (('mean_iou', 'mean_iou'), ('ap50', 'ap50')):
        a, b = semi.get(key), sup.get(key)
        out[f'semi_above_supervised_{label}'] = dict(
            value=a, reference=b, target='> supervised',
            met=None if not (is_num(a) and is_num(b)) else bool(a > b))
    verdicts = [v['met'] for v in out.values()]
    out['met'] = None if any(v is None for v in verdicts) else all(verdicts)
    return out


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
    methods = {m: dict(gt=v['gt'], det=v['det'], diff=v['diff'], met=bool(v['gt'] - v['det'] <= tolerance + TOL))
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
    out = dict(title=rep.get('study'), schedule=rep.get('schedule'),
               test_sets=per_test_set(rep, rep.get('rows', [])),
               curves={n: per_test_set(c, None) for n, c in rep.get('curves', {}).items()})
    return out


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


# -- stages, smoke pass, run log ------------------------------------------------------------------------------
def stage_times(work: Optional[str]) -> Dict[str, dict]:
    state = load_json(osp.join(work, 'study_state.json'), {}) if work else {}
    return {n: dict(status=s.get('status'), wall_s=s.get('wall_s'), rc=s.get('rc'))
            for n, s in (state or {}).get('stages', {}).items()}


def stage_groups(stages: Dict[str, dict]) -> List[list]:
    """Rows of the wall-time table: the detectors one by one, the rest summed by kind."""
    groups: Dict[str, List[dict]] = {}
    for n, s in stages.items():
        if n.startswith('train_det'):
            key = n
        elif n.startswith('test_det'):
            key = 'detector tests'
        elif n.startswith('train_'):
            key = 'stage-2 training'
        elif n.startswith('test_'):
            key = 'stage-2 tests'
        elif n.startswith('crops_'):
            key = 'crops (' + n[len('crops_'):] + ')'
        elif n == 'report':
            key = 'report'
        else:
            key = 'rows, subsets, other'
        groups.setdefault(key, []).append(s)
    rows = []
    for key, ss in groups.items():
        walls = [s['wall_s'] for s in ss if is_num(s.get('wall_s'))]
        bad = sum(s.get('status') != 'done' for s in ss)
        rows.append([key, len(ss), f'{sum(walls):.0f}' if walls else 'n/a', f'{max(walls):.0f}' if walls else 'n/a',
                     f'{bad} not done' if bad else 'all done'])
    return rows


def last_finished(work: Optional[str]) -> Optional[str]:
    import time
    state = load_json(osp.join(work, 'study_state.json'), {}) if work else {}
    ends = [s['finished'] for s in (state or {}).get('stages', {}).values() if is_num(s.get('finished'))]
    return time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(max(ends))) if ends else None


def unfinished(stages: Dict[str, dict]) -> List[str]:
    """Stages that failed or were cut off (``running`` in the state: the process was killed)."""
    return [n for n, s in stages.items() if s.get('status') != 'done']


def run_log_lines(path: Optional[str]) -> List[str]:
    """The launcher's own progress lines (``[gpu Ns] ...``) and the stack versions of ``run.log``."""
    if not path or not osp.isfile(path):
        return []
    with open(path, errors='replace') as f:
        return [ln.rstrip() for ln in f if ln.startswith('[gpu ') or ln.startswith('torch ')]


# -- paths ----------------------------------------------------------------------------------------------
_ABS = re.compile(r'(?<![\w.:/$~\-])/(?:[\w.+@=-]+/)*[\w.+@=-]+/?')


def original_work_dir(work: Optional[str]) -> Optional[str]:
    """The work dir the study ran in (on the machine that ran it), from the commands in ``study_state.json``:
    the common folder of every ``--work-dir`` there (detectors, runs and evaluations sit right under it)."""
    state = load_json(osp.join(work, 'study_state.json'), {}) if work else {}
    dirs = []
    for s in (state or {}).get('stages', {}).values():
        cmd = s.get('cmd') or []
        dirs += [cmd[i + 1] for i, c in enumerate(cmd[:-1]) if c == '--work-dir' and str(cmd[i + 1]).startswith('/')]
    if not dirs:
        return None
    common = osp.commonpath(dirs)
    return common if len(set(dirs)) > 1 else osp.dirname(common)


def scrubber(roots: Dict[str, str]):
    """A function that rewrites text: each root (a folder of the machine that ran or collected the study)
    as its name, then any other absolute path as ``…/<its last part>``; committed results hold no machine
    paths."""
    pairs = sorted(((r.rstrip('/'), n) for r, n in roots.items() if r and r != '/'), key=lambda p: -len(p[0]))

    def scrub(text: str) -> str:
        for root, name in pairs:
            text = re.sub(re.escape(root) + r'(?![\w.-])', lambda _: name, text)
        return _ABS.sub(lambda m: '…/' + osp.basename(m.group(0).rstrip('/')), text)

    def walk(obj):
        if isinstance(obj, str):
            return scrub(obj)
        if isinstance(obj, dict):
            return {walk(k): walk(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [walk(v) for v in obj]
        return obj
    return walk


# -- PNGs --------------------------------------------------------------------------------------------------
def shrink_pngs(paths: List[str], budget: int) -> List[str]:
    """Keep the PNGs within ``budget`` bytes: largest first, re-encode with a 128-colour palette, then halve
    the resolution; the ones still over are removed and returned."""
    from PIL import Image
    paths = [p for p in paths if osp.isfile(p)]

    def total():
        return sum(osp.getsize(p) for p in paths)
    for step in ('palette', 'half'):
        for p in sorted(paths, key=osp.getsize, reverse=True):
            if total() <= budget:
                return []
            img = Image.open(p).convert('RGB')
            if step == 'half':
                img = img.resize((max(1, img.width // 2), max(1, img.height // 2)), Image.LANCZOS)
            img = img.quantize(colors=128)
            atomic_write(p, lambda tmp, img=img: img.save(tmp, format='PNG', optimize=True))
    dropped = []
    for p in sorted(paths, key=osp.getsize, reverse=True):
        if total() <= budget:
            break
        os.remove(p)
        paths.remove(p)
        dropped.append(osp.basename(p))
    return dropped


# -- the summary ------------------------------------------------------------------------------------------
def collect(main: Optional[str], smoke: Optional[str], kit: Optional[dict], out_dir: str, name: str,
            source: str, spec_file: Optional[str] = None, run_log: Optional[str] = None,
            label: Optional[str] = None, nvidia_smi: Optional[str] = None,
            roots: Optional[Dict[str, str]] = None) -> dict:
    """Write ``<out_dir>/<name>.json``, ``<name>.md`` and ``<name>/*.png`` from a main work dir (``main``; None
    when there is no main run: the smoke pass stands in) and the smoke pass's (``smoke``); returns the
    summary (``no_main_run`` says whether the main run was missing)."""
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
    expected = expected_rows(spec_file, schedule) if work else None
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
        name=name, label=label, source=source, kit=given_kit, nvidia_smi=nvidia_smi, schedule=schedule,
        no_main_run=no_main, partial=bool(partial_why), partial_why=partial_why, missing=missing,
        rows_not_in_spec=unexpected,
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
        run=dict(commit=(rep.get('environment') or {}).get('git_commit'), finished=last_finished(work)))
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


def _yes(v) -> str:
    return {True: 'met', False: '**not met**', None: 'not measured'}[v]


def _num(v, digits: int = 3) -> str:
    return fmt(v, digits=digits)


def markdown(s: dict, report_md: str, name: str, links: Dict[str, str]) -> str:
    kit = s['kit'] or {}
    md = [f"# Results of `{name}`{': ' + s['label'] if s.get('label') else ''}\n"]
    if s['no_main_run']:
        md += ['# NO MAIN RUN\n', '> The tarball holds no rows of the main run (work/main). '
               + ('What follows is the **smoke pass** (toy schedule): its numbers say the pieces run, nothing '
                  'about the methods.' if s['smoke']['rows'] else 'The smoke pass left no rows either.') + '\n']
    if s['partial']:
        md += [f"> **PARTIAL RESULTS**: {'; '.join(s['partial_why'])}.\n"]
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
        ['Schedule', f"`{s.get('schedule') or 'n/a'}`"], ['Collected from', f"`{s['source']}`"]]), '']
    # targets
    t1, t2, t3 = s['targets']['stage1'], s['targets'].get('stage2'), s['targets']['two_stage']

    def versus(t):
        a, b = t['value'], t['reference']
        if not (is_num(a) and is_num(b)):
            return f'{_num(a)} vs {_num(b)}'
        d = a - b  # a tie at three decimals still decides "above": show how far apart they are
        return f"{_num(a)} vs {_num(b)} ({f'{d:+.4f}' if abs(d) >= 1e-4 or d == 0 else f'{d:+.1e}'})"
    rows = [[f"Stage 1: supervised mean IoU {t1['supervised_mean_iou']['target']}",
             _num(t1['supervised_mean_iou']['value']), _yes(t1['supervised_mean_iou']['met'])],
            [f"Stage 1: supervised AP50 {t1['supervised_ap50']['target']}", _num(t1['supervised_ap50']['value']),
             _yes(t1['supervised_ap50']['met'])],
            ['Stage 1: semi-supervised mean IoU above supervised', versus(t1['semi_above_supervised_mean_iou']),
             _yes(t1['semi_above_supervised_mean_iou']['met'])],
            ['Stage 1: semi-supervised AP50 above supervised', versus(t1['semi_above_supervised_ap50']),
             _yes(t1['semi_above_supervised_ap50']['met'])]]
    if t2 and t2.get('best_ssl'):
        b = t2['methods'][t2['best_ssl']]
        rows.append([f"Stage 2 ({t2['test_set']} crops): the better semi-supervised method, {title(t2['best_ssl'])}: "
                     f"gain ≥ {t2['gain']:+.2f} over {title(t2['baseline'])}, paired p < {t2['p']} on ≥ "
                     f"{t2['min_significant']} draws, ≤ {t2['gap']:.2f} behind {title(t2['upper'])}",
                     f"gain {b['gain']:+.3f}, {b['significant']}/{b['of']} significant, behind by "
                     f"{_num(b.get('gap_to_upper'))}", _yes(t2['met'])])
    else:
        rows.append(['Stage 2: semi-supervised gain, significance and gap to supervised-all',
                     'no semi-supervised runs in the main comparison', _yes(None)])
    for m, v in t3['methods'].items():
        rows.append([f'Two stages: {title(m)} AUC on detector crops within {t3["tolerance"]:.2f} of ground-truth crops',
                     f"{v['det']:.3f} vs {v['gt']:.3f} ({v['diff']:+.3f})", _yes(v['met'])])
    if not t3['methods']:
        rows.append(['Two stages: AUC on detector crops within 0.03 of ground-truth crops',
                     'no method tested on both', _yes(None)])
    met = [r[2] for r in rows]
    verdict = ('Every target is met.' if all(x == 'met' for x in met) else
               f"Targets met: {met.count('met')} of {len(met)}; not met: {met.count('**not met**')}; "
               f"not measured: {met.count('not measured')}.")
    md += ['## Targets\n', md_table(['Target', 'Value', 'Verdict'], rows), '', verdict, '']
    # detectors
    dets = s['detectors']
    if dets:
        froc_keys = sorted({k for d in dets.values() for k in d['froc']}, key=lambda k: float(k.rstrip('fp')))
        drows = [[d['title'], f"{_num(d['mean_iou'])} ± {_num(d['std_iou'])}", fmt(d['detected_at_0_5'], pct=True)]
                 + [fmt(d['froc'].get(k), pct=True) for k in froc_keys]
                 + [_num(d['coco_map']), _num(d['ap50']), _num(d['ap75']),
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
                'yes' if st['gt'] - st['det'] <= TWO_STAGE_TOLERANCE + TOL else '**no**']
               for m, v in s['two_stage'].items() for st in v['by_setting']]
    md += ['## The two stages together\n',
           'Each stage-2 model on the test crops of the supervised detector\'s boxes (misses count as wrong '
           'answers) against the ground-truth boxes\' crops: mean AUC over the draws tested on both.\n',
           md_table(['Method', 'setting', 'draws', 'AUC, ground-truth crops', 'AUC, detector crops',
                     'detector − ground truth', f'within {TWO_STAGE_TOLERANCE:.2f}'], ts_rows) if ts_rows
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
