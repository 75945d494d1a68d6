"""The one reader of a recogniser's test predictions (``tools/test.py --out``) with the detector misses of
the same split added by the metric's own reader and rule (:mod:`mmbus.evaluation.missed`): what the study
reports, the calibration fit and the model card read, so their figures rest on the metric's samples."""
import json
import os.path as osp
import pickle
from typing import Optional

import numpy as np

from mmbus.evaluation.missed import missed_score, read_missed


def _tolist(x):
    return x.tolist() if hasattr(x, 'tolist') else x


def _load_json(path):
    with open(path) as f:
        return json.load(f)


def load_predictions(pkl: str, crops_json: Optional[str] = None, missed_json: Optional[str] = None,
                     missed_rule='wrong', positive_index: int = 1):
    """(malignancy scores, labels, image ids) of a ``tools/test.py --out`` dump of a recogniser, with the
    detector misses of ``missed_json`` added by the metric's own reader and rule (:mod:`mmbus.evaluation.missed`),
    so the report's ROC curves and paired tests rest on exactly the samples and scores of its AUC table.
    A prediction without a 0/1 label is an error naming the file, as in the metric."""
    preds = []
    if osp.isfile(pkl):
        with open(pkl, 'rb') as f:  # what mmengine's dump wrote: a pickled list of per-sample dicts
            preds = pickle.load(f)
    crops = _load_json(crops_json)['data_list'] if crops_json and osp.isfile(crops_json) else []
    by_name = {osp.basename(d['img_path']): d for d in crops}
    scores, labels, ids = [], [], []
    for p in preds:
        s = np.asarray(_tolist(p['pred_score']), dtype=float).reshape(-1)
        lab = int(np.asarray(_tolist(p['gt_label'])).reshape(-1)[0])
        if lab not in (0, 1):
            raise ValueError(f'{pkl}: prediction for {p.get("img_path", "?")} has gt_label {lab}, not 0/1 '
                             '(a recogniser is evaluated on a labelled split)')
        scores.append(float(s[positive_index]))
        labels.append(lab)
        ids.append(by_name.get(osp.basename(str(p.get('img_path', ''))), {}).get('image_id'))
    if missed_json and osp.isfile(missed_json):
        for lab, rec in read_missed(missed_json):
            scores.append(missed_score(lab, missed_rule))
            labels.append(lab)
            ids.append(rec.get('id'))
    return np.asarray(scores), np.asarray(labels, dtype=int), ids
