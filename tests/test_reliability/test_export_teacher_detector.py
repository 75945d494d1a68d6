"""tools/export_teacher_detector.py: the teacher of a SoftTeacher checkpoint as a plain detector checkpoint;
a missing, corrupt, crafted or non-SoftTeacher file is refused naming it, and nothing is written."""
import os
import stat

import pytest
import torch
from mmengine.logging import HistoryBuffer
from rel_helpers import exit_message, load_tool

from mmbus.apis.export import export_teacher_detector
from mmbus.utils.checkpoint import CheckpointMismatchError, CorruptCheckpointError


def _detector_state(seed):
    g = torch.Generator().manual_seed(seed)
    return {'backbone.conv.weight': torch.randn(4, 1, 3, 3, generator=g),
            'rpn_head.rpn_conv.bias': torch.randn(4, generator=g),
            'roi_head.bbox_head.fc_cls.weight': torch.randn(2, 8, generator=g)}


@pytest.fixture
def soft_teacher_ckpt(tmp_path):
    """(path, teacher state dict): a SoftTeacher checkpoint as mmengine writes it (student, teacher,
    optimiser, message hub)."""
    student, teacher = _detector_state(0), _detector_state(1)
    state = {**{f'student.{k}': v for k, v in student.items()}, **{f'teacher.{k}': v for k, v in teacher.items()}}
    buf = HistoryBuffer()
    buf.update(0.5)
    path = tmp_path / 'soft_teacher.pth'
    torch.save(dict(meta=dict(iter=20, dataset_meta=dict(classes=('nodule', ))), state_dict=state,
                    optimizer=dict(state={}), message_hub=dict(log_scalars={'loss': buf})), path)
    return str(path), teacher


def test_exported_state_dict_is_the_teachers(soft_teacher_ckpt, tmp_path, capsys):
    path, teacher = soft_teacher_ckpt
    out = tmp_path / 'out' / 'teacher.pth'
    old = os.umask(0o022)
    try:
        load_tool('export_teacher_detector').main([path, str(out)])
    finally:
        os.umask(old)
    assert str(out) in capsys.readouterr().out
    exported = torch.load(out, weights_only=True)
    assert set(exported) == {'meta', 'state_dict'}  # no optimiser state, no message hub
    assert exported['meta'] == dict(iter=20, dataset_meta=dict(classes=('nodule', )))
    assert exported['state_dict'].keys() == teacher.keys()
    assert all(torch.equal(exported['state_dict'][k], teacher[k]) for k in teacher)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o644  # atomic write with the umask's mode
    assert os.listdir(out.parent) == ['teacher.pth']  # no temp file left


def _refused(argv):
    with pytest.raises(SystemExit) as e:
        load_tool('export_teacher_detector').main(argv)
    return exit_message(e)


def test_missing_checkpoint_is_named(tmp_path):
    msg = _refused([str(tmp_path / 'nope.pth'), str(tmp_path / 'out.pth')])
    assert msg.startswith('error:') and 'nope.pth' in msg and 'not found' in msg
    assert not (tmp_path / 'out.pth').exists()


def test_corrupt_checkpoint_is_named(soft_teacher_ckpt, tmp_path):
    path, _ = soft_teacher_ckpt
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 3])
    msg = _refused([path, str(tmp_path / 'out.pth')])
    assert 'soft_teacher.pth' in msg and 'truncated or corrupt' in msg
    with pytest.raises(CorruptCheckpointError):
        export_teacher_detector(path, str(tmp_path / 'out.pth'))
    assert not (tmp_path / 'out.pth').exists()


def test_crafted_checkpoint_is_refused_without_running_it(crafted_checkpoint, tmp_path):
    path, marker = crafted_checkpoint
    msg = _refused([path, str(tmp_path / 'out.pth')])
    assert 'crafted.pth' in msg and 'refused' in msg
    assert not marker.exists() and not (tmp_path / 'out.pth').exists()


def test_a_checkpoint_without_teacher_is_not_a_soft_teacher(tmp_path):
    path = tmp_path / 'supervised.pth'
    torch.save(dict(meta=dict(), state_dict=_detector_state(0)), path)
    msg = _refused([str(path), str(tmp_path / 'out.pth')])
    assert 'supervised.pth' in msg and 'no teacher' in msg and 'not a SoftTeacher' in msg
    assert not (tmp_path / 'out.pth').exists()


def test_a_mean_teacher_classifier_is_not_a_detector(tmp_path):
    path = tmp_path / 'mean_teacher.pth'
    state = {'teacher.backbone.w': torch.ones(2), 'teacher.head.fc.weight': torch.ones(2, 2),
             'student.backbone.w': torch.ones(2), 'student.head.fc.weight': torch.ones(2, 2)}
    torch.save(dict(meta=dict(), state_dict=state), path)
    with pytest.raises(CheckpointMismatchError, match='not of a detector'):
        export_teacher_detector(str(path), str(tmp_path / 'out.pth'))
    assert 'mean_teacher.pth' in _refused([str(path), str(tmp_path / 'out.pth')])
    assert not (tmp_path / 'out.pth').exists()
