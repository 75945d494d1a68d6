"""tools/analysis/letterbox_crops.py: every crop becomes SIZE x SIZE exactly as LetterboxResize makes it,
the JSONs are copied unchanged, and a bad crop stops the tool with nothing written."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
TOOL = str(REPO / 'tools/analysis/letterbox_crops.py')


def _crops(root: Path):
    (root / 'test').mkdir(parents=True)
    rng = np.random.default_rng(0)
    tall = rng.integers(0, 255, (40, 20), dtype=np.uint8)   # 40 px high, 20 px wide
    cv2.imwrite(str(root / 'test' / 'a.png'), tall)
    data = dict(metainfo=dict(classes=['benign', 'malignant']),
                data_list=[dict(img_path='test/a.png', gt_label=1)])
    (root / 'test.json').write_text(json.dumps(data))
    return tall


def test_letterbox_copy(tmp_path):
    tall = _crops(tmp_path / 'src')
    r = subprocess.run([sys.executable, TOOL, str(tmp_path / 'src'), str(tmp_path / 'dst'), '--size', '16'],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = cv2.imread(str(tmp_path / 'dst' / 'test' / 'a.png'), cv2.IMREAD_UNCHANGED)
    assert out.shape == (16, 16)
    # 40x20 -> 16x8, centred: 4 padded columns (value 0) on each side, orientation kept
    assert (out[:, :4] == 0).all() and (out[:, 12:] == 0).all()
    expect = cv2.resize(tall, (8, 16), interpolation=cv2.INTER_LINEAR)
    assert np.abs(out[:, 4:12].astype(int) - expect.astype(int)).max() <= 1
    assert (tmp_path / 'dst' / 'test.json').read_text() == (tmp_path / 'src' / 'test.json').read_text()
    # the destination must not exist
    r = subprocess.run([sys.executable, TOOL, str(tmp_path / 'src'), str(tmp_path / 'dst')],
                       capture_output=True, text=True)
    assert r.returncode != 0 and 'exists' in r.stderr


def test_unreadable_crop_writes_nothing(tmp_path):
    _crops(tmp_path / 'src')
    (tmp_path / 'src' / 'test' / 'b.png').write_bytes(b'not a png')
    r = subprocess.run([sys.executable, TOOL, str(tmp_path / 'src'), str(tmp_path / 'dst')],
                       capture_output=True, text=True)
    assert r.returncode != 0 and 'b.png' in r.stderr
    assert not (tmp_path / 'dst').exists() and not (tmp_path / 'dst.tmp').exists()
