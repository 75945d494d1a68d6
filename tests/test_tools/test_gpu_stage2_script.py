"""tools/gpu/stage2_busbra.sh, the prepared GPU run of the BUS-BRA stage-2 study, exercised on CPU: bad
arguments, the time budget (the tarball comes back even when the study is stopped), and a whole toy run."""
import os
import os.path as osp
import subprocess
import sys
import tarfile

import pytest

from mmbus.datasets.synthetic_crops import make_crop_set

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO, 'tools', 'gpu', 'stage2_busbra.sh')


def run(*args, timeout=900):
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1')
    return subprocess.run(['bash', SCRIPT, *map(str, args)], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=timeout)


@pytest.fixture(scope='module')
def crops(tmp_path_factory):
    root = tmp_path_factory.mktemp('gpu_crops')
    make_crop_set(str(root), dict(basic_train=12, extended_train=24, val=8, test=8), seed=1, balanced_basic=True)
    return root


def members(path):
    with tarfile.open(path) as t:
        return t.getnames()


def test_bad_arguments(tmp_path):
    res = run('--out', tmp_path)
    assert res.returncode == 2 and '--crops and --out are required' in res.stderr
    (tmp_path / 'c').mkdir()
    res = run('--crops', tmp_path / 'c', '--out', tmp_path / 'o')
    assert res.returncode == 2 and 'basic_train.json is missing' in res.stderr
    assert not (tmp_path / 'o').exists()  # nothing written for a bad input
    res = run('--crops', tmp_path / 'c', '--out', tmp_path / 'o', '--speed', '1')
    assert res.returncode == 2 and 'unknown argument --speed' in res.stderr


def test_budget_stops_the_study_and_the_tarball_still_comes_back(crops, tmp_path):
    res = run('--crops', crops, '--out', tmp_path, '--schedule', 'toy', '--budget-s', 1)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert 'the study stopped' in res.stdout
    names = members(tmp_path / 'stage2_gpu.tar.gz')
    assert 'report/report.md' in names and 'report/report.json' in names


@pytest.mark.slow
def test_toy_run_end_to_end(crops, tmp_path):
    res = run('--crops', crops, '--out', tmp_path, '--schedule', 'toy', '--jobs', 2, '--budget-s', 3000, timeout=3600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert '(study exit 0)' in res.stdout
    names = members(tmp_path / 'stage2_gpu.tar.gz')
    rows = [n for n in names if n.startswith('rows/') and n.endswith('.json')]
    assert len(rows) == 21  # 3 draws x 4 methods + 3 shares x 3 methods, one test set
    for png in ('roc_gt.png', 'auc_by_seed_gt.png', 'learning_curve_auc_by_labelled_share_gt.png'):
        assert f'report/{png}' in names, png
    # every run's curves come back (a toy run validates once: too few values for the smoothed curve figure)
    assert sum(n.endswith('vis_data/scalars.json') for n in names) == 21
