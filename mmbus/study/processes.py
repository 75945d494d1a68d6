"""The tools a study runs, as processes: each in its own process group, terminated when the study is
interrupted (SIGINT / SIGTERM) and sent SIGTERM if the study process dies (Linux ``PR_SET_PDEATHSIG``); their
progress (iteration / total and ETA for training, images for testing and cropping) read from their logs."""
import contextlib
import os
import os.path as osp
import re
import shlex
import signal
import subprocess
import threading
import time
from typing import Callable, Optional, Sequence


def _set_pdeathsig():  # runs in the child between fork and exec
    try:
        import ctypes
        ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def terminate_groups(pgids: Sequence[int], grace: float = 5.0, proc: Optional[subprocess.Popen] = None) -> None:
    """SIGTERM to each process group, up to ``grace`` seconds for them to go, then SIGKILL to what is left.
    ``proc``, the leader of one of them started here, is reaped while waiting (an unreaped leader would keep
    its group alive as a zombie until the grace ran out)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for g in pgids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(g, sig)
        deadline = time.time() + grace
        while sig == signal.SIGTERM and time.time() < deadline and any(_alive(g, proc) for g in pgids):
            time.sleep(0.1)
    if proc is not None:
        proc.wait()


def _alive(pgid: int, proc: Optional[subprocess.Popen] = None) -> bool:
    if proc is not None and proc.pid == pgid and proc.poll() is None:
        return True
    with contextlib.suppress(ProcessLookupError, PermissionError):
        return os.killpg(pgid, 0) is None  # signal 0: only whether the group exists
    return False


class _Children:
    """Process groups of the running tools, terminated together on interruption."""

    def __init__(self):
        self.pgids, self.lock = set(), threading.Lock()

    def terminate_all(self, grace: float = 5.0) -> None:
        with self.lock:
            pgids = list(self.pgids)
        terminate_groups(pgids, grace)


CHILDREN = _Children()


def run_command(cmd: Sequence[str], log: str, cwd: Optional[str] = None, env: Optional[dict] = None,
                pass_fds: Sequence[int] = ()) -> int:
    """Run ``cmd`` with stdout + stderr appended to ``log`` (the command line first), in its own process
    group that dies with this process; returns the exit status."""
    os.makedirs(osp.dirname(osp.abspath(log)), exist_ok=True)
    with open(log, 'a') as f:
        f.write('$ ' + ' '.join(shlex.quote(str(c)) for c in cmd) + '\n')
        f.flush()
        proc = subprocess.Popen([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                start_new_session=True, preexec_fn=_set_pdeathsig, pass_fds=tuple(pass_fds))
        with CHILDREN.lock:
            CHILDREN.pgids.add(proc.pid)
        try:
            return proc.wait()
        except BaseException:  # interrupted (KeyboardInterrupt, SystemExit from SIGTERM): the tool goes too
            terminate_groups([proc.pid], proc=proc)
            raise
        finally:
            with CHILDREN.lock:
                CHILDREN.pgids.discard(proc.pid)


def tail(path: str, n: int = 40) -> str:
    try:
        with open(path, errors='replace') as f:
            return ''.join(f.readlines()[-n:])
    except OSError:
        return ''


_PROGRESS = re.compile(r'(Iter|Epoch)\((train|val|test)\)\s*(\[\d+\])?\s*\[\s*(\d+)/(\d+)\]')
_ETA = re.compile(r'eta: ([0-9:]+(?: day[s]?, [0-9:]+)?)')
_COUNT = re.compile(r'(\d+)/(\d+), [0-9.]+ task/s')  # mmengine's ProgressBar


def progress_of(text: str) -> Optional[str]:
    """A one-line progress summary from a tool's log: mmengine's ``Iter(train) [ 40/240] ... eta:`` and
    ``Epoch(train) [3][20/20]`` lines, else the last ``done/total`` of mmengine's ProgressBar."""
    lines = [ln for ln in text.replace('\r', '\n').splitlines() if ln.strip()]
    for line in reversed(lines[-50:]):
        m = _PROGRESS.search(line)
        if m:
            _, phase, epoch, done, total = m.groups()
            what = f'{phase} epoch {epoch[1:-1]}, iter {done}/{total}' if epoch else f'{phase} {done}/{total}'
            eta = _ETA.search(line)
            return what + (f', eta {eta.group(1)}' if eta else '')
    for line in reversed(lines[-5:]):
        m = _COUNT.findall(line)
        if m:
            return '{}/{}'.format(*m[-1])
    return None


class ProgressWatcher(threading.Thread):
    """Prints a running tool's progress (from its log) every ``every`` seconds while it changes."""

    def __init__(self, log: str, head: str, say: Callable[[str], None], every: float):
        super().__init__(daemon=True)
        self.log, self.head, self.say, self.every = log, head, say, every
        self.stop = threading.Event()

    def run(self):
        last = None
        while not self.stop.wait(self.every):
            try:
                with open(self.log, errors='replace') as f:
                    f.seek(max(0, os.path.getsize(self.log) - 20000))
                    now = progress_of(f.read())
            except OSError:
                continue
            if now and now != last:
                self.say(f'{self.head}: {now}')
                last = now
