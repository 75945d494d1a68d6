"""Shared fixtures of the fault-injection tests: tiny crops, a crafted checkpoint."""
import pytest
import torch
from mmengine.registry import DefaultScope

import mmbus.registry  # noqa: F401
from rel_helpers import Payload


@pytest.fixture
def crafted_checkpoint(tmp_path):
    """(path, marker): a checkpoint whose unpickling would create ``marker``."""
    marker = tmp_path / 'pwned'
    path = tmp_path / 'crafted.pth'
    torch.save(dict(state_dict=dict(w=torch.ones(1)), meta=dict(x=Payload(str(marker)))), path)
    return str(path), marker


@pytest.fixture(scope='session')
def crop_root(tmp_path_factory):
    from mmbus.datasets.synthetic_crops import make_crop_set
    root = tmp_path_factory.mktemp('rel_crops')
    make_crop_set(str(root), dict(basic_train=12, extended_train=24, val=8), seed=1, balanced_basic=True)
    return str(root)


@pytest.fixture(autouse=True)
def _pretrain_scope():
    """mmdet runners leave the global default scope at 'mmdet'; pin mmpretrain unless a test changes it."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


@pytest.fixture(scope='session')
def tiny_det(tmp_path_factory):
    from rel_tiny import write_tiny_detector
    return write_tiny_detector(str(tmp_path_factory.mktemp('rel_det')))


@pytest.fixture(scope='session')
def tiny_semi(tmp_path_factory, crop_root):
    from rel_tiny import write_tiny_semi
    return write_tiny_semi(str(tmp_path_factory.mktemp('rel_semi')), crop_root)


@pytest.fixture(scope='session')
def inferencer(tiny_det, tiny_semi):
    from mmbus.apis.inference import BUSInferencer
    with DefaultScope.overwrite_default_scope('mmpretrain'):  # leave the process-wide scope as it was
        return BUSInferencer(tiny_det[0], tiny_det[1], tiny_semi[0], tiny_semi[1], score_thr=0.0, margin=5)
