"""Stages: skipping, rerunning, --force, failure reports, resume, the work-dir lock and process groups."""
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest

from mmbus.study.stages import (Parallel, Stage, StageFailed, StageRunner, StudyBusy, check_force,
                                fingerprint, summary_line)

# writes argv to <out>, appends a line to <count>; exits 3 when <fail> exists
SCRIPT = r"""
import json, os, sys
out, count, fail = sys.argv[1:4]
with open(count, 'a') as f:
    f.write('run\n')
if os.path.exists(fail):
    print('simulated crash: ' + fail)
    sys.exit(3)
with open(out, 'w') as f:
    json.dump(sys.argv[4:], f)
"""


def _stage(tmp, name='s', inputs=(), work_dir=None, extra=()):
    script = tmp / 'tool.py'
    script.write_text(SCRIPT)
    return Stage(name, [sys.executable, str(script), str(tmp / 'out.json'), str(tmp / 'count.txt'),
                        str(tmp / 'fail'), *extra],
                 inputs=list(inputs), outputs=[str(tmp / 'out.json')], work_dir=work_dir)


def _runs(tmp):
    return len((tmp / 'count.txt').read_text().split())


def _run(stages, work, **kw):
    return StageRunner(work, **kw).run(stages)


def test_fingerprint(tmp_path):
    f = tmp_path / 'a.txt'
    f.write_text('x')
    fp = fingerprint(str(f))
    assert fp.startswith('sha256:')
    os.utime(f, (1, 1))  # content hash: mtime alone does not matter
    assert fingerprint(str(f)) == fp
    assert fingerprint(str(tmp_path / 'none')) == 'missing'
    d = fingerprint(str(tmp_path))
    (tmp_path / 'annotations').mkdir()  # a converter's output beside the images: ignored
    (tmp_path / 'annotations' / 'all.json').write_text('{}')
    assert fingerprint(str(tmp_path)) == d
    (tmp_path / 'b.png').write_text('y')
    assert fingerprint(str(tmp_path)) != d


def test_skip_rerun_on_change_and_force(tmp_path):
    inp = tmp_path / 'input.txt'
    inp.write_text('1')
    work = str(tmp_path / 'work')
    assert [r['status'] for r in _run([_stage(tmp_path, inputs=[str(inp)])], work)] == ['ran']
    assert [r['status'] for r in _run([_stage(tmp_path, inputs=[str(inp)])], work)] == ['skipped']
    assert _runs(tmp_path) == 1
    inp.write_text('2')  # changed input -> rerun
    _run([_stage(tmp_path, inputs=[str(inp)])], work)
    assert _runs(tmp_path) == 2
    _run([_stage(tmp_path, inputs=[str(inp)], extra=['--x'])], work)  # changed command line
    assert _runs(tmp_path) == 3
    (tmp_path / 'out.json').unlink()  # deleted output
    _run([_stage(tmp_path, inputs=[str(inp)], extra=['--x'])], work)
    assert _runs(tmp_path) == 4
    _run([_stage(tmp_path, inputs=[str(inp)], extra=['--x'])], work, force=['s'])
    assert _runs(tmp_path) == 5
    state = json.load(open(osp.join(work, 'study_state.json')))
    assert state['stages']['s']['status'] == 'done'


def test_unknown_force_pattern_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"--force 'trian_\*' matches no stage.*train_a, test_a"):
        check_force(['trian_*'], ['train_a', 'test_a'])
    assert check_force(['train_*', 'test_a'], ['train_a', 'train_b', 'test_a']) == [
        'train_a', 'train_b', 'test_a']
    with pytest.raises(ValueError, match='matches no stage'):
        _run([_stage(tmp_path)], str(tmp_path / 'w'), force=['nope'])
    assert not (tmp_path / 'count.txt').exists()  # refused before anything ran


