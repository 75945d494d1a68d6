"""The paper's data protocol (its Table 1): basic-train / extended-train / validation / test.

* **grouped**: images of one patient, and duplicate images (exact, near or re-cropped copies,
  see :mod:`.duplicates`), form one group (union-find) and a group never spans two splits;
  a group of copies whose labels conflict is kept in one split (``label_conflicts='keep'``,
  the default), kept out of validation and test (``'train-only'``) or left out of every split
  (``'exclude'``; ``all.json`` lists its images with ``"split": "excluded"``);
* **stratified**: each split gets each pathology in the dataset's proportion (or, for the
  splits named in ``balanced``, equal benign/malignant counts like the paper's 400/400
  basic-train and 100/100 validation);
* **seeded**: the group order is a seeded shuffle of groups sorted by file name, so the same
  dataset and seed always give the same split whatever the order images were listed in.

Targets are image counts per (split, pathology). Groups are placed largest first (ties in
shuffled order); each goes to the split whose remaining target for the group's pathologies
is largest. This fills every split to within one group of its target.

The extended-train labels stay in the files (fully supervised baseline, analysis) but its
images carry ``"label_hidden": true``: semi-supervised training must not read them.
"""
from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from mmbus.utils.markdown import md_table

from .coco_writer import subset_coco, write_json_atomic, write_text_atomic
from .duplicates import DEFAULT_THRESHOLD, duplicate_groups, find_duplicates, leakage_groups
from .neardup import DEFAULT_MIN_SPECKLE

SPLITS = ('basic_train', 'extended_train', 'val', 'test')
#: paper: ~15% train (80% basic-train, 20% validation), 65% extended-train, 20% test
DEFAULT_RATIOS = {'basic_train': 0.12, 'extended_train': 0.65, 'val': 0.03, 'test': 0.20}
HIDDEN_SPLITS = ('extended_train',)
TRAIN_SPLITS = ('basic_train', 'extended_train')
EXCLUDED = 'excluded'
#: what happens to a group of copies whose images carry different pathology labels
LABEL_CONFLICT_POLICIES = ('keep', 'train-only', 'exclude')
_CLASSES = ('benign', 'malignant', 'normal')


@dataclass
class SplitResult:
    assignment: Dict[int, str]                   # image id -> split name (or 'excluded')
    duplicates: List[dict] = field(default_factory=list)
    groups: List[List[int]] = field(default_factory=list)
    targets: Dict[str, Dict[str, float]] = field(default_factory=dict)
    seed: int = 0
    mode: str = 'ratios'
    dup_groups: List[dict] = field(default_factory=list)   # see duplicate_groups
    label_conflicts: str = 'keep'


def parse_split_spec(spec: str) -> Dict[str, Optional[float]]:
    """``"basic_train=0.12,val=0.03,extended_train=0.65,test=0.2"`` or with counts
    ``"basic_train=800,val=200,test=1350,extended_train=rest"`` -> dict (``rest`` -> ``None``).
    Split names may be abbreviated to ``basic``/``extended``/``valid``/``validation``."""
    alias = {'basic': 'basic_train', 'extended': 'extended_train', 'valid': 'val',
             'validation': 'val', 'basic_train': 'basic_train',
             'extended_train': 'extended_train', 'val': 'val', 'test': 'test'}
    out: Dict[str, Optional[float]] = {}
    for part in spec.split(','):
        if not part.strip():
            continue
        if '=' not in part:
            raise ValueError(f'bad split spec "{part}": expected name=value')
        k, v = (s.strip() for s in part.split('=', 1))
        if k.lower() not in alias:
            raise ValueError(f'unknown split "{k}" (known: {", ".join(SPLITS)})')
        out[alias[k.lower()]] = None if v.lower() in ('rest', '*') else float(v)
    return out


