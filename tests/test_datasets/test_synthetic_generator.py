"""Synthetic generator: layout, determinism, BI-RADS cue behaviour, difficulty, and the whole
path synthetic -> converter -> mmdet CocoDataset."""
import csv
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from mmbus.datasets.converters import convert_and_split
from mmbus.datasets.synthetic import CUE_NAMES, STYLES, NoduleCues, render_case, sample_cues, sample_shape
from mmbus.datasets.synthetic_dataset import make_synthetic_dataset

REPO = Path(__file__).resolve().parents[2]


def digest(root):
    h = hashlib.sha1()
    for p in sorted(Path(root).rglob('*.png')):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_layout_patients_and_masks(tmp_path):
    s = make_synthetic_dataset(str(tmp_path), n_images=24, malignant_fraction=0.25, n_normal=2,
                               seed=3, two_view_fraction=0.5, progress=False)
    assert (s['images'], s['benign'], s['malignant'], s['normal']) == (26, 18, 6, 2)
    rows = read_csv(tmp_path / 'patients.csv')
    assert len(rows) == 26
    per_patient = {}
    for r in rows:
        per_patient.setdefault(r['patient'], []).append(r['image'])
    assert s['patients'] == len(per_patient)
    two = [v for v in per_patient.values() if len(v) == 2]
    assert two, 'some patients must have two views'
    for v in two:  # two views: same folder (pathology), -l and -r
        assert sorted(Path(x).stem[-2:] for x in v) == ['-l', '-r']
        assert len({Path(x).parent.name for x in v}) == 1
    meta = {r['image']: r for r in read_csv(tmp_path / 'synthetic_meta.csv')}
    import cv2
    for r in rows:
        img = cv2.imread(str(tmp_path / r['image']), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(tmp_path / r['image']).replace('.png', '_mask.png'), 0)
        assert img.dtype == np.uint8 and img.ndim == 2 and img.shape == mask.shape
        assert img.shape[1] == 256 and 200 <= img.shape[0] <= 256
        if r['image'].startswith('normal/'):
            assert mask.max() == 0
            continue
        ys, xs = np.nonzero(mask)
        box = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert ' '.join(map(str, box)) == meta[r['image']]['boxes'].split(';')[0]
        inside = img[mask > 0].mean()
        assert inside < img[img > 0].mean()          # nodules are hypoechoic


def test_deterministic_and_seed_dependent(tmp_path):
    kw = dict(n_images=6, progress=False)
    make_synthetic_dataset(str(tmp_path / 'a1'), seed=1, **kw)
    make_synthetic_dataset(str(tmp_path / 'a2'), seed=1, **kw)
    make_synthetic_dataset(str(tmp_path / 'a3'), seed=2, **kw)
    assert digest(tmp_path / 'a1') == digest(tmp_path / 'a2')
    assert digest(tmp_path / 'a1') != digest(tmp_path / 'a3')


def test_process_pool_gives_identical_files(tmp_path):
    kw = dict(n_images=50, seed=4, progress=False)   # >= 32 patients -> pool is used
    make_synthetic_dataset(str(tmp_path / 'w1'), workers=1, **kw)
    make_synthetic_dataset(str(tmp_path / 'w2'), workers=2, **kw)
    assert digest(tmp_path / 'w1') == digest(tmp_path / 'w2')
    assert (tmp_path / 'w1' / 'synthetic_meta.csv').read_text() == \
        (tmp_path / 'w2' / 'synthetic_meta.csv').read_text()


def test_style_b_differs(tmp_path):
    s = make_synthetic_dataset(str(tmp_path), n_images=4, style='b', progress=False)
    assert s['style'] == 'b'
    import cv2
    for p in Path(tmp_path).rglob('*-?.png'):
        img = cv2.imread(str(p), 0)
        assert img.shape[1] == STYLES['b'].width and img.shape[0] >= 240
    with pytest.raises(ValueError, match='unknown style'):
        make_synthetic_dataset(str(tmp_path / 'x'), n_images=2, style='z')


def _mean_cues(malignant, difficulty, n=3000):
    rng = np.random.default_rng(0)
    cues = [sample_cues(rng, malignant, difficulty) for _ in range(n)]
    return np.array([[getattr(c, k) for k in CUE_NAMES] for c in cues])


def test_difficulty_controls_class_overlap():
    """Ideal-observer AUC on the summed latent cues follows Phi(D/sqrt2)."""
    from math import erf

    def auc(pos, neg):
        scores = np.r_[pos, neg]
        ranks = scores.argsort().argsort() + 1
        return (ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))

    def logit(t):
        return np.log(t / (1 - t))

    # 0.3: the main job's difficulty (D = 4 * 0.7^1.15 = 2.656, Phi(2.656 / sqrt 2) = 0.970)
    for difficulty, expected in ((0.0, 0.998), (0.3, 0.970), (0.5, 0.90), (1.0, 0.5)):
        mal = logit(_mean_cues(True, difficulty)).sum(1)
        ben = logit(_mean_cues(False, difficulty)).sum(1)
        d = 4.0 * (1 - difficulty) ** 1.15
        assert 0.5 * (1 + erf(d / 2)) == pytest.approx(expected, abs=0.01)
        assert auc(mal, ben) == pytest.approx(expected, abs=0.03)


