"""mmpretrain's multi-modal models and transformers 5: mmpretrain 1.2.0 imports them (with mmpretrain.models) when
pycocotools and transformers >= 4.28 are installed, and transformers 5 lacks helpers they import, so on a machine
with transformers 5 no mmpretrain model could be built. mmbus switches them off there (mmbus.compat)."""
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError

import pytest

import mmbus.compat as compat

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# transformers 5 as mmpretrain's multi-modal modules see it: any name exists (a placeholder class), except the
# helpers transformers 5 removed from transformers.modeling_utils
STAND_IN = '''
import importlib.abc, importlib.util, sys, types
__version__ = '5.17.0'
_REMOVED = {'transformers.modeling_utils': {'apply_chunking_to_forward', 'find_pruneable_heads_and_indices',
                                            'prune_linear_layer'}}
def _getattr(modname):
    def __getattr__(name):
        if name.startswith('__') or name in _REMOVED.get(modname, ()):
            raise AttributeError(name)
        return type(name, (), {})
    return __getattr__
class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.startswith('transformers.'):
            return importlib.util.spec_from_loader(fullname, self, is_package=True)
    def create_module(self, spec):
        mod = types.ModuleType(spec.name)
        mod.__path__, mod.__getattr__ = [], _getattr(spec.name)
        return mod
    def exec_module(self, module):
        pass
sys.meta_path.insert(0, _Finder())
__getattr__ = _getattr('transformers')
'''


@pytest.fixture(scope='module')
def transformers5(tmp_path_factory):
    root = tmp_path_factory.mktemp('transformers5')
    (root / 'transformers').mkdir()
    (root / 'transformers' / '__init__.py').write_text(STAND_IN)
    (root / 'transformers-5.17.0.dist-info').mkdir()
    (root / 'transformers-5.17.0.dist-info' / 'METADATA').write_text(
        'Metadata-Version: 2.1\nName: transformers\nVersion: 5.17.0\n')
    return root


def _python(code, site):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), REPO]), OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=300)


def test_the_stand_in_breaks_mmpretrain_as_transformers_5_does(transformers5):
    pytest.importorskip('pycocotools')  # mmpretrain turns its multi-modal models on only with pycocotools
    res = _python('import mmpretrain.models', transformers5)
    assert res.returncode != 0 and 'Error' in res.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize('first', ['mmbus.registry', 'mmbus.models.semi_classifier', 'mmbus.datasets.crop_dataset'])
def test_mmbus_switches_them_off_before_mmpretrain_imports_them(transformers5, first):
    res = _python(f'import {first}, mmpretrain.models, mmpretrain.datasets\n'
                  'import mmpretrain.utils.dependency as d\n'
                  'from mmpretrain.registry import MODELS\n'
                  "assert MODELS.get('ImageClassifier') is not None\n"
                  'print(d.WITH_MULTIMODAL)', transformers5)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == ['False']


def test_the_switch_by_transformers_version(monkeypatch):
    import mmpretrain.utils.dependency as dependency
    monkeypatch.setattr(dependency, 'WITH_MULTIMODAL', True)

    def installed(v):
        def version(name):
            assert name == 'transformers'
            if v is None:
                raise PackageNotFoundError(name)
            return v
        return version

    for v in (None, '4.28.0', '4.57.1', 'dev'):  # absent, the 4.x that mmpretrain 1.2.0 was written for, unreadable
        monkeypatch.setattr(compat, 'version', installed(v))
        assert compat.switch_off_unusable_multimodal() is False and dependency.WITH_MULTIMODAL is True, v
    monkeypatch.setattr(compat, 'version', installed('5.0.0'))
    assert compat.switch_off_unusable_multimodal() is True and dependency.WITH_MULTIMODAL is False
