"""The web app of tools/serve.py through FastAPI's TestClient, with a tiny
random-weight detector and a recogniser bundle exported by the test (no
downloads, CPU only)."""
import importlib.util
import io
import json
import os.path as osp
import re
import struct
import zlib

import cv2
import numpy as np
import pytest

pytest.importorskip('fastapi')
pytest.importorskip('multipart')  # python-multipart, for the upload form
pytest.importorskip('httpx')  # TestClient
pytest.importorskip('onnxruntime')
pytest.importorskip('onnx')

from fastapi.testclient import TestClient  # noqa: E402

from mmbus.apis.serve_app import (MAX_SIDE, MAX_UPLOAD_BYTES,  # noqa: E402
                                  Analyser, create_app, decode_upload,
                                  headline, InputError, operating_points)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# thresholds that fix the label whatever the random model gives (p < 1):
# every p reaches 0.0, none reaches 1.0
CALIBRATION = dict(temperature=2.0,
                   thresholds={'sensitivity_0.95': 0.0,
                               'sensitivity_0.90': 1.0, 'youden': 1.0},
                   fitted_on=dict(n=10, malignant=5, source='test'))


def _apis_conftest():
    """The tiny model configs of tests/test_apis/conftest.py (one source
    for the tiny detector and classifier)."""
    path = osp.join(REPO, 'tests', 'test_apis', 'conftest.py')
    spec = importlib.util.spec_from_file_location('_apis_tiny_models', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_tiny_models(d, calibration=None):
    """Write a tiny detector, a tiny plain classifier and its bundle (with
    ``calibration``, default :data:`CALIBRATION`) under ``d``; returns the
    Analyser arguments."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    import mmbus.registry  # noqa: F401
    from mmbus.apis.bundle import export_bundle
    tiny = _apis_conftest()
    det_cfg = osp.join(d, 'det.py')
    with open(det_cfg, 'w') as f:
        f.write(tiny.TINY_DET_CFG)
    from mmdet.registry import MODELS as DET_MODELS
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        det = DET_MODELS.build(Config.fromfile(det_cfg).model)
    det_ckpt = osp.join(d, 'det.pth')
    torch.save(dict(state_dict=det.state_dict(),
                    meta=dict(dataset_meta=dict(classes=('nodule', )))),
               det_ckpt)

    cls_cfg = osp.join(d, 'cls.py')
    with open(cls_cfg, 'w') as f:
        f.write(tiny.TINY_CLS_CFG.format(model_type='ImageClassifier',
                                         model=tiny.TINY_CLS_MODEL.strip()))
    from mmpretrain.registry import MODELS as CLS_MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        cls = CLS_MODELS.build(Config.fromfile(cls_cfg).model)
    cls.eval()
    cls_ckpt = osp.join(d, 'cls.pth')
    torch.save(dict(state_dict=cls.state_dict(), meta=dict()), cls_ckpt)
    cal = osp.join(d, 'cal.json')
    with open(cal, 'w') as f:
        json.dump(calibration or CALIBRATION, f)
    bundle = osp.join(d, 'bundle')
    export_bundle(cls_cfg, cls_ckpt, bundle, calibration=cal, log=None)
    return dict(det_config=det_cfg, det_checkpoint=det_ckpt,
                bundle_dir=bundle, cls_config=cls_cfg,
                cls_checkpoint=cls_ckpt)


def us_image(h=96, w=128, seed=0):
    """A grey speckle image with one dark ellipse (uint8)."""
    rng = np.random.default_rng(seed)
    img = rng.normal(110, 25, (h, w)).clip(0, 255)
    cv2.ellipse(img, (w // 2, h // 2), (w // 6, h // 8), 0, 0, 360, 20, -1)
    return img.astype(np.uint8)


def encode(img, ext='.png'):
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


def png_claiming(width, height):
    """A valid 1 x 1 grey PNG whose header is rewritten to claim
    ``width`` x ``height`` (a decompression-bomb style file)."""
    data = bytearray(encode(np.zeros((1, 1), np.uint8)))
    # IHDR chunk: length(4) type(4) at offset 8; width, height at 16, 20
    data[16:24] = struct.pack('>II', width, height)
    crc = zlib.crc32(bytes(data[12:29])) & 0xffffffff
    data[29:33] = struct.pack('>I', crc)
    return bytes(data)


@pytest.fixture(scope='module')
def analyser(tmp_path_factory):
    d = str(tmp_path_factory.mktemp('serve_models'))
    return Analyser(**make_tiny_models(d))


@pytest.fixture(scope='module')
def client(analyser):
    # small limits so that "too large" needs no 20 MB upload
    app = create_app(analyser, max_bytes=200_000, max_side=1024)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def post(client, data, name='scan.png', mime='image/png'):
    return client.post('/api/analyse', files={'file': (name, data, mime)})


def assert_good(client, data=None, name='scan.png', mime='image/png'):
    r = post(client, encode(us_image()) if data is None else data, name, mime)
    assert r.status_code == 200, r.text
    res = r.json()
    assert res['status'] == 'ok'
    assert 0.0 <= res['probability'] < 1.0
    return res


def test_page_and_health(client):
    r = client.get('/')
    assert r.status_code == 200
    assert 'text/html' in r.headers['content-type']
    html = r.text
    assert 'Research use only' in html and 'not a diagnostic device' in html
    # nothing fetched from the internet (the server has none)
    assert 'http://' not in html and 'https://' not in html
    assert '<link' not in html
    h = client.get('/health').json()
    assert h['status'] == 'ok'
    assert h['limits']['max_bytes'] == 200_000
    assert {o['name'] for o in h['operating_points']} == {
        'threshold_0.5', 'sensitivity_0.95', 'sensitivity_0.90', 'youden'}
    assert h['models']['cam'] is True
    assert MAX_UPLOAD_BYTES == 20 * 2**20 and MAX_SIDE == 4096


def test_good_image_label_follows_thresholds(client, analyser):
    res = assert_good(client)
    assert len(res['box']) == 4 and res['det_score'] >= 0.05
    # sensitivity_0.95 = 0 is reached by every p, sensitivity_0.90 = 1 by
    # none: the headline names the 95 % point, biopsy range
    assert res['label']['category'] == 'above'
    assert res['label']['operating_point'] == 'sensitivity_0.95'
    assert res['label_text'] == ('At or above the 95 %-sensitivity threshold '
                                 '(0.000): biopsy range')
    ops = {o['name']: o for o in res['operating_points']}
    assert ops['sensitivity_0.90']['text'] == \
        'below the 90 %-sensitivity threshold (1.000)'
    assert ops['sensitivity_0.90']['label'] == 'benign'
    assert ops['sensitivity_0.95']['label'] == 'malignant'
    for o in ops.values():  # the same rule as the bundle's labels
        assert o['label'] == ('malignant' if res['probability'] >=
                              o['threshold'] else 'benign')
    # the bundle's own probability for the same crop
    x1, y1, x2, y2 = res['crop_box']
    img = cv2.cvtColor(us_image(), cv2.COLOR_GRAY2BGR)
    p = analyser.bundle.predict_proba([img[y1:y2, x1:x2]])[0]
    assert abs(p - res['probability']) < 1e-6
    for key in ('image', 'cam'):
        assert res[key].startswith('data:image/png;base64,')
    assert res['cam_note'] is None  # CAM model == bundle model
    assert 'Research use only' in res['notice']


def test_below_every_threshold(client, analyser):
    saved = dict(analyser.bundle.thresholds)
    try:
        analyser.bundle.thresholds.update({'sensitivity_0.95': 1.0,
                                           'sensitivity_0.90': 1.0})
        res = assert_good(client)
        assert res['label']['category'] == 'below'
        assert res['label_text'] == \
            'Below the 95 %-sensitivity threshold (1.000)'
    finally:
        analyser.bundle.thresholds.clear()
        analyser.bundle.thresholds.update(saved)


def test_no_nodule(client, analyser):
    analyser.boxes.score_thr = 2.0  # no score reaches it
    try:
        r = post(client, encode(us_image()))
    finally:
        analyser.boxes.score_thr = analyser.score_thr
    assert r.status_code == 200
    res = r.json()
    assert res['status'] == 'no_nodule'
    assert res['label_text'].startswith('No nodule found')
    assert res['probability'] is None and res['box'] is None
    assert res['image'].startswith('data:image/png;base64,')


@pytest.mark.parametrize('kind', ['grey_png', 'colour_jpeg', 'rgba_png',
                                  'grey_alpha_png'])
def test_accepted_variants(client, kind):
    grey = us_image()
    colour = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    colour[..., 2] = cv2.add(colour[..., 2], 20)
    if kind == 'grey_png':
        data, mime = encode(grey), 'image/png'
    elif kind == 'colour_jpeg':
        data, mime = encode(colour, '.jpg'), 'image/jpeg'
    elif kind == 'rgba_png':
        data, mime = encode(cv2.cvtColor(colour, cv2.COLOR_BGR2BGRA)), \
            'image/png'
    else:
        from PIL import Image
        buf = io.BytesIO()
        Image.fromarray(np.dstack([grey, np.full_like(grey, 255)]),
                        'LA').save(buf, 'PNG')
        data, mime = buf.getvalue(), 'image/png'
    assert_good(client, data, 'scan' + ('.jpg' if 'jpeg' in kind else '.png'),
                mime)


def test_alpha_is_dropped_not_blended():
    colour = cv2.cvtColor(us_image(), cv2.COLOR_GRAY2BGR)
    bgra = cv2.cvtColor(colour, cv2.COLOR_BGR2BGRA)
    bgra[..., 3] = 0  # fully transparent: the tissue is still there
    np.testing.assert_array_equal(decode_upload(encode(bgra)), colour)
    grey = decode_upload(encode(us_image()))
    assert grey.shape == (96, 128, 3) and grey.dtype == np.uint8


def _bad_inputs():
    text = b'patient notes, not an image\n' * 10
    sixteen = (us_image().astype(np.uint16) * 257)
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3),
                                              dtype=np.uint8)
    png = encode(us_image())
    gif = io.BytesIO()
    from PIL import Image
    Image.fromarray(us_image()).save(gif, 'GIF')
    return {
        'text_renamed_png': (text, 415, 'is not an image that can be read'),
        'empty': (b'', 400, 'is an empty file (0 bytes)'),
        '16_bit_png': (encode(sixteen), 422, 'is a 16-bit image'),
        'too_many_bytes': (encode(noise), 413, 'the limit is 0.2 MB'),
        'too_wide': (encode(np.zeros((40, 1500), np.uint8)), 413,
                     'is 1500 x 40 px; the limit is 1024 px per side'),
        'header_claims_huge': (png_claiming(100000, 100000), 413,
                               'px per side'),
        'too_small': (encode(np.zeros((8, 8), np.uint8)), 422,
                      'at least 32 px per side'),
        'gif': (gif.getvalue(), 415, 'only PNG and JPEG are accepted'),
        'truncated_png': (png[:len(png) // 2], 422, 'truncated or corrupt'),
    }


@pytest.mark.parametrize('kind', list(_bad_inputs()))
def test_bad_input_then_good_again(client, kind):
    data, status, message = _bad_inputs()[kind]
    r = post(client, data)
    assert r.status_code == status, r.text
    body = r.json()
    assert body['status'] == 'error'
    assert message in body['error'], body['error']
    assert 'Traceback' not in r.text
    assert_good(client)  # the server is still up and answers


def test_16_bit_message_says_how_to_convert(client):
    data = encode(us_image().astype(np.uint16) * 257)
    msg = post(client, data).json()['error']
    assert '16-bit' in msg and re.search(r'values \d+ to \d+', msg)
    assert '// 257' in msg and 'convert in.png -depth 8 out.png' in msg


def test_missing_file_field(client):
    r = client.post('/api/analyse', data={'other': 'x'})
    assert r.status_code == 400
    assert 'multipart form field "file"' in r.json()['error']
    assert_good(client)


def test_model_failure_is_logged_not_shown(client, analyser, caplog):
    original = analyser.boxes

    def broken(*a, **k):
        raise RuntimeError('secret internal detail /opt/models/x.pth')

    analyser.boxes = broken
    try:
        with caplog.at_level('ERROR', logger='mmbus.serve'):
            r = post(client, encode(us_image()))
    finally:
        analyser.boxes = original
    assert r.status_code == 500
    assert 'server log' in r.json()['error']
    assert 'secret internal detail' not in r.text
    assert 'Traceback' not in r.text
    assert 'secret internal detail' in caplog.text  # but the log has it
    assert_good(client)


def test_decode_upload_limits_unit():
    with pytest.raises(InputError, match='limit is 0.0 MB') as e:
        decode_upload(b'x' * 100, 'a.png', max_bytes=10)
    assert e.value.status == 413


def test_headline_wording_without_sensitivity_points():
    ops = operating_points(0.7, {'threshold_0.5': 0.5, 'youden': 0.6})
    h = headline(0.7, ops)
    assert h['text'] == 'At or above the Youden threshold (0.600): biopsy ' \
        'range'
    ops = operating_points(0.3, {'threshold_0.5': 0.5})
    assert headline(0.3, ops)['text'] == 'Below the 0.5 threshold (0.500)'
    ops = operating_points(0.3, {'sensitivity_0.95': 0.2,
                                 'sensitivity_0.90': 0.35})
    # reached 0.95's threshold, not 0.90's: the highest reached is named
    assert headline(0.3, ops)['operating_point'] == 'sensitivity_0.95'
    assert 'below the 90 %-sensitivity threshold (0.350)' in [
        o['text'] for o in ops]
