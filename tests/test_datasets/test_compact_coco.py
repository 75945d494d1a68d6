"""The compact copy of a converted COCO dataset (tools/gpu/compact_coco.py) and the GPU kit's preparation
(tools/gpu/prepare_kit.py, dataset part only: the wheels need the package index)."""
import json
import os
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mmbus.datasets.converters.compact import SPLITS, compact_coco, scale_annotation

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / 'tools' / 'gpu'))
import compact_coco as compact_cli  # noqa: E402
import prepare_kit  # noqa: E402

# (split, file_name, (height, width), bbox): sizes differ so that scaling is checked per image
IMAGES = [('basic_train', 'Images/a.png', (300, 400), [40, 30, 100, 60]),
          ('extended_train', 'Images/sub/b.png', (120, 80), [10, 20, 30, 40]),
          ('val', 'Images/c.bmp', (50, 60), [5, 5, 10, 10]),
          ('test', 'Images/d.png', (500, 250), [25, 50, 100, 200])]


def make_dataset(root, colour=False):
    """A tiny converter-like dataset: one image per split file, with the converter's extra keys."""
    rng = np.random.default_rng(0)
    ann_dir = root / 'annotations'
    ann_dir.mkdir(parents=True)
    for k, (split, fn, (h, w), bbox) in enumerate(IMAGES, start=1):
        img = rng.integers(0, 256, (h, w, 3) if colour else (h, w), dtype=np.uint8)
        (root / fn).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / fn), img)
        coco = {'info': {'format': 'busbra'}, 'categories': [{'id': 1, 'name': 'nodule'}],
                'images': [{'id': k, 'file_name': fn, 'width': w, 'height': h, 'pathology': 'benign',
                            'patient_id': str(k), 'source': 'tiny', 'dhash': 'ab', 'pixel_sha1': 'cd',
                            'device': 'GE', 'fold5': 2, 'split': split, 'label_hidden': split == 'extended_train'}],
                'annotations': [{'id': k, 'image_id': k, 'category_id': 1, 'bbox': bbox,
                                 'area': bbox[2] * bbox[3], 'iscrowd': 0}]}
        (ann_dir / f'{split}.json').write_text(json.dumps(coco))
    return root


def load(out, split):
    return json.loads((out / 'annotations' / f'{split}.json').read_text())


def test_full_size_grey_jpeg_and_every_key_kept(tmp_path):
    src = make_dataset(tmp_path / 'src', colour=True)
    out = tmp_path / 'out'
    assert compact_cli.main([str(src), str(out)]) == 0
    for split, fn, (h, w), bbox in IMAGES:
        before = json.loads((src / 'annotations' / f'{split}.json').read_text())
        after = load(out, split)
        im = after['images'][0]
        assert im['file_name'] == 'images/' + os.path.splitext(fn)[0] + '.jpg'
        img = cv2.imread(str(out / im['file_name']), cv2.IMREAD_UNCHANGED)
        assert img.ndim == 2 and img.dtype == np.uint8 and img.shape == (h, w)   # one grey channel
        assert (out / im['file_name']).read_bytes()[:3] == b'\xff\xd8\xff'        # JPEG
        assert (im['width'], im['height']) == (w, h)
        # every other key as it was, boxes untouched at full size
        assert {k: v for k, v in im.items() if k != 'file_name'} == \
            {k: v for k, v in before['images'][0].items() if k != 'file_name'}
        assert after['annotations'] == before['annotations']
        assert after['categories'] == before['categories']
        assert after['info']['format'] == 'busbra' and after['info']['compact']['quality'] == 90
    meta = json.loads((out / 'COMPACT.json').read_text())
    assert meta['source'] == 'src' and meta['quality'] == 90 and meta['max_side'] is None
    assert meta['counts'] == {s: {'images': 1, 'annotations': 1} for s in SPLITS}
    assert meta['total_bytes'] == meta['bytes']['images'] + meta['bytes']['annotations'] + meta['bytes']['masks']
    jpgs = sum(p.stat().st_size for p in (out / 'images').rglob('*.jpg'))
    assert meta['bytes']['images'] == jpgs
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.')]   # no temp folder left


