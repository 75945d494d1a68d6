"""A checkpoint of another model is an error naming both files, in tools/test.py, inference and
export (it used to give exit 0 and numbers from untrained weights)."""
import os

import pytest
import torch
from rel_helpers import exit_message, load_tool

from mmbus.utils.checkpoint import CheckpointMismatchError, check_checkpoint_fits


def _names_both(msg, ckpt, cfg):
    return os.path.basename(ckpt) in msg and os.path.basename(cfg) in msg


def test_tools_test_refuses_a_detector_checkpoint_on_a_classifier_config(tiny_det, tiny_semi, tmp_path):
    test = load_tool('test')
    with pytest.raises(SystemExit) as e:
        test.main([tiny_semi[0], tiny_det[1], '--work-dir', str(tmp_path / 'w'),
                   '--out-metrics', str(tmp_path / 'm.json')])
    msg = exit_message(e)
    assert _names_both(msg, tiny_det[1], tiny_semi[0]) and 'detector' in msg
    assert not (tmp_path / 'm.json').exists()


def test_tools_test_refuses_a_classifier_checkpoint_on_a_detector_config(tiny_det, tiny_semi, tmp_path):
    from mmengine.registry import DefaultScope
    test = load_tool('test')
    with DefaultScope.overwrite_default_scope('mmdet'), pytest.raises(SystemExit) as e:
        test.main([tiny_det[0], tiny_semi[1], '--work-dir', str(tmp_path / 'w')])
    msg = exit_message(e)
    assert _names_both(msg, tiny_semi[1], tiny_det[0]) and 'SemiClassifier' in msg


def test_tools_test_still_runs_the_right_pair(tiny_semi, tmp_path):
    import json
    test = load_tool('test')
    test.main([tiny_semi[0], tiny_semi[1], '--work-dir', str(tmp_path / 'w'),
               '--out-metrics', str(tmp_path / 'm.json')])
    assert 'teacher/auc' in json.loads((tmp_path / 'm.json').read_text())


def test_inference_refuses_swapped_checkpoints(tiny_det, tiny_semi, tmp_path):
    from mmbus.apis.inference import BUSInferencer
    with pytest.raises(CheckpointMismatchError) as e:
        BUSInferencer(tiny_det[0], tiny_semi[1], tiny_semi[0], tiny_semi[1])
    assert _names_both(str(e.value), tiny_semi[1], tiny_det[0])
    with pytest.raises(CheckpointMismatchError) as e:
        BUSInferencer(tiny_det[0], tiny_det[1], tiny_semi[0], tiny_det[1])
    assert _names_both(str(e.value), tiny_det[1], tiny_semi[0])
    infer = load_tool('infer')
    with pytest.raises(SystemExit) as e:
        infer.main(['x.png', '--det-config', tiny_det[0], '--det-checkpoint', tiny_semi[1], '--cls-config',
                    tiny_semi[0], '--cls-checkpoint', tiny_semi[1], '--out-dir', str(tmp_path / 'o')])
    assert _names_both(exit_message(e), tiny_semi[1], tiny_det[0])
    assert not (tmp_path / 'o').exists()


def test_export_refuses_a_detector_checkpoint(tiny_det, tiny_semi, tmp_path):
    export = load_tool('export_teacher')
    with pytest.raises(SystemExit) as e:
        export.main([tiny_semi[0], tiny_det[1], '--out-dir', str(tmp_path / 'exp')])
    assert _names_both(exit_message(e), tiny_det[1], tiny_semi[0])
    assert not (tmp_path / 'exp' / 'teacher.pth').exists()


def test_fit_check_accepts_what_the_model_really_loads(tiny_semi):
    from rel_tiny import build
    cfg, ckpt, model = tiny_semi
    state = torch.load(ckpt, weights_only=True)['state_dict']
    assert check_checkpoint_fits(model, state, ckpt, cfg)[0] == len(model.state_dict())
    # a supervised (plain classifier) checkpoint initialises both student and teacher
    plain = {k[len('student.'):]: v for k, v in state.items() if k.startswith('student.')}
    check_checkpoint_fits(model, plain, 'plain.pth', cfg)
    # DDP-saved keys, one renamed layer: still accepted (mmengine warns about the key)
    ddp = {'module.' + k: v for k, v in state.items()}
    ddp['module.extra.bias'] = torch.zeros(1)
    check_checkpoint_fits(model, ddp, 'ddp.pth', cfg)
    with pytest.raises(CheckpointMismatchError, match='other shapes'):
        check_checkpoint_fits(build(cfg, 'mmpretrain').student, {
            k: torch.zeros(3) for k in plain}, 'shapes.pth', cfg)
