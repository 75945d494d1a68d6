"""Groups, not pairs: copies of one scan form a group that lands in one split; a group with
conflicting labels is reported by name and the --label-conflicts policy decides where it goes;
two copies annotated with different masks are reported."""
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mmbus.datasets.converters import convert_and_split, duplicate_groups, split_dataset
from mmbus.datasets.converters.splits import TRAIN_SPLITS

sys.path.insert(0, os.path.dirname(__file__))
from test_recrop_guard import make_copy, scan  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def write(root, rel, img):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    """A BUSI-layout set of 20 distinct scans plus copies of two of them:

    * ``benign/b00.png`` has a re-cropped copy ``benign/b00_copy.png`` (mask cut the same way)
      and an exact copy ``malignant/m_of_b00.png`` labelled malignant: one group of three
      with a label conflict;
    * ``benign/b01.png`` has a re-cropped copy whose mask was drawn elsewhere: a mask conflict.
    """
    root = tmp_path_factory.mktemp('groups') / 'ds'
    rng = np.random.default_rng(3)
    for k in range(20):
        img, mask = scan(7, k)
        sub = 'malignant' if k >= 14 else 'benign'
        name = f'{sub}/{"m" if k >= 14 else "b"}{k:02d}'
        write(root, f'{name}.png', img)
        write(root, f'{name}_mask.png', mask)
        if k == 0:
            copy, cmask, _ = make_copy(img, rng, mask=mask, fmin=0.85)
            write(root, 'benign/b00_copy.png', copy)
            write(root, 'benign/b00_copy_mask.png', cmask)
            write(root, 'malignant/m_of_b00.png', img)
            write(root, 'malignant/m_of_b00_mask.png', mask)
        if k == 1:
            copy, cmask, _ = make_copy(img, rng, mask=mask, fmin=0.85)
            wrong = np.zeros_like(cmask)
            wrong[10:40, 10:60] = 255                # the lesion outlined somewhere else
            write(root, 'benign/b01_copy.png', copy)
            write(root, 'benign/b01_copy_mask.png', wrong)
    return root


def run(dataset, out, **kw):
    kw.setdefault('workers', 1)
    s = convert_and_split('busi', str(dataset), str(out), verbose=False, progress=False, **kw)
    ann = out / 'annotations'
    if (ann / 'all.json').is_file():
        full = json.loads((ann / 'all.json').read_text())
        split = {im['file_name']: im['split'] for im in full['images']}
    else:                                   # external test: test.json only
        split = {im['file_name']: 'test' for im in
                 json.loads((ann / 'test.json').read_text())['images']}
    report = json.loads((ann / 'conversion_report.json').read_text())['problems']
    return s, split, json.loads((ann / 'duplicates.json').read_text()), report


GROUP = ['benign/b00.png', 'benign/b00_copy.png', 'malignant/m_of_b00.png']


def test_groups_land_in_one_split_and_are_reported(dataset, tmp_path):
    for seed in range(4):
        s, split, dups, report = run(dataset, tmp_path / f'o{seed}', seed=seed)
        assert len({split[f] for f in GROUP}) == 1
        assert split['benign/b01.png'] == split['benign/b01_copy.png']
        assert s['duplicate_pairs_across_splits'] == 0
    groups = {tuple(g['file_names']): g for g in dups['groups']}
    assert set(groups) == {tuple(GROUP), ('benign/b01.png', 'benign/b01_copy.png')}
    g = groups[tuple(GROUP)]
    assert g['label_conflict'] and g['pathologies'] == ['benign', 'benign', 'malignant']
    assert set(g['kinds']) == {'exact', 'recrop'}
    kinds = {tuple(sorted(p['file_names'])): p['kind'] for p in dups['pairs']}
    assert kinds[('benign/b00.png', 'malignant/m_of_b00.png')] == 'exact'
    assert kinds[('benign/b00.png', 'benign/b00_copy.png')] == 'recrop'
    # the conflict is named: every file with its label, and what was done with it
    warn = [p for p in report if p['level'] == 'warning' and 'CONFLICTING' in p['message']]
    assert len(warn) == 1
    for f, lab in zip(GROUP, ('benign', 'benign', 'malignant')):
        assert f'{f} ({lab})' in warn[0]['message']
    assert 'kept together in' in warn[0]['message'] and '--label-conflicts keep' in \
        warn[0]['message']
    assert s['label_conflict_groups'][0]['file_names'] == GROUP
    assert s['duplicate_groups'] == 2 and s['excluded'] == 0