def test_max_side_scales_boxes_sizes_and_polygons(tmp_path):
    src = make_dataset(tmp_path / 'src')
    coco = json.loads((src / 'annotations' / 'basic_train.json').read_text())
    coco['annotations'][0]['segmentation'] = [[40, 30, 140, 30, 140, 90]]
    (src / 'annotations' / 'basic_train.json').write_text(json.dumps(coco))
    out = tmp_path / 'out'
    summary = compact_coco(str(src), str(out), quality=80, max_side=200, log=lambda s: None)
    a = load(out, 'basic_train')
    # 400x300 -> 200x150: every coordinate halves, the area quarters
    assert (a['images'][0]['width'], a['images'][0]['height']) == (200, 150)
    assert a['annotations'][0]['bbox'] == [20, 15, 50, 30]
    assert a['annotations'][0]['area'] == 1500
    assert a['annotations'][0]['segmentation'] == [[20, 15, 70, 15, 70, 45]]
    assert cv2.imread(str(out / a['images'][0]['file_name']), cv2.IMREAD_UNCHANGED).shape == (150, 200)
    # 250x500 (w x h) -> 100x200
    t = load(out, 'test')
    assert (t['images'][0]['width'], t['images'][0]['height']) == (100, 200)
    assert t['annotations'][0]['bbox'] == [10, 20, 40, 80]
    # smaller than max-side: unchanged
    v = load(out, 'val')
    assert (v['images'][0]['width'], v['images'][0]['height']) == (60, 50)
    assert v['annotations'][0]['bbox'] == [5, 5, 10, 10]
    assert summary['max_side'] == 200 and summary['quality'] == 80


def test_scale_annotation_rounds_and_refuses_rle():
    a = scale_annotation({'bbox': [10, 10, 10, 10], 'area': 100}, 1 / 3, 1 / 3, where='x.json')
    assert a['bbox'] == [3.33, 3.33, 3.33, 3.33] and a['area'] == 11.11
    with pytest.raises(ValueError, match='x.json.*RLE'):
        scale_annotation({'id': 1, 'segmentation': {'counts': 'x', 'size': [2, 2]}}, 0.5, 0.5, where='x.json')


def test_missing_split_file_is_named(tmp_path, capsys):
    src = make_dataset(tmp_path / 'src')
    (src / 'annotations' / 'val.json').unlink()
    assert compact_cli.main([str(src), str(tmp_path / 'out')]) == 1
    err = capsys.readouterr().err
    assert 'val.json' in err and 'missing' in err
    assert not (tmp_path / 'out').exists()


def test_missing_and_unreadable_images_are_named(tmp_path, capsys):
    src = make_dataset(tmp_path / 'src')
    (src / 'Images' / 'sub' / 'b.png').unlink()
    assert compact_cli.main([str(src), str(tmp_path / 'out')]) == 1
    err = capsys.readouterr().err
    assert 'Images/sub/b.png' in err and 'listed in extended_train.json' in err and 'missing on disk' in err
    src2 = make_dataset(tmp_path / 'src2')
    (src2 / 'Images' / 'c.bmp').write_bytes(b'not an image at all')
    with pytest.raises(ValueError, match=r'c\.bmp \(listed in val\.json\).*not an image'):
        compact_coco(str(src2), str(tmp_path / 'out2'), log=lambda s: None)
    assert not (tmp_path / 'out2').exists() and not [p for p in tmp_path.iterdir() if p.name.startswith('.')]


