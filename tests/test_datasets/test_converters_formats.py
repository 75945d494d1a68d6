"""Every input format converts to the contract's COCO JSON (fixtures written into tmp_path)."""
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mmbus.datasets.converters import convert_and_split, convert_dataset, mask_boxes
from mmbus.datasets.converters.common import dhash

REPO = Path(__file__).resolve().parents[2]


def write_img(path, h=32, w=40, value=None, seed=0):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w), dtype=np.uint8) if value is None else \
        np.full((h, w), value, np.uint8)
    assert cv2.imwrite(str(path), img)
    return img


def write_mask(path, h=32, w=40, rects=()):
    """rects: (x, y, w, h) filled with 255."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((h, w), np.uint8)
    for x, y, rw, rh in rects:
        m[y:y + rh, x:x + rw] = 255
    assert cv2.imwrite(str(path), m)


def by_name(coco):
    anns = {}
    for a in coco['annotations']:
        anns.setdefault(a['image_id'], []).append(a['bbox'])
    return {im['file_name']: (im, anns.get(im['id'], [])) for im in coco['images']}


# ----------------------------------------------------------------------------- mask -> box
def test_mask_boxes_extent_and_regions():
    m = np.zeros((20, 30), bool)
    m[5:10, 10:20] = True        # rows 5..9, cols 10..19 -> x=10, y=5, w=10, h=5
    m[12:14, 2:4] = True         # second region: x=2, y=12, w=2, h=2
    assert mask_boxes(m) == [[2, 5, 18, 9]]  # extent of everything: cols 2..19, rows 5..13
    assert mask_boxes(m, per_region=True) == [[10, 5, 10, 5], [2, 12, 2, 2]]
    assert mask_boxes(m, per_region=True, min_region_area=5) == [[10, 5, 10, 5]]
    assert mask_boxes(np.zeros((4, 4), bool)) == []


def test_dhash_is_stable_under_rescaling():
    img = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 256, (64, 80), np.uint8),
                           (0, 0), 3)
    big = cv2.resize(img, (160, 128))
    a = np.unpackbits(np.frombuffer(bytes.fromhex(dhash(img)), np.uint8))
    b = np.unpackbits(np.frombuffer(bytes.fromhex(dhash(big)), np.uint8))
    assert a.size == 256 and (a != b).sum() <= 10


# ----------------------------------------------------------------------------- BUSI
def make_busi(root):
    write_img(root / 'benign' / 'benign (1).png', seed=1)
    write_mask(root / 'benign' / 'benign (1)_mask.png', rects=[(10, 5, 10, 5)])
    write_mask(root / 'benign' / 'benign (1)_mask_1.png', rects=[(25, 20, 4, 3)])
    write_img(root / 'benign' / 'benign (2).png', seed=2)
    # one mask, two separate regions of 20 px each (above the 16 px speck size)
    write_mask(root / 'benign' / 'benign (2)_mask.png', rects=[(2, 2, 5, 4), (30, 25, 5, 4)])
    write_img(root / 'malignant' / 'malignant (1).png', seed=3)
    write_mask(root / 'malignant' / 'malignant (1)_mask.png', rects=[(0, 0, 40, 1)])
    write_img(root / 'normal' / 'normal (1).png', seed=4)
    write_mask(root / 'normal' / 'normal (1)_mask.png')


def test_busi_layout(tmp_path):
    make_busi(tmp_path)
    out = convert_dataset('busi', str(tmp_path), workers=1)
    coco = out.coco
    assert coco['categories'] == [{'id': 1, 'name': 'nodule'}]
    imgs = by_name(coco)
    assert sorted(imgs) == ['benign/benign (1).png', 'benign/benign (2).png',
                            'malignant/malignant (1).png']  # normal excluded by default
    im, boxes = imgs['benign/benign (1).png']
    assert boxes == [[10, 5, 10, 5], [25, 20, 4, 3]]      # one box per mask file
    assert (im['width'], im['height'], im['pathology']) == (40, 32, 'benign')
    assert im['patient_id'] == 'benign (1)' and im['source'] == tmp_path.name
    assert imgs['benign/benign (2).png'][1] == [[2, 2, 33, 27]]  # extent of both regions
    several = [p for p in out.problems if 'separate regions' in p.message]
    assert [(p.level, p.path) for p in several] == [('warning', 'benign/benign (2)_mask.png')]
    assert '2 separate regions (20, 20 px)' in several[0].message
    assert imgs['malignant/malignant (1).png'][1] == [[0, 0, 40, 1]]
    assert [i['id'] for i in coco['images']] == [1, 2, 3]
    for a in coco['annotations']:
        assert a['area'] == a['bbox'][2] * a['bbox'][3]
        assert a['iscrowd'] == 0 and a['category_id'] == 1
    assert any('normal image(s) excluded' in p.message for p in out.problems)


def test_busi_per_region_and_normal(tmp_path):
    make_busi(tmp_path)
    coco = convert_dataset('busi', str(tmp_path), one_box_per_region=True, include_normal=True,
                           workers=1).coco
    imgs = by_name(coco)
    assert imgs['benign/benign (2).png'][1] == [[2, 2, 5, 4], [30, 25, 5, 4]]
    im, boxes = imgs['normal/normal (1).png']
    assert im['pathology'] == 'normal' and boxes == []


def test_busi_patients_csv(tmp_path):
    make_busi(tmp_path)
    (tmp_path / 'patients.csv').write_text(
        'image,patient\nbenign/benign (1).png,P7\nbenign (2).png,P7\n')
    out = convert_dataset('busi', str(tmp_path), workers=1)
    imgs = by_name(out.coco)
    assert imgs['benign/benign (1).png'][0]['patient_id'] == 'P7'
    assert imgs['benign/benign (2).png'][0]['patient_id'] == 'P7'
    # not listed -> warning, falls back to the name
    assert imgs['malignant/malignant (1).png'][0]['patient_id'] == 'malignant (1)'
    assert any(p.level == 'warning' and 'patients.csv' in p.message for p in out.problems)


# ----------------------------------------------------------------------------- BUS-BRA
def make_busbra(root):
    rows = ['ID,Case,Histology,Pathology,BIRADS,Device,Width,Height,Side,BBOX']
    specs = [('bus_0001-l', 1, 'malignant', (5, 6, 10, 8), (5, 6, 10, 8), 40, 32),
             ('bus_0001-r', 1, 'malignant', (7, 6, 9, 8), (7, 6, 9, 8), 40, 32),
             ('bus_0002-s', 2, 'benign', (20, 10, 6, 5), (2, 2, 30, 20), 40, 30)]  # bad BBOX
    for k, (name, case, path, rect, csv_box, w_csv, h_csv) in enumerate(specs):
        write_img(root / 'Images' / f'{name}.png', seed=k)
        write_mask(root / 'Masks' / f'mask_{name[4:]}.png', rects=[rect])
        rows.append(f'{name},{case},x,{path},4,GE,{w_csv},{h_csv},left,'
                    f'"[{",".join(map(str, csv_box))}]"')
    (root / 'bus_data.csv').write_text('\n'.join(rows) + '\n')
    (root / '5-fold-cv.csv').write_text('ID,Pathology,kFold\nbus_0001-l,malignant,3\n'
                                        'bus_0001-r,malignant,3\nbus_0002-s,benign,1\n')
    (root / 'Images' / 'Thumbs.db').write_bytes(b'\0\1')


def test_busbra_layout(tmp_path):
    make_busbra(tmp_path)
    out = convert_dataset('busbra', str(tmp_path), workers=1)
    imgs = by_name(out.coco)
    assert sorted(imgs) == ['Images/bus_0001-l.png', 'Images/bus_0001-r.png',
                            'Images/bus_0002-s.png']
    im, boxes = imgs['Images/bus_0002-s.png']
    assert boxes == [[20, 10, 6, 5]]                 # from the mask, not the CSV
    assert (im['width'], im['height']) == (40, 32)    # PNG size, not CSV 40x30
    assert im['patient_id'] == '2' and im['pathology'] == 'benign'
    assert imgs['Images/bus_0001-l.png'][0]['fold5'] == 3
    assert imgs['Images/bus_0001-l.png'][0]['patient_id'] == '1'
    warnings = [p for p in out.problems if p.level == 'warning']
    assert len(warnings) == 1 and warnings[0].path == 'Images/bus_0002-s.png'
    assert 'BBOX' in warnings[0].message
    infos = [str(p) for p in out.problems if p.level == 'info']
    assert any('40x30' in s and 'PNG size used' in s for s in infos)
    assert any('Thumbs.db' in s for s in infos)
    assert not any(k.startswith('_') for im, _ in imgs.values() for k in im)


# ----------------------------------------------------------------------------- generic
def test_generic_images_masks_labels(tmp_path):
    for k, name in enumerate(['a.png', 'b.png', 'c.png']):
        write_img(tmp_path / 'imgs' / name, seed=k)
    write_mask(tmp_path / 'msk' / 'a_seg.png', rects=[(1, 2, 3, 4)])
    write_mask(tmp_path / 'msk' / 'b_seg.png', rects=[(10, 10, 5, 5)])
    write_mask(tmp_path / 'msk' / 'b_seg2.png', rects=[(30, 1, 2, 2)])
    (tmp_path / 'labels.csv').write_text(
        'Image,Pathology,Patient\na.png,Benign,P1\nb.png,malignant,P1\nc.png,normal,P2\n')
    coco = convert_dataset('generic', str(tmp_path), include_normal=True, workers=1,
                           format_options=dict(images='imgs', masks='msk',
                                               mask_pattern='{stem}_seg*.png')).coco
    imgs = by_name(coco)
    assert imgs['imgs/a.png'][1] == [[1, 2, 3, 4]]
    assert imgs['imgs/b.png'][1] == [[10, 10, 5, 5], [30, 1, 2, 2]]
    assert imgs['imgs/b.png'][0]['pathology'] == 'malignant'
    assert imgs['imgs/a.png'][0]['patient_id'] == imgs['imgs/b.png'][0]['patient_id'] == 'P1'
    assert imgs['imgs/c.png'][1] == [] and imgs['imgs/c.png'][0]['pathology'] == 'normal'


def test_boxes_csv(tmp_path):
    write_img(tmp_path / 'im' / 'x.png', seed=1)
    write_img(tmp_path / 'im' / 'y.png', seed=2)
    write_img(tmp_path / 'im' / 'z.png', seed=3)
    (tmp_path / 'boxes.csv').write_text(
        'image,x1,y1,x2,y2,pathology,patient\n'
        'x.png,10,5,20,10,benign,P1\n'
        'x.png,0,0,4.5,3,benign,P1\n'
        'y.png,2,3,40,32,malignant,P2\n'
        'z.png,,,,,normal,P3\n')
    coco = convert_dataset('boxes-csv', str(tmp_path), include_normal=True, workers=1,
                           format_options=dict(images='im')).coco
    imgs = by_name(coco)
    assert imgs['im/x.png'][1] == [[10, 5, 10, 5], [0, 0, 4.5, 3]]  # x2 exclusive: w = x2-x1
    assert imgs['im/y.png'][1] == [[2, 3, 38, 29]]
    assert imgs['im/z.png'][1] == []
    ann = [a for a in coco['annotations'] if a['bbox'] == [0, 0, 4.5, 3]][0]
    assert ann['area'] == pytest.approx(13.5)


# ----------------------------------------------------------------------------- CLI + mmdet
def test_cli_busi_split_and_mmdet_loads(tmp_path, capsys):
    sys.path.insert(0, str(REPO / 'tools' / 'dataset_converters'))
    import bus_to_coco
    root = tmp_path / 'ds'
    for k in range(12):
        p = 'malignant' if k % 3 == 0 else 'benign'
        write_img(root / p / f'{p} ({k}).png', seed=k)
        write_mask(root / p / f'{p} ({k})_mask.png', rects=[(5, 5, 8 + k, 6)])
    out = tmp_path / 'out'
    rc = bus_to_coco.main(['--format', 'busi', str(root), '--out-dir', str(out), '--workers',
                           '1', '--seed', '3'])
    assert rc == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith('[mmbus] busi: 12 images, 12 boxes')
    names = sorted(os.listdir(out / 'annotations'))
    for f in ['all.json', 'basic_train.json', 'extended_train.json', 'val.json', 'test.json',
              'split_summary.md', 'split_summary.json', 'duplicates.json',
              'conversion_report.json']:
        assert f in names
    assert not [n for n in names if n.startswith('.tmp')]
    from mmdet.datasets import CocoDataset
    ds = CocoDataset(data_root=str(root), ann_file=str(out / 'annotations' / 'all.json'),
                     metainfo=dict(classes=('nodule',)), data_prefix=dict(img=''),
                     pipeline=[], filter_cfg=None)
    assert len(ds) == 12
    info = ds.get_data_info(0)
    assert os.path.isfile(info['img_path'])
    x, y, w, h = json.loads((out / 'annotations' / 'all.json').read_text())['annotations'][0][
        'bbox']
    assert info['instances'][0]['bbox'] == [x, y, x + w, y + h]
    assert info['instances'][0]['bbox_label'] == 0


def test_cli_rejects_option_of_other_format(tmp_path, capsys):
    sys.path.insert(0, str(REPO / 'tools' / 'dataset_converters'))
    import bus_to_coco
    make_busi(tmp_path)
    rc = bus_to_coco.main(['--format', 'busi', str(tmp_path), '--out-dir', str(tmp_path / 'o'),
                           '--boxes', 'b.csv'])
    assert rc == 2 and 'does not apply' in capsys.readouterr().err


def test_convert_and_split_no_split_writes_all_only(tmp_path):
    make_busi(tmp_path / 'ds')
    s = convert_and_split('busi', str(tmp_path / 'ds'), str(tmp_path / 'o'), split=False,
                          workers=1, verbose=False)
    assert s['all']['total'] == 3
    assert sorted(os.listdir(tmp_path / 'o' / 'annotations')) == ['all.json',
                                                                  'conversion_report.json']


def test_cli_runs_as_script_without_loading_torch(tmp_path):
    """As a script the CLI skips mmbus/__init__ (fast start-up) and still converts."""
    import subprocess
    make_busi(tmp_path / 'ds')
    script = str(REPO / 'tools' / 'dataset_converters' / 'bus_to_coco.py')
    r = subprocess.run([sys.executable, '-X', 'importtime', script, '--format', 'busi',
                        str(tmp_path / 'ds'), '--out-dir', str(tmp_path / 'out'),
                        '--split', 'none'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith('[mmbus] busi: 3 images')
    imported = {line.rsplit('|', 1)[-1].strip() for line in r.stderr.splitlines()
                if line.startswith('import time:')}
    assert 'mmbus.datasets.converters' in imported
    assert 'torch' not in imported and 'mmdet' not in imported
    assert (tmp_path / 'out' / 'annotations' / 'all.json').is_file()
