"""Two-stage inference with tiny random-weight models."""
import csv
import json
import os.path as osp
import subprocess
import sys

import mmcv
import numpy as np
import pytest

from mmbus.apis.inference import (BUSInferencer, list_images,
                                  results_to_csv_rows, save_annotated,
                                  write_results)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='module')
def image_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp('imgs')
    rng = np.random.default_rng(1)
    for name in ('a.png', 'sub/b.png'):
        img = rng.integers(0, 256, (72, 96, 3), dtype=np.uint8)
        mmcv.imwrite(img, str(d / name))
    mmcv.imwrite(np.zeros((8, 8, 3), np.uint8), str(d / 'a_mask.png'))
    (d / 'broken.png').write_bytes(b'this is not a png')
    return d


@pytest.fixture(scope='module')
def inferencer(tiny_detector, tiny_semi_classifier):
    det_cfg, det_ckpt = tiny_detector
    cls_cfg, cls_ckpt, _ = tiny_semi_classifier
    return BUSInferencer(det_cfg, det_ckpt, cls_cfg, cls_ckpt,
                         score_thr=0.0, margin=5)


def test_list_images_skips_masks(image_dir):
    names = [osp.relpath(p, image_dir) for p in list_images(str(image_dir))]
    assert names == ['a.png', 'broken.png', 'sub/b.png']
    assert list_images(['x.png']) == ['x.png']


def test_two_stage_results(inferencer, image_dir, tiny_semi_classifier,
                           tmp_path):
    from mmengine.registry import DefaultScope
    from mmpretrain.apis import ImageClassificationInferencer
    missing = str(image_dir / 'missing.png')
    results = inferencer([str(image_dir), missing])
    by_name = {osp.basename(r['image']): r for r in results}
    assert len(results) == 4
    assert by_name['missing.png']['status'] == 'error'
    assert 'missing.png' in by_name['missing.png']['error']
    assert by_name['broken.png']['status'] == 'error'
    assert 'broken.png' in by_name['broken.png']['error']
    ok = by_name['a.png']
    assert ok['status'] == 'ok' and (ok['width'], ok['height']) == (96, 72)
    assert len(ok['nodules']) == 1  # keep='top'
    n = ok['nodules'][0]
    x1, y1, x2, y2 = n['bbox']
    cx1, cy1, cx2, cy2 = n['crop_bbox']
    # crop box = detector box grown by 5 px, clipped to the 96x72 image
    assert cx1 == max(0, int(np.floor(x1 - 5)))
    assert cy2 == min(72, int(np.ceil(y2 + 5)))
    assert 0 <= n['malignancy_prob'] <= 1
    assert n['label'] == ('malignant' if n['malignancy_prob'] >= 0.5
                          else 'benign')
    # the probability is the teacher's softmax(malignant) on exactly that crop
    # (read grey, as the classifier config's loader says)
    img = mmcv.imread(ok['image'])
    cfg, ckpt, _ = tiny_semi_classifier
    # (init_detector left 'mmdet' as the global default scope)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ref = ImageClassificationInferencer(cfg, pretrained=ckpt)(
            [mmcv.bgr2gray(img[cy1:cy2, cx1:cx2])])[0]['pred_scores'][1]
    assert n['malignancy_prob'] == pytest.approx(float(ref), abs=1e-5)

    # outputs: every input image appears in the CSV
    paths = write_results(results, str(tmp_path))
    rows = list(csv.DictReader(open(paths['csv'])))
    assert len(rows) == 4
    assert {r['status'] for r in rows} == {'ok', 'error'}
    assert json.load(open(paths['json']))[0]['image'] == results[0]['image']
    drawn = save_annotated(results, str(tmp_path / 'vis'))
    assert sorted(osp.basename(p) for p in drawn) == ['a.png', 'b.png']
    vis = mmcv.imread(drawn[0])
    assert vis.shape == (72, 96, 3)
    assert (vis != img).any()  # box and text drawn


def test_no_nodule_is_reported(inferencer, image_dir):
    thr = inferencer.boxes.score_thr
    inferencer.boxes.score_thr = 1.01  # nothing can pass
    try:
        (r, ) = inferencer(str(image_dir / 'a.png'))
    finally:
        inferencer.boxes.score_thr = thr
    assert r['status'] == 'no_nodule' and r['nodules'] == []
    (row, ) = results_to_csv_rows([r])
    assert row['status'] == 'no_nodule' and row['nodule'] == ''


def test_infer_cli(tiny_detector, tiny_semi_classifier, image_dir, tmp_path):
    det_cfg, det_ckpt = tiny_detector
    cls_cfg, cls_ckpt, _ = tiny_semi_classifier
    out = tmp_path / 'out'
    res = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/infer.py'),
         str(image_dir / 'a.png'), str(image_dir / 'gone.png'),
         '--det-config', det_cfg, '--det-checkpoint', det_ckpt,
         '--cls-config', cls_cfg, '--cls-checkpoint', cls_ckpt,
         '--score-thr', '0', '--out-dir', str(out)],
        capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert 'gone.png' in res.stdout and 'p(malignant)' in res.stdout
    assert (out / 'results.csv').exists() and (out / 'vis' / 'a.png').exists()
    res = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/infer.py'), 'x.png',
         '--det-config', det_cfg, '--det-checkpoint', 'nope.pth',
         '--cls-config', cls_cfg, '--cls-checkpoint', cls_ckpt],
        capture_output=True, text=True)
    assert res.returncode != 0 and 'nope.pth' in res.stderr
