"""Learning curve: test AUC of mean teacher vs supervised-basic as the share of
labelled training crops varies (GitHub issue 7, item 6).

Protocol
--------
* Pool = the crops of ``basic_train`` + ``extended_train`` (a crops dataset of
  the data contract; ``true_label`` is known for every crop).  Validation and
  test splits are untouched, so every point is measured on the same test set.
* For a share ``s`` the labelled subset is drawn **patient-grouped and
  stratified**: patients are the sampling unit (all crops of a patient go to
  the same side, so no patient is both labelled and unlabelled), patients are
  stratified by their label (malignant if any of their crops is malignant),
  and inside each stratum patients are taken in one seeded random order until
  the stratum holds ``round(s * n_stratum_crops)`` crops.  Because the order
  does not depend on ``s``, the labelled sets are **nested** (the 5% set is
  inside the 10% set ...), which removes one source of noise between points.
* Everything not labelled is the unlabelled set of the mean teacher
  (``gt_label = -1``; ``true_label`` kept for analysis only).
* Both methods run through ``tools/train.py`` / ``tools/test.py`` with the
  classifier developer's configs; only paths and the schedule change
  (:func:`mmbus.apis.busbra_experiment.classifier_config`).
"""
import json
import math
import os
import os.path as osp
import random
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

from mmbus.apis.busbra_experiment import (best_checkpoint,
                                          classifier_config, dump_json,
                                          method_config,
                                          python, repo_path, run_logged,
                                          short_schedule_ema, strip_prefix,
                                          tool, total_iters, write_config,
                                          _save_fig)

CLASSES = ['benign', 'malignant']


def load_crops(path: str) -> List[dict]:
    """``data_list`` of a crops JSON; every record needs ``true_label`` (or a
    ``gt_label`` of 0/1) -- the message names the file and record otherwise."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'crops file {path} does not exist')
    with open(path) as f:
        raw = json.load(f)
    if not isinstance(raw, dict) or not isinstance(raw.get('data_list'),
                                                   list):
        raise ValueError(f'{path}: expected a dict with a "data_list" list')
    out = []
    for i, r in enumerate(raw['data_list']):
        lab = r.get('true_label', r.get('gt_label'))
        if lab is None or int(lab) not in (0, 1):
            raise ValueError(f'{path}: data_list[{i}] ({r.get("img_path")}) '
                             'has no true_label 0/1')
        r = dict(r)
        r['true_label'] = int(lab)
        out.append(r)
    return out


def _group_key(r: dict) -> str:
    pid = str(r.get('patient_id') or '')
    # no patient id: the source image is its own group
    return pid if pid else 'image:' + str(r.get('file_name', r['img_path']))


def grouped_stratified_order(records: Sequence[dict],
                             seed: int = 0) -> Dict[int, List[List[int]]]:
    """Per label stratum, the patient groups (lists of record indices) in a
    seeded random order. A patient with any malignant crop is in stratum 1."""
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


def labelled_subset(records: Sequence[dict], share: float,
                    seed: int = 0) -> List[int]:
    """Indices of the labelled crops for ``share`` (0 < share <= 1) of the
    pool: patient-grouped, stratified, nested across shares for one seed.

    Per stratum with ``n`` crops, patients are added in the seeded order while
    the stratum holds fewer than ``round(share * n)`` crops (at least one
    patient per non-empty stratum, so both classes are always labelled).
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


def write_share_datasets(records: Sequence[dict], share: float, out_dir: str,
                         seed: int = 0) -> dict:
    """Write ``out_dir/labelled.json`` (gt_label = true_label) and
    ``out_dir/unlabelled.json`` (gt_label = -1) in the crops format; the
    ``img_path`` entries are kept, i.e. still relative to the crop dir the
    records came from. Returns counts."""
    lab_idx = set(labelled_subset(records, share, seed))
    labelled, unlabelled = [], []
    for i, r in enumerate(records):
        r = dict(r)
        if i in lab_idx:
            r['gt_label'] = r['true_label']
            labelled.append(r)
        else:
            r['gt_label'] = -1
            unlabelled.append(r)
    meta = dict(classes=CLASSES, share=share, seed=seed)
    os.makedirs(out_dir, exist_ok=True)
    for name, lst in (('labelled', labelled), ('unlabelled', unlabelled)):
        dump_json(dict(metainfo=dict(meta, subset=name), data_list=lst),
                  osp.join(out_dir, f'{name}.json'))
    patients = {_group_key(r) for r in labelled}
    return dict(share=share, labelled=len(labelled),
                labelled_malignant=sum(r['true_label'] for r in labelled),
                labelled_patients=len(patients),
                unlabelled=len(unlabelled), pool=len(records))


