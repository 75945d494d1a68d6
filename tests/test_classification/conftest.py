

import pytest as _pytest
from mmengine.registry import DefaultScope as _DefaultScope


@_pytest.fixture(autouse=True)
def _mmpretrain_default_scope():
    """Earlier tests (mmdet runners) leave mmengine's global default scope at 'mmdet'; these tests build
    mmpretrain components, so pin the scope while each runs."""
    with _DefaultScope.overwrite_default_scope('mmpretrain'):
        yield
