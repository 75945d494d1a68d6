"""Labelled subsets for learning curves: patient-grouped, stratified, seeded, nested."""
import json
from pathlib import Path

import pytest

from mmbus.study.subsets import (grouped_stratified_order, labelled_subset, load_crops,
                                 write_share_datasets)

REPO = Path(__file__).resolve().parents[2]


def _records(n_benign_patients=30, n_malignant_patients=15, crops_per_patient=2):
    """Patients with 2 crops each; malignant patients have one malignant and one benign crop
    (mixed patient) except every third which is all malignant."""
    recs = []
    for p in range(n_benign_patients):
        for k in range(crops_per_patient):
            recs.append(dict(img_path=f'basic_train/b{p}_{k}.png', true_label=0, gt_label=0,
                             patient_id=f'B{p}', file_name=f'b{p}_{k}.png'))
    for p in range(n_malignant_patients):
        for k in range(crops_per_patient):
            lab = 1 if (k == 0 or p % 3 == 0) else 0
            recs.append(dict(img_path=f'extended_train/m{p}_{k}.png', true_label=lab, gt_label=-1,
                             patient_id=f'M{p}', file_name=f'm{p}_{k}.png'))
    return recs


def test_patients_never_split_and_strata_by_any_malignant():
    recs = _records()
    strata = grouped_stratified_order(recs, seed=0)
    # 30 benign patients, 15 patients with a malignant crop
    assert len(strata[0]) == 30 and len(strata[1]) == 15
    for lab, groups in strata.items():
        for g in groups:
            assert len({recs[i]['patient_id'] for i in g}) == 1
            assert max(recs[i]['true_label'] for i in g) == lab
    for share in (0.05, 0.1, 0.3, 0.5, 1.0):
        chosen = set(labelled_subset(recs, share, seed=3))
        pats_in = {recs[i]['patient_id'] for i in chosen}
        pats_out = {recs[i]['patient_id'] for i in range(len(recs)) if i not in chosen}
        assert not pats_in & pats_out, share


def test_counts_follow_share_per_stratum_and_both_classes_present():
    recs = _records()  # stratum 0: 60 crops, stratum 1: 30 crops, 2 crops per patient
    # share 0.1: targets round(6) -> 3 patients (6 crops) and round(3) -> 2 patients (4 crops)
    chosen = labelled_subset(recs, 0.1, seed=0)
    assert len(chosen) == 10
    # tiny share still labels one patient of each stratum (both classes known)
    tiny = labelled_subset(recs, 0.001, seed=0)
    strata = {max(r['true_label'] for r in recs if r['patient_id'] == recs[i]['patient_id'])
              for i in tiny}
    assert strata == {0, 1} and len(tiny) == 4
    assert len(labelled_subset(recs, 1.0, seed=0)) == len(recs)


def test_nested_and_seeded():
    recs = _records(40, 20)
    sets = [set(labelled_subset(recs, s, seed=7)) for s in (0.05, 0.1, 0.15, 0.3)]
    for small, big in zip(sets, sets[1:]):
        assert small <= big
    assert labelled_subset(recs, 0.3, seed=7) == labelled_subset(recs, 0.3, seed=7)
    assert labelled_subset(recs, 0.3, seed=7) != labelled_subset(recs, 0.3, seed=8)


def test_records_without_patient_are_their_own_group():
    recs = [dict(img_path=f'x{i}.png', true_label=i % 2, file_name=f'x{i}.png') for i in range(10)]
    strata = grouped_stratified_order(recs, 0)
    assert sum(len(g) for g in strata[0]) == 5 and all(len(g) == 1 for g in strata[0])


@pytest.mark.parametrize('share', [0, -0.1, 1.5])
def test_bad_share(share):
    with pytest.raises(ValueError, match='share'):
        labelled_subset(_records(), share)


def test_write_share_datasets(tmp_path):
    recs = _records()
    counts = write_share_datasets(recs, 0.1, str(tmp_path), seed=0)
    lab = json.loads((tmp_path / 'labelled.json').read_text())
    unl = json.loads((tmp_path / 'unlabelled.json').read_text())
    assert lab['metainfo']['classes'] == ['benign', 'malignant']
    assert counts['labelled'] == len(lab['data_list']) == 10
    assert counts['unlabelled'] == len(unl['data_list']) == len(recs) - 10
    assert all(r['gt_label'] == r['true_label'] for r in lab['data_list'])
    assert all(r['gt_label'] == -1 for r in unl['data_list'])
    # img_path untouched: still relative to the source crop dir
    assert lab['data_list'][0]['img_path'].split('/')[0] in ('basic_train', 'extended_train')
    assert counts['labelled_malignant'] == sum(r['true_label'] for r in lab['data_list'])
    assert not list(tmp_path.glob('*.tmp')) and not list(tmp_path.glob('tmp*'))


def test_load_crops_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.json'):
        load_crops(str(tmp_path / 'nope.json'))
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps(dict(data_list=[dict(img_path='a.png', gt_label=-1)])))
    with pytest.raises(ValueError, match=r'bad.json: data_list\[0\] \(a.png\)'):
        load_crops(str(bad))
    bad.write_text('[1, 2]')
    with pytest.raises(ValueError, match='data_list'):
        load_crops(str(bad))
    # gt_label stands in for a missing true_label
    ok = tmp_path / 'ok.json'
    ok.write_text(json.dumps(dict(data_list=[dict(img_path='a.png', gt_label=1)])))
    assert load_crops(str(ok))[0]['true_label'] == 1
