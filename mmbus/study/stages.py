"""Stages: the one mechanism by which a study runs, skips and resumes its steps.

A stage is one command-line tool (``tools/train.py``, a converter, ...) run as a subprocess, or an
in-process function (result rows, reports). ``<work_dir>/study_state.json`` records per stage:

* its **key**, a SHA-256 over the command line and the fingerprints of its inputs (small files by
  content, files over 32 MiB by size + mtime, directories by relative path + file fingerprint);
* a stage is **skipped** when the recorded key is the same, the recorded run finished with exit status
  0 and every declared output still exists;
* a stage that started but did not finish is **rerun**; a training stage whose work dir holds
  ``last_checkpoint`` from a run with the same key gets ``--resume``; with another key, or when forced,
  its work dir is cleared and it trains from scratch.

Safety: one study process per work dir (an ``flock`` on ``<work_dir>/.study.lock``, inherited by the
running tool, so a tool orphaned by a killed study still holds it); every tool runs in its own process
group that dies with the study (:mod:`.processes`). Logs: ``<work_dir>/logs/<stage>.log``; while a tool
runs, its progress (iteration / total and ETA for training, images for testing and cropping) is read from
its log and printed every 20 s.
"""
import contextlib
import fcntl
import fnmatch
import hashlib
import json
import os
import os.path as osp
import shutil
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, List, Optional, Sequence, Union

from mmbus.engine import DEADLINE_ENV, DEADLINE_MARKER, MIN_TRAIN_S, seconds_to_deadline
from mmbus.reporting.context import STATE_FILE
from mmbus.utils.io import atomic_write_json
from .processes import CHILDREN, ProgressWatcher, progress_of, run_command, tail  # noqa: F401 (re-exported)

LOCK_FILE = '.study.lock'
_HASH_LIMIT = 32 * 1024 * 1024


def fingerprint(path: str) -> str:
    """SHA-256 of a file's content (size + mtime above 32 MiB, e.g. checkpoints); for a directory a hash
    over (relative path, fingerprint) of every file, skipping a top-level ``annotations/`` (a converter's
    output written into the folder it reads); ``'missing'`` when absent."""
    if osp.isfile(path):
        st = os.stat(path)
        if st.st_size > _HASH_LIMIT:
            return f'stat:{st.st_size}:{st.st_mtime_ns}'
        h = hashlib.sha256()
        with open(path, 'rb') as f:
            for chunk in iter(lambda: f.read(1 << 20), b''):
                h.update(chunk)
        return 'sha256:' + h.hexdigest()
    if osp.isdir(path):
        h = hashlib.sha256()
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not (root == path and d == 'annotations'))
            for name in sorted(files):
                p = osp.join(root, name)
                h.update(f'{osp.relpath(p, path)}:{fingerprint(p)}\n'.encode())
        return 'dir:' + h.hexdigest()
    return 'missing'


@dataclass
class Stage:
    """One step of a study.

    ``cmd`` (argv, or a callable returning it once earlier stages ran) runs as a subprocess; ``func``
    runs in-process instead. ``inputs`` (list or callable) are fingerprinted into the key; ``outputs``
    must exist after success; ``work_dir`` is cleared on a new key; a training stage is one whose outputs hold
    ``<work_dir>/last_checkpoint`` (its resume source, and not started too near a deadline).
    ``env`` (a callable returning variables, called when the stage starts) adds to the tool's environment
    without entering the key: values that differ from run to run, such as a deadline, do not void a resume.
    ``params`` (JSON values) enter the key: what a ``func`` stage depends on besides its input files (its
    arguments), so that changing them reruns it.
    """
    name: str
    cmd: Union[None, Sequence[str], Callable[[], Sequence[str]]] = None
    inputs: Union[Sequence[str], Callable[[], Sequence[str]]] = field(default_factory=list)
    outputs: Sequence[str] = field(default_factory=list)
    work_dir: Optional[str] = None
    func: Optional[Callable[[], None]] = None
    desc: str = ''
    env: Optional[Callable[[], dict]] = None
    params: Optional[dict] = None

    def resolve(self) -> None:
        if callable(self.cmd):
            self.cmd = [str(c) for c in self.cmd()]
        if callable(self.inputs):
            self.inputs = list(self.inputs())

    def key(self) -> str:
        self.resolve()
        h = hashlib.sha256(json.dumps(list(self.cmd) if self.cmd else self.name).encode())
        if self.params:  # absent: the key of a stage without params stays what it was
            h.update(json.dumps(self.params, sort_keys=True, default=str).encode())
        for p in self.inputs:
            h.update(f'{p}={fingerprint(p)}\n'.encode())
        return h.hexdigest()


class Parallel(list):
    """Independent chains of stages (each a list run in order) that may run ``jobs`` at a time."""


class StageFailed(RuntimeError):
    pass


class StudyBusy(RuntimeError):
    pass


