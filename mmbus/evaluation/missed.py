"""Detector misses: the one reader of ``<split>_missed.json`` (written by ``tools/extract_crops.py``: images
whose nodule the detector did not find) and the one rule that turns a miss into a score. The metric and the
study reports both use it, so a miss counts the same in a table, a ROC curve and a paired test.

A record's label is ``true_label``, else ``gt_label`` (0/1), else ``pathology`` (benign|malignant); a record
with none of them is an error naming the file. ``missed_rule``: ``'wrong'`` scores a miss as a wrong answer
(0 for a malignant nodule, 1 for a benign one), ``'benign'`` calls it benign (0), a float gives it that score.
"""
import json
import os.path as osp
from typing import List, Sequence, Tuple, Union

from mmbus.classes import pathology_label

MISSED_RULES = ('wrong', 'benign')


def check_missed_rule(rule) -> None:
    if isinstance(rule, str) and rule not in MISSED_RULES:
        raise ValueError(f"missed_rule must be 'wrong', 'benign' or a score, got {rule!r}")


def record_label(rec: dict, where: str) -> int:
    for key in ('true_label', 'gt_label'):
        if rec.get(key) is not None and int(rec[key]) in (0, 1):
            return int(rec[key])
    lab = pathology_label(rec.get('pathology'))
    if lab is not None:
        return lab
    raise ValueError(f'{where}: missed record {rec.get("file_name", rec)} has no true_label / gt_label / '
                     'pathology (benign|malignant)')


def read_missed(missed: Union[None, str, Sequence]) -> List[Tuple[int, dict]]:
    """(label, record) of every miss in a file, a list of files, or a list of records."""
    if missed is None:
        return []
    out = []
    for src in ([missed] if isinstance(missed, str) else list(missed)):
        if isinstance(src, str):
            if not osp.isfile(src):
                raise FileNotFoundError(f'missed-detection file {src} does not exist')
            with open(src) as f:
                records = json.load(f)
            if not isinstance(records, list):
                raise ValueError(f'{src}: expected a list of image records')
            out += [(record_label(r, src), r) for r in records]
        elif isinstance(src, dict):
            out.append((record_label(src, 'missed'), src))
        else:
            raise TypeError(f'missed entries must be paths or dicts, got {type(src).__name__}')
    return out


def missed_score(label: int, rule: Union[str, float] = 'wrong') -> float:
    if rule == 'wrong':
        return 1.0 - label
    if rule == 'benign':
        return 0.0
    return float(rule)