def test_same_scan_with_two_masks_is_reported(dataset, tmp_path):
    s, _, dups, report = run(dataset, tmp_path / 'o')
    conflicts = s['mask_conflicts']
    assert [sorted(c['file_names']) for c in conflicts] == [['benign/b01.png',
                                                            'benign/b01_copy.png']]
    assert conflicts[0]['iou'] < 0.5
    msgs = [p['message'] for p in report if 'boxes disagree' in p['message']]
    assert len(msgs) == 1 and 'benign/b01' in msgs[0]
    # b00's copy had its mask cut with the image: its box maps onto the original's
    g = next(g for g in dups['groups'] if 'benign/b00.png' in g['file_names'])
    assert g['mask_conflicts'] == []


def test_policy_exclude_leaves_the_group_out(dataset, tmp_path):
    s, split, _, report = run(dataset, tmp_path / 'o', label_conflicts='exclude')
    assert {split[f] for f in GROUP} == {'excluded'}
    assert s['excluded'] == 3
    assert sum(r['total'] for r in s['splits'].values()) == s['all']['total'] - 3
    for name in ('basic_train', 'extended_train', 'val', 'test'):
        files = {im['file_name'] for im in
                 json.loads((tmp_path / 'o' / 'annotations' / f'{name}.json').read_text())
                 ['images']}
        assert not files & set(GROUP)
    assert any('left out of every split' in p['message'] for p in report)


def test_policy_train_only_keeps_the_group_out_of_evaluation(dataset, tmp_path):
    for seed in range(4):
        s, split, _, _ = run(dataset, tmp_path / f'o{seed}', seed=seed,
                             label_conflicts='train-only')
        where = {split[f] for f in GROUP}
        assert len(where) == 1 and where <= set(TRAIN_SPLITS)


def test_policy_in_external_test_mode(dataset, tmp_path):
    s, _, _, _ = run(dataset, tmp_path / 'keep', external_test=True)
    assert s['splits']['test']['total'] == s['all']['total']
    s, _, _, _ = run(dataset, tmp_path / 'drop', external_test=True, label_conflicts='exclude')
    assert s['splits']['test']['total'] == s['all']['total'] - 3


def test_guard_off_finds_only_hash_duplicates(dataset, tmp_path):
    s, _, dups, _ = run(dataset, tmp_path / 'o', recrop_guard=False)
    assert [sorted(g['file_names']) for g in dups['groups']] == [['benign/b00.png',
                                                                 'malignant/m_of_b00.png']]
    assert s['conversion']['recrop_guard'] is False


def test_split_coco_file_runs_the_guard_with_root(dataset, tmp_path, capsys):
    sys.path.insert(0, str(REPO / 'tools' / 'dataset_converters'))
    import split_coco
    run(dataset, tmp_path / 'o', recrop_guard=False)
    ann = tmp_path / 'o' / 'annotations' / 'all.json'
    assert split_coco.main([str(ann), '--out-dir', str(tmp_path / 'r'), '--root', str(dataset),
                            '--workers', '1']) == 0
    s = json.loads((tmp_path / 'r' / 'annotations' / 'split_summary.json').read_text())
    assert s['duplicate_groups'] == 2
    assert split_coco.main([str(ann), '--out-dir', str(tmp_path / 'n')]) == 0   # no --root
    assert 'no --root: re-cropped copies are not looked for' in capsys.readouterr().err
    s = json.loads((tmp_path / 'n' / 'annotations' / 'split_summary.json').read_text())
    assert s['duplicate_groups'] == 1


def test_duplicate_groups_and_unknown_policy():
    images = [{'id': i, 'file_name': f'{c}.png', 'pathology': p, 'width': 100, 'height': 80}
              for i, c, p in ((1, 'a', 'benign'), (2, 'b', 'benign'), (3, 'c', 'malignant'),
                              (4, 'd', 'benign'))]
    pairs = [{'image_ids': [1, 2], 'file_names': ['a.png', 'b.png'], 'kind': 'exact',
              'transform': [1, 1, 0, 0]},
             {'image_ids': [2, 3], 'file_names': ['b.png', 'c.png'], 'kind': 'near',
              'transform': [1, 1, 0, 0]}]
    boxes = {1: [[10, 10, 20, 20]], 2: [[10, 10, 20, 20]], 3: [[50, 40, 20, 20]]}
    groups = duplicate_groups(images, pairs, boxes)
    assert len(groups) == 1 and groups[0]['image_ids'] == [1, 2, 3]   # transitively joined
    assert groups[0]['label_conflict'] and groups[0]['kinds'] == ['exact', 'near']
    assert [c['file_names'] for c in groups[0]['mask_conflicts']] == [['b.png', 'c.png']]
    with pytest.raises(ValueError, match='label-conflict policy'):
        split_dataset({'images': images, 'annotations': []}, label_conflicts='drop')