class StudyState:
    """``study_state.json``: per stage its key, status, command and timing (thread-safe)."""

    def __init__(self, path: str):
        self.path, self.data, self._lock = path, {}, threading.Lock()
        if osp.isfile(path):
            try:
                with open(path) as f:
                    self.data = json.load(f)['stages']
            except (ValueError, KeyError, TypeError):
                print(f'[study] warning: {path} is unreadable; every stage will run again', flush=True)

    def get(self, name: str) -> dict:
        with self._lock:
            return dict(self.data.get(name, {}))

    def set(self, name: str, **kw) -> None:
        with self._lock:
            self.data.setdefault(name, {}).update(kw)
            atomic_write_json(dict(stages=self.data), self.path, indent=1)


#: sys.stdout is one per process: in-process stages redirect it to their log one at a time, and the runner's
#: console lines wait for them, so no line lands in another stage's log or in a closed file
STDOUT_LOCK = threading.RLock()


def _run_func(func: Callable[[], None], log: str) -> int:
    with STDOUT_LOCK, open(log, 'w') as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        try:
            func()
            return 0
        except Exception:  # reported through the log tail
            traceback.print_exc()
            return 1


def stage_names(items) -> List[str]:
    return [s.name for it in items for chain in (it if isinstance(it, Parallel) else [[it]]) for s in chain]


def check_force(force: Sequence[str], names: Sequence[str]) -> List[str]:
    """Stage names matched by the ``--force`` patterns (fnmatch); a pattern matching no stage is an
    error that lists the stages."""
    out = []
    for pat in force:
        hit = [n for n in names if fnmatch.fnmatchcase(n, pat)]
        if not hit:
            raise ValueError(f'--force {pat!r} matches no stage of this study; stages: {", ".join(names)}')
        out += hit
    return out


