"""Rough edges seen on real public sets: file permissions, the missing-mask message, masks with
several regions and specks, messages of failed runs, non-image files named like images."""
import json
import os
import stat
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mmbus.datasets.converters import (ConversionError, convert_and_split, convert_dataset,
                                       mask_boxes)
from mmbus.datasets.converters.coco_writer import write_json_atomic, write_text_atomic
from mmbus.datasets.converters.masks import DEFAULT_MIN_REGION_AREA, analyse_mask

REPO = Path(__file__).resolve().parents[2]


def write_img(path, h=48, w=64, seed=0):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)


def write_mask(path, rects, h=48, w=64):
    """rects: (x, y, w, h) filled with 255."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((h, w), np.uint8)
    for x, y, rw, rh in rects:
        m[y:y + rh, x:x + rw] = 255
    assert cv2.imwrite(str(path), m)


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# ----------------------------------------------------------------------------- permissions
@pytest.mark.parametrize('umask', [0o022, 0o002, 0o077])
def test_outputs_get_the_umask_permissions(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_json_atomic({'a': 1}, str(tmp_path / 'a.json'))
        write_text_atomic('x', str(tmp_path / 'b.md'))
    finally:
        os.umask(old)
    assert mode_of(tmp_path / 'a.json') == 0o666 & ~umask      # not mkstemp's 0600
    assert mode_of(tmp_path / 'b.md') == 0o666 & ~umask


def test_converter_outputs_are_readable_by_others(tmp_path):
    root = tmp_path / 'ds'
    for k in range(3):
        write_img(root / 'benign' / f'b{k}.png', seed=k)
        write_mask(root / 'benign' / f'b{k}_mask.png', [(10, 10, 20, 12)])
    old = os.umask(0o022)
    try:
        convert_and_split('busi', str(root), str(tmp_path / 'out'), workers=1, verbose=False)
    finally:
        os.umask(old)
    files = sorted((tmp_path / 'out' / 'annotations').iterdir())
    assert len(files) >= 8
    assert {f.name: mode_of(f) for f in files} == {f.name: 0o644 for f in files}


# ----------------------------------------------------------------------------- missing masks
def make_generic(root, mask_names):
    write_img(root / 'images' / 'case1.png', seed=1)
    write_img(root / 'images' / 'case2.png', seed=2)
    for n in mask_names:
        write_mask(root / 'masks' / n, [(5, 5, 20, 10)])
    (root / 'labels.csv').write_text('image,pathology\ncase1.png,benign\ncase2.png,malignant\n')


def test_missing_mask_names_the_pattern_and_the_option(tmp_path):
    make_generic(tmp_path, ['case1.png', 'case2.png'])    # masks carry the images' names
    with pytest.raises(ConversionError) as ei:
        convert_dataset('generic', str(tmp_path), workers=1)
    errs = {p.path: p.message for p in ei.value.problems.errors()}
    assert set(errs) == {'images/case1.png', 'images/case2.png'}
    msg = errs['images/case1.png']
    assert 'no file matched masks/case1_mask*.png (--mask-pattern "{stem}_mask*.png")' in msg
    assert 'masks/case1.png exists' in msg and '--mask-pattern "{name}"' in msg
    # ... and the option it names fixes it
    out = convert_dataset('generic', str(tmp_path), workers=1,
                          format_options={'mask_pattern': '{name}'})
    assert len(out.coco['annotations']) == 2


def test_missing_mask_without_a_same_name_file(tmp_path):
    make_generic(tmp_path, ['case2_mask.png'])
    with pytest.raises(ConversionError) as ei:
        convert_dataset('generic', str(tmp_path), workers=1)
    (p,) = ei.value.problems.errors()
    assert p.path == 'images/case1.png'
    assert 'no file matched masks/case1_mask*.png' in p.message
    assert 'exists' not in p.message      # no false lead


def test_busi_missing_mask_says_where_it_looked(tmp_path):
    write_img(tmp_path / 'benign' / 'x.png')
    with pytest.raises(ConversionError) as ei:
        convert_dataset('busi', str(tmp_path), workers=1)
    assert ei.value.problems.errors()[0].message == (
        'missing mask for benign image (looked for benign/x_mask.png and benign/x_mask_<n>.png)')


# ----------------------------------------------------------------------------- regions, specks
def test_specks_are_left_out_by_default():
    m = np.zeros((60, 80), bool)
    m[20:40, 30:50] = True                  # the lesion: 400 px
    m[10, 70] = True                        # 1 px speck
    m[50:52, 5:9] = True                    # 8 px speck
    assert DEFAULT_MIN_REGION_AREA == 16
    r = analyse_mask(m, min_region_area=DEFAULT_MIN_REGION_AREA)
    assert r.boxes == [[30, 20, 20, 20]]    # not widened to [5, 10, 66, 42]
    assert r.areas == [400] and r.specks == [1, 8]
    assert mask_boxes(m) == [[5, 10, 66, 42]]                       # min area 1: everything
    assert mask_boxes(m, per_region=True) == [[70, 10, 1, 1], [30, 20, 20, 20], [5, 50, 4, 2]]
    assert mask_boxes(m, per_region=True, min_region_area=16) == [[30, 20, 20, 20]]
    tiny = np.zeros((20, 20), bool)
    tiny[5:8, 5:8] = True                   # a 9 px lesion alone is kept: it is the largest
    assert mask_boxes(tiny, min_region_area=16) == [[5, 5, 3, 3]]


def test_several_regions_warn_and_are_counted(tmp_path):
    root = tmp_path / 'ds'
    write_img(root / 'benign' / 'two.png', seed=1)
    write_mask(root / 'benign' / 'two_mask.png', [(5, 5, 10, 10), (40, 30, 8, 6)])
    write_img(root / 'benign' / 'speck.png', seed=2)
    write_mask(root / 'benign' / 'speck_mask.png', [(5, 5, 10, 10), (50, 40, 2, 2)])
    write_img(root / 'benign' / 'one.png', seed=3)
    write_mask(root / 'benign' / 'one_mask.png', [(5, 5, 10, 10)])
    s = convert_and_split('busi', str(root), str(tmp_path / 'out'), workers=1, verbose=False,
                          split=False)
    assert s['conversion']['masks_with_several_regions'] == 1
    assert s['conversion']['mask_specks_left_out'] == 1
    report = json.loads((tmp_path / 'out' / 'annotations' / 'conversion_report.json')
                        .read_text())['problems']
    by = {(p['level'], p['path']): p['message'] for p in report}
    assert by[('warning', 'benign/two_mask.png')] == (
        'mask has 2 separate regions (100, 48 px); one box around all of them '
        '(--one-box-per-region gives one box each)')
    assert '1 speck(s) of 4 px left out' in by[('info', 'benign/speck_mask.png')]
    coco = json.loads((tmp_path / 'out' / 'annotations' / 'all.json').read_text())
    boxes = {im['file_name']: [a['bbox'] for a in coco['annotations'] if a['image_id'] == im['id']]
             for im in coco['images']}
    assert boxes['benign/two.png'] == [[5, 5, 43, 31]]
    assert boxes['benign/speck.png'] == [[5, 5, 10, 10]]     # the speck does not widen it
    per = convert_dataset('busi', str(root), workers=1, one_box_per_region=True).coco
    assert len(per['annotations']) == 4                      # 2 + 1 + 1, no 4 px box
    assert min(a['area'] for a in per['annotations']) == 48
    keep = convert_dataset('busi', str(root), workers=1, min_region_area=1).coco
    widened = [a['bbox'] for a in keep['annotations'] if a['image_id'] == 2]
    assert widened == [[5, 5, 47, 37]]                       # --min-region-area 1: as before


# ----------------------------------------------------------------------------- failed runs
def faulty_busi(root):
    write_img(root / 'benign' / 'nomask.png', seed=1)
    (root / 'benign' / 'bad.png').write_bytes(b'not an image at all')
    write_mask(root / 'benign' / 'bad_mask.png', [(1, 1, 5, 5)])


def test_failed_strict_run_leaves_old_annotations_and_says_so(tmp_path, capsys):
    sys.path.insert(0, str(REPO / 'tools' / 'dataset_converters'))
    import bus_to_coco
    good, out = tmp_path / 'good', tmp_path / 'out'
    write_img(good / 'benign' / 'a.png')
    write_mask(good / 'benign' / 'a_mask.png', [(5, 5, 10, 10)])
    assert bus_to_coco.main(['--format', 'busi', str(good), '--out-dir', str(out),
                             '--workers', '1', '--split', 'none']) == 0
    before = (out / 'annotations' / 'all.json').read_bytes()
    faulty_busi(tmp_path / 'bad')
    capsys.readouterr()
    assert bus_to_coco.main(['--format', 'busi', str(tmp_path / 'bad'), '--out-dir', str(out),
                             '--workers', '1']) == 1
    err = capsys.readouterr().err
    ann = os.path.join(str(out), 'annotations')
    assert f'The files already in {ann} were left as they were' in err
    assert f'the files already in {ann} were left as they were' in err.strip().splitlines()[-1]
    assert (out / 'annotations' / 'all.json').read_bytes() == before
    # into a fresh folder there is nothing to mention
    assert bus_to_coco.main(['--format', 'busi', str(tmp_path / 'bad'), '--out-dir',
                             str(tmp_path / 'fresh'), '--workers', '1']) == 1
    assert 'left as they were' not in capsys.readouterr().err


def test_lenient_with_every_image_bad_does_not_suggest_lenient(tmp_path):
    faulty_busi(tmp_path)
    with pytest.raises(ConversionError) as ei:
        convert_dataset('busi', str(tmp_path), workers=1, lenient=True)
    msg = str(ei.value)
    assert 'no image could be converted' in msg and '--lenient' not in msg
    with pytest.raises(ConversionError) as ei:             # strict still suggests it
        convert_dataset('busi', str(tmp_path), workers=1)
    assert 'rerun with --lenient' in str(ei.value)


# ----------------------------------------------------------------------------- non-images
def test_generic_non_image_named_png_is_not_an_image(tmp_path):
    make_generic(tmp_path, ['case1_mask.png', 'case2_mask.png'])
    (tmp_path / 'images' / 'notes.png').write_text('exported by a script\n')
    out = convert_dataset('generic', str(tmp_path), workers=1)      # strict: not an error
    (p,) = [p for p in out.problems if p.path == 'images/notes.png']
    assert p.level == 'warning' and p.message.startswith('not an image')
    assert 'no row in' in p.message and 'ignored' in p.message
    # a real image without a row is still an error
    write_img(tmp_path / 'images' / 'case3.png', seed=3)
    with pytest.raises(ConversionError) as ei:
        convert_dataset('generic', str(tmp_path), workers=1)
    assert [(e.path, e.message) for e in ei.value.problems.errors()] == [
        ('images/case3.png', 'image has no row in labels.csv (pathology unknown)')]


def test_listed_non_image_is_named_not_an_image(tmp_path):
    make_generic(tmp_path, ['case1_mask.png', 'case2_mask.png'])
    (tmp_path / 'images' / 'case2.png').write_bytes(b'%PDF-1.4 not a png')
    with pytest.raises(ConversionError) as ei:
        convert_dataset('generic', str(tmp_path), workers=1)
    (e,) = ei.value.problems.errors()
    assert e.path == 'images/case2.png'
    assert e.message == ("not an image: the content of this .png file is no known image format "
                         "(starts with b'%PDF-1.4')")


@pytest.mark.parametrize('fmt, csv, header', [('generic', 'labels.csv', 'image,pathology'),
                                              ('boxes-csv', 'boxes.csv', 'image,x1,y1,x2,y2,pathology')])
def test_a_csv_with_a_header_alone_says_it_lists_no_image(tmp_path, fmt, csv, header):
    make_generic(tmp_path, ['case1_mask.png', 'case2_mask.png'])
    (tmp_path / csv).write_text(header + '\n')
    with pytest.raises(ConversionError) as ei:
        convert_dataset(fmt, str(tmp_path), workers=1)
    assert [(e.path, e.message) for e in ei.value.problems.errors()] == [
        (csv, 'no rows: the CSV lists no image (one row per image under its header)')]


# ----------------------------------------------------------------------------- small datasets, mixed folders
def small_busi(root, n=3):
    for k in range(n):
        write_img(root / 'benign' / f'b{k}.png', seed=k)
        write_mask(root / 'benign' / f'b{k}_mask.png', [(10, 10, 20, 12)])


def test_splits_left_empty_are_warned_of(tmp_path):
    """Three images cannot fill four splits: each split asked for and left empty is a warning in the console
    and the report (training would fail on an empty validation file); a split set to 0 is empty on purpose."""
    small_busi(tmp_path / 'ds')
    convert_and_split('busi', str(tmp_path / 'ds'), str(tmp_path / 'out'), workers=1, verbose=False)
    report = json.loads((tmp_path / 'out' / 'annotations' / 'conversion_report.json').read_text())
    warned = {p['path']: p['message'] for p in report['problems'] if p['level'] == 'warning'}
    empty = {s for s in ('basic_train', 'extended_train', 'val', 'test')
             if not json.loads((tmp_path / 'out' / 'annotations' / f'{s}.json').read_text())['images']}
    assert empty and set(warned) == {f'{s}.json' for s in empty}
    assert warned['val.json'].startswith('no image: 3 images in 3 patient groups gave val none (asked for about 0.1')
    convert_and_split('busi', str(tmp_path / 'ds'), str(tmp_path / 'out0'), workers=1, verbose=False,
                      ratios=dict(basic_train=0.34, extended_train=0.0, val=0.33, test=0.33))
    report = json.loads((tmp_path / 'out0' / 'annotations' / 'conversion_report.json').read_text())
    assert not [p for p in report['problems'] if p['level'] == 'warning']  # extended_train=0: on purpose


def test_a_folder_never_mixes_two_conversions(tmp_path):
    """An external test set written over a split folder would leave the old basic_train.json beside a new
    test.json holding the same images: refused before anything is converted, every file as it was."""
    small_busi(tmp_path / 'ds', n=6)
    out = tmp_path / 'out'
    convert_and_split('busi', str(tmp_path / 'ds'), str(out), workers=1, verbose=False)
    before = {f.name: f.read_bytes() for f in (out / 'annotations').iterdir()}
    with pytest.raises(ValueError, match=r'annotations holds all\.json, basic_train\.json, extended_train\.json, '
                                         r'val\.json from an earlier conversion, which this one \(an external test '
                                         r'set, test\.json alone\) would not replace'):
        convert_and_split('busi', str(tmp_path / 'ds'), str(out), workers=1, verbose=False, external_test=True)
    assert {f.name: f.read_bytes() for f in (out / 'annotations').iterdir()} == before
    # the same kind of conversion again replaces every file it wrote; a split replaces an external set's
    ext = tmp_path / 'ext'
    for _ in range(2):
        convert_and_split('busi', str(tmp_path / 'ds'), str(ext), workers=1, verbose=False, external_test=True)
    with pytest.raises(ValueError, match=r'holds test\.json from an earlier conversion, which this one \(all\.json '
                                         r'without a split\) would not replace'):
        convert_and_split('busi', str(tmp_path / 'ds'), str(ext), workers=1, verbose=False, split=False)
    convert_and_split('busi', str(tmp_path / 'ds'), str(ext), workers=1, verbose=False)
    assert len(json.loads((ext / 'annotations' / 'all.json').read_text())['images']) == 6