def test_malignant_nodules_taller_and_more_irregular():
    """With easy data the rendered masks follow the BI-RADS cues: malignant nodules are
    taller-than-wide more often and less convex (irregular/spiculated margins)."""
    import cv2
    rng = np.random.default_rng(1)
    stats = {True: [], False: []}
    for i in range(60):
        malignant = i % 2 == 0
        c = sample_cues(rng, malignant, 0.0)
        case = render_case(rng, 'x', STYLES['a'], [c], [sample_shape(rng, c)])
        m = case.masks[0]
        x, y, w, h = case.boxes[0]
        cnt = max(cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0],
                  key=cv2.contourArea)
        solidity = cv2.contourArea(cnt) / cv2.contourArea(cv2.convexHull(cnt))
        stats[malignant].append((h / w, solidity))
    mal, ben = np.array(stats[True]), np.array(stats[False])
    assert mal[:, 0].mean() > 1.0 > ben[:, 0].mean()       # taller-than-wide vs parallel
    assert mal[:, 1].mean() < ben[:, 1].mean() - 0.03      # less convex


def test_microcalcifications_survive_the_recognisers_input_size():
    """A crop letterboxed to the cpu-quick recogniser's 32 px: the brightest pixels inside the nodule (mask
    eroded by 2 px) are bright flecks when the calcification cue is on and dark tissue when it is off (a
    one-pixel dot would be averaged away by the ~2.5x downscale)."""
    import cv2

    from mmbus.apis.boxes import crop_nodule, xywh_to_xyxy
    from mmbus.datasets.transforms.letterbox import LetterboxResize
    resize = LetterboxResize(32)

    def brightest_inside(calcification, seed):
        rng = np.random.default_rng(seed)
        c = NoduleCues(calcification=calcification)
        case = render_case(rng, 'x', STYLES['a'], [c], [sample_shape(rng, c)], caliper_prob=0)
        box = xywh_to_xyxy(case.boxes[0])
        crop, _ = crop_nodule(case.image, box, 10)
        mask, _ = crop_nodule(cv2.erode(case.masks[0], np.ones((5, 5), np.uint8)), box, 10)
        img = resize.transform({'img': crop})['img'].astype(float)
        inside = resize.transform({'img': mask})['img'] > 127
        return np.sort(img[inside])[-3:].mean()

    on = np.mean([brightest_inside(1.0, s) for s in range(12)])
    off = np.mean([brightest_inside(0.0, s) for s in range(12)])
    assert on > 180 and off < 120, (on, off)


def test_synthetic_converts_and_loads_in_mmdet(tmp_path):
    sys.path.insert(0, str(REPO / 'tools' / 'dataset_converters'))
    import make_synthetic_bus
    root = tmp_path / 'hospital_a'
    assert make_synthetic_bus.main([str(root), '-n', '40', '--seed', '0', '--no-progress']) == 0
    assert make_synthetic_bus.main([str(root), '-n', '40']) == 2   # refuses to mix datasets
    (root / 'keep.txt').write_text('user file')
    assert make_synthetic_bus.main([str(root), '-n', '10', '--seed', '9', '--overwrite',
                                    '--no-progress']) == 0
    assert len(list(root.rglob('*-?.png'))) == 10 and (root / 'keep.txt').exists()
    assert make_synthetic_bus.main([str(root), '-n', '40', '--seed', '0', '--overwrite',
                                    '--no-progress']) == 0
    summary = convert_and_split('busi', str(root), str(root), workers=1, verbose=False)
    assert summary['all']['total'] == 40
    assert summary['patients_spanning_splits'] == 0
    patients = {r['patient'] for r in read_csv(root / 'patients.csv')}
    assert summary['all']['patients'] == len(patients) < 40   # two-view patients grouped
    from mmdet.datasets import CocoDataset
    ann = json.loads((root / 'annotations' / 'all.json').read_text())
    ds = CocoDataset(data_root=str(root), ann_file='annotations/all.json',
                     metainfo=dict(classes=('nodule',)), data_prefix=dict(img=''),
                     pipeline=[dict(type='LoadImageFromFile'),
                               dict(type='LoadAnnotations', with_bbox=True)],
                     filter_cfg=None)
    assert len(ds) == 40
    n_boxes = 0
    for i in range(len(ds)):
        item = ds[i]
        b = item['gt_bboxes']
        n_boxes += len(b)
        assert len(b) >= 1
        h, w = item['img'].shape[:2]
        t = np.asarray(getattr(b, 'tensor', b))
        assert (t[:, 0] >= 0).all() and (t[:, 2] <= w).all() and (t[:, 3] <= h).all()
    assert n_boxes == len(ann['annotations'])


def test_cli_convert_external_test(tmp_path, capsys):
    sys.path.insert(0, str(REPO / 'tools' / 'dataset_converters'))
    import make_synthetic_bus
    root = tmp_path / 'hospital_b'
    assert make_synthetic_bus.main([str(root), '-n', '12', '--style', 'b', '--seed', '1',
                                    '--convert', 'external-test', '--no-progress']) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith('[mmbus] busi: 12 images')
    test = json.loads((root / 'annotations' / 'test.json').read_text())
    assert len(test['images']) == 12
    assert {im['source'] for im in test['images']} == {'hospital_b'}
    assert not (root / 'annotations' / 'basic_train.json').exists()


def test_progress_lines_when_not_a_terminal():
    import io
    from mmbus.datasets.converters.common import Progress
    buf = io.StringIO()
    bar = Progress(20, label='x', stream=buf)
    for _ in range(20):
        bar.update()
    bar.close()
    lines = buf.getvalue().splitlines()
    assert len(lines) == 10 and lines[0].startswith('x: 2/20') and lines[-1].startswith('x: 20/20')
