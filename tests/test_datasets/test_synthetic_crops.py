"""The synthetic crop generator (stage-2 studies on generated nodules): splits, framings, brightness."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mmbus.datasets.synthetic_crops import make_crop_set

REPO = Path(__file__).resolve().parents[2]


def test_balanced_basic_split_holds_both_classes_and_keeps_other_splits(tmp_path):
    counts = dict(basic_train=6, extended_train=5, val=4, test=4)
    make_crop_set(str(tmp_path / 'a'), counts, seed=3, balanced_basic=True)
    make_crop_set(str(tmp_path / 'b'), counts, seed=3, balanced_basic=False)
    load = lambda d, s: json.load(open(tmp_path / d / f'{s}.json'))['data_list']  # noqa: E731
    assert [r['gt_label'] for r in load('a', 'basic_train')] == [0, 1, 0, 1, 0, 1]
    # the flag only relabels basic-train: the later splits are drawn identically
    for split in ('extended_train', 'val', 'test'):
        assert [r['true_label'] for r in load('a', split)] == [r['true_label'] for r in load('b', split)]
    assert all(r['gt_label'] == -1 for r in load('a', 'extended_train'))


def test_margin_framing_crops_follow_the_nodule():
    rng = np.random.default_rng(0)
    from mmbus.datasets.synthetic_crops import draw_nodule
    ratios = {0: [], 1: []}
    for label in (0, 1):
        for _ in range(40):
            img = draw_nodule(rng, bool(label), difficulty=0.3, framing='margin')
            ratios[label].append(img.shape[1] / img.shape[0])
            # the nodule (dark) is inside, the margin (bright speckle) on every side
            assert img[img.shape[0] // 2, img.shape[1] // 2] < img[0, :].mean()
            assert img[:, 0].mean() > img[img.shape[0] // 2, img.shape[1] // 2]
    # benign nodules are wider than tall, malignant taller than wide, and the crop shows it
    assert np.median(ratios[0]) > 1.15 and np.median(ratios[1]) < 0.95
    # random framing: crop shape independent of the class
    rng = np.random.default_rng(0)
    rand = {lab: np.median([(lambda i: i.shape[1] / i.shape[0])(draw_nodule(rng, bool(lab), 0.3))
                            for _ in range(40)]) for lab in (0, 1)}
    assert abs(rand[0] - rand[1]) < 0.2
    with pytest.raises(ValueError, match='framing'):
        draw_nodule(rng, True, framing='tight')


def test_square_framing_crops_are_square_with_the_nodule_centred():
    from mmbus.datasets.synthetic_crops import draw_nodule
    rng = np.random.default_rng(1)
    fill = []
    for label in (0, 1):
        for _ in range(30):
            img = draw_nodule(rng, bool(label), difficulty=0.3, framing='square')
            assert img.shape[0] == img.shape[1]  # no letterbox bars after resizing
            # the hypo-echoic nodule; smoothed first, as single speckle pixels can be as dark
            ys, xs = np.nonzero(cv2.blur(img, (5, 5)) < 60)
            extent = max(np.ptp(ys), np.ptp(xs)) + 1
            # side 1.3-2.6x the nodule's longer side (blur and speckle move the dark pixels' box a little)
            assert 1.15 * extent <= img.shape[0] <= 2.9 * extent
            c = (img.shape[0] - 1) / 2
            assert abs((ys.min() + ys.max()) / 2 - c) < 0.12 * img.shape[0]
            assert abs((xs.min() + xs.max()) / 2 - c) < 0.12 * img.shape[0]
            fill.append(extent / img.shape[0])
    # the nodule's scale in the crop varies continuously over about a factor of two
    assert min(fill) < 0.5 and max(fill) > 0.65


def test_gain_spreads_brightness_and_off_leaves_crops_unchanged():
    from mmbus.datasets.synthetic_crops import draw_nodule
    a = draw_nodule(np.random.default_rng(3), True, 0.7, 'square')
    b = draw_nodule(np.random.default_rng(3), True, 0.7, 'square', gain=1.0)
    assert np.array_equal(a, b)  # gain 1 draws nothing: crops made before the option are unchanged
    rng = np.random.default_rng(4)
    # the background's median brightness (~88 at gain 1) spans about 1/2x-2x with gain 2
    med = [np.median(draw_nodule(rng, False, 0.7, 'square', gain=2.0)) for _ in range(60)]
    assert min(med) < 0.65 * 88 and max(med) > 1.5 * 88
    with pytest.raises(ValueError, match='gain'):
        draw_nodule(rng, True, gain=0.5)


def test_make_synthetic_crops_cli_square_gain_and_bad_gain(tmp_path):
    tool = REPO / 'tools' / 'dataset_converters' / 'make_synthetic_crops.py'
    out = tmp_path / 'crops'
    proc = subprocess.run([sys.executable, str(tool), str(out), '--basic', '2', '--balanced-basic',
                           '--extended', '3', '--val', '2', '--test', '2', '--framing', 'square',
                           '--gain', '2'], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.load(open(out / 'extended_train.json'))['data_list']
    assert len(data) == 3 and all(d['gt_label'] == -1 for d in data)
    for d in data:
        img = cv2.imread(str(out / d['img_path']), cv2.IMREAD_GRAYSCALE)
        assert img.shape[0] == img.shape[1] == d['bbox'][2]
    bad = subprocess.run([sys.executable, str(tool), str(tmp_path / 'x'), '--gain', '0.5'],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert bad.returncode != 0 and '--gain must be >= 1' in bad.stderr
    assert not (tmp_path / 'x').exists()


def test_basic_gain_keeps_the_labelled_crops_at_one_brightness(tmp_path):
    counts = dict(basic_train=6, extended_train=40, val=2, test=2)
    make_crop_set(str(tmp_path), counts, seed=0, difficulty=0.7, balanced_basic=True, framing='square',
                  gain=2.0, basic_gain=1.0)

    def grey(split):
        data = json.load(open(tmp_path / f'{split}.json'))['data_list']
        return [np.median(cv2.imread(str(tmp_path / d['img_path']), cv2.IMREAD_GRAYSCALE)) for d in data]
    # gain 1: background medians near 88 (Rayleigh speckle), the nodule pulling a little below;
    # gain 2 spreads the unlabelled crops over about 1/2x-2x
    assert all(60 < g < 100 for g in grey('basic_train'))
    ext = grey('extended_train')
    assert min(ext) < 55 and max(ext) > 130