def test_failure_reports_log_tail_resume_and_force_retrains(tmp_path, capsys):
    work = str(tmp_path / 'work')
    train_dir = tmp_path / 'train'
    (tmp_path / 'fail').write_text('')
    train_dir.mkdir()
    (train_dir / 'last_checkpoint').write_text(str(train_dir / 'iter_5.pth'))
    runner = StageRunner(work)
    with pytest.raises(StageFailed, match='s.log'):
        runner.run([_stage(tmp_path, work_dir=str(train_dir)), _stage(tmp_path, name='after')])
    out = capsys.readouterr().out
    assert 'FAILED (exit status 3)' in out and 'simulated crash' in out  # the log's tail
    assert summary_line(runner.records, runner.total, 1.0).startswith(
        '[study] 0 ran, 0 skipped, 1 failed, 1 not run')
    assert json.load(open(osp.join(work, 'study_state.json')))['stages']['s']['status'] == 'failed'
    # the first attempt had no earlier run with this key, so its stale work dir was cleared; recreate
    # the marker an interrupted run of this key would leave
    train_dir.mkdir(exist_ok=True)
    (train_dir / 'last_checkpoint').write_text(str(train_dir / 'iter_5.pth'))
    (tmp_path / 'fail').unlink()
    assert _run([_stage(tmp_path, work_dir=str(train_dir))], work)[0]['status'] == 'ran'
    assert json.load(open(tmp_path / 'out.json')) == ['--resume']
    assert 'resuming from' in capsys.readouterr().out
    # --force: from scratch, no --resume, old work dir removed
    (train_dir).mkdir(exist_ok=True)
    (train_dir / 'last_checkpoint').write_text('x')
    _run([_stage(tmp_path, work_dir=str(train_dir))], work, force=['s'])
    assert json.load(open(tmp_path / 'out.json')) == []
    assert not (train_dir / 'last_checkpoint').exists()


def test_in_process_stage_and_parallel_chains(tmp_path):
    seen = []
    chains = Parallel([[Stage(f'a{i}', func=lambda i=i: seen.append(i), outputs=[])] for i in range(3)])
    recs = _run([chains, Stage('last', func=lambda: seen.append('last'))], str(tmp_path), jobs=2)
    assert sorted(seen[:3]) == [0, 1, 2] and seen[3] == 'last'
    assert [r['status'] for r in recs] == ['ran'] * 4

    def boom():
        raise RuntimeError('no rows')

    with pytest.raises(StageFailed, match='boom'):
        _run([Stage('boom', func=boom)], str(tmp_path))
    assert 'RuntimeError: no rows' in (tmp_path / 'logs' / 'boom.log').read_text()
    with pytest.raises(ValueError, match='duplicate stage names'):
        _run([Stage('x', func=lambda: None), Stage('x', func=lambda: None)], str(tmp_path))


def test_second_study_on_a_busy_work_dir_is_refused(tmp_path):
    work = str(tmp_path / 'w')
    first = StageRunner(work)
    first.acquire()
    try:
        with pytest.raises(StudyBusy, match=f'process {os.getpid()}'):
            StageRunner(work).run([Stage('x', func=lambda: None)])
    finally:
        first.release()
    _run([Stage('x', func=lambda: None)], work)  # free again


SLEEPER = r"""
import os, sys, time
open(sys.argv[1], 'w').write(str(os.getpid()))
time.sleep(60)
"""

DRIVER = r"""
import sys
sys.path.insert(0, sys.argv[3])
from mmbus.study.stages import Stage, StageRunner
StageRunner(sys.argv[1]).run([Stage('sleep', [sys.executable, sys.argv[2], sys.argv[1] + '/child.pid'])])
"""


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGKILL])
def test_tool_dies_with_the_study_and_holds_the_lock_meanwhile(tmp_path, sig):
    """A killed study takes its running tool with it (SIGTERM: handler + process group; SIGKILL: the
    parent-death signal), so a rerun never trains a second copy beside an orphan."""
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    (tmp_path / 'sleeper.py').write_text(SLEEPER)
    (tmp_path / 'driver.py').write_text(DRIVER + "\n" if sig == signal.SIGKILL else
                                        "import signal\nsignal.signal(signal.SIGTERM, lambda *a: "
                                        "(_ for _ in ()).throw(SystemExit(143)))\n" + DRIVER)
    work = tmp_path / 'w'
    work.mkdir()
    drv = subprocess.Popen([sys.executable, str(tmp_path / 'driver.py'), str(work),
                            str(tmp_path / 'sleeper.py'), repo])
    pid_file = work / 'child.pid'
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.05)
    child = int(pid_file.read_text())
    with pytest.raises(StudyBusy):  # live tool: the work dir is in use
        StageRunner(str(work)).run([Stage('x', func=lambda: None)])
    os.kill(drv.pid, sig)
    drv.wait(timeout=10)
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail('the tool outlived the study')


