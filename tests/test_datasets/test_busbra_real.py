"""The real BUS-BRA dataset converts without error and matches its published numbers; the
leakage guard flags exactly the copies found (and checked by eye) there.

Skipped when the dataset folder is absent (set MMBUS_BUSBRA to point elsewhere).
"""
import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from mmbus.datasets.converters import convert_and_split

REPO = Path(__file__).resolve().parents[2]
BUSBRA = Path(os.environ.get('MMBUS_BUSBRA', REPO.parent / 'shared/data/BUS-BRA/BUSBRA'))

pytestmark = pytest.mark.skipif(
    not (BUSBRA / 'bus_data.csv').is_file(),
    reason=f'BUS-BRA not found at {BUSBRA} (set MMBUS_BUSBRA to the folder holding '
           'bus_data.csv, Images/ and Masks/)')


def test_busbra_converts_and_splits(tmp_path):
    summary = convert_and_split('busbra', str(BUSBRA), str(tmp_path), seed=0, workers=2,
                                verbose=False, progress=False)
    conv = summary['conversion']
    assert conv['problems']['error'] == 0 and conv['images_skipped'] == 0
    # bus_0845-s: CSV BBOX vs mask; three copies whose two masks disagree
    assert conv['problems']['warning'] == 4
    assert summary['all'] == {'benign': 1268, 'malignant': 607, 'normal': 0, 'total': 1875,
                              'patients': 1064, 'boxes': 1875}
    assert summary['patients_spanning_splits'] == 0
    # no exact or whole-image copies, but six re-crops: the same scan under two case
    # numbers (calipers on/off, another depth), each case's two views (see docs/converter.md)
    assert summary['duplicate_pairs_by_kind'] == {'recrop': 6}
    ann = tmp_path / 'annotations'
    groups = json.loads((ann / 'duplicates.json').read_text())['groups']
    assert sorted(g['file_names'] for g in groups) == [
        [f'Images/bus_{a}-{v}.png', f'Images/bus_{b}-{v}.png']
        for a, b in (('0044', '0065'), ('0056', '0091'), ('0341', '0356')) for v in 'lr']
    assert not any(g['label_conflict'] for g in groups)
    assert sorted(c['file_names'][0] for c in summary['mask_conflicts']) == [
        'Images/bus_0044-l.png', 'Images/bus_0056-l.png', 'Images/bus_0056-r.png']
    assert summary['duplicate_pairs_across_splits'] == 0
    rows = summary['splits']
    assert sum(r['total'] for r in rows.values()) == 1875
    # stratified: every split's malignant share within 2 points of 607/1875 = 32.4%
    for name, r in rows.items():
        assert abs(r['malignant'] / r['total'] - 607 / 1875) < 0.02, name
    report = json.loads((ann / 'conversion_report.json').read_text())
    warn = [p for p in report['problems'] if p['level'] == 'warning']
    assert warn[0]['path'] == 'Images/bus_0845-s.png'
    sizes = {p['path'] for p in report['problems'] if 'PNG size used' in p['message']}
    assert sizes == {f'Images/{n}.png' for n in ('bus_0856-l', 'bus_0857-r', 'bus_0912-l',
                                                 'bus_0990-l')}
    full = json.loads((ann / 'all.json').read_text())
    by_name = {im['file_name']: im for im in full['images']}
    boxes = {a['image_id']: a['bbox'] for a in full['annotations']}
    assert boxes[by_name['Images/bus_0845-s.png']['id']] == [291, 107, 87, 70]
    assert (by_name['Images/bus_0856-l.png']['width'],
            by_name['Images/bus_0856-l.png']['height']) == (387, 353)
    # -l/-r views of one case share the split
    per_case = defaultdict(set)
    for im in full['images']:
        per_case[im['patient_id']].add(im['split'])
    assert all(len(v) == 1 for v in per_case.values())
    assert Counter(im['split'] for im in full['images'])['extended_train'] == \
        rows['extended_train']['total']


KNOWN_COPIES = {(f'bus_{a}-{v}.png', f'bus_{b}-{v}.png')
                for a, b in (('0044', '0065'), ('0056', '0091'), ('0341', '0356')) for v in 'lr'}


@pytest.mark.slow
def test_guard_finds_generated_copies_among_busbra():
    """100 generated re-crops of BUS-BRA images hidden among all 1875: the figure quoted in
    docs/converter.md (about a minute)."""
    import sys

    import cv2
    import numpy as np

    from mmbus.datasets.converters.neardup import fingerprint
    from mmbus.datasets.converters.neardup_verify import find_recrops
    sys.path.insert(0, os.path.dirname(__file__))
    from test_recrop_guard import make_copy

    names = sorted(os.listdir(BUSBRA / 'Images'))
    images = [cv2.imread(str(BUSBRA / 'Images' / n), cv2.IMREAD_GRAYSCALE) for n in names]
    rng = np.random.default_rng(7)
    src = rng.choice(len(images), 100, replace=False)
    truth = set()
    for i in src:
        truth.add((int(i), len(images)))
        images.append(make_copy(images[i], rng)[0])
    found = {r['pair'] for r in find_recrops([fingerprint(g) for g in images], workers=2)}
    recall = len(found & truth) / len(truth)
    others = {(names[a], names[b]) for a, b in found - truth}
    print(f'\nBUS-BRA + 100 generated copies: recall {recall:.3f}, other pairs flagged: '
          f'{sorted(others)}')
    assert recall >= 0.95
    assert others == KNOWN_COPIES