def run_learning_curve(crop_root: str, work_dir: str,
                       shares: Sequence[float] = (0.05, 0.10, 0.15, 0.30),
                       methods: Sequence[str] = ('mean_teacher',
                                                 'supervised_basic'),
                       seed: int = 0, epochs: Optional[int] = None,
                       epoch_length: Optional[int] = None,
                       pool_splits: Sequence[str] = ('basic_train',
                                                     'extended_train'),
                       config_set: str = 'cpu_quick',
                       consistency_weight: Optional[float] = None,
                       force: bool = False, log=print) -> List[dict]:
    """Train and test every (share, method); returns one row per pair and
    writes ``work_dir/learning_curve.{json,csv,png}`` after every point (a
    partial curve survives an interruption)."""
    crop_root = osp.abspath(crop_root)
    work_dir = osp.abspath(work_dir)
    configs = {m: repo_path(method_config(m, config_set)) for m in methods}
    records = []
    for s in pool_splits:
        records += load_crops(osp.join(crop_root, f'{s}.json'))
    rows = []
    for share in shares:
        tag = f'share_{share:.2f}'
        sdir = osp.join(work_dir, tag)
        counts = write_share_datasets(records, share, osp.join(sdir, 'data'),
                                      seed)
        log(f'[learning_curve] {tag}: {counts}')
        for m in methods:
            wd = osp.join(sdir, m)
            out = osp.join(wd, 'test')
            mfile = osp.join(out, 'metrics.json')
            cfg = classifier_config(
                configs[m], crop_root, epochs, epoch_length,
                labelled_ann=osp.join(sdir, 'data', 'labelled.json'),
                unlabelled_ann=osp.join(sdir, 'data', 'unlabelled.json'),
                roc_dir=out, seed=seed)
            # EMA/ramp-up fitted to the (short) schedule, as in the main run
            cfg = classifier_config(cfg, crop_root, roc_dir=out, seed=seed,
                                    ema=short_schedule_ema(total_iters(cfg)),
                                    consistency_weight=consistency_weight)
            cfg_path = write_config(cfg, osp.join(sdir, 'configs', f'{m}.py'))
            wall = None
            if force or not osp.isfile(mfile):
                wall = run_logged([python(), tool('tools/train.py'), cfg_path,
                                   '--work-dir', wd],
                                  osp.join(sdir, 'logs', f'{m}_train.log'))
                wall += run_logged([
                    python(), tool('tools/test.py'), cfg_path,
                    best_checkpoint(wd), '--work-dir', out, '--out-metrics',
                    mfile
                ], osp.join(sdir, 'logs', f'{m}_test.log'))
            with open(mfile) as f:
                met = strip_prefix(json.load(f))
            row = dict(counts, method=m, auc=met.get('auc'),
                       auc_ci_low=met.get('auc_ci_low'),
                       auc_ci_high=met.get('auc_ci_high'),
                       sensitivity=met.get('sensitivity'),
                       specificity=met.get('specificity'),
                       accuracy=met.get('accuracy'), wall_s=wall)
            rows.append(row)
            log(f'[learning_curve] {tag} {m}: AUC {row["auc"]:.4f}')
            save_curve(rows, work_dir)
    return rows


def save_curve(rows: List[dict], work_dir: str) -> Tuple[str, str, str]:
    """Write ``learning_curve.json``, ``.csv`` and ``.png`` (AUC with its 95%
    CI vs labelled share, one line per method)."""
    import csv
    os.makedirs(work_dir, exist_ok=True)
    jpath = osp.join(work_dir, 'learning_curve.json')
    cpath = osp.join(work_dir, 'learning_curve.csv')
    ppath = osp.join(work_dir, 'learning_curve.png')
    dump_json(rows, jpath)
    keys = list(rows[0]) if rows else []
    tmp = cpath + '.tmp'
    with open(tmp, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, cpath)
    plot_curve(rows, ppath)
    return jpath, cpath, ppath


def plot_curve(rows: List[dict], path: str) -> str:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=110)
    for m in dict.fromkeys(r['method'] for r in rows):
        pts = sorted((r['share'], r['auc'], r['auc_ci_low'], r['auc_ci_high'])
                     for r in rows if r['method'] == m
                     and r['auc'] is not None and not math.isnan(r['auc']))
        if not pts:
            continue
        x = [100 * p[0] for p in pts]
        y = [p[1] for p in pts]
        err = [[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]]
        ax.errorbar(x, y, yerr=err, marker='o', capsize=3, label=m)
    ax.set_xlabel('labelled share of the basic+extended pool (%)')
    ax.set_ylabel('test AUC (95% CI)')
    ax.set_title('BUS-BRA: AUC vs labelled share', fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_fig(fig, path)
    plt.close(fig)
    return path
