"""A GPU study kit's results as they come back (``tools/gpu/run_busbra.sh``: a tarball of ``kit.json`` and the
study work dirs ``work/smoke`` and ``work/main``) or as a plain study work dir: unpacking and checking the
tarball, what the study should have made and what its stages did, and what keeps the committed summary small
and free of the paths of the machines that ran or collected it (:mod:`.gpu_results` writes the summary).
"""
import glob
import os
import os.path as osp
import re
import tarfile
from typing import Dict, List, Optional

from mmbus.utils.io import atomic_write
from .results import is_num, load_json

#: what docs/results may hold for one study (JSON, Markdown and PNGs together)
SIZE_LIMIT = 1_900_000


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


def write_compact_scores(work: str) -> int:
    """Beside each classifier row's test dump in the study work dir ``work``, the scores a report reads of it
    (:func:`mmbus.evaluation.predictions.write_scores`): the tarball carries them instead of two dozen pickles
    of megabytes, so a report the device did not finish can be drawn where the results are collected. Returns
    how many were written."""
    from mmbus.evaluation.predictions import write_scores
    n = 0
    for f in sorted(glob.glob(osp.join(work, 'rows', '*.json'))):
        try:  # one bad row costs its own scores file, not the others'
            row = load_json(f) or {}
            pkl = osp.join(work, row.get('predictions') or '')
            if row.get('kind') == 'classifier' and osp.isfile(pkl):
                write_scores(pkl, *(osp.join(work, row[k]) if row.get(k) else None for k in ('crops', 'missed')))
                n += 1
        except Exception as e:  # noqa: BLE001 (the report drawn elsewhere then names the row as lacking scores)
            print(f'{f}: no scores file written: {type(e).__name__}: {e}')
    return n


def rows_without_scores(work: str) -> List[str]:
    """The classifier rows of ``work`` whose test has neither its prediction dump nor its scores file: a
    report drawn without them would test nothing and call every target unmet."""
    from mmbus.evaluation.predictions import scores_file
    out = []
    for f in sorted(glob.glob(osp.join(work, 'rows', '*.json'))):
        row = load_json(f) or {}
        pkl = osp.join(work, row.get('predictions') or '')
        if row.get('kind') == 'classifier' and not (osp.isfile(pkl) or osp.isfile(scores_file(pkl))):
            out.append(osp.splitext(osp.basename(f))[0])
    return out


def draw_missing_report(work: Optional[str]) -> bool:
    """Draw the report of a work dir that came back with rows and ``report_context.json`` but without
    ``report/report.json`` (the device's report stage did not finish), from the rows, the scores files
    (:func:`write_compact_scores`) and the curves it holds. Returns whether it was drawn. Where a stage-2 row
    has no scores, or the drawing fails, it says so on the console and leaves the work dir as it came (no
    report, no figure of the attempt)."""
    if not has_rows(work) or osp.isfile(osp.join(work, 'report', 'report.json')) or \
            not osp.isfile(osp.join(work, 'report_context.json')):
        return False
    lacking = rows_without_scores(work)
    if lacking:
        print(f'collect_results: no report drawn for {osp.basename(work)}: {len(lacking)} stage-2 row(s) came '
              f'without their test\'s scores ({", ".join(lacking[:5])}{", ..." if len(lacking) > 5 else ""})')
        return False
    from .report import make_report
    before = set(glob.glob(osp.join(work, 'report', '*')))
    try:
        make_report(work)
    except Exception as e:  # noqa: BLE001 (the summary then says there is no report, as without this attempt)
        print(f'collect_results: the report of {osp.basename(work)} could not be drawn here: '
              f'{type(e).__name__}: {e}')
        for f in set(glob.glob(osp.join(work, 'report', '*'))) - before:  # half a report must not be published
            os.remove(f)
        return False
    return True


def has_rows(work: Optional[str]) -> bool:
    return bool(work and glob.glob(osp.join(work, 'rows', '*.json')))


def schedule_of(command: str) -> Optional[str]:
    m = re.search(r'--schedule\s+(\S+)', command or '')
    return m.group(1) if m else None


# -- stages, smoke pass, run log ------------------------------------------------------------------------------
def study_state(work: Optional[str]) -> dict:
    """The work dir's ``study_state.json`` (the stages' status, wall times and commands); {} when absent."""
    return (load_json(osp.join(work, 'study_state.json'), {}) if work else {}) or {}


def stage_times(work: Optional[str]) -> Dict[str, dict]:
    state = study_state(work)
    return {n: dict(status=s.get('status'), wall_s=s.get('wall_s'), rc=s.get('rc'))
            for n, s in state.get('stages', {}).items()}


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
    state = study_state(work)
    ends = [s['finished'] for s in state.get('stages', {}).values() if is_num(s.get('finished'))]
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


def gpu_usage(text: Optional[str], interval_s: float = 10) -> Optional[dict]:
    """Peak memory and mean load of the GPU over the run from ``gpu_usage.csv`` (``nvidia-smi
    --query-gpu=memory.used,memory.total,utilization.gpu --format=csv,noheader,nounits -l 10``: one line
    ``used MiB, total MiB, load %`` per sample). Lines that are not three numbers (``[N/A]``, a line cut by the
    sampler's end) are skipped; None without a sample."""
    rows = []
    for line in (text or '').splitlines():
        parts = [p.strip() for p in line.split(',')]
        try:
            used, total, load = (float(p) for p in parts)
        except ValueError:
            continue
        rows.append((used, total, load))
    if not rows:
        return None
    peak, total = max(r[0] for r in rows), max(r[1] for r in rows)
    return dict(samples=len(rows), seconds=len(rows) * interval_s, peak_mib=peak, total_mib=total,
                peak_share=peak / total if total else None, mean_load=sum(r[2] for r in rows) / len(rows),
                busy_share=sum(r[2] >= 50 for r in rows) / len(rows))


# -- paths ----------------------------------------------------------------------------------------------
_ABS = re.compile(r'(?<![\w.:/$~\-])/(?:[\w.+@=-]+/)*[\w.+@=-]+/?')


def original_work_dir(work: Optional[str]) -> Optional[str]:
    """The work dir the study ran in (on the machine that ran it), from the commands in ``study_state.json``:
    the common folder of every ``--work-dir`` there (detectors, runs and evaluations sit right under it)."""
    state = study_state(work)
    dirs = []
    for s in state.get('stages', {}).values():
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
