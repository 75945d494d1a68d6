"""mmbus.utils.checkpoint.find_checkpoint: the one finder of a work dir's checkpoint (the study engine's,
with the best checkpoint on request, and ``--resume``'s through find_resumable_checkpoint)."""
import os
import subprocess
import sys

import pytest
import torch
from rel_helpers import REPO

from mmbus.utils.checkpoint import CorruptCheckpointError, find_checkpoint, find_resumable_checkpoint


def _save(path, step, mtime):
    torch.save(dict(meta=dict(step=step), state_dict=dict(w=torch.full((2, ), float(step)))), path)
    os.utime(path, (mtime, mtime))
    return str(path)


@pytest.fixture
def work(tmp_path):
    """A work dir with iter_1/iter_2 (marker -> iter_2, written relative to the folder the run started in) and
    two best_* checkpoints."""
    work = tmp_path / 'runs' / 'det'
    work.mkdir(parents=True)
    for step in (1, 2):
        _save(work / f'iter_{step}.pth', step, 1000 + step)
    _save(work / 'best_mAP_iter_2.pth', 2, 2000)
    _save(work / 'best_mAP_iter_1.pth', 1, 1500)
    (work / 'last_checkpoint').write_text('runs/det/iter_2.pth')  # relative to tmp_path, not the cwd
    return work


def test_last_and_best(work):
    assert find_checkpoint(str(work)) == str(work / 'iter_2.pth')
    assert find_checkpoint(str(work), prefer_best=True) == str(work / 'best_mAP_iter_2.pth')  # the newest best
    assert find_resumable_checkpoint(str(work), log=lambda m: None) == str(work / 'iter_2.pth')  # never best
    for f in work.glob('best_*.pth'):
        f.unlink()
    assert find_checkpoint(str(work), prefer_best=True) == str(work / 'iter_2.pth')


def test_marker_in_a_moved_work_dir(work, tmp_path):
    (work / 'last_checkpoint').write_text(str(tmp_path / 'elsewhere' / 'iter_2.pth'))
    assert find_checkpoint(str(work)) == str(work / 'iter_2.pth')


def test_corrupt_last_falls_back_with_a_warning(work):
    (work / 'iter_2.pth').write_bytes(b'')
    seen = []
    assert find_checkpoint(str(work), log=seen.append) == str(work / 'iter_1.pth')
    assert 'iter_2.pth' in seen[0] and 'iter_1.pth' in seen[0]
    (work / 'iter_1.pth').write_bytes(b'')
    with pytest.raises(CorruptCheckpointError, match='delete'):
        find_checkpoint(str(work), log=seen.append)


def test_no_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match='did training finish'):
        find_checkpoint(str(tmp_path))
    assert find_resumable_checkpoint(str(tmp_path), log=lambda m: None) is None


def test_the_loader_needs_no_compat_import(tmp_path):
    """mmbus.utils.checkpoint sets up its allow-list itself (no import of mmbus.compat, so no cycle)."""
    from mmengine.logging import HistoryBuffer
    buf = HistoryBuffer()
    buf.update(1.0)
    torch.save(dict(state_dict=dict(w=torch.ones(1)), message_hub=dict(b=buf)), tmp_path / 'c.pth')
    code = ('import sys; from mmbus.utils.checkpoint import load_checkpoint_safely; '
            f'assert load_checkpoint_safely({str(tmp_path / "c.pth")!r})["message_hub"]["b"].mean() == 1.0; '
            "assert 'mmbus.compat' not in sys.modules and 'mmbus.registry' not in sys.modules")
    subprocess.run([sys.executable, '-c', code], cwd=REPO, check=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
