"""The synthetic mean-teacher demo: summary maths, the crop generator it uses, and a tiny end-to-end run
through the stock tools (resumable, PNG + tables written)."""
import json
import math
import os
import os.path as osp
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mmbus.apis.mean_teacher_demo import (brightness_rho, describe_labelled_crops, load_predictions,
                                          make_seed_crops, orientation_auc, results_markdown, summarise)
from mmbus.datasets.synthetic_crops import make_crop_set

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / 'tools' / 'analysis' / 'mean_teacher_demo.py'


def _row(seed, method, auc):
    return dict(seed=seed, method=method, auc=auc, auc_ci_low=auc - 0.05, auc_ci_high=auc + 0.05)


def test_summary_means_sds_and_per_seed_differences():
    rows = [_row(0, 'supervised_basic', 0.80), _row(0, 'mean_teacher', 0.90),
            _row(1, 'supervised_basic', 0.70), _row(1, 'mean_teacher', 0.65),
            _row(2, 'supervised_basic', 0.60), _row(2, 'mean_teacher', 0.85)]
    s = summarise(rows)
    # by hand: SB mean 0.70, sd 0.10; MT mean 0.80, sd = sqrt(((.1)^2 + (.15)^2 + (.05)^2) / 2)
    assert s['methods']['supervised_basic']['mean'] == pytest.approx(0.70)
    assert s['methods']['supervised_basic']['sd'] == pytest.approx(0.10)
    assert s['methods']['mean_teacher']['mean'] == pytest.approx(0.80)
    assert s['methods']['mean_teacher']['sd'] == pytest.approx(math.sqrt(0.035 / 2))
    d = s['mt_minus_sb']
    assert d['per_seed'] == pytest.approx({0: 0.10, 1: -0.05, 2: 0.25})
    assert d['mean'] == pytest.approx(0.10) and d['wins'] == 2 and d['n'] == 3
    md = results_markdown(rows, s)
    assert '| supervised_basic | 0.800 [0.750, 0.850] | 0.700 [0.650, 0.750] |' in md
    assert '+0.100 (2/3 seeds ahead)' in md and '| -0.050 |' in md


def test_summary_without_a_pair_has_no_difference_row():
    s = summarise([_row(0, 'mean_teacher', 0.9)])
    assert 'mt_minus_sb' not in s and s['methods']['mean_teacher']['sd'] == 0.0
    assert '−' not in results_markdown([_row(0, 'mean_teacher', 0.9)], s)


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


def test_seed_crops_are_built_aside_and_reused(tmp_path):
    out = str(tmp_path / 'crops')
    counts = dict(basic_train=2, extended_train=2, val=2, test=2)
    make_seed_crops(out, counts, 0, 0.5, True)
    assert not osp.exists(out + '.tmp') and osp.isfile(osp.join(out, 'test.json'))
    stamp = os.stat(osp.join(out, 'test.json')).st_mtime_ns
    make_seed_crops(out, counts, 0, 0.5, True)  # complete: left as it is
    assert os.stat(osp.join(out, 'test.json')).st_mtime_ns == stamp


@pytest.mark.parametrize('args, msg', [(['--basic', '1'], '--basic >= 2'),
                                       (['--difficulty', '0'], '--difficulty'),
                                       (['--gain', '0.9'], '--gain'),
                                       (['--ema-momentum', '1'], '--ema-momentum'),
                                       (['--brightness', '-0.1'], '--brightness'),
                                       (['--epochs', '0'], '--epochs'),
                                       (['--methods', 'fixmatch'], 'invalid choice')])
