"""Training and validation curves of a run, read from mmengine's ``vis_data/scalars.json``, and the
convergence verdict the report prints: where the selected checkpoint lies, and whether the monitored
curve was still rising when the run ended (a schedule too short for that method)."""
import glob
import json
import os.path as osp
from typing import Dict, List, Optional, Tuple

Curve = List[Tuple[int, float]]


def scalars_file(run_dir: str) -> Optional[str]:
    """The newest ``<run_dir>/<timestamp>/vis_data/scalars.json`` (a resumed run writes a new one)."""
    files = sorted(glob.glob(osp.join(run_dir, '*', 'vis_data', 'scalars.json')))
    return files[-1] if files else None


def read_curves(run_dir: str) -> Dict[str, Curve]:
    """``{'loss': [(iter, value)], '<val metric>': [(iter, value)], ...}``. Validation records carry
    the epoch as their step; it becomes the last training iteration logged in that epoch. Earlier
    scalar files of a resumed run are read first, so the curves cover the whole run."""
    files = sorted(glob.glob(osp.join(run_dir, '*', 'vis_data', 'scalars.json')))
    train: Curve = []
    val: Dict[str, Curve] = {}
    epoch_end: Dict[int, int] = {}
    pending = []
    for f in files:
        with open(f) as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                rec = json.loads(line)
                if 'loss' in rec and 'iter' in rec:
                    it = int(rec['iter'])
                    train.append((it, float(rec['loss'])))
                    if 'epoch' in rec:
                        epoch_end[int(rec['epoch'])] = max(it, epoch_end.get(int(rec['epoch']), 0))
                else:
                    pending.append(rec)
    for rec in pending:
        step = int(rec.get('step', 0))
        it = epoch_end.get(step, step) if 'iter' not in rec else int(rec['iter'])
        for k, v in rec.items():
            if k in ('step', 'epoch', 'iter') or not isinstance(v, (int, float)):
                continue
            val.setdefault(k, []).append((it, float(v)))
    out = {'loss': _dedup(train)}
    out.update({k: _dedup(v) for k, v in val.items()})
    return out


def _dedup(curve: Curve) -> Curve:
    """Sorted by iteration; the last value wins where a resumed run logged an iteration again."""
    return sorted(dict(curve).items())


def convergence(curves: Dict[str, Curve], monitor: str, tail: int = 3) -> dict:
    """Where ``monitor`` peaked. ``still_rising`` when the best value is among the last ``tail``
    validations: the run may have stopped before the method converged."""
    curve = curves.get(monitor) or []
    if not curve:
        return dict(monitor=monitor, validations=0)
    best = max(range(len(curve)), key=lambda i: (curve[i][1], -i))
    return dict(monitor=monitor, validations=len(curve), best_iter=curve[best][0], best=curve[best][1],
                last_iter=curve[-1][0], trained_iters=max([i for i, _ in curves.get('loss', [])] or [0]),
                still_rising=best >= len(curve) - tail and len(curve) > tail)
