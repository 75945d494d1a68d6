"""Portable model bundle: ONNX recogniser + calibration + model card, run
with onnxruntime (tiny random-weight classifiers written by the tests)."""
import copy
import json
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip('onnxruntime')
pytest.importorskip('onnx')  # torch's ONNX exporter writes through it

from mmbus.apis.bundle import (BundleClassifier, BundleError,  # noqa: E402
                               export_bundle, preprocess_crop)
from mmbus.apis.export import load_plain_classifier  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

CALIBRATION = dict(temperature=2.0,
                   thresholds={'sensitivity_0.95': 0.2,
                               'sensitivity_0.90': 0.35, 'youden': 0.6},
                   fitted_on=dict(n=120, malignant=48, source='val_preds.json',
                                  ece_after=0.031))
METRICS = {'teacher/auc': 0.8731, 'teacher/auc_ci_low': 0.8123,
           'teacher/auc_ci_high': 0.9339, 'teacher/sensitivity': 0.9,
           'teacher/sensitivity_ci_low': 0.7,
           'teacher/sensitivity_ci_high': 0.97, 'teacher/specificity': 0.75,
           'teacher/specificity_ci_low': 0.6,
           'teacher/specificity_ci_high': 0.86, 'teacher/threshold': 0.5,
           'teacher/num_samples': 60.0}
CARD_INFO = dict(training_data='synthetic BUS crops', num_labelled=123,
                 num_unlabelled=4567, split='patient-level 60/20/20',
                 known_limits=['only tested on synthetic images'])


def _crops(n=5, seed=1):
    rng = np.random.default_rng(seed)
    shapes = [(40, 50), (32, 32), (20, 61), (57, 23, 3), (33, 34, 3)]
    return [rng.integers(0, 256, shapes[i % len(shapes)], dtype=np.uint8)
            for i in range(n)]


def _torch_probs(cfg_path, ckpt, crops, spec):
    """Malignancy probability of the plain (teacher) model in PyTorch, with
    the model's own data preprocessor (independent of the ONNX wrapper)."""
    model, _ = load_plain_classifier(cfg_path, ckpt)
    batch = torch.from_numpy(np.stack([preprocess_crop(c, spec)
                                       for c in crops]))
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=batch))
        logits = model(data['inputs'], mode='tensor')
    return torch.softmax(logits, 1)[:, 1].numpy().astype(np.float64)