def test_progress_read_from_tool_logs():
    from mmbus.study.stages import progress_of
    det = ('12/02 02:05:01 - mmengine - INFO - Iter(train) [ 40/240]  base_lr: 1.0e-02 lr: 9.1e-03  '
           'eta: 0:05:12  time: 1.5\n')
    assert progress_of('noise\n' + det) == 'train 40/240, eta 0:05:12'
    cls = 'x - Epoch(train)  [3][20/20]  lr: 3.0e-03  eta: 0:00:41  time: 0.3\n'
    assert progress_of(cls) == 'train epoch 3, iter 20/20, eta 0:00:41'
    assert progress_of('x - Epoch(test) [ 7/64]    eta: 0:00:20\n') == 'test 7/64, eta 0:00:20'
    # a progress bar redrawn with carriage returns: the last count wins
    assert progress_of('[>>  ] 3/10, 2.0 task/s\r[>>>> ] 6/10, 2.1 task/s') == '6/10'
    assert progress_of('loading annotations\n') is None
    assert progress_of('12/02 02:17:01 - mmengine - INFO - Checkpoints will be saved to w.\n') is None


def test_running_tool_progress_is_printed(tmp_path, capsys):
    script = tmp_path / 'slow.py'
    script.write_text("import time\nfor i in range(1, 4):\n    print(f'Iter(train) [{i}/3]  eta: 0:00:0{3 - i}',"
                      " flush=True)\n    time.sleep(0.4)\n")
    StageRunner(str(tmp_path / 'w'), progress_every=0.3).run([Stage('slow', [sys.executable, str(script)])])
    out = capsys.readouterr().out
    assert '[study] 1/1 slow: train ' in out and '/3, eta 0:00:0' in out


def test_a_training_stopped_at_its_deadline_is_resumed_not_skipped(tmp_path):
    """A trainer that exits 0 but leaves DeadlineHook's marker did not finish its schedule: the rerun gives it
    --resume instead of "up to date, skipped"; once it ends without the marker it is done."""
    work, wd = str(tmp_path / 'work'), tmp_path / 'train'
    trainer = tmp_path / 'trainer.py'
    trainer.write_text(
        'import os, sys\n'
        'wd, stop = sys.argv[1], sys.argv[2]\n'
        'os.makedirs(wd, exist_ok=True)\n'
        "open(os.path.join(wd, 'last_checkpoint'), 'w').write('iter_1.pth')\n"
        "open(os.path.join(wd, 'args.txt'), 'a').write(' '.join(sys.argv[3:]) + '\\n')\n"
        "marker = os.path.join(wd, 'stopped_at_deadline')\n"
        'if os.path.exists(stop):\n'
        "    open(marker, 'w').write('stopped')\n"
        'elif os.path.exists(marker):\n'
        '    os.remove(marker)\n')
    stop = tmp_path / 'stop'
    stop.write_text('')

    def stage():
        return Stage('train', [sys.executable, str(trainer), str(wd), str(stop)],
                     outputs=[str(wd / 'last_checkpoint')], work_dir=str(wd))

    _run([stage()], work)
    assert json.load(open(osp.join(work, 'study_state.json')))['stages']['train']['status'] == 'stopped'
    stop.unlink()
    _run([stage()], work)  # resumed, and this time it ends by its schedule
    assert (wd / 'args.txt').read_text().splitlines() == ['', '--resume']
    assert json.load(open(osp.join(work, 'study_state.json')))['stages']['train']['status'] == 'done'
    assert [r['status'] for r in _run([stage()], work)] == ['skipped']


