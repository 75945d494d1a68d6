"""tools/gpu/run_busbra.sh, the one-call GPU kit, exercised on CPU (gloo instead of nccl): bad arguments, the
budget path (a tarball comes back when no time is left to train), and a whole toy run of every piece."""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys
import tarfile

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO, 'tools', 'gpu', 'run_busbra.sh')


def run(*args, timeout=900, path=None):
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1')
    if path is not None:  # a folder of stand-in tools first on PATH
        env['PATH'] = f'{path}{os.pathsep}{env["PATH"]}'
    return subprocess.run(['bash', SCRIPT, *map(str, args)], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=timeout)


def tool(*args):
    subprocess.run([sys.executable, *map(str, args)], check=True, cwd=REPO, capture_output=True, text=True)


@pytest.fixture(scope='module')
def kit(tmp_path_factory):
    """A kit as tools/gpu/prepare_kit.py lays it out (no wheels: the stack is installed here), with a few dozen
    generated images in place of BUS-BRA: generated, converted and split, then compacted."""
    root = tmp_path_factory.mktemp('kit')
    tool('tools/dataset_converters/make_synthetic_bus.py', root / 'raw', '--num-images', 48, '--seed', 0,
         '--no-progress')
    tool('tools/dataset_converters/bus_to_coco.py', root / 'raw', '--format', 'busi', '--out-dir', root / 'conv',
         '--split', 'ratios', '--ratios', 'basic_train=0.25,extended_train=0.35,val=0.2,test=0.2', '--seed', 0,
         '--no-progress')
    tool('tools/gpu/compact_coco.py', root / 'raw', root / 'kit' / 'busbra', '--ann-dir', root / 'conv' / 'annotations')
    return root / 'kit'


def members(path):
    with tarfile.open(path) as t:
        return t.getnames()


def test_bad_arguments(tmp_path):
    res = run('--out', tmp_path)
    assert res.returncode == 2 and '--kit and --out are required' in res.stderr
    (tmp_path / 'k').mkdir()
    res = run('--kit', tmp_path / 'k', '--out', tmp_path / 'o')
    assert res.returncode == 2 and 'busbra/annotations/basic_train.json is missing' in res.stderr
    assert not (tmp_path / 'o').exists()  # nothing written for a bad input
    res = run('--kit', tmp_path / 'k', '--out', tmp_path / 'o', '--speed', '1')
    assert res.returncode == 2 and 'unknown argument --speed' in res.stderr
    res = run('--kit', tmp_path / 'k', '--out', tmp_path / 'o', '--budget-s', 'ten')
    assert res.returncode == 2 and 'ten is not a whole number' in res.stderr
    res = run('--kit', tmp_path / 'k', '--out', tmp_path / 'o', '--schedule', 'cpu-quick')
    assert res.returncode == 2 and '--schedule must be paper or toy' in res.stderr


def test_no_time_left_still_packs_a_tarball_and_the_log(kit, tmp_path):
    res = run('--kit', kit, '--out', tmp_path, '--budget-s', 5, '--no-smoke')
    assert res.returncode == 1, res.stdout[-2000:] + res.stderr[-2000:]  # nothing trained: not a success
    assert 'no time to train' in res.stdout
    assert 'kit.json' in members(tmp_path / 'busbra_gpu.tar.gz')
    log = (tmp_path / 'run.log').read_text()
    # the console output is streamed to OUT/run.log, its last line included
    assert 'device: cpu' in log and log.rstrip().splitlines()[-1].endswith('study exit skipped')
    assert '--jobs 24 (GPU memory: unknown MiB)' in log  # no nvidia-smi: every run at once
    assert sorted(os.listdir(tmp_path)) == ['busbra_gpu.tar.gz', 'run.log']  # a device call brings back 8 files