def test_ann_dir_option_rerun_and_foreign_output_folder(tmp_path, capsys):
    src = make_dataset(tmp_path / 'src')
    ann = tmp_path / 'converted' / 'annotations'
    ann.parent.mkdir()
    (src / 'annotations').rename(ann)
    out = tmp_path / 'out'
    assert compact_cli.main([str(src), str(out), '--ann-dir', str(ann), '--quality', '70']) == 0
    assert compact_cli.main([str(src), str(out), '--ann-dir', str(ann)]) == 0   # an earlier copy is replaced
    assert json.loads((out / 'COMPACT.json').read_text())['quality'] == 90
    other = tmp_path / 'other'
    other.mkdir()
    (other / 'keep.txt').write_text('x')
    assert compact_cli.main([str(src), str(other), '--ann-dir', str(ann)]) == 1
    assert 'not an earlier compact copy' in capsys.readouterr().err and (other / 'keep.txt').exists()
    assert compact_cli.main([str(src), str(tmp_path / 'o3'), '--ann-dir', str(ann), '--quality', '0']) == 1


# ----------------------------------------------------------------------------------------- prepare_kit
def test_prepare_kit_split_is_the_stage2_split():
    text = (REPO / 'configs' / 'studies' / 'busbra_stage2.py').read_text()
    m = re.search(r"ratios='([^']+)'", text)
    assert m and prepare_kit.SPLIT_ARGS == ['--split', 'ratios', '--ratios', m.group(1), '--seed', '0']
    assert re.search(r'seed=0', text)


def test_prepare_kit_argument_checks(tmp_path, capsys):
    def fails(*argv):
        with pytest.raises(SystemExit) as e:
            prepare_kit.parse_args([str(a) for a in argv])
        assert e.value.code == 2
        return capsys.readouterr().err

    assert '--busbra' in fails('--out', tmp_path / 'k')
    assert 'is not a folder' in fails('--busbra', tmp_path / 'nope', '--out', tmp_path / 'k')
    (tmp_path / 'raw').mkdir()
    assert 'no bus_data.csv' in fails('--busbra', tmp_path / 'raw', '--out', tmp_path / 'k')
    (tmp_path / 'raw' / 'bus_data.csv').write_text('ID\n')
    assert '--quality' in fails('--busbra', tmp_path / 'raw', '--out', tmp_path / 'k', '--quality', '101')
    (tmp_path / 'busy').mkdir()
    (tmp_path / 'busy' / 'notes.txt').write_text('x')
    assert 'other files' in fails('--busbra', tmp_path / 'raw', '--out', tmp_path / 'busy')


def test_requirement_filter():
    assert prepare_kit.needed('termcolor') == ('termcolor', '')
    assert prepare_kit.needed('Shapely>=1.8') == ('shapely', '>=1.8')
    assert prepare_kit.needed('tomli>=2.0.1; python_version < "3.11"') is None
    assert prepare_kit.needed('regex; sys_platform == "win32"') is None
    assert prepare_kit.needed('pytest; extra == "tests"') is None
    assert prepare_kit.dist_name('ordered_set-4.1.0-py3-none-any.whl') == 'ordered-set'
    assert prepare_kit.dist_name('mmcv-2.1.0.tar.gz') == 'mmcv'
    assert 'opencv-python' not in prepare_kit.PRESENT and 'opencv-python' in prepare_kit.SATISFIED_BY


def make_busbra(root, n_cases=12):
    """A BUS-BRA-like folder (bus_data.csv, Images/, Masks/) with two views for some cases."""
    rng = np.random.default_rng(1)
    (root / 'Images').mkdir(parents=True)
    (root / 'Masks').mkdir()
    rows = ['ID,Case,Histology,Pathology,BIRADS,Device,Width,Height,Side,BBOX']
    for case in range(1, n_cases + 1):
        for side in ('l', 'r') if case % 3 == 0 else ('s',):
            name = f'bus_{case:04d}-{side}'
            h, w = 48 + case, 64
            assert cv2.imwrite(str(root / 'Images' / f'{name}.png'), rng.integers(0, 256, (h, w), dtype=np.uint8))
            m = np.zeros((h, w), np.uint8)
            m[10:20, 12:30] = 255
            assert cv2.imwrite(str(root / 'Masks' / f'mask_{case:04d}-{side}.png'), m)
            path = 'malignant' if case % 2 else 'benign'
            rows.append(f'{name},{case},x,{path},4,GE,{w},{h},left,"[12,10,18,10]"')
    (root / 'bus_data.csv').write_text('\n'.join(rows) + '\n')
    return root