def test_a_training_with_no_time_before_its_deadline_is_not_started(tmp_path, monkeypatch):
    """A training run (its output: the run's last_checkpoint) queued until 30 s before $MMBUS_STOP_AT is not
    started (its few iterations would be tested and reported beside runs that trained): state 'not started', its
    work dir kept, the chain's later stages not run; other stages, a generator with a work dir included, still
    run; with time left it trains."""
    work, wd = str(tmp_path / 'work'), tmp_path / 'train'
    (wd / 'kept').mkdir(parents=True)
    trainer = ('import os, sys; wd, count = sys.argv[1:]; os.makedirs(wd, exist_ok=True); '
               "open(os.path.join(wd, 'last_checkpoint'), 'w').write('iter_1.pth'); open(count, 'a').write('run\\n')")

    def stages(env=None):
        train = Stage('train', [sys.executable, '-c', trainer, str(wd), str(tmp_path / 'count.txt')],
                      outputs=[str(wd / 'last_checkpoint')], work_dir=str(wd), env=env)
        after = Stage('test_after', func=lambda: (tmp_path / 'tested').write_text(''))
        crops = _stage(tmp_path, 'crops', work_dir=str(tmp_path / 'crops'))  # a work dir, but no checkpoint
        return Parallel([[train, after], [crops]])

    monkeypatch.setenv('MMBUS_STOP_AT', str(time.time() + 30))
    with pytest.raises(StageFailed, match=r'train not started \(\d+ s to its deadline \(MMBUS_STOP_AT\), under'):
        _run([stages()], work, keep_going=True)
    state = json.load(open(osp.join(work, 'study_state.json')))['stages']
    assert state['train']['status'] == 'not started' and 'key' not in state['train'] and 'test_after' not in state
    assert _runs(tmp_path) == 1 and (tmp_path / 'out.json').exists()  # the generator ran, the training did not
    assert not (tmp_path / 'tested').exists() and (wd / 'kept').is_dir()
    # the stage's own deadline (a detector's share of the time left) decides, not the study's
    monkeypatch.setenv('MMBUS_STOP_AT', str(time.time() + 3600))
    with pytest.raises(StageFailed, match='train not started'):
        _run([stages(lambda: {'MMBUS_STOP_AT': f'{time.time() + 5:.0f}'})], work, keep_going=True)
    assert _runs(tmp_path) == 1
    _run([stages()], work, keep_going=True)
    assert _runs(tmp_path) == 2 and (tmp_path / 'tested').exists() and (wd / 'last_checkpoint').is_file()
    assert json.load(open(osp.join(work, 'study_state.json')))['stages']['train']['status'] == 'done'


def test_keep_going_counts_a_blocked_stage_as_a_failure(tmp_path):
    work = str(tmp_path / 'work')
    blocked = Stage('needs', func=lambda: None, inputs=[str(tmp_path / 'never_made.json')])
    ok = Stage('ok', func=lambda: None)
    with pytest.raises(StageFailed, match='needs blocked'):
        _run([blocked, ok], work, keep_going=True)


MEMBER = r"""
import signal, subprocess, sys, time
# a member of the leader's process group that ignores SIGTERM (a data-loader worker stuck in a system call)
code = ('import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); '
        f'open({sys.argv[1]!r}, "w").write(str(os.getpid())); time.sleep(60)')
subprocess.Popen([sys.executable, '-c', code])
time.sleep(60)
"""


def test_terminate_groups_takes_the_whole_group_and_reaps_its_leader(tmp_path):
    from mmbus.study.processes import terminate_groups
    pid_file = tmp_path / 'member.pid'
    leader = subprocess.Popen([sys.executable, '-c', MEMBER, str(pid_file)], start_new_session=True)
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.05)
    member = int(pid_file.read_text())
    t0 = time.time()
    terminate_groups([leader.pid], grace=1.0, proc=leader)
    # the leader went at SIGTERM and is reaped; the member held the group until SIGKILL after the grace
    assert leader.returncode == -signal.SIGTERM
    assert 1.0 <= time.time() - t0 < 4.0
    for _ in range(100):
        try:  # gone, or a zombie waiting for whoever adopted it to reap it
            if open(f'/proc/{member}/stat').read().rsplit(')', 1)[1].split()[0] == 'Z':
                break
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.05)
    else:
        pytest.fail('a member of the group outlived the grace')

    # a group whose leader goes at once (nothing else in it): no wait for the grace
    quick = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)
    t0 = time.time()
    terminate_groups([quick.pid], grace=5.0, proc=quick)
    assert quick.returncode == -signal.SIGTERM and time.time() - t0 < 2.0
