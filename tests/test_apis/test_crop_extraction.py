"""Crop geometry, labels, missed images and bad input of crop extraction."""
import json
import os
import os.path as osp
import subprocess
import sys

import mmcv
import numpy as np
import pytest

from mmbus.apis.crop_extraction import (crop_nodule, expand_and_clip_box,
                                        extract_split_crops)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _gradient_image(h, w):
    """Every pixel unique: value encodes (row, col), so a crop can be checked
    against the source exactly. Channels: B=row, G=col, R=row+col (mod 256)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([yy % 256, xx % 256, (yy + xx) % 256],
                    axis=-1).astype(np.uint8)


def test_expand_and_clip_box_hand_numbers():
    # 40x30 box at (20, 10), margin 10, 100x80 (w x h) image: no clipping
    assert expand_and_clip_box([20, 10, 60, 40], (80, 100), 10) == \
        [10, 0, 70, 50]
    # fractional box: rounded outwards (floor / ceil)
    assert expand_and_clip_box([20.4, 10.6, 59.2, 39.1], (80, 100), 2) == \
        [18, 8, 62, 42]
    # clipping at all four borders
    assert expand_and_clip_box([3, 4, 97, 76], (80, 100), 10) == \
        [0, 0, 100, 80]
    # relative margin: 0.25 * max(40, 30) = 10 px, plus 5 px absolute
    assert expand_and_clip_box([30, 30, 70, 60], (80, 100), 5, 0.25) == \
        [15, 15, 85, 75]
    with pytest.raises(ValueError, match='degenerate'):
        expand_and_clip_box([10, 10, 10, 20], (80, 100))
    with pytest.raises(ValueError, match='outside'):
        expand_and_clip_box([200, 10, 220, 20], (80, 100), 0)


def test_crop_pixels_equal_source():
    img = _gradient_image(80, 100)
    crop, box = crop_nodule(img, [20, 10, 60, 40], margin=10)
    assert box == [10, 0, 70, 50]
    assert crop.shape == (50, 60, 3)
    # top-left crop pixel is source (row 0, col 10); bottom-right (49, 69)
    assert crop[0, 0].tolist() == [0, 10, 10]
    assert crop[-1, -1].tolist() == [49, 69, 118]
    np.testing.assert_array_equal(crop, img[0:50, 10:70])
    # border clip, not pad: a box touching the right edge loses margin there
    crop, box = crop_nodule(img, [90, 70, 100, 80], margin=10)
    assert box == [80, 60, 100, 80] and crop.shape == (20, 20, 3)
    crop[:] = 0  # a copy, not a view into the source
    assert img[60:80, 80:100].any()


def _make_dataset(root, images):
    """images: list of (file_name, pathology, bbox_xywh or None, extra)."""
    coco = dict(images=[], annotations=[], categories=[dict(id=1,
                                                            name='nodule')])
    for i, (name, path, bbox, extra) in enumerate(images, 1):
        img = _gradient_image(60, 80)
        mmcv.imwrite(img, osp.join(root, name))
        coco['images'].append(
            dict(id=i, file_name=name, width=80, height=60, pathology=path,
                 patient_id=f'p{i}', source='hosp', **extra))
        if bbox is not None:
            coco['annotations'].append(
                dict(id=i, image_id=i, category_id=1, bbox=bbox,
                     area=bbox[2] * bbox[3], iscrowd=0))
    ann = osp.join(root, 'annotations', 'split.json')
    os.makedirs(osp.dirname(ann), exist_ok=True)
    with open(ann, 'w') as f:
        json.dump(coco, f)
    return ann


def test_ground_truth_crops_labelled_and_unlabelled(tmp_path):
    root = str(tmp_path / 'ds')
    ann = _make_dataset(root, [
        ('benign/b (1).png', 'benign', [10, 20, 30, 20], {}),
        ('malignant/m1.png', 'malignant', [0, 0, 20, 10], {}),
        ('malignant/m2.png', 'malignant', [50, 30, 30, 30],
         dict(label_hidden=True)),
        ('normal/n1.png', 'normal', None, {}),
    ])
    crops = str(tmp_path / 'crops')
    s = extract_split_crops(ann, root, crops, 'basic_train', margin=10,
                            show_progress=False)
    assert (s['crops'], s['missed'], s['skipped_normal'], s['labelled']) == \
        (3, 0, 1, 2)
    data = json.load(open(osp.join(crops, 'basic_train.json')))
    assert data['metainfo']['classes'] == ['benign', 'malignant']
    d = data['data_list']
    assert [x['gt_label'] for x in d] == [0, 1, -1]  # label_hidden respected
    assert [x['true_label'] for x in d] == [0, 1, 1]
    # xywh [10,20,30,20] -> xyxy [10,20,40,40] -> +10 px, clipped to 80x60
    assert d[0]['bbox'] == [0, 10, 50, 50]
    assert d[1]['bbox'] == [0, 0, 30, 20]
    assert d[2]['bbox'] == [40, 20, 80, 60]
    assert d[0]['det_score'] == 1.0 and d[0]['patient_id'] == 'p1'
    assert d[0]['img_path'].startswith('basic_train/')
    crop = mmcv.imread(osp.join(crops, d[0]['img_path']))
    np.testing.assert_array_equal(crop, _gradient_image(60, 80)[10:50, 0:50])
    assert json.load(open(osp.join(crops, 'basic_train_missed.json'))) == []

    # extended_train hides every label but keeps true_label
    s = extract_split_crops(ann, root, crops, 'extended_train',
                            show_progress=False)
    d = json.load(open(osp.join(crops, 'extended_train.json')))['data_list']
    assert [x['gt_label'] for x in d] == [-1, -1, -1]
    assert [x['true_label'] for x in d] == [0, 1, 1]
    assert s['labelled'] == 0


def test_missed_images_are_listed(tmp_path):
    root = str(tmp_path / 'ds')
    ann = _make_dataset(root, [
        ('a.png', 'benign', [10, 10, 20, 20], {}),
        ('b.png', 'malignant', [10, 10, 20, 20], {}),
        ('c.png', 'malignant', [10, 10, 20, 20], {}),
    ])

    def fake_detector(image_record, img):
        # finds a nodule only in a.png; two boxes in c.png? no: nothing
        if image_record['file_name'] == 'a.png':
            return [([5.5, 5.5, 25.5, 30.0], 0.9)]
        return []

    crops = str(tmp_path / 'crops')
    s = extract_split_crops(ann, root, crops, 'test', box_source=fake_detector,
                            margin=0, show_progress=False)
    assert (s['crops'], s['missed']) == (1, 2)
    missed = json.load(open(osp.join(crops, 'test_missed.json')))
    assert [m['file_name'] for m in missed] == ['b.png', 'c.png']
    assert missed[0]['pathology'] == 'malignant'
    d = json.load(open(osp.join(crops, 'test.json')))
    assert d['metainfo']['num_missed'] == 2
    assert d['data_list'][0]['bbox'] == [5, 5, 26, 30]
    assert d['data_list'][0]['det_score'] == 0.9


def test_missing_image_named_and_nothing_written(tmp_path):
    root = str(tmp_path / 'ds')
    ann = _make_dataset(root, [('a.png', 'benign', [10, 10, 20, 20], {}),
                               ('gone.png', 'benign', [1, 1, 5, 5], {})])
    (tmp_path / 'ds' / 'gone.png').unlink()
    crops = tmp_path / 'crops'
    with pytest.raises(FileNotFoundError, match='gone.png'):
        extract_split_crops(ann, root, str(crops), 'val', show_progress=False)
    assert not (crops / 'val.json').exists()
    assert not (crops / 'val').exists()
    # the CLI says the same and exits non-zero
    res = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/extract_crops.py'), root,
         '--ann-dir', osp.dirname(ann), '--splits', 'split', '--out-dir',
         str(crops), '--no-progress'], capture_output=True, text=True)
    assert res.returncode != 0 and 'gone.png' in res.stderr
    res = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/extract_crops.py'), root,
         '--splits', 'nosuchsplit', '--out-dir', str(crops)],
        capture_output=True, text=True)
    assert res.returncode != 0 and 'nosuchsplit.json' in res.stderr


def test_cli_ground_truth_all_splits(tmp_path):
    root = str(tmp_path / 'ds')
    ann = _make_dataset(root, [('a.png', 'benign', [10, 10, 20, 20], {}),
                               ('b.png', 'malignant', [30, 5, 20, 40], {})])
    for split in ('basic_train', 'extended_train'):
        (tmp_path / 'ds' / 'annotations' / f'{split}.json').write_text(
            open(ann).read())
    crops = tmp_path / 'crops'
    res = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/extract_crops.py'), root,
         '--splits', 'basic_train', 'extended_train', '--out-dir',
         str(crops), '--external-ann-file', ann, '--external-data-root',
         root, '--margin', '3'], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    for split in ('basic_train', 'extended_train', 'test_external'):
        d = json.load(open(crops / f'{split}.json'))['data_list']
        assert len(d) == 2
        assert d[1]['bbox'] == [27, 2, 53, 48]
    assert 'test_external' in res.stdout


def test_cli_with_detector(tiny_detector, tmp_path):
    """Detector boxes for extended_train/test, ground truth for basic_train
    (default --gt-splits); a score threshold nothing passes lists every
    image as missed."""
    det_cfg, det_ckpt = tiny_detector
    root = str(tmp_path / 'ds')
    ann = _make_dataset(root, [('a.png', 'benign', [10, 10, 20, 20], {}),
                               ('b.png', 'malignant', [30, 5, 20, 40], {})])
    for split in ('basic_train', 'extended_train', 'test'):
        (tmp_path / 'ds' / 'annotations' / f'{split}.json').write_text(
            open(ann).read())
    crops = tmp_path / 'crops'
    base = [sys.executable, osp.join(REPO, 'tools/extract_crops.py'), root,
            '--det-config', det_cfg, '--det-checkpoint', det_ckpt,
            '--out-dir', str(crops), '--no-progress']
    res = subprocess.run(base + ['--splits', 'basic_train', 'extended_train',
                                 '--score-thr', '0'],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    gt = json.load(open(crops / 'basic_train.json'))
    det = json.load(open(crops / 'extended_train.json'))
    assert gt['metainfo']['box_source'] == 'ground_truth'
    assert det['metainfo']['box_source'] == 'detector'
    assert [d['det_score'] for d in gt['data_list']] == [1.0, 1.0]
    assert len(det['data_list']) == 2  # one (top) box per image
    for d in det['data_list']:
        assert 0 <= d['det_score'] <= 1 and d['gt_label'] == -1
        x1, y1, x2, y2 = d['bbox']
        assert 0 <= x1 < x2 <= 80 and 0 <= y1 < y2 <= 60
    res = subprocess.run(base + ['--splits', 'test', '--score-thr', '1.01'],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    missed = json.load(open(crops / 'test_missed.json'))
    assert [m['file_name'] for m in missed] == ['a.png', 'b.png']
    assert json.load(open(crops / 'test.json'))['data_list'] == []