FAKE_NVIDIA_SMI = r'''#!/bin/bash
# An 80 GB card: its memory total, and a sample every 0.2 s (for -l) until stopped
case "$*" in
    *"-l "*) while true; do echo "4096, 81559, 35"; sleep 0.2; done ;;
    *memory.total*noheader*) echo 81559 ;;
    *) echo "name, memory.used [MiB]"; echo "Fake GPU, 0 MiB" ;;
esac
'''


def test_jobs_and_usage_samples_from_nvidia_smi(kit, tmp_path):
    """On an 80 GB card without --jobs, 16 runs at a time; the GPU's use is sampled into gpu_usage.csv, packed
    in the tarball (the sampler stopped before it), and nothing else is left in OUT."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'nvidia-smi').write_text(FAKE_NVIDIA_SMI)
    (bin_dir / 'nvidia-smi').chmod(0o755)
    out = tmp_path / 'out'
    res = run('--kit', kit, '--out', out, '--budget-s', 5, '--no-smoke', path=bin_dir)
    assert res.returncode == 1 and 'no time to train' in res.stdout, res.stdout[-2000:] + res.stderr[-2000:]
    assert '--jobs 16 (GPU memory: 81559 MiB)' in res.stdout
    with tarfile.open(out / 'busbra_gpu.tar.gz') as t:
        samples = t.extractfile('gpu_usage.csv').read().decode().splitlines()
        assert set(samples) == {'4096, 81559, 35'} and 'nvidia_smi.csv' in t.getnames()
        assert '--jobs 16' in json.load(t.extractfile('kit.json'))['command']
    assert sorted(os.listdir(out)) == ['busbra_gpu.tar.gz', 'run.log']
    res = run('--kit', kit, '--out', tmp_path / 'out2', '--budget-s', 5, '--no-smoke', '--jobs', 3, path=bin_dir)
    with tarfile.open(tmp_path / 'out2' / 'busbra_gpu.tar.gz') as t:
        assert '--jobs 16' not in res.stdout and '--jobs 3' in json.load(t.extractfile('kit.json'))['command']


@pytest.mark.slow
def test_toy_run_end_to_end(kit, tmp_path):
    """Every piece at toy size: three detectors (one through torchrun), crops, five stage-2 runs tested on
    ground-truth and detector crops, the report; the smoke pass is the toy run itself here."""
    res = run('--kit', kit, '--out', tmp_path, '--schedule', 'toy', '--jobs', 2, '--budget-s', 3000, timeout=3600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert 'study ended (exit 0)' in res.stdout
    names = members(tmp_path / 'busbra_gpu.tar.gz')
    rows = sorted(n for n in names if n.startswith('work/main/rows/') and n.endswith('.json'))
    # 3 detectors on the test split; 4 methods at share 0.05 + the mean teacher at 0.10, on gt and det crops
    assert sum('/detector_' in n or '/det-' in n for n in rows) == 3
    assert sum(n.endswith(('_gt.json', '_det.json')) for n in rows) == 10
    assert 'work/main/report/report.md' in names and 'work/main/report/report.json' in names
    # what a report is drawn from where the device's did not finish: the context and each test's scores
    assert 'work/main/report_context.json' in names and not any(n.endswith('.pkl') and '/runs/' in n for n in names)
    assert sum(n.endswith('/predictions_scores.json') for n in names) == 10
    with tarfile.open(tmp_path / 'busbra_gpu.tar.gz') as t:
        info = json.load(t.extractfile('kit.json'))
        train_log = t.extractfile('work/main/logs/train_detector.log').read().decode()
    assert info['study_exit'] == '0' and info['device'] == 'cpu'
    assert 'torch.distributed.run' in train_log or 'dist_train.sh' in train_log  # the distributed path ran


FAKE_PYTHON = r'''#!/bin/bash
# The lent machine where mmcv's CUDA ops do not build: the stack is not installed (the import check fails), a pip
# build with FORCE_CUDA=1 fails (unless CUDA_BUILD_FAILS=0), one without succeeds (each logged); everything else
# is this machine's Python.
if [ "${1-}" = -c ] && [[ "${2-}" == *"import mmcv.ops"* ]]; then exit 1; fi
if [ "${1-}" = -m ] && [ "${2-}" = pip ]; then
    echo "pip FORCE_CUDA=${FORCE_CUDA-} CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset} ${*: -1}" >> "$PIP_LOG"
    echo "include FORCE_CUDA=${FORCE_CUDA-} ${CPLUS_INCLUDE_PATH-}" >> "$PIP_LOG"
    echo "jobs ${MAX_JOBS-unset}" >> "$PIP_LOG"
    [ "${FORCE_CUDA-}" = 1 ] && [ "${CUDA_BUILD_FAILS-1}" = 1 ] && exit 1
    exit 0
fi
[ "${1-}" = - ] && echo "preflight PYTHONPATH=${PYTHONPATH-}" >> "$PIP_LOG"  # a script on stdin
exec "$REAL_PYTHON" "$@"
'''


def stand_in_machine(kit, tmp_path, **env):
    """(kit folder, environment) of the machine FAKE_PYTHON plays: the kit's data beside empty stand-in wheels, and
    the environment that runs the script with FAKE_PYTHON (its pip calls logged to tmp_path/pip.log)."""
    wheels = tmp_path / 'kit_wheels'
    (wheels / 'wheels').mkdir(parents=True)
    for name in ('mmcv-2.1.0.tar.gz', 'mmdet-3.3.0-py3-none-any.whl'):
        (wheels / 'wheels' / name).write_text('')
    (wheels / 'busbra').symlink_to(kit / 'busbra')
    fake = tmp_path / 'python'
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    return wheels, dict(os.environ, PYTHON=str(fake), REAL_PYTHON=sys.executable, PIP_LOG=str(tmp_path / 'pip.log'),
                        OMP_NUM_THREADS='1', **env)


@pytest.mark.slow
def test_stage2_alone_when_mmcv_cuda_ops_do_not_build(kit, tmp_path):
    """The CUDA-ops build of mmcv fails: mmcv is built with its CPU ops and the run is the stage-2 study alone
    (the recognisers need no mmcv op), which the collector reports without detectors."""
    wheels, env = stand_in_machine(kit, tmp_path)
    out = tmp_path / 'out'
    res = subprocess.run(['bash', SCRIPT, '--kit', str(wheels), '--out', str(out), '--schedule', 'toy', '--jobs', '2',
                          '--budget-s', '3000'], capture_output=True, text=True, cwd=REPO, env=env, timeout=3600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    pip = (tmp_path / 'pip.log').read_text().splitlines()
    mmcv = [line for line in pip if line.endswith('mmcv-2.1.0.tar.gz')]
    assert mmcv == [f'pip FORCE_CUDA=1 CUDA_VISIBLE_DEVICES=unset {wheels}/wheels/mmcv-2.1.0.tar.gz',
                    f'pip FORCE_CUDA=0 CUDA_VISIBLE_DEVICES= {wheels}/wheels/mmcv-2.1.0.tar.gz']
    # the CUDA build looks for the CUDA libraries' headers (cusparse.h) in the pip packages beside torch, where
    # torch has them (PyPI's CUDA builds); the CPU build is left as it was
    include = dict(line.split(' ', 2)[1:] for line in pip if line.startswith('include '))
    cuda_pkgs = importlib.util.find_spec('nvidia')
    if cuda_pkgs is not None:
        headers = [d for d in include['FORCE_CUDA=1'].split(':') if d]
        assert headers and all(osp.isdir(d) and '/nvidia/' in d for d in headers)
        assert any(osp.isfile(osp.join(d, 'cusparse.h')) for d in headers) == any(
            osp.isfile(osp.join(p, sub, 'include', 'cusparse.h')) for p in cuda_pkgs.submodule_search_locations
            for sub in os.listdir(p))
    else:
        assert include['FORCE_CUDA=1'] == ''
    assert include['FORCE_CUDA=0'] == ''
    assert 'mmcv build (CUDA ops) took' in res.stdout and 'mmcv build (CPU ops) took' in res.stdout  # timed
    assert 'this run is stage 2 alone' in res.stdout and 'study: configs/studies/busbra_gpu_stage2.py' in res.stdout
    names = members(out / 'busbra_gpu.tar.gz')
    rows = sorted(n for n in names if n.startswith('work/main/rows/') and n.endswith('.json'))
    assert rows and not any('/detector_' in n or '/det-' in n for n in rows)
    assert sum(n.endswith('_gt.json') for n in rows) == 5  # 4 methods at share 0.05 + the mean teacher at 0.10
    with tarfile.open(out / 'busbra_gpu.tar.gz') as t:
        info = json.load(t.extractfile('kit.json'))
    assert info['spec'] == 'configs/studies/busbra_gpu_stage2.py' and info['stage2_only_why'] == \
        "mmcv's CUDA ops did not build"
    assert not info['command'].endswith('--stage2-only')  # the command as typed
    res = subprocess.run([sys.executable, 'tools/gpu/collect_results.py', str(out / 'busbra_gpu.tar.gz'), '--out-dir',
                          str(tmp_path / 'docs'), '--name', 'busbra_gpu'], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.loads((tmp_path / 'docs' / 'busbra_gpu.json').read_text())
    assert not summary['detectors'] and summary['stage2']['test_sets']
    md = (tmp_path / 'docs' / 'busbra_gpu.md').read_text()
    assert "**Stage 2 alone** (mmcv's CUDA ops did not build)" in md
    assert '`configs/studies/busbra_gpu_stage2.py`' in md
    # asked for: mmcv is built with its CPU ops at once (no CUDA build to fail first)
    (tmp_path / 'pip.log').unlink()
    res = subprocess.run(['bash', SCRIPT, '--kit', str(wheels), '--out', str(tmp_path / 'out2'), '--stage2-only',
                          '--budget-s', '5', '--no-smoke'], capture_output=True, text=True, cwd=REPO, env=env)
    assert res.returncode == 1 and 'no time to train' in res.stdout, res.stdout[-3000:] + res.stderr[-3000:]
    mmcv = [line for line in (tmp_path / 'pip.log').read_text().splitlines() if line.endswith('mmcv-2.1.0.tar.gz')]
    assert mmcv == [f'pip FORCE_CUDA=0 CUDA_VISIBLE_DEVICES= {wheels}/wheels/mmcv-2.1.0.tar.gz']
    with tarfile.open(tmp_path / 'out2' / 'busbra_gpu.tar.gz') as t:
        info = json.load(t.extractfile('kit.json'))
    assert info['stage2_only_why'] == '--stage2-only' and info['command'].endswith('--stage2-only')


def test_a_setup_call_then_a_study_call_on_the_warm_machine(kit, tmp_path):
    """--setup-only --site DIR installs the wheels and builds mmcv into DIR and stops; a later call with the same
    --site uses that install as it is (no pip, DIR on PYTHONPATH); another kit, another Python, or a CPU-ops
    install for a call that wants the detectors is installed afresh into an emptied DIR (also through a symbolic
    link); a --site holding files the script did not put there is refused, its files untouched."""
    wheels, env = stand_in_machine(kit, tmp_path, CUDA_BUILD_FAILS='0')
    pip_log = tmp_path / 'pip.log'
    site = tmp_path / 'site'

    def call(out, *args, at=site):
        res = subprocess.run(['bash', SCRIPT, '--kit', str(wheels), '--out', str(out), '--site', str(at),
                              *map(str, args)], capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
        return res, res.stdout + res.stderr

    def mmcv_builds():
        lines = pip_log.read_text().splitlines() if pip_log.exists() else []
        return [line.split()[1] for line in lines if line.startswith('pip ') and line.endswith('.tar.gz')]

    def rebuilds_after(edit_marker, *args):
        marker = site / '.mmbus_stack'
        marker.write_text(edit_marker(marker.read_text()))
        pip_log.unlink()
        res, log = call(tmp_path / 'o_re', '--setup-only', '--no-smoke', '--budget-s', 300, *args)
        assert res.returncode == 0, log[-3000:]
        rebuilds_after.log = log
        return mmcv_builds()

    res, log = call(tmp_path / 'o1', '--setup-only', '--no-smoke', '--budget-s', 300)
    assert res.returncode == 0, log[-3000:]
    assert mmcv_builds() == ['FORCE_CUDA=1'] and 'no study in this call' in log
    # every core this process may use compiles, though OMP_NUM_THREADS=1 (which plain nproc obeys) is set
    assert env['OMP_NUM_THREADS'] == '1'
    assert [line for line in pip_log.read_text().splitlines() if line.startswith('jobs ')] == \
        ['jobs unset', f'jobs {len(os.sched_getaffinity(0))}']  # the wheels' install, then the mmcv build
    assert (site / '.mmbus_stack').read_text().splitlines()[0] == 'CUDA'
    assert sorted(os.listdir(tmp_path / 'o1')) == ['busbra_gpu.tar.gz', 'run.log']
    with tarfile.open(tmp_path / 'o1' / 'busbra_gpu.tar.gz') as t:
        info = json.load(t.extractfile('kit.json'))
    assert info['setup_only'] is True and info['command'].endswith(f'--site {site} --setup-only')
    assert info['study_exit'] == 'skipped'

    pip_log.unlink()
    res, log = call(tmp_path / 'o2', '--no-smoke', '--budget-s', 5)
    assert 'using the stack an earlier call installed' in log and 'mmcv: CUDA ops' in log, log[-3000:]
    preflight = [line for line in pip_log.read_text().splitlines() if line.startswith('preflight ')]
    # (the first is the preflight; the Python that writes kit.json reads from stdin as well)
    assert preflight and str(site) in preflight[0].split('=', 1)[1].split(os.pathsep)
    assert mmcv_builds() == []  # nothing installed or built again
    assert res.returncode == 1 and 'no time to train' in log  # (5 s: no study; the reuse is what is tested)

    # a CPU-ops install asked for (--stage2-only) serves a stage-2 call, and is rebuilt for one with the
    # detectors; one left by a failed CUDA build is used, and the call is stage 2 alone (the build would fail again)
    assert rebuilds_after(lambda m: m.replace('CUDA', 'CPU', 1), '--stage2-only') == []
    assert rebuilds_after(lambda m: m.replace('CUDA', 'CPU', 1)) == ['FORCE_CUDA=1']
    assert rebuilds_after(lambda m: m.replace('CUDA', 'CPU-FALLBACK', 1)) == []
    assert 'this run is stage 2 alone' in rebuilds_after.log
    (site / '.mmbus_stack').write_text((site / '.mmbus_stack').read_text().replace('CPU-FALLBACK', 'CUDA', 1))
    assert rebuilds_after(lambda m: m.replace('python ', 'python 3.0.', 1)) == ['FORCE_CUDA=1']  # another Python

    (wheels / 'wheels' / 'mmengine-0.10.7-py3-none-any.whl').write_text('')  # another kit
    (site / 'left_over').write_text('')
    pip_log.unlink()
    link = tmp_path / 'site_link'
    link.symlink_to(site)
    res, log = call(tmp_path / 'o3', '--setup-only', '--no-smoke', '--budget-s', 300, at=link)
    assert res.returncode == 0 and mmcv_builds() == ['FORCE_CUDA=1'], log[-3000:]
    assert not (site / 'left_over').exists() and 'mmengine-0.10.7' in (site / '.mmbus_stack').read_text()

    mine = tmp_path / 'mine'
    mine.mkdir()
    (mine / 'notes.txt').write_text('keep')
    res, log = call(tmp_path / 'o4', '--setup-only', '--no-smoke', at=mine)
    assert res.returncode == 2 and 'holds files this script did not put there' in log
    assert os.listdir(mine) == ['notes.txt']
