"""Output files and folders get the permissions the umask gives (mkstemp/mkdtemp alone give
0600/0700): results, annotated images, crops, derived configs, the exported teacher."""
import os
import stat

import cv2
import numpy as np
import pytest


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_writers_follow_the_umask(umask, tmp_path, tiny_semi):
    from mmengine.config import Config

    from mmbus.apis.export import export_teacher
    from mmbus.apis.inference import save_annotated, write_results
    from mmbus.utils.io import atomic_write, atomic_write_json
    f_mode, d_mode = 0o666 & ~umask, 0o777 & ~umask

    paths = write_results([dict(image='x.png', status='error', error='e', nodules=[])], str(tmp_path / 'res'))
    img = tmp_path / 'in.png'
    cv2.imwrite(str(img), np.full((8, 8, 3), 9, np.uint8))
    drawn = save_annotated([dict(image=str(img), status='no_nodule', error=None, nodules=[])],
                           str(tmp_path / 'vis'))
    ckpt, cfg = export_teacher(tiny_semi[0], tiny_semi[1], str(tmp_path / 'export'))
    derived = atomic_write(str(tmp_path / 'cfg' / 'derived.py'), Config(dict(a=1)).dump)
    js = atomic_write_json(dict(a=1), str(tmp_path / 'j' / 'x.json'))
    for p in [paths['json'], paths['csv'], *drawn, ckpt, cfg, derived, js]:
        assert mode(p) == f_mode, (p, oct(mode(p)))
    for d in ['res', 'vis', 'export', 'cfg', 'j']:
        assert mode(tmp_path / d) == d_mode


def test_crop_folders_follow_the_umask(umask, tmp_path):
    import json

    from mmbus.apis.crop_extraction import extract_split_crops
    cv2.imwrite(str(tmp_path / 'a.png'), np.full((40, 40, 3), 90, np.uint8))
    ann = tmp_path / 'split.json'
    ann.write_text(json.dumps(dict(
        images=[dict(id=1, file_name='a.png', width=40, height=40, pathology='benign')],
        annotations=[dict(id=1, image_id=1, bbox=[10, 10, 10, 10], category_id=1)])))
    s = extract_split_crops(str(ann), str(tmp_path), str(tmp_path / 'crops'), 'val', show_progress=False)
    crops = tmp_path / 'crops' / 'val'
    assert mode(crops) == 0o777 & ~umask
    for p in [s['ann_file'], s['missed_file'], *[crops / f for f in os.listdir(crops)]]:
        assert mode(p) == 0o666 & ~umask, p
