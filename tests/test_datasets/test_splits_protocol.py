"""The paper's split protocol: stratified, patient-grouped, seeded; duplicates kept together."""
import json
from collections import Counter, defaultdict

import cv2
import numpy as np
import pytest

from mmbus.datasets.converters import (connected_groups, convert_and_split, find_duplicates,
                                       leakage_groups, parse_split_spec, split_dataset)
from mmbus.datasets.converters.duplicates import hamming_pairs
from mmbus.datasets.converters.splits import SPLITS, write_split_outputs


def fake_coco(n_patients=200, seed=0, two_view_every=3):
    """Patients 0..n-1, every ``two_view_every``-th has two images; 30% malignant."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for p in range(n_patients):
        pathology = 'malignant' if rng.random() < 0.3 else 'benign'
        for v in range(2 if p % two_view_every == 0 else 1):
            iid = len(images) + 1
            images.append({'id': iid, 'file_name': f'{pathology}/p{p:04d}_{v}.png',
                           'width': 10, 'height': 10, 'pathology': pathology,
                           'patient_id': f'P{p}', 'source': 'fake'})
            anns.append({'id': iid, 'image_id': iid, 'category_id': 1, 'bbox': [1, 1, 2, 2],
                         'area': 4, 'iscrowd': 0})
    return {'images': images, 'annotations': anns, 'categories': [{'id': 1, 'name': 'nodule'}]}


def splits_of_patients(coco, assignment):
    per = defaultdict(set)
    for im in coco['images']:
        per[im['patient_id']].add(assignment[im['id']])
    return per


def test_parse_split_spec():
    assert parse_split_spec('basic=0.1, val=0.05,extended_train=0.65,test=0.2') == {
        'basic_train': 0.1, 'val': 0.05, 'extended_train': 0.65, 'test': 0.2}
    assert parse_split_spec('basic_train=800,val=200,test=1350,extended=rest') == {
        'basic_train': 800, 'val': 200, 'test': 1350, 'extended_train': None}
    with pytest.raises(ValueError, match='unknown split'):
        parse_split_spec('train=0.5')


def test_ratio_split_grouped_stratified_deterministic():
    coco = fake_coco()
    res = split_dataset(coco, seed=0)
    # no patient spans two splits
    assert all(len(s) == 1 for s in splits_of_patients(coco, res.assignment).values())
    n = len(coco['images'])
    totals = Counter(im['pathology'] for im in coco['images'])
    for s, ratio in {'basic_train': 0.12, 'extended_train': 0.65, 'val': 0.03,
                     'test': 0.20}.items():
        for c in ('benign', 'malignant'):
            got = sum(1 for im in coco['images']
                      if res.assignment[im['id']] == s and im['pathology'] == c)
            # within one group (<= 2 images) of the stratified target
            assert abs(got - ratio * totals[c]) <= 2.0, (s, c, got, ratio * totals[c])
    assert len(res.assignment) == n
    # same seed -> same split; input order does not matter; another seed differs
    shuffled = dict(coco, images=list(reversed(coco['images'])))
    assert split_dataset(shuffled, seed=0).assignment == res.assignment
    assert split_dataset(coco, seed=0).assignment == res.assignment
    assert split_dataset(coco, seed=1).assignment != res.assignment


def test_count_split_with_rest_and_balanced():
    coco = fake_coco(300)
    counts = parse_split_spec('basic_train=40,val=10,test=60,extended_train=rest')
    res = split_dataset(coco, counts=counts, balanced=('basic_train', 'val'), seed=5)
    c = Counter((res.assignment[im['id']], im['pathology']) for im in coco['images'])
    assert abs(c['basic_train', 'benign'] - 20) <= 2
    assert abs(c['basic_train', 'malignant'] - 20) <= 2
    assert abs(c['val', 'benign'] - 5) <= 2 and abs(c['val', 'malignant'] - 5) <= 2
    n_mal = sum(im['pathology'] == 'malignant' for im in coco['images'])
    assert abs(c['test', 'malignant'] - 60 * n_mal / len(coco['images'])) <= 2
    assert sum(v for (s, _), v in c.items()) == len(coco['images'])
    with pytest.raises(ValueError, match='only'):
        split_dataset(coco, counts={'basic_train': 10_000, 'extended_train': None})


def test_external_test_mode(tmp_path):
    coco = fake_coco(20)
    res = split_dataset(coco, external_test=True)
    assert set(res.assignment.values()) == {'test'}
    summary = write_split_outputs(coco, res, str(tmp_path))
    ann = tmp_path / 'annotations'
    test = json.loads((ann / 'test.json').read_text())
    assert len(test['images']) == len(coco['images'])
    assert not any(im.get('label_hidden') for im in test['images'])
    assert not (ann / 'all.json').exists() and not (ann / 'basic_train.json').exists()
    assert summary['splits']['test']['total'] == len(coco['images'])


def test_split_files_and_summary(tmp_path):
    coco = fake_coco(100)
    res = split_dataset(coco, seed=2)
    summary = write_split_outputs(coco, res, str(tmp_path), title='fake')
    ann = tmp_path / 'annotations'
    ids = {}
    for s in SPLITS:
        d = json.loads((ann / f'{s}.json').read_text())
        ids[s] = {im['id'] for im in d['images']}
        assert {a['image_id'] for a in d['annotations']} <= ids[s]
        hidden = {im.get('label_hidden', False) for im in d['images']}
        assert hidden == ({True} if s == 'extended_train' else {False})
        r = summary['splits'][s]
        assert r['total'] == len(d['images'])
        assert r['benign'] == sum(im['pathology'] == 'benign' for im in d['images'])
        assert r['malignant'] == sum(im['pathology'] == 'malignant' for im in d['images'])
        assert d['categories'] == [{'id': 1, 'name': 'nodule'}]
    # disjoint, and together they are all images; all.json records the split
    assert sum(len(v) for v in ids.values()) == len(coco['images'])
    assert set().union(*ids.values()) == {im['id'] for im in coco['images']}
    full = json.loads((ann / 'all.json').read_text())
    assert all(im['id'] in ids[im['split']] for im in full['images'])
    assert summary['patients_spanning_splits'] == 0
    md = (ann / 'split_summary.md').read_text()
    row = f"| Basic train | {summary['splits']['basic_train']['malignant']} | " \
          f"{summary['splits']['basic_train']['benign']} |"
    assert row in md
    assert json.loads((ann / 'split_summary.json').read_text())['all']['total'] == 134


# ----------------------------------------------------------------------------- duplicates
def test_union_find_and_hamming():
    # 1-2, 4-5 and 2-5 join four images; 3 stays alone; 7-6 adds a pair of new items (first seen: 7)
    assert connected_groups([1, 2, 3, 4, 5], [(1, 2), (4, 5), (2, 5), (7, 6)]) == [[1, 2, 4, 5], [3], [7, 6]]
    assert connected_groups([], [(1, 2, 3)]) == [[1, 2, 3]]
    # 0x00.. vs 0x01.. differ in 1 bit, vs 0x03.. in 2 bits; 0xff.. is 8 bits from 0x00..
    hashes = ['00' * 32, '01' + '00' * 31, '03' + '00' * 31, 'ff' + '00' * 31]
    assert hamming_pairs(hashes, 1) == [(0, 1, 1), (1, 2, 1)]
    assert (0, 2, 2) in hamming_pairs(hashes, 2) and (0, 3, 8) not in hamming_pairs(hashes, 7)


def test_leakage_groups_union_patients_and_duplicates():
    images = [{'id': 1, 'patient_id': 'A'}, {'id': 2, 'patient_id': 'A'},
              {'id': 3, 'patient_id': 'B'}, {'id': 4, 'patient_id': 'C'}]
    dups = [{'image_ids': [2, 3]}]
    assert leakage_groups(images, dups) == [[1, 2, 3], [4]]


def _textured(seed, h=96, w=128):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w), dtype=np.uint8), (0, 0), 2.5)


def test_duplicates_found_and_kept_together(tmp_path):
    """An exact copy and a rescaled + brightened copy of one image, under other patients and
    one with the other label, end up in the split of the original and are reported."""
    root = tmp_path / 'ds'
    for p in ('benign', 'malignant'):
        (root / p).mkdir(parents=True)
    for k in range(40):
        p = 'malignant' if k % 4 == 0 else 'benign'
        cv2.imwrite(str(root / p / f'img{k:02d}.png'), _textured(k))
        m = np.zeros((96, 128), np.uint8)
        m[10:30, 20:50] = 255
        cv2.imwrite(str(root / p / f'img{k:02d}_mask.png'), m)
    orig = _textured(7)  # img07 (benign)
    cv2.imwrite(str(root / 'benign' / 'copy_exact.png'), orig)
    near = np.clip(cv2.resize(cv2.resize(orig, (256, 192)), (128, 96)).astype(int) + 6, 0, 255)
    cv2.imwrite(str(root / 'malignant' / 'copy_near.png'), near.astype(np.uint8))
    for n, p in (('copy_exact', 'benign'), ('copy_near', 'malignant')):
        m = np.zeros((96, 128), np.uint8)
        m[10:30, 20:50] = 255
        cv2.imwrite(str(root / p / f'{n}_mask.png'), m)
    out = tmp_path / 'out'
    for seed in range(3):
        s = convert_and_split('busi', str(root), str(out), seed=seed, workers=1, verbose=False)
        full = json.loads((out / 'annotations' / 'all.json').read_text())
        split = {im['file_name']: im['split'] for im in full['images']}
        assert split['benign/copy_exact.png'] == split['benign/img07.png']
        assert split['malignant/copy_near.png'] == split['benign/img07.png']
        assert s['duplicate_pairs_across_splits'] == 0
    dups = json.loads((out / 'annotations' / 'duplicates.json').read_text())
    groups = dups['groups']
    dups = dups['pairs']
    pairs = {tuple(sorted(d['file_names'])): d for d in dups}
    assert len(pairs) == 3   # exact-orig, near-orig, near-exact
    exact = pairs[('benign/copy_exact.png', 'benign/img07.png')]
    assert exact['kind'] == 'exact' and not exact['conflict']
    near_pair = pairs[('benign/img07.png', 'malignant/copy_near.png')]
    assert near_pair['kind'] == 'near' and near_pair['conflict'] and near_pair['distance'] <= 10
    assert len(s['duplicate_label_conflicts']) == 2
    report = json.loads((out / 'annotations' / 'conversion_report.json').read_text())
    assert any(p['level'] == 'warning' and 'CONFLICTING' in p['message']
               for p in report['problems'])
    # the distinct images are not flagged: only the 3 pairs above, one group of three
    assert all('copy' in ''.join(d['file_names']) for d in dups)
    assert [g['file_names'] for g in groups] == [['benign/copy_exact.png', 'benign/img07.png',
                                                  'malignant/copy_near.png']]
    assert groups[0]['label_conflict'] and groups[0]['pathologies'] == ['benign', 'benign',
                                                                        'malignant']
    assert s['duplicate_groups'] == 1 and len(s['label_conflict_groups']) == 1


def test_find_duplicates_threshold_disables_near():
    ims = [{'id': 1, 'file_name': 'a', 'pathology': 'benign', 'dhash': '00' * 32,
            'pixel_sha1': 'x'},
           {'id': 2, 'file_name': 'b', 'pathology': 'benign', 'dhash': '01' + '00' * 31,
            'pixel_sha1': 'y'}]
    assert len(find_duplicates(ims, threshold=1)) == 1
    assert find_duplicates(ims, threshold=-1) == []


def test_fold_mode_uses_dataset_folds():
    coco = fake_coco(120)
    fold_of_patient = {}
    for im in coco['images']:
        im['fold5'] = fold_of_patient.setdefault(im['patient_id'], len(fold_of_patient) % 5 + 1)
    res = split_dataset(coco, test_fold=2, seed=0)
    test_ids = {i for i, s in res.assignment.items() if s == 'test'}
    assert test_ids == {im['id'] for im in coco['images'] if im['fold5'] == 2}
    assert res.mode == 'fold5=2 as test'
    rest = len(coco['images']) - len(test_ids)
    n_basic = sum(s == 'basic_train' for s in res.assignment.values())
    assert abs(n_basic - rest * 0.12 / 0.80) <= 2          # ratios renormalised without test
    with pytest.raises(ValueError, match='fold10'):
        split_dataset(coco, test_fold=1, fold_key='fold10')


def test_split_cli_resplits_existing_file(tmp_path, capsys):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'tools' / 'dataset_converters'))
    import split_coco
    coco = fake_coco(60)
    src = tmp_path / 'in.json'
    for im in coco['images']:
        im['split'], im['label_hidden'] = 'extended_train', True   # stale marks
    src.write_text(json.dumps(coco))
    assert split_coco.main([str(src), '--out-dir', str(tmp_path / 'o'), '--seed', '1']) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith('[mmbus] split: 80 images')
    test = json.loads((tmp_path / 'o' / 'annotations' / 'test.json').read_text())
    assert test['images'] and not any(im.get('label_hidden') for im in test['images'])
    bad = dict(coco, images=[dict(coco['images'][0], pathology='unsure')] + coco['images'][1:])
    src.write_text(json.dumps(bad))
    assert split_coco.main([str(src), '--out-dir', str(tmp_path / 'o2')]) == 1
    assert 'unknown pathology label "unsure"' in capsys.readouterr().err
    assert not (tmp_path / 'o2').exists()
