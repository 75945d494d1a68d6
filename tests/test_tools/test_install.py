"""The installer is idempotent: with everything in place a rerun only re-checks the compiled ops."""
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
VENV = os.environ.get('MMBUS_VENV', osp.join(REPO, '.venv'))


@pytest.mark.skipif(not osp.isfile(osp.join(VENV, '.mmbus-install-stamp')),
                    reason='the test suite is not running inside the environment tools/install.sh made')
def test_second_install_run_only_checks_ops():
    proc = subprocess.run(['bash', osp.join(REPO, 'tools', 'install.sh')], capture_output=True, text=True,
                          timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert 'ops OK' in out
    assert 'torch 2.13.0' in out and 'mmdet 3.3.0' in out and 'mmpretrain 1.2.0' in out
    assert '1/5' not in out, 'a rerun must not reinstall anything'


def test_setup_reads_version_and_requirements():
    out = subprocess.run([sys.executable, 'setup.py', '--version'], cwd=REPO, capture_output=True,
                         text=True).stdout.strip().splitlines()[-1]
    from mmbus import __version__
    assert out == __version__
    reqs = subprocess.run([sys.executable, '-c',
                           'import runpy, setuptools; captured = {}; '
                           'setuptools.setup = lambda **kw: captured.update(kw); '
                           'runpy.run_path("setup.py"); '
                           'print(captured["install_requires"]); print(captured["extras_require"])'],
                          cwd=REPO, capture_output=True, text=True).stdout
    assert "'torch==2.13.0'" in reqs and "'mmcv==2.1.0'" in reqs and "'mmdet==3.3.0'" in reqs
    assert "'pytest'" in reqs and 'setuptools' not in reqs.splitlines()[0]