def test_bad_arguments_are_refused(tmp_path, args, msg):
    proc = subprocess.run([sys.executable, str(TOOL), '--work-dir', str(tmp_path / 'w'), *args],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and msg in proc.stderr
    assert not (tmp_path / 'w').exists()


def test_tiny_demo_end_to_end_and_resume(tmp_path):
    wd = tmp_path / 'demo'
    cmd = [sys.executable, str(TOOL), '--work-dir', str(wd), '--seeds', '0', '--basic', '4',
           '--extended', '16', '--val', '8', '--test', '12', '--epochs', '1', '--epoch-length', '2',
           '--methods', 'supervised_basic', 'mean_teacher', '--threads', '1']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.load(open(wd / 'results.json'))
    assert [(r['seed'], r['method']) for r in res['rows']] == [(0, 'supervised_basic'),
                                                               (0, 'mean_teacher')]
    for r in res['rows']:
        assert 0.0 <= r['auc_ci_low'] <= r['auc'] <= r['auc_ci_high'] <= 1.0
        assert r['best_checkpoint'].startswith('best_')
    # each method was tested on the 12 generated test crops
    for m in ('supervised_basic', 'mean_teacher'):
        met = json.load(open(wd / 'seed_0' / m / 'test' / 'metrics.json'))
        assert sum(met[k] for k in met if k.split('/')[-1] in ('tp', 'fn', 'tn', 'fp')) == 12
    assert res['summary']['mt_minus_sb']['per_seed']['0'] == pytest.approx(
        res['rows'][1]['auc'] - res['rows'][0]['auc'])
    for png in (wd / 'auc_by_seed.png', wd / 'seed_0' / 'roc.png'):
        assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert 'mean_teacher − supervised_basic' in (wd / 'results.md').read_text()
    # a second run reuses both runs' metrics instead of training again
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 0 and proc.stdout.count('(reused)') == 2
    assert np.isclose(json.load(open(wd / 'results.json'))['rows'][1]['auc'], res['rows'][1]['auc'])
    # a changed mean-teacher option retrains the mean teacher only
    proc = subprocess.run(cmd + ['--consistency-weight', '3'], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=300)
    assert proc.returncode == 0 and proc.stdout.count('(reused)') == 1
    assert 'seed 0 supervised_basic' in [ln for ln in proc.stdout.splitlines() if '(reused)' in ln][0]
    cfg = (wd / 'seed_0' / 'mean_teacher' / 'demo_config.py').read_text()
    assert 'consistency_weight=3.0' in cfg
    assert json.load(open(wd / 'results.json'))['settings']['consistency_weight'] == 3.0
    # test predictions are kept; a finished run without them (older demo) is tested again, not retrained
    pred = wd / 'seed_0' / 'supervised_basic' / 'test' / 'predictions.pkl'
    rows = json.load(open(wd / 'results.json'))['rows']
    assert pred.is_file() and all(len(r['labelled']) == 4 for r in rows)
    pred.unlink()
    proc = subprocess.run(cmd + ['--consistency-weight', '3'], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=300)
    assert proc.returncode == 0 and proc.stdout.count('(reused)') == 2 and pred.is_file()


def test_orientation_auc_by_hand(tmp_path):
    import pickle

    def pred(h, w, p):
        return dict(ori_shape=(h, w), pred_score=np.array([1 - p, p], np.float32))
    # taller-than-wide crops score 0.9, 0.4; wider 0.6, 0.1; the square one is left out.
    # pairs (taller, wider) ranked right: (0.9,0.6) (0.9,0.1) (0.4,0.1) -> 3 of 4 = 0.75
    preds = [pred(40, 30, 0.9), pred(50, 20, 0.4), pred(30, 40, 0.6), pred(20, 60, 0.1),
             pred(33, 33, 0.99)]
    f = tmp_path / 'p.pkl'
    f.write_bytes(pickle.dumps(preds))
    assert orientation_auc(load_predictions(str(f))) == pytest.approx(0.75)
    f.write_bytes(pickle.dumps([pred(40, 30, 0.9), pred(33, 33, 0.2)]))  # one orientation only
    assert orientation_auc(load_predictions(str(f))) is None
    # brightness: scores 0.1, 0.5, 0.9 on crops of grey 200, 100, 50 -> ranks reversed, rho = -1
    for i, g in enumerate((200, 100, 50)):
        cv2.imwrite(str(tmp_path / f'{i}.png'), np.full((6, 5), g, np.uint8))
    preds = [dict(pred(6, 5, p), img_path=str(tmp_path / f'{i}.png')) for i, p in enumerate((0.1, 0.5, 0.9))]
    f.write_bytes(pickle.dumps(preds))
    assert brightness_rho(load_predictions(str(f))) == pytest.approx(-1.0)
    preds[0]['img_path'] = str(tmp_path / 'missing.png')
    f.write_bytes(pickle.dumps(preds))
    with pytest.raises(FileNotFoundError, match='p.pkl: cannot read .*missing.png'):
        brightness_rho(load_predictions(str(f)), str(f))
    ann = tmp_path / 'basic_train.json'
    ann.write_text(json.dumps(dict(data_list=[
        dict(gt_label=0, bbox=[0, 0, 46, 39], img_path='0.png'),
        dict(gt_label=1, bbox=[0, 0, 51, 60], img_path='1.png'),
        dict(gt_label=1, bbox=[0, 0, 30, 30], img_path='2.png')])))
    assert describe_labelled_crops(str(ann)) == ['benign L g200', 'malignant P g100', 'malignant S g50']
    rows = [dict(_row(0, 'supervised_basic', 0.8), orientation_auc=0.62, brightness_rho=0.1,
                 labelled=['benign L g9']),
            dict(_row(0, 'mean_teacher', 0.7), orientation_auc=None, brightness_rho=-0.5,
                 labelled=['benign L g9'])]
    md = results_markdown(rows, summarise(rows))
    assert '| supervised_basic | orientation 0.62 / brightness +0.10 |' in md
    assert '| mean_teacher | brightness -0.50 |' in md and '| labelled crops | benign L g9 |' in md


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


def test_views_reach_every_methods_augmentation():
    from mmbus.apis.busbra_experiment import _as_dict, method_config
    from mmbus.apis.mean_teacher_demo import set_views
    for m in ('mean_teacher', 'supervised_basic', 'supervised_all'):
        cfg = set_views(_as_dict(str(REPO / method_config(m))), zoom=0.25, translate=3, contrast=0.2)
        aug = (cfg.model['view_augment'] if m == 'mean_teacher'
               else cfg.model['data_preprocessor']['batch_augments']['augments'])
        assert aug['type'] == 'BatchViewAugment'
        assert (aug['zoom'], aug['translate'], aug['contrast']) == (0.25, 3, 0.2)
        assert aug['brightness'] == 0.2  # not set: the configs' value
        assert set_views(cfg, brightness=0.4) is cfg and aug['brightness'] == 0.4
        assert aug['noise_std'] == 0.15  # the configs' other view settings are kept
    from mmengine.config import Config
    with pytest.raises(ValueError, match='BatchViewAugment'):
        set_views(Config(dict(model=dict(type='ImageClassifier'))), zoom=0.25)
    with pytest.raises(ValueError, match='unknown view arguments'):
        set_views(_as_dict(str(REPO / method_config('mean_teacher'))), rotate=10)


def test_ema_momentum_reaches_the_mean_teacher_hook_only():
    from mmbus.apis.busbra_experiment import _as_dict, method_config
    from mmbus.apis.mean_teacher_demo import set_ema_momentum
    cfg = _as_dict(str(REPO / method_config('mean_teacher')))
    hook = [h for h in cfg.custom_hooks if h['type'] == 'MeanTeacherHook']
    assert len(hook) == 1 and (hook[0]['rampup_momentum'], hook[0]['momentum']) == (0.03, 0.01)
    set_ema_momentum(cfg, 0.05)
    assert (hook[0]['rampup_momentum'], hook[0]['momentum']) == (0.05, 0.05)
    assert any(h['type'] == 'EarlyStoppingHook' for h in cfg.custom_hooks)  # other hooks kept
    sup = _as_dict(str(REPO / method_config('supervised_basic')))
    before = sup.pretty_text
    assert set_ema_momentum(sup, 0.05).pretty_text == before
    with pytest.raises(ValueError, match='momentum'):
        set_ema_momentum(cfg, 1.0)


def test_seed_crops_made_with_other_settings_are_regenerated(tmp_path):
    out = str(tmp_path / 'crops')
    make_seed_crops(out, dict(basic_train=2, extended_train=2, val=2, test=2), 0, 0.5, True)
    make_seed_crops(out, dict(basic_train=4, extended_train=2, val=2, test=2), 0, 0.5, True)
    assert len(json.load(open(osp.join(out, 'basic_train.json')))['data_list']) == 4
    assert json.load(open(osp.join(out, 'settings.json')))['counts']['basic_train'] == 4


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
