"""The main job, stopped while its detector trains, continues from the detector's last checkpoint when it is
started again, and finishes: stopped once by SIGTERM (a user's kill or Ctrl-C), once by SIGKILL of the
study's process group, then run to the end. Toy scale, the toy detector made long enough to be caught between
two checkpoints; no stage-2 method and no export (the detector, its tests, the crops and the report run)."""
import contextlib
import fcntl
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time

from mmengine.config import Config

from mmbus.utils.checkpoint import load_checkpoint_safely

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SPEC = osp.join(REPO, 'configs', 'studies', 'main_job_synthetic.py')
MAX_ITERS = 8  # the toy spec's checkpoint interval (2) stays: a checkpoint every 2 iterations
# A nested key replaces the spec's dotted 'train_cfg.*' toy entries as a whole, so both are given (checked below
# on the derived config). At the toy's lr (0.01) a few more iterations teach the random detector to call every
# box background (no crops to test); lr 0.001 keeps its top boxes above the crops' score threshold.
OPTIONS = [f'toy.detector.train_cfg.max_iters={MAX_ITERS}', f'toy.detector.train_cfg.val_interval={MAX_ITERS}',
           'toy.detector.optim_wrapper.optimizer.lr=0.001',
           'methods=[]', 'export_teacher=False']
TIMEOUT = 120  # seconds for any one wait


def _command(work):
    return [sys.executable, osp.join(REPO, 'tools', 'run_study.py'), SPEC, '--schedule', 'toy', '--work-dir',
            str(work), '--cfg-options', *OPTIONS]


def _start(work, out):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.Popen(_command(work), cwd=REPO, stdout=out, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


def _marker(det_dir):
    try:
        with open(osp.join(det_dir, 'last_checkpoint')) as f:
            return f.read().strip()
    except OSError:
        return ''


def _iteration(path):
    m = re.search(r'iter_(\d+)\.pth$', path)
    return int(m.group(1)) if m else None


def _wait_for_checkpoint(proc, det_dir, after, log):
    """Wait until the detector's ``last_checkpoint`` names a checkpoint later than iteration ``after``."""
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        it = _iteration(_marker(det_dir))
        if it is not None and it > after and osp.isfile(_marker(det_dir)):
            return it
        assert proc.poll() is None, f'the study ended (exit {proc.returncode}) first:\n{_read(log)[-3000:]}'
        time.sleep(0.05)
    raise AssertionError(f'no checkpoint after iteration {after} in {det_dir} within {TIMEOUT} s:\n'
                         + _read(log)[-3000:])


def _wait_unlocked(work):
    """Wait until no process holds the study's lock (its tools, which hold it too, have gone)."""
    deadline = time.time() + TIMEOUT
    fd = os.open(osp.join(work, '.study.lock'), os.O_RDWR)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return
            except BlockingIOError:
                assert time.time() < deadline, f'{work} is still locked {TIMEOUT} s after the study was stopped'
                time.sleep(0.1)
    finally:
        os.close(fd)


def _kill_group(proc):
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)


def _read(path):
    with open(path, errors='replace') as f:
        return f.read()


def _check_resumed(console, det_log, it):
    """The rerun's console says the detector resumes from iteration ``it``; its log starts after it."""
    m = re.search(r'train_detector: resuming from (\S+)', console)
    assert m and _iteration(m.group(1)) == it, console[-3000:]
    log = _read(det_log)
    assert f'resumed epoch: 0, iter: {it}' in log, log[-3000:]
    done = [int(n) for n in re.findall(rf'Iter\(train\)\s*\[\s*(\d+)/{MAX_ITERS}\]', log)]
    assert done and done[0] == it + 1, done
    return done


def test_main_job_interrupted_in_the_detector_resumes_and_finishes(tmp_path):
    work = tmp_path / 'main'
    det_dir = str(work / 'detector')
    det_log = str(work / 'logs' / 'train_detector.log')
    procs = []
    try:
        # 1. stopped by SIGTERM at the first checkpoint
        with open(tmp_path / 'run1.txt', 'w') as out:
            procs.append(_start(work, out))
        first = _wait_for_checkpoint(procs[-1], det_dir, 0, tmp_path / 'run1.txt')
        procs[-1].send_signal(signal.SIGTERM)
        assert procs[-1].wait(timeout=TIMEOUT) == 128 + signal.SIGTERM  # run_study.py exits so on SIGTERM
        _wait_unlocked(work)
        cfg = Config.fromfile(work / 'configs' / 'detector.py')
        assert cfg.train_cfg.max_iters == MAX_ITERS and cfg.default_hooks.checkpoint.interval == 2
        assert cfg.model.roi_head.bbox_head.fc_out_channels == 64 and cfg.optim_wrapper.optimizer.lr == 0.001
        assert cfg.default_hooks.checkpoint.max_keep_ckpts == 2
        stopped_at = _iteration(_marker(det_dir))
        assert first <= stopped_at < MAX_ITERS, 'the detector finished before it was stopped'

        # 2. resumed, then the whole process group killed at a later checkpoint
        with open(tmp_path / 'run2.txt', 'w') as out:
            procs.append(_start(work, out))
        second = _wait_for_checkpoint(procs[-1], det_dir, stopped_at, tmp_path / 'run2.txt')
        _kill_group(procs[-1])
        assert procs[-1].returncode == -signal.SIGKILL
        _wait_unlocked(work)  # the orphaned trainer got SIGTERM when the study died
        console = _read(tmp_path / 'run2.txt')
        _check_resumed(console, det_log, stopped_at)
        killed_at = _iteration(_marker(det_dir))
        assert second <= killed_at < MAX_ITERS, 'the detector finished before it was killed'
        # the checkpoint the marker names, and at most the one before it (two kept: a kill during a save leaves one)
        kept = sorted(f for f in os.listdir(det_dir) if f.endswith('.pth'))
        assert f'iter_{killed_at}.pth' in kept and len(kept) <= 2
        ckpt = load_checkpoint_safely(osp.join(det_dir, f'iter_{killed_at}.pth'))
        assert ckpt['meta']['iter'] == killed_at and set(ckpt['random_state']) >= {'python', 'numpy', 'torch'}
        del ckpt

        # 3. resumed again, and run to the end
        with open(tmp_path / 'run3.txt', 'w') as out:
            procs.append(_start(work, out))
            rc = procs[-1].wait(timeout=4 * TIMEOUT)
        console = _read(tmp_path / 'run3.txt')
        assert rc == 0, console[-3000:]
        done = _check_resumed(console, det_log, killed_at)
        assert done[-1] == MAX_ITERS
        assert 'generate_hospital_a: up to date, skipped' in console
        assert _iteration(_marker(det_dir)) == MAX_ITERS
        for name in ('report.md', 'report.json'):
            assert (work / 'report' / name).stat().st_size > 0, name
    finally:
        for p in procs:
            if p.poll() is None:
                _kill_group(p)
