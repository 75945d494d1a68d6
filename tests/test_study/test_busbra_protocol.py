"""The BUS-BRA study's split protocol on the real data (skipped without BUS-BRA)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUSBRA = Path(os.environ.get('MMBUS_BUSBRA',
                             Path(__file__).resolve().parents[3] / 'shared/data/BUS-BRA/BUSBRA'))


@pytest.mark.skipif(not BUSBRA.is_dir(), reason=f'BUS-BRA not found at {BUSBRA} (set MMBUS_BUSBRA)')
def test_busbra_split_protocol(tmp_path):
    """The issue's protocol on the real data: patient-grouped, stratified 12/65/3/20 split, seed 0."""
    subprocess.run([sys.executable, str(REPO / 'tools/dataset_converters/bus_to_coco.py'), str(BUSBRA),
                    '--format', 'busbra', '--out-dir', str(tmp_path), '--split', 'ratios', '--ratios',
                    'basic_train=0.12,extended_train=0.65,val=0.03,test=0.2', '--seed', '0',
                    '--no-progress'], check=True, cwd=REPO, capture_output=True, timeout=600)
    splits = {s: json.loads((tmp_path / 'annotations' / f'{s}.json').read_text())
              for s in ('basic_train', 'extended_train', 'val', 'test')}
    n = {s: len(c['images']) for s, c in splits.items()}
    assert sum(n.values()) == 1875
    assert n['test'] == pytest.approx(0.2 * 1875, abs=15)
    assert (n['basic_train'] + n['val']) == pytest.approx(0.15 * 1875, abs=15)
    patients = {s: {im['patient_id'] for im in c['images']} for s, c in splits.items()}
    names = list(patients)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not patients[a] & patients[b], (a, b)
    for s, c in splits.items():  # stratified: malignant share near 607/1875 everywhere
        mal = sum(im['pathology'] == 'malignant' for im in c['images']) / len(c['images'])
        assert mal == pytest.approx(607 / 1875, abs=0.05), s
    assert all(im.get('label_hidden') for im in splits['extended_train']['images'])


@pytest.mark.skipif(not BUSBRA.is_dir(), reason=f'BUS-BRA not found at {BUSBRA} (set MMBUS_BUSBRA)')
def test_scanner_held_out(tmp_path):
    """GE scanners split by the protocol, Toshiba / U-Systems images (164) as the external test set: no
    image and no patient on both sides."""
    conv = str(REPO / 'tools/dataset_converters/bus_to_coco.py')
    held = 'device=Toshiba|U-Systems'
    subprocess.run([sys.executable, conv, str(BUSBRA), '--format', 'busbra', '--out-dir', str(tmp_path / 'ge'),
                    '--where-not', held, '--no-progress'], check=True, cwd=REPO, capture_output=True, timeout=600)
    subprocess.run([sys.executable, conv, str(BUSBRA), '--format', 'busbra', '--out-dir', str(tmp_path / 'ext'),
                    '--external-test', '--where', held, '--no-progress'], check=True, cwd=REPO,
                   capture_output=True, timeout=600)
    ext = json.loads((tmp_path / 'ext/annotations/test.json').read_text())
    assert len(ext['images']) == 164 and {im['device'].split()[0] for im in ext['images']} == {'Toshiba', 'U-Systems'}
    ge = [json.loads((tmp_path / 'ge/annotations' / f'{s}.json').read_text())['images']
          for s in ('basic_train', 'extended_train', 'val', 'test')]
    assert sum(map(len, ge)) == 1875 - 164
    assert all(im['device'].startswith('GE') for split in ge for im in split)
    assert not {im['patient_id'] for im in ext['images']} & {im['patient_id'] for split in ge for im in split}
    summary = json.loads((tmp_path / 'ge/annotations/conversion_report.json').read_text())['summary']
    assert summary['images_selected_out'] == 164
