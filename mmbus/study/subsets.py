"""Labelled subsets of a crops pool for learning curves: patient-grouped, stratified by label and nested
across shares (the 5 % set lies inside the 10 % set for one seed), so every point of a curve is measured
on the same validation and test crops and differs only in how many labels it had.

The pool is the crops of ``basic_train`` + ``extended_train``; what is not labelled becomes the
unlabelled set (``gt_label = -1``; ``true_label`` kept for analysis only).
"""
import json
import os
import os.path as osp
import random
from collections import defaultdict
from typing import Dict, List, Sequence

from mmbus.classes import CLASSES
from mmbus.utils.io import atomic_write_json


def load_crops(path: str) -> List[dict]:
    """``data_list`` of a crops JSON; every record needs ``true_label`` (or a ``gt_label`` of 0/1) -- the
    message names the file and record otherwise."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'crops file {path} does not exist')
    with open(path) as f:
        raw = json.load(f)
    if not isinstance(raw, dict) or not isinstance(raw.get('data_list'), list):
        raise ValueError(f'{path}: expected a dict with a "data_list" list')
    out = []
    for i, r in enumerate(raw['data_list']):
        lab = r.get('true_label', r.get('gt_label'))
        if lab is None or int(lab) not in (0, 1):
            raise ValueError(f'{path}: data_list[{i}] ({r.get("img_path")}) has no true_label 0/1')
        out.append(dict(r, true_label=int(lab)))
    return out


def _group_key(r: dict) -> str:
    pid = str(r.get('patient_id') or '')
    # no patient id: the source image is its own group
    return pid if pid else 'image:' + str(r.get('file_name', r['img_path']))


def grouped_stratified_order(records: Sequence[dict], seed: int = 0) -> Dict[int, List[List[int]]]:
    """Per label stratum, the patient groups (lists of record indices) in a seeded random order. A patient
    with any malignant crop is in stratum 1."""
    groups: Dict[str, List[int]] = defaultdict(list)
    for i, r in enumerate(records):
        groups[_group_key(r)].append(i)
    strata: Dict[int, List[List[int]]] = {0: [], 1: []}
    for key in sorted(groups):
        idx = groups[key]
        strata[max(records[i]['true_label'] for i in idx)].append(idx)
    rng = random.Random(seed)
    for lab in (0, 1):
        rng.shuffle(strata[lab])
    return strata


def labelled_subset(records: Sequence[dict], share: float, seed: int = 0) -> List[int]:
    """Indices of the labelled crops for ``share`` (0 < share <= 1) of the pool: patient-grouped,
    stratified, nested across shares for one seed.

    Per stratum with ``n`` crops, patients are added in the seeded order while the stratum holds fewer than
    ``round(share * n)`` crops (at least one patient per non-empty stratum, so both classes are always
    labelled).
    """
    if not 0 < share <= 1:
        raise ValueError(f'share must be in (0, 1], got {share}')
    chosen: List[int] = []
    for lab, groups in grouped_stratified_order(records, seed).items():
        n = sum(len(g) for g in groups)
        if n == 0:
            continue
        target = max(1, int(round(share * n)))
        count = 0
        for g in groups:
            if count >= target:
                break
            chosen += g
            count += len(g)
    return sorted(chosen)


def write_share_datasets(records: Sequence[dict], share: float, out_dir: str, seed: int = 0) -> dict:
    """Write ``out_dir/labelled.json`` (gt_label = true_label) and ``out_dir/unlabelled.json`` (gt_label = -1)
    in the crops format; the ``img_path`` entries are kept, i.e. still relative to the crop dir the records
    came from. Returns counts."""
    lab_idx = set(labelled_subset(records, share, seed))
    labelled = [dict(r, gt_label=r['true_label']) for i, r in enumerate(records) if i in lab_idx]
    unlabelled = [dict(r, gt_label=-1) for i, r in enumerate(records) if i not in lab_idx]
    meta = dict(classes=list(CLASSES), share=share, seed=seed)
    os.makedirs(out_dir, exist_ok=True)
    for name, lst in (('labelled', labelled), ('unlabelled', unlabelled)):
        atomic_write_json(dict(metainfo=dict(meta, subset=name), data_list=lst),
                          osp.join(out_dir, f'{name}.json'), indent=1)
    return dict(share=share, labelled=len(labelled), labelled_malignant=sum(r['true_label'] for r in labelled),
                labelled_patients=len({_group_key(r) for r in labelled}), unlabelled=len(unlabelled),
                pool=len(records))
