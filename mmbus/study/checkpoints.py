"""The one checkpoint finder of the study engine."""
import glob
import os.path as osp


def find_checkpoint(work_dir: str, prefer_best: bool = False) -> str:
    """The checkpoint of a finished training work dir.

    With ``prefer_best``, the ``best_*.pth`` kept by ``CheckpointHook(save_best=...)`` (the model chosen
    on validation); otherwise (or when there is none) the one named by mmengine's ``last_checkpoint``
    marker. Relative marker paths are read against the work dir's parent folders as mmengine wrote them.
    """
    if prefer_best:
        best = sorted(glob.glob(osp.join(work_dir, 'best_*.pth')), key=osp.getmtime)
        if best:
            return best[-1]
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        raise FileNotFoundError(f'no checkpoint in {work_dir} (no {marker}); did training finish?')
    with open(marker) as f:
        path = f.read().strip()
    if not osp.isabs(path) and not osp.isfile(path):
        path = osp.join(work_dir, osp.basename(path))
    if not osp.isfile(path):
        raise FileNotFoundError(f'{marker} names {path}, which does not exist')
    return path
