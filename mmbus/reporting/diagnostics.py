"""Per-run extras: how far a run's test scores follow features that say nothing about the class.

* ``orientation_auc``: AUC of the malignancy scores for "taller than wide" over the non-square test crops
  (0.5: orientation ignored; near 0 or 1: the score is largely the orientation, which letterboxing turns
  into a two-valued padding feature a few labels can line up with); ``None`` with one orientation only.
* ``brightness_rho``: Spearman correlation of the scores with the crops' median grey level.
* ``labelled_crops``: ``'<class> <P|L|S> g<grey>'`` per labelled crop (portrait / landscape / square,
  median grey), to see whether a handful of labels lines up with either feature.
"""
import json
import os.path as osp
from typing import List, Optional

import numpy as np


def _scores(preds) -> np.ndarray:
    return np.array([float(np.asarray(p['pred_score'])[1]) for p in preds])


def median_grey(path: str, source: str) -> float:
    import cv2
    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise FileNotFoundError(f'{source}: cannot read {path}')
    return float(np.median(img))


def orientation_auc(preds: List[dict]) -> Optional[float]:
    from mmbus.evaluation.delong import delong_auc
    shapes = np.array([p['ori_shape'][:2] for p in preds], dtype=np.int64)
    keep = shapes[:, 0] != shapes[:, 1]
    portrait = (shapes[:, 0] > shapes[:, 1])[keep]
    if portrait.all() or not portrait.any():
        return None
    return delong_auc(_scores(preds)[keep], portrait.astype(int))[0]


def brightness_rho(preds: List[dict], source: str = 'predictions') -> float:
    from mmbus.evaluation.delong import midrank
    grey = np.array([median_grey(p['img_path'], source) for p in preds])
    return float(np.corrcoef(midrank(_scores(preds)), midrank(grey))[0, 1])


def labelled_crops(ann_file: str) -> List[str]:
    with open(ann_file) as f:
        data = json.load(f)['data_list']
    out = []
    for d in data:
        w, h = d['bbox'][2] - d['bbox'][0], d['bbox'][3] - d['bbox'][1]
        grey = median_grey(osp.join(osp.dirname(ann_file), d['img_path']), ann_file)
        out.append(('malignant' if d['gt_label'] else 'benign') + ' ' + ('P' if h > w else 'L' if w > h else 'S')
                   + f' g{int(grey)}')
    return out


def compute(name: str, predictions: str, crop_root: str) -> dict:
    """The extra ``name`` of one run, from its test predictions and its crops folder."""
    import mmengine
    if name == 'orientation_auc':
        return dict(orientation_auc=orientation_auc(mmengine.load(predictions)))
    if name == 'brightness_rho':
        return dict(brightness_rho=brightness_rho(mmengine.load(predictions), predictions))
    if name == 'labelled_crops':
        return dict(labelled_crops=labelled_crops(osp.join(crop_root, 'basic_train.json')))
    raise ValueError(f'unknown extra {name!r}; choose from orientation_auc, brightness_rho, labelled_crops')
