"""Per-run extras of the synthetic-crops study, by hand."""
import json

import cv2
import mmengine
import numpy as np
import pytest

from mmbus.reporting.diagnostics import brightness_rho, compute, labelled_crops, orientation_auc


def test_orientation_auc_by_hand(tmp_path):
    import pickle

    def pred(h, w, p):
        return dict(ori_shape=(h, w), pred_score=np.array([1 - p, p], np.float32))
    # taller-than-wide crops score 0.9, 0.4; wider 0.6, 0.1; the square one is left out.
    # pairs (taller, wider) ranked right: (0.9,0.6) (0.9,0.1) (0.4,0.1) -> 3 of 4 = 0.75
    preds = [pred(40, 30, 0.9), pred(50, 20, 0.4), pred(30, 40, 0.6), pred(20, 60, 0.1),
             pred(33, 33, 0.99)]
    f = tmp_path / 'p.pkl'
    f.write_bytes(pickle.dumps(preds))
    assert orientation_auc(mmengine.load(str(f))) == pytest.approx(0.75)
    f.write_bytes(pickle.dumps([pred(40, 30, 0.9), pred(33, 33, 0.2)]))  # one orientation only
    assert orientation_auc(mmengine.load(str(f))) is None
    # brightness: scores 0.1, 0.5, 0.9 on crops of grey 200, 100, 50 -> ranks reversed, rho = -1
    for i, g in enumerate((200, 100, 50)):
        cv2.imwrite(str(tmp_path / f'{i}.png'), np.full((6, 5), g, np.uint8))
    preds = [dict(pred(6, 5, p), img_path=str(tmp_path / f'{i}.png')) for i, p in enumerate((0.1, 0.5, 0.9))]
    f.write_bytes(pickle.dumps(preds))
    assert brightness_rho(mmengine.load(str(f))) == pytest.approx(-1.0)
    preds[0]['img_path'] = str(tmp_path / 'missing.png')
    f.write_bytes(pickle.dumps(preds))
    with pytest.raises(FileNotFoundError, match='p.pkl: cannot read .*missing.png'):
        brightness_rho(mmengine.load(str(f)), str(f))
    ann = tmp_path / 'basic_train.json'
    ann.write_text(json.dumps(dict(data_list=[
        dict(gt_label=0, bbox=[0, 0, 46, 39], img_path='0.png'),
        dict(gt_label=1, bbox=[0, 0, 51, 60], img_path='1.png'),
        dict(gt_label=1, bbox=[0, 0, 30, 30], img_path='2.png')])))
    assert labelled_crops(str(ann)) == ['benign L g200', 'malignant P g100', 'malignant S g50']


def test_unknown_extra():
    with pytest.raises(ValueError, match="unknown extra 'colour'"):
        compute('colour', 'p.pkl', '.')
