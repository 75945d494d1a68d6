"""No checkpoint load in mmbus runs code from the file; every refusal names the file."""
import os.path as osp

import pytest
import torch
from rel_helpers import exit_message, load_tool

from mmbus.utils.checkpoint import (CheckpointError, CorruptCheckpointError, UnsafeCheckpointError,
                                    load_checkpoint_safely)


def test_safe_loader_refuses_a_crafted_checkpoint(crafted_checkpoint):
    path, marker = crafted_checkpoint
    with pytest.raises(UnsafeCheckpointError, match='crafted.pth') as e:
        load_checkpoint_safely(path)
    assert 'posix.system' in str(e.value) or 'system' in str(e.value)
    assert not marker.exists()


def test_mmengine_loading_goes_through_the_safe_loader(crafted_checkpoint):
    # Runner.load_checkpoint / resume, init_detector and init_model all use this entry point
    from mmengine.runner.checkpoint import CheckpointLoader
    path, marker = crafted_checkpoint
    with pytest.raises(UnsafeCheckpointError, match='crafted.pth'):
        CheckpointLoader.load_checkpoint(path, map_location='cpu')
    assert not marker.exists()


def test_inference_and_export_refuse_a_crafted_checkpoint(crafted_checkpoint, tiny_det, tiny_semi, tmp_path):
    from mmbus.apis.export import export_teacher, load_plain_classifier
    from mmbus.apis.inference import BUSInferencer
    path, marker = crafted_checkpoint
    with pytest.raises(UnsafeCheckpointError, match='crafted.pth'):
        BUSInferencer(tiny_det[0], tiny_det[1], tiny_semi[0], path)
    with pytest.raises(UnsafeCheckpointError, match='crafted.pth'):
        BUSInferencer(tiny_det[0], path, tiny_semi[0], tiny_semi[1])
    with pytest.raises(UnsafeCheckpointError, match='crafted.pth'):
        load_plain_classifier(tiny_semi[0], path)
    with pytest.raises(UnsafeCheckpointError, match='crafted.pth'):
        export_teacher(tiny_semi[0], path, str(tmp_path / 'exp'))
    assert not (tmp_path / 'exp' / 'teacher.pth').exists()
    assert not marker.exists()


def test_tools_refuse_a_crafted_checkpoint(crafted_checkpoint, tiny_det, tiny_semi, tmp_path):
    path, marker = crafted_checkpoint
    infer, export, test = load_tool('infer'), load_tool('export_teacher'), load_tool('test')
    with pytest.raises(SystemExit) as e:
        infer.main(['x.png', '--det-config', tiny_det[0], '--det-checkpoint', tiny_det[1], '--cls-config',
                    tiny_semi[0], '--cls-checkpoint', path, '--out-dir', str(tmp_path / 'o')])
    assert 'crafted.pth' in exit_message(e) and 'refused' in exit_message(e)
    with pytest.raises(SystemExit) as e:
        export.main([tiny_semi[0], path, '--out-dir', str(tmp_path / 'x')])
    assert 'crafted.pth' in exit_message(e)
    with pytest.raises(SystemExit) as e:
        test.main([tiny_semi[0], path, '--work-dir', str(tmp_path / 'w')])
    assert 'crafted.pth' in exit_message(e) and 'refused' in exit_message(e)
    assert not marker.exists()


@pytest.mark.parametrize('damage', ['truncate', 'empty', 'garbage'])
def test_corrupt_checkpoints_are_named(tiny_semi, tmp_path, damage):
    data = open(tiny_semi[1], 'rb').read()
    bad = tmp_path / 'bad.pth'
    bad.write_bytes({'truncate': data[:len(data) // 2], 'empty': b'', 'garbage': b'not a checkpoint'}[damage])
    with pytest.raises(CorruptCheckpointError, match='bad.pth') as e:
        load_checkpoint_safely(str(bad))
    assert 'delete it' in str(e.value).lower()
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_checkpoint_safely(str(tmp_path / 'nope.pth'))


def test_tools_name_a_truncated_checkpoint(tiny_semi, tmp_path):
    data = open(tiny_semi[1], 'rb').read()
    bad = tmp_path / 'half.pth'
    bad.write_bytes(data[:len(data) // 2])
    with pytest.raises(SystemExit) as e:
        load_tool('test').main([tiny_semi[0], str(bad), '--work-dir', str(tmp_path / 'w')])
    assert 'half.pth' in exit_message(e) and 'truncated or corrupt' in exit_message(e)
    assert 'Traceback' not in exit_message(e)


def test_mmengine_checkpoints_still_load(tiny_semi):
    ckpt = load_checkpoint_safely(tiny_semi[1])
    assert isinstance(ckpt['state_dict']['teacher.head.fc.weight'], torch.Tensor)
    assert issubclass(UnsafeCheckpointError, CheckpointError) and issubclass(CheckpointError, ValueError)
    assert osp.isfile(tiny_semi[1])
