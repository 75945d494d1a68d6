"""The one reader of a recogniser's test predictions (``tools/test.py --out``) with the detector misses of
the same split added by the metric's own reader and rule (:mod:`mmbus.evaluation.missed`): what the study
reports, the calibration fit and the model card read, so their figures rest on the metric's samples.

A dump may travel without its pickle: :func:`write_scores` keeps what a report reads of it (each crop's
malignancy score, label and image id, and the misses' labels) in ``<stem>_scores.json`` beside it, a few kB
against a pickle's megabytes, and :func:`load_predictions` reads that file where the pickle is absent."""
import json
import os.path as osp
import pickle
from typing import Optional

import numpy as np

from mmbus.evaluation.missed import missed_score, read_missed
from mmbus.utils.io import atomic_write_json


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
    A prediction without a 0/1 label is an error naming the file, as in the metric. Where the pickle is absent
    and its :func:`scores_file` is there, the crops' scores come from that file, and so do the misses unless
    ``missed_json`` is there too (the misses of the split as they are now)."""
    compact, kept = scores_file(pkl), []
    if not osp.isfile(pkl) and osp.isfile(compact):
        scores, labels, ids, kept = _read_scores(compact, positive_index)
    else:
        scores, labels, ids = _read_dump(pkl, crops_json, positive_index)
    missed = ([(lab, rec.get('id')) for lab, rec in read_missed(missed_json)]
              if missed_json and osp.isfile(missed_json) else kept)
    for lab, i in missed:
        scores.append(missed_score(lab, missed_rule))
        labels.append(lab)
        ids.append(i)
    return np.asarray(scores), np.asarray(labels, dtype=int), ids


def _read_dump(pkl: str, crops_json: Optional[str], positive_index: int):
    """(scores, labels, image ids) of the crops in a prediction dump, as lists; none where it is absent."""
    preds = []
    if osp.isfile(pkl):
        with open(pkl, 'rb') as f:  # what mmengine's dump wrote: a pickled list of per-sample dicts
            try:
                preds = pickle.load(f)
            except Exception as e:  # noqa: BLE001  (any unpickling fault: one message naming the file)
                raise ValueError(f'{pkl}: not a classifier prediction dump of tools/test.py --out (it does not '
                                 f'unpickle: {type(e).__name__}: {e})') from e
        if not isinstance(preds, list) or not all(isinstance(p, dict) and 'pred_score' in p and 'gt_label' in p
                                                  for p in preds):
            raise ValueError(f'{pkl}: not a classifier prediction dump of tools/test.py --out (needs a list of '
                             'per-sample dicts with pred_score and gt_label)')
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
    return scores, labels, ids


def scores_file(pkl: str) -> str:
    """Where :func:`write_scores` keeps the scores of the dump ``pkl``: ``<stem>_scores.json`` beside it."""
    return osp.splitext(pkl)[0] + '_scores.json'


def write_scores(pkl: str, crops_json: Optional[str] = None, missed_json: Optional[str] = None,
                 positive_index: int = 1) -> str:
    """Write :func:`scores_file` of ``pkl``: the crops' scores, labels and image ids and the labels and ids of
    the misses in ``missed_json``, which the reader scores by the rule it is asked for. Returns its path."""
    if not osp.isfile(pkl):
        raise FileNotFoundError(f'{pkl}: no such prediction dump (tools/test.py --out) to keep the scores of')
    scores, labels, ids = _read_dump(pkl, crops_json, positive_index)
    missed = read_missed(missed_json) if missed_json and osp.isfile(missed_json) else []
    return atomic_write_json(dict(dump=osp.basename(pkl), positive_index=positive_index, scores=scores,
                                  labels=labels, image_ids=ids,
                                  missed=[[lab, rec.get('id')] for lab, rec in missed]), scores_file(pkl))


def _read_scores(path: str, positive_index: int):
    """(scores, labels, image ids, misses as (label, id)) of a :func:`scores_file`, checked."""
    d = _load_json(path)
    keys = ('scores', 'labels', 'image_ids', 'missed')
    if not isinstance(d, dict) or any(not isinstance(d.get(k), list) for k in keys) or \
            not len(d['scores']) == len(d['labels']) == len(d['image_ids']):
        raise ValueError(f'{path}: not a scores file of write_scores (lists {", ".join(keys)}; the first three '
                         'of one length)')
    if d.get('positive_index', 1) != positive_index:
        raise ValueError(f'{path} holds the scores of class {d.get("positive_index")}, not of class '
                         f'{positive_index}; read the prediction dump itself')
    return ([float(x) for x in d['scores']], [int(x) for x in d['labels']], list(d['image_ids']),
            [(int(lab), i) for lab, i in d['missed']])