class StageRunner:
    """Runs (or skips) stages under one work dir; see the module docstring."""

    def __init__(self, work_dir: str, force: Sequence[str] = (), jobs: int = 1, cwd: Optional[str] = None,
                 env: Optional[dict] = None, progress_every: float = 20.0, keep_going: bool = False):
        self.work_dir, self.jobs, self.cwd, self.env = work_dir, max(1, int(jobs)), cwd, env
        #: keep_going: a failed stage ends its own chain only; stages whose inputs it never made are
        #: 'blocked', everything else runs, and StageFailed names all failures at the end (``make -k``)
        self.keep_going, self.failures = keep_going, []
        self.progress_every = progress_every
        self.force_patterns, self.force = list(force), set()
        os.makedirs(osp.join(work_dir, 'logs'), exist_ok=True)
        self.state = StudyState(osp.join(work_dir, STATE_FILE))
        self.records: List[dict] = []
        self._lock_fd: Optional[int] = None
        self.total = 0

    def say(self, msg: str) -> None:
        with STDOUT_LOCK:
            print(msg, flush=True)

    # -- locking -----------------------------------------------------------------------------------
    def acquire(self) -> None:
        path = osp.join(self.work_dir, LOCK_FILE)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = open(path).read().strip() or 'another process'
            raise StudyBusy(f'{self.work_dir} is in use by {holder} (a study or one of its tools is still '
                            'running); wait for it to finish or stop it, then rerun') from None
        os.ftruncate(fd, 0)
        os.write(fd, f'process {os.getpid()} since {time.strftime("%Y-%m-%d %H:%M:%S")}'.encode())
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- running -----------------------------------------------------------------------------------
    def run(self, items, on_start: Optional[Callable[[], None]] = None) -> List[dict]:
        """Run ``items``; ``on_start`` once the stages are checked and the work dir is this study's (locked):
        what a refused invocation must not write."""
        names = stage_names(items)
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f'duplicate stage names: {dup}')
        self.force = set(check_force(self.force_patterns, names))
        self.total, self.index = len(names), {n: i for i, n in enumerate(names, 1)}
        self.acquire()
        try:
            if on_start is not None:
                on_start()
            for it in items:
                if isinstance(it, Parallel):
                    self._run_parallel(it)
                else:
                    self._guarded(self._run_one, it)
        finally:
            self.release()
        if self.failures:
            raise StageFailed(f'{len(self.failures)} stage(s) failed: ' + '; '.join(self.failures))
        return self.records

    def _guarded(self, fn, arg) -> None:
        try:
            fn(arg)
        except StageFailed as e:
            if not self.keep_going:
                raise
            self.failures.append(str(e))

    def _run_parallel(self, chains: Parallel) -> None:
        def chain_fn(chain):
            for st in chain:
                self._run_one(st)

        if self.keep_going:
            chain_fn = partial(self._guarded, chain_fn)

        if self.jobs == 1 or len(chains) == 1:
            for c in chains:
                chain_fn(c)
            return
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            futures = [pool.submit(chain_fn, c) for c in chains]
            try:
                for fut in futures:
                    fut.result()
            except BaseException:
                for fut in futures:
                    fut.cancel()
                CHILDREN.terminate_all()
                raise

    def _run_one(self, st: Stage) -> None:
        log = osp.join(self.work_dir, 'logs', f'{st.name}.log')
        head = f'[study] {self.index[st.name]}/{self.total} {st.name}'
        try:
            key = st.key()
            missing = [p for p in st.inputs if not osp.exists(p)] if self.keep_going else []
        except FileNotFoundError as e:  # an input derived from an earlier stage's output (a checkpoint)
            if not self.keep_going:
                raise
            missing = [str(e)]
        if missing:  # an earlier stage failed to make them: this one cannot run either
            self.say(f'{head}: blocked, inputs missing: {missing}')
            self.records.append(dict(name=st.name, status='blocked', wall_s=None))
            self.failures.append(f'{st.name} blocked (inputs missing)')
            return
        prev = self.state.get(st.name)
        forced = st.name in self.force
        if (not forced and prev.get('key') == key and prev.get('status') == 'done'
                and all(osp.exists(p) for p in st.outputs)):
            self.say(f'{head}: up to date, skipped')
            self.records.append(dict(name=st.name, status='skipped', wall_s=prev.get('wall_s')))
            return
        env = self.env
        if st.cmd is not None and st.env is not None:
            env = dict(os.environ if env is None else env, **{k: str(v) for k, v in st.env().items()})
        trains = st.cmd is not None and any(osp.basename(p) == 'last_checkpoint' for p in st.outputs)
        left = seconds_to_deadline(env) if trains else None
        if left is not None and left < MIN_TRAIN_S:  # its work dir is kept; no key: a rerun with other inputs
            self.state.set(st.name, status='not started', wall_s=0)  # still clears an older run's checkpoint
            self.records.append(dict(name=st.name, status='failed', wall_s=0))
            why = f'{max(left, 0):.0f} s to its deadline ({DEADLINE_ENV}), under the {MIN_TRAIN_S} s a run needs'
            self.say(f'{head}: not started: {why}')
            raise StageFailed(f'stage {st.name} not started ({why})')
        cmd = list(st.cmd) if st.cmd else None
        if st.work_dir is not None and cmd is not None:
            marker = osp.join(st.work_dir, 'last_checkpoint')
            if not forced and prev.get('key') == key and osp.isfile(marker):
                cmd.append('--resume')
                self.say(f'{head}: resuming from {open(marker).read().strip()}')
            elif osp.isdir(st.work_dir):
                shutil.rmtree(st.work_dir)  # other inputs, or --force: train from scratch
        if osp.exists(log):
            os.remove(log)
        self.say(f'{head}: {st.desc or st.name} ... (log: {osp.relpath(log, self.work_dir)})')
        self.state.set(st.name, key=key, status='running', started=time.time(), cmd=cmd, pid=os.getpid())
        t0 = time.time()
        if cmd is not None:
            watcher = ProgressWatcher(log, head, self.say, self.progress_every)
            watcher.start()
            try:
                rc = run_command(cmd, log, self.cwd, env, pass_fds=[self._lock_fd] if self._lock_fd else [])
            finally:
                watcher.stop.set()
        else:
            rc = _run_func(st.func, log)
        wall = time.time() - t0
        missing = [p for p in st.outputs if not osp.exists(p)]
        if rc != 0 or missing:
            self.state.set(st.name, status='failed', rc=rc, wall_s=wall)
            self.records.append(dict(name=st.name, status='failed', wall_s=wall))
            why = f'exit status {rc}' if rc != 0 else f'outputs missing: {missing}'
            self.say(f'{head}: FAILED ({why}) after {wall:.1f} s; last lines of {log}:\n{tail(log)}')
            raise StageFailed(f'stage {st.name} failed ({why}); see {log}')
        # ended by its deadline, not by its schedule: the next run resumes it instead of skipping it
        stopped = st.work_dir is not None and osp.isfile(osp.join(st.work_dir, DEADLINE_MARKER))
        self.state.set(st.name, status='stopped' if stopped else 'done', rc=0, wall_s=wall, finished=time.time())
        self.records.append(dict(name=st.name, status='ran', wall_s=wall))
        self.say(f'{head}: stopped at its deadline after {wall:.1f} s (a rerun resumes it)' if stopped
                 else f'{head}: done in {wall:.1f} s')


def summary_line(records: Sequence[dict], total: int, wall: float) -> str:
    """'N ran, N skipped, N failed, N not run' over all ``total`` stages (blocked ones are not run)."""
    count = {s: sum(r['status'] == s for r in records) for s in ('ran', 'skipped', 'failed')}
    not_run = total - count['ran'] - count['skipped'] - count['failed']
    return (f"[study] {count['ran']} ran, {count['skipped']} skipped, {count['failed']} failed, "
            f'{not_run} not run; wall time {wall:.0f} s')