def _targets(class_totals: Dict[str, int], ratios=None, counts=None,
             balanced: Sequence[str] = ()) -> Dict[str, Dict[str, float]]:
    """Per-split, per-pathology target image counts."""
    classes = [c for c in _CLASSES if class_totals.get(c, 0) > 0]
    n = sum(class_totals[c] for c in classes)
    if (ratios is None) == (counts is None):
        raise ValueError('give exactly one of ratios or counts')
    targets: Dict[str, Dict[str, float]] = {s: {c: 0.0 for c in classes} for s in SPLITS}
    if ratios is not None:
        unknown = set(ratios) - set(SPLITS)
        if unknown:
            raise ValueError(f'unknown split(s) {sorted(unknown)}')
        if any(v is None or v < 0 for v in ratios.values()):
            raise ValueError('ratios must be non-negative numbers')
        total = sum(ratios.values())
        if total <= 0:
            raise ValueError('ratios sum to zero')
        for s, r in ratios.items():
            for c in classes:
                targets[s][c] = r / total * class_totals[c]
        # balanced ratio splits: same total, equal benign/malignant where possible
        for s in balanced:
            tot = sum(targets[s].values())
            for c in classes:
                targets[s][c] = tot / len(classes)
        return targets
    unknown = set(counts) - set(SPLITS)
    if unknown:
        raise ValueError(f'unknown split(s) {sorted(unknown)}')
    rest = [s for s, v in counts.items() if v is None]
    if len(rest) > 1:
        raise ValueError('only one split can take the rest')
    if not rest and sum(counts.values()) > n:
        raise ValueError(f'split counts sum to {sum(counts.values()):g} but only {n} '
                         'images are available')
    for s, k in counts.items():
        if k is None:
            continue
        if k < 0:
            raise ValueError('counts must be non-negative')
        for c in classes:
            targets[s][c] = k / len(classes) if s in balanced else k * class_totals[c] / n
    if rest:
        for c in classes:
            used = sum(targets[s][c] for s in SPLITS if s != rest[0])
            if used > class_totals[c] + 1e-9:
                raise ValueError(f'split counts need {used:.0f} {c} images but only '
                                 f'{class_totals[c]} exist')
            targets[rest[0]][c] = class_totals[c] - used
    return targets


def split_dataset(coco: dict, ratios: Optional[Dict[str, float]] = None,
                  counts: Optional[Dict[str, Optional[float]]] = None, seed: int = 0,
                  dup_threshold: int = DEFAULT_THRESHOLD, balanced: Sequence[str] = (),
                  external_test: bool = False, test_fold: Optional[int] = None,
                  fold_key: str = 'fold5', fingerprints: Optional[dict] = None,
                  min_speckle: float = DEFAULT_MIN_SPECKLE, label_conflicts: str = 'keep',
                  workers: int = 1) -> SplitResult:
    """Assign every image of ``coco`` to one split (see module doc).

    ``ratios`` (default :data:`DEFAULT_RATIOS`) or ``counts`` (images per split, ``None`` =
    the rest) set the sizes; ``dup_threshold`` is the dHash Hamming threshold in bits
    (negative: exact duplicates only); ``fingerprints`` (image id -> fingerprint, see
    :mod:`.neardup`) switch the re-crop guard on, ``min_speckle`` its threshold;
    ``label_conflicts`` is one of :data:`LABEL_CONFLICT_POLICIES`; ``external_test`` puts the
    whole dataset in ``test`` (a conflicting group is then left out unless ``'keep'``).
    ``test_fold`` uses a dataset's own cross-validation folds (BUS-BRA's ``kFold`` columns,
    stored as image key ``fold_key``): test = that fold (plus any group touching it), the
    other splits are drawn from the rest with ``ratios`` (its ``test`` entry is ignored).
    """
    if label_conflicts not in LABEL_CONFLICT_POLICIES:
        raise ValueError(f'unknown label-conflict policy {label_conflicts!r} (choose from '
                         f'{", ".join(LABEL_CONFLICT_POLICIES)})')
    images = coco['images']
    duplicates = find_duplicates(images, dup_threshold, fingerprints, min_speckle, workers)
    boxes = defaultdict(list)
    for a in coco.get('annotations', []):
        boxes[a['image_id']].append(a['bbox'])
    dgroups = duplicate_groups(images, duplicates, boxes)
    conflicting = {i for g in dgroups if g['label_conflict'] for i in g['image_ids']}
    excluded = set()
    if conflicting and (label_conflicts == 'exclude' or
                        (external_test and label_conflicts != 'keep')):
        excluded = conflicting
    assignment: Dict[int, str] = {i: EXCLUDED for i in excluded}
    kept = [im for im in images if im['id'] not in excluded]
    groups = leakage_groups(kept, duplicates=[d for d in duplicates
                                              if not excluded & set(d['image_ids'])])
    extra = dict(dup_groups=dgroups, label_conflicts=label_conflicts)
    if external_test:
        assignment.update({im['id']: 'test' for im in kept})
        return SplitResult(assignment, duplicates, groups, {}, seed, 'external_test', **extra)
    restricted = {k for k, g in enumerate(groups)
                  if label_conflicts == 'train-only' and conflicting & set(g)}
    if ratios is None and counts is None:
        ratios = dict(DEFAULT_RATIOS)
    by_id = {im['id']: im for im in kept}
    mode = 'counts' if counts is not None else 'ratios'
    if test_fold is not None:
        if counts is not None:
            raise ValueError('test_fold works with ratios, not counts')
        if not any(fold_key in im for im in kept):
            raise ValueError(f'no image carries "{fold_key}" (fold CSV missing?)')
        rest_groups = []
        for k, g in enumerate(groups):
            if k not in restricted and any(by_id[i].get(fold_key) == test_fold for i in g):
                assignment.update({i: 'test' for i in g})
            else:
                rest_groups.append(k)
        if not any(v == 'test' for v in assignment.values()):
            raise ValueError(f'fold {test_fold} is empty')
        to_place = rest_groups
        ratios = {k: v for k, v in ratios.items() if k != 'test'}
        mode = f'{fold_key}={test_fold} as test'
    else:
        to_place = list(range(len(groups)))
    placed = [by_id[i] for k in to_place for i in groups[k]]
    class_totals = Counter(im['pathology'] for im in placed)
    targets = _targets(class_totals, ratios, counts, balanced)

    # deterministic order independent of input order: sort by file name, then seeded shuffle
    to_place.sort(key=lambda k: min(by_id[i]['file_name'] for i in groups[k]))
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(to_place))
    order = sorted(range(len(to_place)), key=lambda k: (-len(groups[to_place[perm[k]]]), k))
    current = {s: defaultdict(float) for s in SPLITS}
    # splits with a zero target (e.g. test in fold mode, or val=0) never receive a group
    candidates = [s for s in SPLITS if sum(targets[s].values()) > 0] or ['extended_train']
    train_candidates = [s for s in candidates if s in TRAIN_SPLITS] or ['extended_train']
    for k in order:
        gk = to_place[perm[k]]
        group = groups[gk]
        gcount = Counter(by_id[i]['pathology'] for i in group)
        best, best_score = None, None
        for s in (train_candidates if gk in restricted else candidates):
            score = sum(n * (targets[s].get(c, 0.0) - current[s][c]) for c, n in gcount.items())
            if best_score is None or score > best_score + 1e-9:
                best, best_score = s, score
        for c, n in gcount.items():
            current[best][c] += n
        for i in group:
            assignment[i] = best
    return SplitResult(assignment, duplicates, groups, targets, seed, mode, **extra)


