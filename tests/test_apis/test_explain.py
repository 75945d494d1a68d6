"""Class-activation maps of the crop classifier and the measures against
lesion masks (tiny models made here; no dataset, no download)."""
import json
import os.path as osp
import subprocess
import sys

import mmcv
import numpy as np
import pytest
import torch
import torch.nn as nn

from mmbus.apis.explain import (cam_for_crops, cam_peak, energy_inside,
                                find_last_conv, logits_module, overlay,
                                pointing_game)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RESIZE = "dict(type='Resize', scale=(32, 32))"


@pytest.fixture
def plain_cfg(tiny_semi_classifier, tmp_path):
    """Maker of configs of a tiny plain ImageClassifier (the grey MTConvNet
    of the shared tiny SemiClassifier config), with the given resize step in
    its test pipeline."""
    with open(tiny_semi_classifier[0]) as f:
        text = f.read()
    assert RESIZE in text and "type='SemiClassifier'" in text

    def make(resize=RESIZE):
        path = tmp_path / f'cls_{abs(hash(resize))}.py'
        path.write_text(text.replace("type='SemiClassifier'",
                                     "type='ImageClassifier'").replace(
                                         RESIZE, resize))
        return str(path)

    return make


def _square_detector(cfg_path):
    """The tiny classifier with weights set by hand so that its only
    evidence is brightness: every conv passes channel 0 through (centre tap
    1, all else 0), batch norm is the identity, and the head scores
    'malignant' by the mean of channel 0 (and 'benign' by its negative).
    A bright square on a black crop is then the one place the malignant map
    can light up."""
    from mmbus.apis.export import load_plain_classifier
    model, _ = load_plain_classifier(cfg_path)
    with torch.no_grad():
        for m in model.backbone.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.zero_()
                k = m.kernel_size[0] // 2
                m.weight[0, 0, k, k] = 1.0
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()
                m.reset_running_stats()
        model.head.fc.weight.zero_()
        model.head.fc.bias.zero_()
        model.head.fc.weight[1, 0] = 1.0
        model.head.fc.weight[0, 0] = -1.0
    return model.eval()


def _square_crop(h, w, top, left, side):
    crop = np.zeros((h, w, 3), np.uint8)  # BGR, as crops are read
    crop[top:top + side, left:left + side] = 255
    mask = np.zeros((h, w), bool)
    mask[top:top + side, left:left + side] = True
    return crop, mask


# ----------------------------------------------------------------------------
# measures, worked by hand
# ----------------------------------------------------------------------------
def test_pointing_game_by_hand():
    cam = np.zeros((5, 5))
    cam[1, 1] = 1.0                       # peak at row 1, col 1
    inside = np.zeros((5, 5), bool)
    inside[0:3, 0:3] = True
    outside = np.zeros((5, 5), bool)
    outside[3:5, 3:5] = True              # nearest mask pixel (3, 3): 2.83 px
    assert cam_peak(cam) == (1, 1)
    plateau = np.zeros((5, 5))
    plateau[0, 0:3] = plateau[1, 0:3] = plateau[2, 0:3] = 1.0
    assert cam_peak(plateau) == (1, 1)  # centre of a tie, not its corner
    assert pointing_game(cam, inside, tolerance=0)
    assert not pointing_game(cam, outside, tolerance=0)
    assert not pointing_game(cam, outside, tolerance=2)
    assert pointing_game(cam, outside, tolerance=3)
    # a flat map points nowhere; an empty mask cannot be hit
    assert cam_peak(np.zeros((5, 5))) is None
    assert not pointing_game(np.zeros((5, 5)), inside)
    assert not pointing_game(cam, np.zeros((5, 5), bool))


def test_energy_inside_by_hand():
    quarter = np.zeros((4, 4), bool)
    quarter[:2, :2] = True
    assert energy_inside(np.ones((4, 4)), quarter) == 0.25  # exactly
    cam = np.array([[1., 0.], [0., 3.]])
    assert energy_inside(cam, np.array([[1, 0], [0, 0]])) == 0.25
    assert energy_inside(cam, np.array([[0, 0], [0, 255]])) == 0.75
    assert energy_inside(cam, np.ones((2, 2))) == 1.0
    assert np.isnan(energy_inside(np.zeros((2, 2)), quarter[:2, :2]))


def test_measures_refuse_bad_input():
    cam = np.ones((4, 4))
    with pytest.raises(ValueError, match=r'mask shape \(4, 5\) differs from '
                       r'the cam shape \(4, 4\)'):
        pointing_game(cam, np.ones((4, 5), bool))
    with pytest.raises(ValueError, match='differs from the cam shape'):
        energy_inside(cam, np.ones((5, 4), bool))
    with pytest.raises(ValueError, match='negative'):
        energy_inside(-cam, np.ones((4, 4), bool))
    with pytest.raises(ValueError, match='NaN'):
        pointing_game(np.full((4, 4), np.nan), np.ones((4, 4), bool))
    with pytest.raises(ValueError, match='HxW'):
        energy_inside(np.ones(4), np.ones(4, bool))
    with pytest.raises(ValueError, match='differs from the crop size'):
        overlay(np.zeros((4, 5, 3), np.uint8), cam)


