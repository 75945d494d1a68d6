"""One odd image (2 x 5000 px, zero bytes, not an image, 16-bit grey or colour) is reported by name and the batch
goes on; outputs are written atomically; an interrupted batch keeps the images already done."""
import json
import os

import cv2
import numpy as np
import pytest
from rel_helpers import load_tool


@pytest.fixture(scope='module')
def odd_images(tmp_path_factory):
    d = tmp_path_factory.mktemp('odd')
    rng = np.random.default_rng(0)
    cv2.imwrite(str(d / 'a_ok.png'), rng.integers(0, 256, (72, 96, 3), dtype=np.uint8))
    cv2.imwrite(str(d / 'b_thin.png'), np.full((2, 5000, 3), 128, np.uint8))  # mmdet's Resize fails on it
    (d / 'c_empty.png').write_bytes(b'')
    (d / 'd_text.png').write_bytes(b'this is not a png')
    cv2.imwrite(str(d / 'e_ok.png'), rng.integers(0, 256, (80, 64, 3), dtype=np.uint8))
    # 12 bits in a 16-bit PNG: mmcv.imread would keep the top 8 bits (values 0-15, nearly black)
    cv2.imwrite(str(d / 'f_deep.png'), rng.integers(0, 4096, (72, 96), dtype=np.uint16))
    # the same in colour: Pillow calls it plain RGB, only the decoded samples show 16 bits
    cv2.imwrite(str(d / 'g_deep_rgb.png'), rng.integers(0, 4096, (72, 96, 3), dtype=np.uint16))
    return d


def test_each_failure_stays_with_its_image(inferencer, odd_images):
    res = {os.path.basename(r['image']): r for r in inferencer(str(odd_images))}
    assert [res[n]['status'] for n in sorted(res)] == ['ok', 'error', 'error', 'error', 'ok', 'error', 'error']
    thin = res['b_thin.png']['error']
    assert 'b_thin.png' in thin and 'detector failed' in thin and '5000x2 px' in thin
    empty = res['c_empty.png']['error']
    assert 'c_empty.png' in empty and 'empty file (0 bytes)' in empty and 'Assertion' not in empty
    assert 'd_text.png' in res['d_text.png']['error'] and 'not a decodable image' in res['d_text.png']['error']
    for name in ('f_deep.png', 'g_deep_rgb.png'):
        deep = res[name]['error']
        raw = cv2.imread(str(odd_images / name), cv2.IMREAD_UNCHANGED)
        assert f'{name} is a 16-bit image (values {raw.min()} to {raw.max()})' in deep and 'grey-level window' in deep


def test_infer_cli_writes_every_image_and_no_temp_files(tiny_det, tiny_semi, odd_images, tmp_path):
    infer = load_tool('infer')
    out = tmp_path / 'out'
    infer.main([str(odd_images), '--det-config', tiny_det[0], '--det-checkpoint', tiny_det[1],
                '--cls-config', tiny_semi[0], '--cls-checkpoint', tiny_semi[1], '--score-thr', '0',
                '--out-dir', str(out)])
    results = json.loads((out / 'results.json').read_text())
    assert len(results) == 7
    assert sorted(os.listdir(out / 'vis')) == ['a_ok.png', 'e_ok.png']
    leftovers = [f for _, _, fs in os.walk(out) for f in fs if '.tmp' in f]
    assert leftovers == []


def test_interrupted_batch_keeps_the_finished_images(tiny_det, tiny_semi, odd_images, tmp_path, monkeypatch):
    from mmbus.apis.inference import BUSInferencer
    infer = load_tool('infer')
    real = BUSInferencer.infer_image

    def stop_at_third(self, path):
        if path.endswith('c_empty.png'):
            raise KeyboardInterrupt
        return real(self, path)

    monkeypatch.setattr(BUSInferencer, 'infer_image', stop_at_third)
    out = tmp_path / 'out'
    with pytest.raises(SystemExit) as e:
        infer.main([str(odd_images), '--det-config', tiny_det[0], '--det-checkpoint', tiny_det[1],
                    '--cls-config', tiny_semi[0], '--cls-checkpoint', tiny_semi[1], '--score-thr', '0',
                    '--out-dir', str(out)])
    assert e.value.code == 130
    done = [os.path.basename(r['image']) for r in json.loads((out / 'results.json').read_text())]
    assert done == ['a_ok.png', 'b_thin.png']
    assert (out / 'results.csv').read_text().count('\n') == 3  # header + 2 images
    assert os.listdir(out / 'vis') == ['a_ok.png']


def test_annotated_images_are_replaced_atomically(tmp_path, monkeypatch):
    """A writer killed half-way leaves the previous file, never a truncated one."""
    from mmbus.apis.inference import save_annotated
    img = tmp_path / 'in.png'
    cv2.imwrite(str(img), np.full((20, 30, 3), 100, np.uint8))
    rec = dict(image=str(img), status='no_nodule', error=None, nodules=[])
    (path, ) = save_annotated([rec], str(tmp_path / 'vis'))
    before = open(path, 'rb').read()

    def killed_while_writing(tmp, data):
        with open(tmp, 'wb') as f:
            f.write(b'\x89PNG partial')
        raise KeyboardInterrupt

    monkeypatch.setattr(cv2, 'imwrite', killed_while_writing)
    with pytest.raises(KeyboardInterrupt):
        save_annotated([rec], str(tmp_path / 'vis'))
    assert open(path, 'rb').read() == before
    assert os.listdir(tmp_path / 'vis') == ['in.png']


def test_crop_extraction_names_an_empty_image(tmp_path):
    from mmbus.apis.crop_extraction import extract_split_crops
    (tmp_path / 'empty.png').write_bytes(b'')
    ann = tmp_path / 'split.json'
    ann.write_text(json.dumps(dict(
        images=[dict(id=1, file_name='empty.png', width=10, height=10, pathology='benign')],
        annotations=[dict(id=1, image_id=1, bbox=[1, 1, 4, 4], category_id=1)])))
    with pytest.raises(FileNotFoundError, match='empty.png is an empty file'):
        extract_split_crops(str(ann), str(tmp_path), str(tmp_path / 'crops'), 'basic_train', show_progress=False)