def summarise(coco: dict, result: SplitResult) -> dict:
    """Table-1-style numbers: per split benign/malignant/normal/total images, patients,
    boxes, plus leakage checks (patients spanning splits must be 0)."""
    by_split = defaultdict(list)
    for im in coco['images']:
        by_split[result.assignment[im['id']]].append(im)
    boxes = Counter(a['image_id'] for a in coco['annotations'])
    rows = {}
    order = ('test',) if result.mode == 'external_test' else SPLITS
    for s in order:
        ims = by_split.get(s, [])
        c = Counter(im['pathology'] for im in ims)
        rows[s] = {'benign': c.get('benign', 0), 'malignant': c.get('malignant', 0),
                   'normal': c.get('normal', 0), 'total': len(ims),
                   'patients': len({im['patient_id'] for im in ims}),
                   'boxes': sum(boxes.get(im['id'], 0) for im in ims),
                   'label_hidden': s in HIDDEN_SPLITS and result.mode != 'external_test'}
    all_c = Counter(im['pathology'] for im in coco['images'])
    patient_splits = defaultdict(set)
    for im in coco['images']:
        if result.assignment[im['id']] != EXCLUDED:
            patient_splits[im['patient_id']].add(result.assignment[im['id']])
    split_of = [[result.assignment[i] for i in d['image_ids']] for d in result.duplicates]
    dup_cross = sum(a != b and EXCLUDED not in (a, b) for a, b in split_of)
    conflicts = []
    for g in result.dup_groups:
        if g['label_conflict']:
            where = sorted({result.assignment[i] for i in g['image_ids']})
            conflicts.append({'file_names': g['file_names'], 'pathologies': g['pathologies'],
                              'split': where[0] if len(where) == 1 else where})
    return {
        'mode': result.mode, 'seed': result.seed,
        'splits': rows,
        'all': {'benign': all_c.get('benign', 0), 'malignant': all_c.get('malignant', 0),
                'normal': all_c.get('normal', 0), 'total': len(coco['images']),
                'patients': len(patient_splits), 'boxes': len(coco['annotations'])},
        'groups': len(result.groups),
        'patients_spanning_splits': sum(len(v) > 1 for v in patient_splits.values()),
        'duplicate_pairs': len(result.duplicates),
        'duplicate_pairs_across_splits': int(dup_cross),
        'duplicate_label_conflicts': [d for d in result.duplicates if d['conflict']],
        'duplicate_pairs_by_kind': dict(sorted(Counter(d['kind'] for d in result.duplicates)
                                               .items())),
        'duplicate_groups': len(result.dup_groups),
        'images_in_duplicate_groups': sum(len(g['image_ids']) for g in result.dup_groups),
        'label_conflict_policy': result.label_conflicts,
        'label_conflict_groups': conflicts,
        'mask_conflicts': [c for g in result.dup_groups for c in g['mask_conflicts']],
        'excluded': sum(v == EXCLUDED for v in result.assignment.values()),
        'targets': {s: {c: round(v, 1) for c, v in t.items()} for s, t in result.targets.items()},
    }


