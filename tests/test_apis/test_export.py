"""Teacher export: SemiClassifier checkpoint -> plain ImageClassifier that
stock mmpretrain inference loads."""
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config

from mmbus.apis.export import (export_teacher, plain_classifier_cfg,
                               teacher_state_dict)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_teacher_state_dict_keys():
    sd = {'teacher.backbone.w': 1, 'student.backbone.w': 2,
          'teacher.head.fc.bias': 3, 'data_preprocessor.mean': 4}
    assert teacher_state_dict(sd) == {'backbone.w': 1, 'head.fc.bias': 3,
                                      'data_preprocessor.mean': 4}
    plain = {'backbone.w': 1, 'head.fc.bias': 3}
    assert teacher_state_dict(plain) == plain  # supervised checkpoints


def test_plain_classifier_cfg_drops_semi_keys():
    cfg = plain_classifier_cfg(
        dict(type='SemiClassifier', backbone=dict(type='B'),
             head=dict(type='H'), view_augment=dict(type='V'),
             consistency='mse', rampup_iters=5,
             data_preprocessor=dict(mean=[1.])))
    assert dict(cfg) == dict(type='ImageClassifier', backbone=dict(type='B'),
                             head=dict(type='H'),
                             data_preprocessor=dict(mean=[1.]))
    with pytest.raises(ValueError, match='backbone/head'):
        plain_classifier_cfg(dict(type='SemiClassifier'))


def test_pipeline_colour_rule():
    """One rule for inference, CAMs, the exported config and the bundle: the
    loader that runs last decides, under any scope prefix."""
    from mmbus.apis.bundle_preprocess import preprocess_spec
    from mmbus.apis.export import _grey_safe_pipeline
    from mmbus.apis.pipeline_colour import pipeline_reads_grey
    grey = dict(type='mmpretrain.LoadImageFromFile', color_type='grayscale')
    colour = dict(type='LoadImageFromFile')
    size = dict(type='LetterboxResize', size=8)
    assert pipeline_reads_grey([grey, size])
    assert pipeline_reads_grey([dict(grey, color_type='unchanged_grayscale')])
    assert not pipeline_reads_grey([colour, size])
    assert not pipeline_reads_grey([size])
    assert pipeline_reads_grey([colour, grey]) and \
        not pipeline_reads_grey([grey, colour])
    for pipeline, want in [([grey, size], 'grey3'), ([colour, size], 'bgr')]:
        pcfg = Config(dict(model=dict(backbone=dict(in_channels=3)),
                           test_pipeline=pipeline))
        assert preprocess_spec(pcfg, 'x')['colour'] == want
    assert [t['type'] for t in _grey_safe_pipeline([grey, size])] == [
        grey['type'], 'RandomGrayscale', 'LetterboxResize']
    assert _grey_safe_pipeline([colour, size]) == [colour, size]


def test_export_matches_teacher_and_loads_in_stock_mmpretrain(
        tiny_semi_classifier, tmp_path):
    from mmpretrain.apis import ImageClassificationInferencer
    cfg_path, ckpt, model = tiny_semi_classifier
    out_ckpt, out_cfg = export_teacher(cfg_path, ckpt, str(tmp_path))
    assert osp.basename(out_ckpt) == 'teacher.pth'
    sd = torch.load(out_ckpt, map_location='cpu',
                    weights_only=False)['state_dict']
    assert not any(k.startswith(('teacher.', 'student.')) for k in sd)
    torch.testing.assert_close(sd['head.fc.weight'],
                               model.teacher.head.fc.weight)
    exported = Config.fromfile(out_cfg)
    assert exported.model.type == 'ImageClassifier'
    assert 'custom_hooks' not in exported and 'optim_wrapper' not in exported

    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (40, 50), dtype=np.uint8)  # grey crops
            for _ in range(3)]
    plain = ImageClassificationInferencer(out_cfg, pretrained=out_ckpt)
    plain_scores = np.stack([r['pred_scores'] for r in plain(imgs)])
    # same images through the SemiClassifier itself: teacher == exported
    semi = ImageClassificationInferencer(cfg_path, pretrained=ckpt)
    semi_scores = np.stack([r['pred_scores'] for r in semi(imgs)])
    np.testing.assert_allclose(plain_scores, semi_scores, atol=1e-5)
    semi.model.predict_with = 'student'
    student_scores = np.stack([r['pred_scores'] for r in semi(imgs)])
    assert np.abs(student_scores - plain_scores).max() > 1e-3


def test_export_cli_and_bad_input(tiny_semi_classifier, tmp_path):
    cfg_path, ckpt, _ = tiny_semi_classifier
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        export_teacher(cfg_path, str(tmp_path / 'nope.pth'), str(tmp_path))
    res = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/export_teacher.py'), cfg_path,
         ckpt, '--out-dir', str(tmp_path / 'exp')],
        capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / 'exp' / 'teacher.pth').exists()
    assert (tmp_path / 'exp' / 'teacher_config.py').exists()
    res = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/export_teacher.py'), cfg_path,
         str(tmp_path / 'missing.pth'), '--out-dir', str(tmp_path / 'e2')],
        capture_output=True, text=True)
    assert res.returncode != 0 and 'missing.pth' in res.stderr
    assert not (tmp_path / 'e2' / 'teacher.pth').exists()
