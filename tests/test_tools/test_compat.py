"""mmbus allow-lists only what mmengine checkpoints contain; everything else stays refused."""
import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

import mmbus.registry  # noqa: F401


def test_mmengine_objects_load_with_weights_only(tmp_path):
    buf = HistoryBuffer()
    buf.update(0.5)
    buf.update(1.5)
    obj = {'hub': buf, 'scalar': np.float64(2.5), 'arr': np.arange(3, dtype=np.int64), 'w': torch.ones(2)}
    torch.save(obj, tmp_path / 'ok.pth')
    loaded = torch.load(tmp_path / 'ok.pth')  # torch's default: weights_only=True
    assert loaded['hub'].mean() == pytest.approx(1.0)
    assert loaded['scalar'] == 2.5 and loaded['arr'].tolist() == [0, 1, 2]


class Evil:
    def __reduce__(self):
        return (os.system, ('echo pwned',))


def test_other_globals_are_still_refused(tmp_path):
    torch.save({'x': Evil()}, tmp_path / 'evil.pth')
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / 'evil.pth')


def test_getattr_is_limited_to_history_buffer_statistics(tmp_path):
    # getattr(HistoryBuffer, 'update') is not a statistic: refused even though HistoryBuffer is allowed
    torch.save({'f': HistoryBuffer.update}, tmp_path / 'method.pth')
    with pytest.raises(pickle.UnpicklingError, match='only HistoryBuffer statistics'):
        torch.load(tmp_path / 'method.pth')