def test_prepare_kit_dataset_only(tmp_path, capsys):
    raw = make_busbra(tmp_path / 'BUSBRA')
    kit = tmp_path / 'kit'
    rc = prepare_kit.main(['--busbra', str(raw), '--out', str(kit), '--skip-wheels', '--workers', '1',
                           '--budget-mib', '0.001', '--quality', '85'])
    out = capsys.readouterr().out
    assert rc == 0
    meta = json.loads((kit / 'busbra' / 'COMPACT.json').read_text())
    assert meta['source'] == 'BUSBRA' and meta['quality'] == 75      # lowered 85 -> 80 -> 75, not further
    assert 'trying quality 80' in out and 'not lowered below 75' in out
    assert sum(c['images'] for c in meta['counts'].values()) == meta['images'] == 16
    for s in SPLITS:
        coco = json.loads((kit / 'busbra' / 'annotations' / f'{s}.json').read_text())
        for im in coco['images']:
            assert (kit / 'busbra' / im['file_name']).is_file() and im['device'] == 'GE' and im['patient_id']
    assert (kit / 'busbra' / 'split_summary.md').is_file() and not (kit / 'wheels').exists()
    assert 'carry=["' in out and 'run_busbra.sh --kit' in out and 'collect_results.py OUT/busbra_gpu.tar.gz' in out
    assert 'outside the repository' in out and 'of the 64 MiB limit' in out


def test_download_wheels_follows_requirements_and_adds_mmcv_build_needs(tmp_path, monkeypatch):
    """The download walk with a stand-in for pip (no index here): each package's Requires-Dist is followed
    unless the GPU machine has it, mmcv comes as the sdist, and a setuptools that still has pkg_resources
    (mmcv's setup.py imports it; setuptools 81 removed it) is carried to build mmcv with."""
    import io
    import tarfile
    import zipfile
    requires = {'mmengine': ['addict', 'numpy', 'termcolor>=1.1; python_version >= "3.8"'],
                'mmdet': ['terminaltables', 'pytest; extra == "tests"'], 'mmpretrain': [], 'pycocotools': [],
                'addict': [], 'termcolor': [], 'terminaltables': [], 'setuptools': []}
    asked = []

    def fake_pip_download(specs, dest, sdist=False):
        (spec,) = specs
        asked.append((spec, sdist))
        name = re.split(r'[=<>!~]', spec)[0]
        if sdist:  # mmcv: its runtime needs come from requirements/runtime.txt
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode='w:gz') as t:
                data = b'addict\nyapf\n'
                info = tarfile.TarInfo('mmcv-2.1.0/requirements/runtime.txt')
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
            Path(dest, 'mmcv-2.1.0.tar.gz').write_bytes(buf.getvalue())
            return
        requires.setdefault(name, [])
        with zipfile.ZipFile(Path(dest, f'{name}-1.0-py3-none-any.whl'), 'w') as z:
            z.writestr(f'{name}-1.0.dist-info/METADATA', 'Metadata-Version: 2.1\nName: ' + name + '\n' + ''.join(
                f'Requires-Dist: {r}\n' for r in requires[name]))

    monkeypatch.setattr(prepare_kit, 'pip_download', fake_pip_download)
    rows = prepare_kit.download_wheels(str(tmp_path / 'wheels'))
    why = {prepare_kit.dist_name(f): w for f, _, w in rows}
    assert set(why) == {'mmengine', 'mmdet', 'mmpretrain', 'pycocotools', 'addict', 'termcolor', 'terminaltables',
                        'mmcv', 'yapf', 'setuptools'}  # numpy is on the machine; pytest only for an extra
    assert why['addict'] == 'required by mmengine' and why['yapf'] == 'required by mmcv'
    assert ('mmcv==2.1.0', True) in asked and ('setuptools>=77,<81', False) in asked
    assert 'pkg_resources' in why['setuptools']
    assert sum(spec.startswith('addict') for spec, _ in asked) == 1  # asked for twice, downloaded once
