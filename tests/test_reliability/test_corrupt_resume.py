"""A truncated or corrupt last checkpoint does not block a rerun: ``--resume`` falls back to the
previous intact checkpoint with a warning, or says exactly what to delete."""
import os
import shutil

import pytest
import torch
from mmengine.config import Config
from rel_helpers import exit_message, load_tool
from rel_tiny import mt_cfg

from mmbus.utils.checkpoint import CorruptCheckpointError, find_resumable_checkpoint


def _truncate(path):
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 3])


@pytest.fixture(scope='module')
def trained_once(crop_root, tmp_path_factory):
    """A config file and a work dir holding epoch_1.pth and epoch_2.pth (last_checkpoint -> epoch_2)."""
    root = tmp_path_factory.mktemp('resume')
    cfg = mt_cfg(crop_root, str(root / 'work'), 3, workers=0)
    cfg['default_hooks']['checkpoint'].update(max_keep_ckpts=2, save_best=None)
    cfg['custom_imports'] = dict(imports=['mmbus.registry'])
    path = str(root / 'cfg.py')
    Config(cfg).dump(path)
    load_tool('train').main([path, '--cfg-options', 'train_cfg.max_epochs=2'])
    work = root / 'work'
    assert sorted(f for f in os.listdir(work) if f.endswith('.pth')) == ['epoch_1.pth', 'epoch_2.pth']
    return path, work


@pytest.fixture
def trained(trained_once, tmp_path):
    """A private copy of the work dir (``last_checkpoint`` pointing into the copy)."""
    cfg, src = trained_once
    work = tmp_path / 'work'
    shutil.copytree(src, work)
    (work / 'last_checkpoint').write_text(str(work / 'epoch_2.pth'))
    return cfg, work, load_tool('train')


def test_resume_skips_a_truncated_last_checkpoint(trained, capsys):
    cfg, work, train = trained
    _truncate(work / 'epoch_2.pth')
    capsys.readouterr()
    train.main([cfg, '--work-dir', str(work), '--resume'])
    err = capsys.readouterr().err
    assert 'epoch_2.pth' in err and 'truncated' in err and 'epoch_1.pth' in err
    assert torch.load(work / 'epoch_3.pth', weights_only=True)['meta']['epoch'] == 3


def test_resume_without_an_intact_checkpoint_says_what_to_delete(trained):
    cfg, work, train = trained
    _truncate(work / 'epoch_2.pth')
    (work / 'epoch_1.pth').write_bytes(b'')
    with pytest.raises(SystemExit) as e:
        train.main([cfg, '--work-dir', str(work), '--resume'])
    msg = exit_message(e)
    assert 'delete' in msg and str(work / 'epoch_2.pth') in msg and str(work / 'last_checkpoint') in msg
    with pytest.raises(CorruptCheckpointError):
        find_resumable_checkpoint(str(work), log=lambda m: None)
    # an explicit --resume of a broken file is named too (no traceback)
    with pytest.raises(SystemExit) as e:
        train.main([cfg, '--work-dir', str(work), '--resume', str(work / 'epoch_2.pth')])
    assert 'epoch_2.pth' in exit_message(e) and 'truncated or corrupt' in exit_message(e)


def test_resume_in_an_empty_work_dir_starts_fresh(tmp_path):
    assert find_resumable_checkpoint(str(tmp_path / 'nothing'), log=lambda m: None) is None