def _moderate_head(model, head, spec):
    """Give a random-weight classifier input-dependent, non-saturated
    outputs on the test crops (preprocessed with ``spec``): fresh batch-norm
    statistics leave its features at ~1e-7 (a constant output), so the
    statistics are set from the crops, and the head is scaled and shifted so
    that the logit differences spread about 2 around 0. Otherwise every
    parity and temperature check would hold trivially."""
    crops = [c for seed in range(1, 8) for c in _crops(5, seed)]
    x = torch.from_numpy(np.stack([preprocess_crop(c, spec) for c in crops]))
    bns = [m for m in model.modules()
           if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        x = model.data_preprocessor(dict(inputs=x))['inputs']
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one pass sets them
        model.train()
        model(x, mode='tensor')
        model.eval()
        lg = model(x, mode='tensor')
        d = (lg[:, 1] - lg[:, 0]).double()
        scale = 2.0 / float(d.std())
        head.fc.weight.mul_(scale)
        head.fc.bias.mul_(scale)
        head.fc.bias[1] -= float(d.mean()) * scale


@pytest.fixture(scope='module')
def semi_model(tiny_semi_classifier, tmp_path_factory):
    """(config, checkpoint, SemiClassifier) with a teacher whose
    probabilities spread over (0, 1)."""
    cfg_path, _, model = tiny_semi_classifier
    model = copy.deepcopy(model)
    # the fixture's teacher (student + noise of 0.5) has features of ~1e5:
    # keep it distinct from the student but in a sane range
    torch.manual_seed(2)
    with torch.no_grad():
        for t, s in zip(model.teacher.parameters(),
                        model.student.parameters()):
            t.copy_(s + 0.05 * torch.randn_like(s))
    _moderate_head(model.teacher, model.teacher.head,
                   dict(channels=1, colour='grey',
                        resize=dict(mode='stretch', width=32, height=32,
                                    interpolation='bilinear')))
    ckpt = str(tmp_path_factory.mktemp('semi') / 'semi_moderate.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    return cfg_path, ckpt, model


@pytest.fixture(scope='module')
def bundle(semi_model, tmp_path_factory):
    cfg_path, ckpt, _ = semi_model
    d = tmp_path_factory.mktemp('bundle')
    cal_path = d / 'cal.json'
    cal_path.write_text(json.dumps(CALIBRATION))
    out = d / 'bundle'
    logs = []
    info = export_bundle(cfg_path, ckpt, str(out), calibration=str(cal_path),
                         metrics=METRICS, card_info=CARD_INFO,
                         sample_crops=_crops(), log=logs.append)
    return str(out), info, logs


def test_export_writes_bundle_with_parity(bundle, semi_model):
    out, info, logs = bundle
    for name in ('recogniser.onnx', 'bundle.json', 'calibration.json',
                 'MODEL_CARD.md'):
        assert osp.isfile(osp.join(out, name)), name
    with open(osp.join(out, 'bundle.json')) as f:
        saved = json.load(f)
    diff = saved['parity']['max_abs_diff']
    assert 0 <= diff < 1e-4
    assert any('max |diff|' in m for m in logs)
    assert saved['input'] == {**saved['input'], 'channels': 1, 'height': 32,
                              'width': 32, 'colour': 'grey'}
    assert saved['input']['resize']['mode'] == 'stretch'  # Resize(32, 32)
    assert saved['normalisation']['mean'] == [127.5]
    assert saved['normalisation']['std'] == [64.0]
    assert saved['class_names'] == ['benign', 'malignant']
    assert saved['calibration']['temperature'] == 2.0
    # base names only: no machine paths in a file that is handed around
    cfg_path, ckpt, _ = semi_model
    assert saved['source']['config'] == osp.basename(cfg_path)
    assert saved['source']['checkpoint'] == osp.basename(ckpt)
    assert osp.dirname(cfg_path) not in json.dumps(saved)
    assert saved['source']['exported_part'] == \
        'EMA teacher of a SemiClassifier'


def test_bundle_matches_pytorch_teacher(bundle, semi_model):
    out, _, _ = bundle
    cfg_path, ckpt, semi = semi_model
    crops = _crops(7, seed=3)
    clf = BundleClassifier(out, calibrated=False)
    p_onnx = clf.predict_proba(crops, calibrated=False)
    p_torch = _torch_probs(cfg_path, ckpt, crops, clf.spec)
    assert ((p_onnx > 0.02) & (p_onnx < 0.98)).sum() >= 3  # not saturated
    np.testing.assert_allclose(p_onnx, p_torch, atol=1e-4)
    # and the PyTorch teacher inside the SemiClassifier agrees (not student)
    batch = torch.from_numpy(clf.preprocess(crops))
    with torch.no_grad():
        data = semi.data_preprocessor(dict(inputs=batch))
        t = torch.softmax(semi.teacher(data['inputs'], mode='tensor'), 1)
    np.testing.assert_allclose(p_onnx, t[:, 1].numpy(), atol=1e-4)


def test_temperature_scaling(bundle):
    out, _, _ = bundle
    crops = _crops(6, seed=4)
    clf = BundleClassifier(out)
    assert clf.temperature == 2.0
    res = clf.predict(crops)
    raw = np.array([r['raw_prob'] for r in res])
    cal = np.array([r['malignancy_prob'] for r in res])
    # worked check: calibrated p = sigmoid(logit(p_raw) / T), T = 2
    assert ((raw > 0.02) & (raw < 0.98)).sum() >= 3  # not saturated
    expected = 1 / (1 + np.exp(-np.log(raw / (1 - raw)) / 2.0))
    np.testing.assert_allclose(cal, expected, atol=1e-6)
    # one number by hand: p_raw = 0.9 -> logit 2.1972 -> /2 -> 0.75
    assert abs(1 / (1 + np.exp(-np.log(0.9 / 0.1) / 2)) - 0.75) < 1e-12
    assert np.all(np.abs(cal - 0.5) <= np.abs(raw - 0.5) + 1e-12)
    np.testing.assert_allclose(
        BundleClassifier(out, calibrated=False).predict_proba(crops), raw,
        atol=1e-12)


def test_thresholds_map_to_labels(bundle):
    out, _, _ = bundle
    clf = BundleClassifier(out)
    assert clf.thresholds == {'threshold_0.5': 0.5, **CALIBRATION['thresholds']}
    probs = np.array([0.1, 0.2, 0.3, 0.5, 0.6, 0.9])
    assert clf.label(probs, 'sensitivity_0.95') == [
        'benign', 'malignant', 'malignant', 'malignant', 'malignant',
        'malignant']
    assert clf.label(probs, 'youden') == ['benign'] * 4 + ['malignant'] * 2
    with pytest.raises(KeyError, match='unknown operating point'):
        clf.label(probs, 'sensitivity_0.99')
    one = _crops(4)[3]  # a single H x W x 3 crop is one crop, not H rows
    assert len(clf.predict(one)) == 1
    assert clf.predict(one)[0] == clf.predict([one])[0]
    for r in clf.predict(_crops(5)):
        for name, thr in clf.thresholds.items():
            want = 'malignant' if r['malignancy_prob'] >= thr else 'benign'
            assert r['labels'][name] == want


def test_model_card_contents(bundle):
    out, _, _ = bundle
    with open(osp.join(out, 'MODEL_CARD.md')) as f:
        card = f.read()
    for text in ('0.873', '[0.812, 0.934]', '0.900', '[0.700, 0.970]',
                 '0.750', '123', '4567', 'patient-level 60/20/20',
                 'T = 2.0000', 'ece_after = 0.0310', 'sensitivity_0.95',
                 '0.2000', 'youden', 'not a diagnostic device',
                 'only tested on synthetic images', 'MTConvNet'):
        assert text in card, text


def test_model_card_degrades_without_inputs(semi_model, tmp_path):
    cfg_path, ckpt, _ = semi_model
    out = tmp_path / 'plain_bundle'
    info = export_bundle(cfg_path, ckpt, str(out), log=None)
    assert info['calibration'] is None
    assert 'random uint8-range' in info['parity']['inputs']
    assert not (out / 'calibration.json').exists()
    card = (out / 'MODEL_CARD.md').read_text()
    assert card.count('not provided') >= 5
    clf = BundleClassifier(str(out))
    assert clf.temperature == 1.0 and list(clf.thresholds) == ['threshold_0.5']
    # exporting again into the same folder replaces the old bundle
    export_bundle(cfg_path, ckpt, str(out), calibration=CALIBRATION, log=None)
    assert BundleClassifier(str(out)).temperature == 2.0


def test_missing_and_corrupt_inputs(semi_model, tmp_path):
    from mmbus.utils.checkpoint import CheckpointError
    cfg_path, ckpt, _ = semi_model
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        export_bundle(cfg_path, str(tmp_path / 'nope.pth'),
                      str(tmp_path / 'b1'), log=None)
    bad = tmp_path / 'broken.pth'
    bad.write_bytes(open(ckpt, 'rb').read()[:300])
    with pytest.raises(CheckpointError, match='broken.pth'):
        export_bundle(cfg_path, str(bad), str(tmp_path / 'b2'), log=None)
    bad_cal = tmp_path / 'cal.json'
    bad_cal.write_text('{"temperature": ')
    with pytest.raises(ValueError, match='cal.json'):
        export_bundle(cfg_path, ckpt, str(tmp_path / 'b3'),
                      calibration=str(bad_cal), log=None)
    with pytest.raises(ValueError, match='temperature'):
        export_bundle(cfg_path, ckpt, str(tmp_path / 'b4'),
                      calibration=dict(CALIBRATION, temperature=-1), log=None)
    with pytest.raises(BundleError, match='not valid JSON'):
        (tmp_path / 'm.json').write_text('[1, ')
        export_bundle(cfg_path, ckpt, str(tmp_path / 'b5'),
                      metrics=str(tmp_path / 'm.json'), log=None)
    for d in ('b1', 'b2', 'b3', 'b4', 'b5'):  # nothing half-written
        assert not (tmp_path / d).exists()
    with pytest.raises(FileNotFoundError, match='bundle.json'):
        BundleClassifier(str(tmp_path))


def test_cli(bundle, semi_model, tmp_path):
    cfg_path, ckpt, _ = semi_model
    metrics = tmp_path / 'metrics.json'
    metrics.write_text(json.dumps(METRICS))
    cmd = [sys.executable, osp.join(REPO, 'tools/export_bundle.py'), cfg_path,
           ckpt, '--out-dir', str(tmp_path / 'cli'), '--metrics',
           str(metrics)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert 'max |diff|' in res.stdout
    assert (tmp_path / 'cli' / 'recogniser.onnx').exists()
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'not a checkpoint')
    res = subprocess.run(cmd[:3] + [str(bad), '--out-dir',
                                    str(tmp_path / 'cli2')],
                         capture_output=True, text=True)
    assert res.returncode == 1
    assert 'bad.pth' in res.stderr and 'Traceback' not in res.stderr
    res = subprocess.run(cmd + ['--card-info', str(tmp_path / 'none.json')],
                         capture_output=True, text=True)
    assert res.returncode == 1 and 'none.json' in res.stderr


COLOUR_CFG = """
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmbus'], allow_failed_imports=False)
model = dict(type='ImageClassifier',
             backbone=dict(type='MTConvNet', in_channels=3,
                           widen_factor=1 / 16, dropout=0.0),
             head=dict(type='LinearClsHead', num_classes=2, in_channels=8,
                       loss=dict(type='CrossEntropyLoss')),
             data_preprocessor=dict(mean=[100., 110., 120.],
                                    std=[50., 60., 70.], to_rgb=True))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LetterboxResize', size=24, pad_val=7),
    dict(type='PackInputs'),
]
test_dataloader = dict(batch_size=2, dataset=dict(
    type='CustomDataset', data_root='', ann_file='', pipeline=test_pipeline))
"""


def test_colour_letterbox_classifier(tmp_path):
    """A plain 3-channel classifier with BGR->RGB flip and letterboxing:
    the bundle's numpy resize equals the training transform, and the flip +
    normalisation inside the graph equal the data preprocessor's."""
    import mmbus.registry  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    from mmbus.datasets.transforms.letterbox import LetterboxResize
    cfg_path = tmp_path / 'colour.py'
    cfg_path.write_text(COLOUR_CFG)
    torch.manual_seed(1)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(Config.fromfile(str(cfg_path)).model).eval()
    _moderate_head(model, model.head,
                   dict(channels=3, colour='bgr',
                        resize=dict(mode='letterbox', width=24, height=24,
                                    pad_val=7, interpolation='bilinear')))
    ckpt = str(tmp_path / 'colour.pth')
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    crops = _crops(5, seed=7)
    info = export_bundle(str(cfg_path), ckpt, str(tmp_path / 'b'),
                         sample_crops=crops, log=None)
    assert info['input']['channels'] == 3 and info['input']['colour'] == 'bgr'
    assert info['normalisation']['to_rgb'] is True
    assert info['source']['exported_part'] == 'the classifier as trained'
    assert info['parity']['max_abs_diff'] < 1e-4
    clf = BundleClassifier(str(tmp_path / 'b'))
    for c in crops:
        bgr = c if c.ndim == 3 else np.repeat(c[..., None], 3, axis=2)
        want = LetterboxResize(24, pad_val=7).transform(dict(img=bgr))['img']
        np.testing.assert_array_equal(
            clf.preprocess([c])[0], want.transpose(2, 0, 1).astype(np.float32))
    p_onnx = clf.predict_proba(crops)
    batch = torch.from_numpy(clf.preprocess(crops))
    with torch.no_grad():
        logits = model(model.data_preprocessor(dict(inputs=batch))['inputs'],
                       mode='tensor')
    p_torch = torch.softmax(logits, 1)[:, 1].numpy()
    assert ((p_onnx > 0.02) & (p_onnx < 0.98)).sum() >= 2
    np.testing.assert_allclose(p_onnx, p_torch, atol=1e-4)


def test_parity_failure_writes_nothing(semi_model, tmp_path, monkeypatch):
    import mmbus.apis.bundle as bundle_mod
    cfg_path, ckpt, _ = semi_model
    monkeypatch.setattr(bundle_mod, 'PARITY_TOLERANCE', -1.0)
    with pytest.raises(BundleError, match='parity check failed'):
        export_bundle(cfg_path, ckpt, str(tmp_path / 'b'), log=None)
    assert not (tmp_path / 'b').exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temp folder left
