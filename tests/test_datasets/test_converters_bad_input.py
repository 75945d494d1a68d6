"""Bad input: every fault is named (file + what is wrong); strict mode lists them all and writes
nothing; lenient mode skips exactly the faulty images; odd image modes are converted."""
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from mmbus.datasets.converters import ConversionError, convert_and_split, convert_dataset
from mmbus.datasets.converters.coco_writer import write_json_atomic
from mmbus.datasets.converters.common import read_image

REPO = Path(__file__).resolve().parents[2]


def write_img(path, h=32, w=40, seed=0):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)


def write_mask(path, h=32, w=40, rect=(5, 5, 10, 8)):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((h, w), np.uint8)
    if rect:
        x, y, rw, rh = rect
        m[y:y + rh, x:x + rw] = 255
    assert cv2.imwrite(str(path), m)


def make_faulty_busi(root):
    """Two good images and one image per fault."""
    write_img(root / 'benign' / 'good1.png', seed=1)
    write_mask(root / 'benign' / 'good1_mask.png')
    write_img(root / 'malignant' / 'good2.png', seed=2)
    write_mask(root / 'malignant' / 'good2_mask.png')
    # corrupt: not a PNG at all
    (root / 'benign' / 'corrupt.png').write_bytes(b'this is not an image')
    write_mask(root / 'benign' / 'corrupt_mask.png')
    # truncated PNG (first half of a real file)
    write_img(root / 'benign' / 'trunc.png', h=64, w=64, seed=3)
    data = (root / 'benign' / 'trunc.png').read_bytes()
    (root / 'benign' / 'trunc.png').write_bytes(data[:len(data) // 2])
    write_mask(root / 'benign' / 'trunc_mask.png', h=64, w=64)
    # missing mask
    write_img(root / 'benign' / 'nomask.png', seed=4)
    # empty mask
    write_img(root / 'malignant' / 'empty.png', seed=5)
    write_mask(root / 'malignant' / 'empty_mask.png', rect=None)
    # mask size differs from the image
    write_img(root / 'malignant' / 'size.png', seed=6)
    write_mask(root / 'malignant' / 'size_mask.png', h=30, w=40)
    # unknown pathology folder
    write_img(root / 'suspicious' / 'x.png', seed=7)
    write_mask(root / 'suspicious' / 'x_mask.png')
    # stray files: ignored with a note
    (root / 'benign' / '.DS_Store').write_bytes(b'\0')
    (root / 'benign' / 'Thumbs.db').write_bytes(b'\0')
    (root / 'malignant' / 'notes.txt').write_text('hello')


EXPECTED_ERRORS = {
    'benign/corrupt.png': 'not an image: the content of this .png file is no known image format',
    'benign/trunc.png': 'unreadable or corrupt image',
    'benign/nomask.png': 'missing mask',
    'malignant/empty_mask.png': 'empty mask',
    'malignant/size_mask.png': 'mask size 40x30 (WxH) differs from image size 40x32',
    'suspicious/x.png': 'unknown pathology label "suspicious"',
}


def test_strict_lists_every_problem_and_writes_nothing(tmp_path):
    root, out = tmp_path / 'ds', tmp_path / 'out'
    make_faulty_busi(root)
    with pytest.raises(ConversionError) as ei:
        convert_and_split('busi', str(root), str(out), workers=1, verbose=False)
    errors = {p.path: p.message for p in ei.value.problems.errors()}
    assert set(errors) == set(EXPECTED_ERRORS)
    for path, fragment in EXPECTED_ERRORS.items():
        assert fragment in errors[path], (path, errors[path])
        assert path in str(ei.value)          # the exception text names every file
    infos = [p.path for p in ei.value.problems if p.level == 'info']
    for stray in ('benign/.DS_Store', 'benign/Thumbs.db', 'malignant/notes.txt'):
        assert stray in infos
    assert not out.exists()                   # no partial output


def test_lenient_skips_exactly_the_faulty_images(tmp_path):
    root, out = tmp_path / 'ds', tmp_path / 'out'
    make_faulty_busi(root)
    s = convert_and_split('busi', str(root), str(out), workers=1, verbose=False, lenient=True,
                          split=False)
    coco = json.loads((out / 'annotations' / 'all.json').read_text())
    assert sorted(im['file_name'] for im in coco['images']) == ['benign/good1.png', 'malignant/good2.png']
    # corrupt, trunc, nomask, empty, size + suspicious/x.png (rejected by the folder scan)
    assert s['conversion']['images_skipped'] == 6
    assert s['conversion']['images_found'] == 8
    report = json.loads((out / 'annotations' / 'conversion_report.json').read_text())
    assert {p['path'] for p in report['problems'] if p['level'] == 'error'} == \
        set(EXPECTED_ERRORS)


def test_cli_strict_exit_code_lists_all(tmp_path, capsys):
    sys.path.insert(0, str(REPO / 'tools' / 'dataset_converters'))
    import bus_to_coco
    make_faulty_busi(tmp_path / 'ds')
    rc = bus_to_coco.main(['--format', 'busi', str(tmp_path / 'ds'), '--out-dir',
                           str(tmp_path / 'out'), '--workers', '1'])
    err = capsys.readouterr().err
    assert rc == 1
    assert '6 problem(s) found' in err
    for path in EXPECTED_ERRORS:
        assert path in err
    assert 'FAILED' in err.strip().splitlines()[-1]
    rc = bus_to_coco.main(['--format', 'busi', str(tmp_path / 'ds'), '--out-dir',
                           str(tmp_path / 'out'), '--workers', '1', '--lenient'])
    assert rc == 0


def test_image_modes_are_converted(tmp_path):
    root = tmp_path / 'ds'
    (root / 'benign').mkdir(parents=True)
    rgb = np.zeros((32, 40, 3), np.uint8)
    rgb[..., 0] = 200                                      # pure red -> luma 0.299*200 = 60
    Image.fromarray(rgb, 'RGB').save(root / 'benign' / 'rgb.png')
    rgba = np.dstack([rgb, np.full((32, 40), 128, np.uint8)])
    Image.fromarray(rgba, 'RGBA').save(root / 'benign' / 'rgba.png')
    deep = np.tile(np.linspace(1000, 3000, 40).astype(np.uint16), (32, 1))  # 12-bit data
    Image.fromarray(deep).save(root / 'benign' / 'deep.png')
    for n in ('rgb', 'rgba', 'deep'):
        write_mask(root / 'benign' / f'{n}_mask.png')
    assert read_image(str(root / 'benign' / 'rgb.png')).gray[0, 0] == 60
    dec = read_image(str(root / 'benign' / 'deep.png'))
    assert dec.gray.dtype == np.uint8 and dec.gray.min() == 0 and dec.gray.max() == 255
    out = tmp_path / 'out'
    s = convert_and_split('busi', str(root), str(out), workers=1, verbose=False, split=False)
    assert s['conversion']['problems']['error'] == 0
    report = json.loads((out / 'annotations' / 'conversion_report.json').read_text())
    notes = {(p['path'], p['message']) for p in report['problems'] if p['level'] == 'info'}
    assert any(p == 'benign/rgb.png' and 'RGB image converted' in m for p, m in notes)
    assert any(p == 'benign/rgba.png' and 'alpha channel dropped' in m for p, m in notes)
    assert any(p == 'benign/deep.png' and 'rescaled' in m for p, m in notes)
    coco = json.loads((out / 'annotations' / 'all.json').read_text())
    deep_im = [im for im in coco['images'] if im.get('original_file_name') == 'benign/deep.png']
    assert len(deep_im) == 1
    copy = cv2.imread(str(root / deep_im[0]['file_name']), cv2.IMREAD_UNCHANGED)
    assert copy.dtype == np.uint8 and copy.shape == (32, 40) and copy.max() == 255
    assert deep_im[0]['file_name'].startswith('../out/converted_images/')


def test_generic_bad_labels_and_unlisted_images(tmp_path):
    for n in ('a', 'b', 'c'):
        write_img(tmp_path / 'images' / f'{n}.png')
        write_mask(tmp_path / 'masks' / f'{n}_mask.png')
    (tmp_path / 'labels.csv').write_text('image,pathology\na.png,benign\nb.png,maybe\n'
                                         'd.png,benign\n')
    with pytest.raises(ConversionError) as ei:
        convert_dataset('generic', str(tmp_path), workers=1)
    errs = {p.path: p.message for p in ei.value.problems.errors()}
    assert 'unknown pathology label "maybe" (labels.csv line 3)' in errs['images/b.png']
    assert 'image file is missing' in errs['images/d.png']
    assert 'no row in labels.csv' in errs['images/c.png']
    assert len(errs) == 3


def test_boxes_csv_bad_rows(tmp_path):
    write_img(tmp_path / 'a.png')
    write_img(tmp_path / 'b.png')
    write_img(tmp_path / 'c.png')
    (tmp_path / 'boxes.csv').write_text('image,x1,y1,x2,y2,pathology\n'
                                        'a.png,1,1,x,5,benign\n'          # non-numeric
                                        'b.png,10,10,5,20,benign\n'       # x2 < x1
                                        'c.png,30,20,50,30,malignant\n')  # outside 40x32
    with pytest.raises(ConversionError) as ei:
        convert_dataset('boxes-csv', str(tmp_path), workers=1)
    errs = {p.path: p.message for p in ei.value.problems.errors()}
    assert 'non-numeric' in errs['a.png'] and 'x2<=x1' in errs['b.png']
    assert 'outside the 40x32 image' in errs['c.png']


def test_busbra_missing_files(tmp_path):
    write_img(tmp_path / 'Images' / 'bus_0001-s.png')
    write_img(tmp_path / 'Images' / 'bus_0003-s.png')
    (tmp_path / 'Masks').mkdir()
    (tmp_path / 'bus_data.csv').write_text('ID,Case,Pathology\nbus_0001-s,1,benign\n'
                                           'bus_0002-s,2,malignant\n')
    with pytest.raises(ConversionError) as ei:
        convert_dataset('busbra', str(tmp_path), workers=1)
    errs = {p.path: p.message for p in ei.value.problems.errors()}
    assert errs == {'Images/bus_0001-s.png': 'missing mask for benign image (looked for '
                                             'Masks/mask_0001-s.png; --masks names another mask '
                                             'folder)',
                    'Images/bus_0002-s.png': 'listed in bus_data.csv (line 3) but the image '
                                             'file is missing',
                    'Images/bus_0003-s.png': 'image has no row in bus_data.csv '
                                             '(pathology unknown)'}


def test_json_written_atomically(tmp_path, monkeypatch):
    target = tmp_path / 'a.json'
    write_json_atomic({'ok': 1}, str(target))

    def broken_dump(obj, f, **kw):
        f.write('{"partial": ')
        raise RuntimeError('disk full')

    monkeypatch.setattr(json, 'dump', broken_dump)
    with pytest.raises(RuntimeError):
        write_json_atomic({'ok': 2}, str(target))
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {'ok': 1}   # old file intact
    assert os.listdir(tmp_path) == ['a.json']            # no temp file left


def test_image_selection_by_hand_and_bad_selections():
    from mmbus.datasets.converters.convert import select_images
    coco = dict(images=[dict(id=1, device='GE Logiq 5'), dict(id=2, device='Toshiba Aplio'),
                        dict(id=3, device='U-Systems'), dict(id=4)],
                annotations=[dict(id=10, image_id=1), dict(id=11, image_id=2), dict(id=12, image_id=3)])
    kept, dropped = select_images(coco, where=['device=Toshiba|U-Systems'])
    assert [im['id'] for im in kept['images']] == [2, 3] and dropped == 2
    assert [a['id'] for a in kept['annotations']] == [11, 12]
    kept, dropped = select_images(coco, where_not=['device=Toshiba|U-Systems'])
    assert [im['id'] for im in kept['images']] == [1, 4]  # no device: not a match, kept
    assert select_images(coco) == (coco, 0)
    with pytest.raises(ValueError, match="expected KEY=REGEX"):
        select_images(coco, where=['Toshiba'])
    with pytest.raises(ValueError, match="no image carries 'scanner' \\(keys: device, id\\)"):
        select_images(coco, where=['scanner=GE'])
    with pytest.raises(ValueError, match='keeps no image'):
        select_images(coco, where=['device=Philips'])