# ----------------------------------------------------------------------------
# maps
# ----------------------------------------------------------------------------
def test_cam_shape_range_and_overlay(tiny_semi_classifier):
    from mmbus.apis.export import load_plain_classifier
    cfg, ckpt, _ = tiny_semi_classifier
    model, _ = load_plain_classifier(cfg, ckpt)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (40, 60, 3), dtype=np.uint8),   # BGR
             rng.integers(0, 256, (50, 33), dtype=np.uint8),      # grey
             rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)]
    cams, scores = cam_for_crops(model, crops, return_scores=True,
                                 batch_size=2)
    assert [c.shape for c in cams] == [(40, 60), (50, 33), (40, 60)]
    for c in cams:
        assert c.dtype == np.float32 and c.min() >= 0 and c.max() <= 1
    assert scores.shape == (3, 2)
    np.testing.assert_allclose(scores.sum(1), 1, atol=1e-5)
    # the scores are the classifier's own (teacher) softmax on those crops
    from mmpretrain.apis import ImageClassificationInferencer
    ref = ImageClassificationInferencer(model)(
        [mmcv.bgr2gray(crops[0]), crops[1]])
    np.testing.assert_allclose(scores[:2, 1],
                               [r['pred_scores'][1] for r in ref], atol=1e-5)
    # the predicted class or one class per crop as the target
    assert len(cam_for_crops(model, crops, target_class=None)) == 3
    assert len(cam_for_crops(model, crops, target_class=[0, 1, 0])) == 3
    with pytest.raises(ValueError, match='2 target classes for 3 crops'):
        cam_for_crops(model, crops, target_class=[0, 1])
    with pytest.raises(ValueError, match=r'\[2\] out of range for a '
                       '2-class classifier'):
        cam_for_crops(model, crops, target_class=2)
    assert cam_for_crops(model, []) == []
    vis = overlay(crops[0], cams[0])
    assert vis.shape == (40, 60, 3) and vis.dtype == np.uint8
    assert overlay(crops[1], cams[1]).shape == (50, 33, 3)


def test_default_layer_is_last_backbone_conv(tiny_semi_classifier):
    from mmbus.apis.export import load_plain_classifier
    cfg, ckpt, _ = tiny_semi_classifier
    model, _ = load_plain_classifier(cfg, ckpt)
    name, layer = find_last_conv(model, torch.zeros(1, 1, 32, 32))
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert name == convs[-1] and name.startswith('backbone.')
    assert layer is model.get_submodule(name)
    # the wrapper returns the head's logits
    x = torch.randn(2, 1, 32, 32)
    out = logits_module(model)(x)
    assert out.shape == (2, 2)
    torch.testing.assert_close(out, model.head(model.extract_feat(x)))


@pytest.mark.parametrize('resize', [RESIZE,
                                    "dict(type='LetterboxResize', size=32)"])
def test_cam_of_known_evidence_passes_pointing_game(plain_cfg, resize):
    model = _square_detector(plain_cfg(resize))
    # a square crop and (letterboxed: padded) a wide one, square off-centre
    # and large enough for the last conv's 8 px cells on the 32 px input
    cases = [_square_crop(64, 64, 8, 36, 24), _square_crop(48, 96, 12, 8, 24)]
    crops = [c for c, _ in cases]
    cams, scores = cam_for_crops(model, crops, target_class=1,
                                 return_scores=True)
    for (crop, mask), cam in zip(cases, cams):
        assert cam.shape == mask.shape
        assert mask[cam_peak(cam)]
        assert pointing_game(cam, mask, tolerance=0)
        # the map is as coarse as the last conv (stride 8 on the 32 px
        # input), so it spreads past the square, but far above chance (a
        # uniform map scores the mask's area fraction)
        assert energy_inside(cam, mask) > 2 * mask.mean()
        # ... and it misses a mask on the other side of the crop
        assert not pointing_game(cam, mask[::-1, ::-1], tolerance=0)
        assert energy_inside(cam, mask[::-1, ::-1]) < 0.01
    assert (scores[:, 1] > 0.5).all()  # bright = malignant for this model
    # the benign map does not point at the square
    for (_, mask), cam1, cam0 in zip(cases, cams,
                                     cam_for_crops(model, crops, 0)):
        assert not pointing_game(cam0, mask, tolerance=0)
        assert energy_inside(cam0, mask) < energy_inside(cam1, mask)