def summary_markdown(summary: dict, title: str = '') -> str:
    """The summary as a Markdown table (like the paper's Table 1)."""
    has_normal = summary['all']['normal'] > 0
    head = ['Split', 'Malignant', 'Benign'] + (['Normal'] if has_normal else []) + \
        ['Total', 'Patients', 'Boxes']
    lines = [f'# {title or "Dataset split"}', '',
             f'mode: {summary["mode"]}, seed: {summary["seed"]}', '']
    names = {'basic_train': 'Basic train', 'extended_train': 'Extended train (a)',
             'val': 'Validation', 'test': 'Test'}
    rows = []
    for s, r in list(summary['splits'].items()) + [('all', summary['all'])]:
        label = names.get(s, 'All' if s == 'all' else s)
        rows.append([label, r['malignant'], r['benign']] + ([r['normal']] if has_normal else []) +
                    [r['total'], r['patients'], r['boxes']])
    lines += [md_table(head, rows), '']
    if summary['mode'] != 'external_test':
        lines.append('(a) extended-train images carry "label_hidden": true; semi-supervised '
                     'training ignores their labels and boxes.')
    kinds = ', '.join(f'{n} {k}' for k, n in summary.get('duplicate_pairs_by_kind', {}).items())
    lines += [f'Leakage groups (patients + duplicates): {summary["groups"]}; patients spanning '
              f'splits: {summary["patients_spanning_splits"]}; duplicate pairs: '
              f'{summary["duplicate_pairs"]}{f" ({kinds})" if kinds else ""}, across splits: '
              f'{summary["duplicate_pairs_across_splits"]}; groups of copies: '
              f'{summary.get("duplicate_groups", 0)}; with conflicting labels: '
              f'{len(summary.get("label_conflict_groups", []))} (policy '
              f'{summary.get("label_conflict_policy", "keep")}, images excluded: '
              f'{summary.get("excluded", 0)}); copies whose boxes disagree: '
              f'{len(summary.get("mask_conflicts", []))}.', '']
    for g in summary.get('label_conflict_groups', []):
        lines.append('- label conflict: ' + ', '.join(
            f'{f} ({p})' for f, p in zip(g['file_names'], g['pathologies'])) +
            f' -> {g["split"]}')
    if summary.get('label_conflict_groups'):
        lines.append('')
    return '\n'.join(lines)


def write_split_outputs(coco: dict, result: SplitResult, out_dir: str,
                        title: str = '') -> dict:
    """Write ``out_dir/annotations/{all,<splits>}.json``, ``split_summary.{md,json}`` and
    ``duplicates.json`` (``pairs`` and ``groups``); returns the summary. ``all.json`` images
    carry their ``split`` (``"excluded"`` for a conflicting group left out)."""
    ann_dir = os.path.join(out_dir, 'annotations')
    summary = summarise(coco, result)
    names = ('test',) if result.mode == 'external_test' else SPLITS
    for s in names:
        ids = [i for i, sp in result.assignment.items() if sp == s]
        upd = {'label_hidden': True} if s in HIDDEN_SPLITS and result.mode != 'external_test' \
            else None
        sub = subset_coco(coco, ids, upd)
        sub['info'] = dict(sub.get('info', {}), split=s, seed=result.seed)
        write_json_atomic(sub, os.path.join(ann_dir, f'{s}.json'))
    if result.mode != 'external_test':
        full = subset_coco(coco, [im['id'] for im in coco['images']])
        for im in full['images']:
            im['split'] = result.assignment[im['id']]
        write_json_atomic(full, os.path.join(ann_dir, 'all.json'))
    write_json_atomic({'pairs': result.duplicates, 'groups': result.dup_groups},
                      os.path.join(ann_dir, 'duplicates.json'), indent=1)
    write_json_atomic(summary, os.path.join(ann_dir, 'split_summary.json'), indent=1)
    write_text_atomic(summary_markdown(summary, title), os.path.join(ann_dir, 'split_summary.md'))
    return summary
