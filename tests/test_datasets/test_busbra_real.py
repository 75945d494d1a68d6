"""The real BUS-BRA dataset converts without error and matches its published numbers.

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
    assert conv['problems']['warning'] == 1            # bus_0845-s: CSV BBOX vs mask
    assert summary['all'] == {'benign': 1268, 'malignant': 607, 'normal': 0, 'total': 1875,
                              'patients': 1064, 'boxes': 1875}
    assert summary['patients_spanning_splits'] == 0
    assert summary['duplicate_pairs'] == 0             # no near duplicates in BUS-BRA
    rows = summary['splits']
    assert sum(r['total'] for r in rows.values()) == 1875
    # stratified: every split's malignant share within 2 points of 607/1875 = 32.4%
    for name, r in rows.items():
        assert abs(r['malignant'] / r['total'] - 607 / 1875) < 0.02, name
    ann = tmp_path / 'annotations'
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