def test_plain_module_and_named_layer():
    """A plain nn.Module returning logits needs no wrapper; the layer can be
    given by name."""
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.ReLU(inplace=True),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(1, 2))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].weight[0, 0, 1, 1] = 1.0
        net[0].bias.fill_(-100.0)  # only bright pixels (> 100) pass
        net[4].weight.copy_(torch.tensor([[-1.], [1.]]))
        net[4].bias.zero_()
    crop = np.zeros((20, 30), np.uint8)
    crop[2:7, 20:27] = 250
    mask = crop > 0
    (cam, ) = cam_for_crops(net, [crop], layer='0')
    assert pointing_game(cam, mask, tolerance=0)
    assert energy_inside(cam, mask) > 0.9
    assert net[1].inplace  # switched off only while the map was made
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        cam_for_crops(net, [crop], layer='nope')


# ----------------------------------------------------------------------------
# tools
# ----------------------------------------------------------------------------
def test_cam_eval_tool(plain_cfg, tmp_path):
    """A BUS-BRA-like image + mask and a BUSI-like one (mask beside the
    image), cropped with a margin; the hand-set model's maps hit both."""
    from mmbus.apis.crop_extraction import crop_nodule
    cfg_path = plain_cfg()
    model = _square_detector(cfg_path)
    ckpt = str(tmp_path / 'square.pth')
    torch.save(dict(state_dict=model.state_dict(), meta={}), ckpt)
    data = tmp_path / 'data'
    crops_dir = tmp_path / 'crops'
    (data / 'Images').mkdir(parents=True)
    (data / 'Masks').mkdir()
    (data / 'busi').mkdir()
    (crops_dir / 'test').mkdir(parents=True)
    records = []
    for k, (rel, mask_rel) in enumerate([
            ('Images/bus_0001-l.png', 'Masks/mask_0001-l.png'),
            ('busi/benign (1).png', 'busi/benign (1)_mask.png')]):
        img = np.zeros((80, 100, 3), np.uint8)
        img[30:50, 40:60] = 255                      # the "lesion"
        mask = np.zeros((80, 100), np.uint8)
        mask[30:50, 40:60] = 255
        mmcv.imwrite(img, str(data / rel))
        mmcv.imwrite(mask, str(data / mask_rel))
        crop, box = crop_nodule(img, [36, 28, 60, 50], margin=10)
        name = f'test/{k}.png'
        mmcv.imwrite(crop, str(crops_dir / name))
        records.append(dict(img_path=name, gt_label=k % 2, true_label=k % 2,
                            file_name=rel, bbox=box))
    (crops_dir / 'test.json').write_text(json.dumps(dict(
        metainfo=dict(data_root=str(data)), data_list=records)))
    out = tmp_path / 'out'
    cmd = [sys.executable, osp.join(REPO, 'tools/analysis/cam_eval.py'),
           cfg_path, ckpt, str(crops_dir), '--split', 'test',
           '--masks-root', str(data), '--out-dir', str(out),
           '--num-examples', '2']
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    result = json.loads((out / 'cam_eval.json').read_text())
    s = result['summary']
    assert s['num_measured'] == 2 and s['pointing_game']['hits'] == 2
    assert 0 < s['pointing_game']['ci95'][0] < 1
    assert s['energy_inside'] > 0.5
    assert (out / 'cam_examples.png').exists()
    assert '| test | malignant | 2/2 | 1.000 (2/2)' in (
        out / 'cam_eval.md').read_text()
    # a missing mask is named
    mask_file = data / 'Masks/mask_0001-l.png'
    mask_bytes = mask_file.read_bytes()
    mask_file.unlink()
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode != 0
    assert 'no lesion mask for Images/bus_0001-l.png' in res.stderr
    # a crops dataset whose crops no longer match their boxes is refused
    mask_file.write_bytes(mask_bytes)
    mmcv.imwrite(np.zeros((64, 64, 3), np.uint8),
                 str(crops_dir / 'test/0.png'))
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode != 0 and 'resized after extraction' in res.stderr


def test_infer_cam_flag(tiny_detector, tiny_semi_classifier, tmp_path):
    det_cfg, det_ckpt = tiny_detector
    cls_cfg, cls_ckpt, _ = tiny_semi_classifier
    img = np.random.default_rng(2).integers(0, 256, (72, 96, 3), np.uint8)
    mmcv.imwrite(img, str(tmp_path / 'a.png'))
    out = tmp_path / 'out'
    res = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/infer.py'),
         str(tmp_path / 'a.png'), '--det-config', det_cfg,
         '--det-checkpoint', det_ckpt, '--cls-config', cls_cfg,
         '--cls-checkpoint', cls_ckpt, '--score-thr', '0', '--no-draw',
         '--cam', '--out-dir', str(out)],
        capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert '[cam error]' not in res.stdout, res.stdout
    (rec, ) = json.loads((out / 'results.json').read_text())
    (nodule, ) = rec['nodules']
    assert nodule['cam'] == str(out / 'cam' / 'a_nodule0.png')
    x1, y1, x2, y2 = nodule['crop_bbox']
    assert mmcv.imread(nodule['cam']).shape == (y2 - y1, x2 - x1, 3)
    assert not (out / 'vis').exists()
