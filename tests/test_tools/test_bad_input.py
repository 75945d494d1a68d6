"""The tools refuse bad input with one clear line and a non-zero exit instead of a traceback or a silent
exit 0: an inference where every image failed, a missing annotation file or detector checkpoint, and a copied
work dir that must resume from its own checkpoint."""
import importlib.util
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
HERE = osp.dirname(osp.abspath(__file__))


def _tool(args, cwd=REPO, timeout=600):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, REPO]), OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable] + [str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _load_infer():
    spec = importlib.util.spec_from_file_location('_infer_tool', osp.join(REPO, 'tools', 'infer.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Inferencer:
    """Stands for BUSInferencer: one record per input, an error for names containing 'bad'."""

    def __init__(self, *args, **kwargs):
        pass

    def iter_results(self, inputs, show_progress=False):
        for path in inputs:
            if 'bad' in path:
                yield dict(image=path, status='error', error=f'cannot read {path}', width=None, height=None,
                           nodules=[])
            else:
                yield dict(image=path, status='no_nodule', error=None, width=8, height=8, nodules=[])


@pytest.fixture
def infer(monkeypatch):
    mod = _load_infer()
    monkeypatch.setattr(mod, 'BUSInferencer', _Inferencer)
    return mod


def _infer_args(out, *images):
    return [*images, '--det-config', 'd.py', '--det-checkpoint', 'd.pth', '--cls-config', 'c.py',
            '--cls-checkpoint', 'c.pth', '--out-dir', str(out), '--no-draw']


def test_infer_fails_when_every_image_failed(infer, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        infer.main(_infer_args(tmp_path, 'bad1.png', 'bad2.png'))
    assert e.value.code == 'error: all 2 images failed (see the [error] lines above)'
    out = capsys.readouterr().out
    assert '[error] bad1.png: cannot read bad1.png' in out and '[error] bad2.png' in out
    # the results are written all the same
    assert [r['status'] for r in json.load(open(tmp_path / 'results.json'))] == ['error', 'error']


def test_infer_reports_failures_and_goes_on(infer, tmp_path, capsys):
    infer.main(_infer_args(tmp_path, 'bad1.png', 'good.png'))  # exit 0: one image went through
    cap = capsys.readouterr()
    assert '1 of 2 images failed' in cap.err and '[no nodule] good.png' in cap.out


def _one_clear_line(proc, *fragments):
    assert proc.returncode != 0
    assert 'Traceback' not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith('error:')]
    assert len(lines) == 1, proc.stderr[-3000:]
    for f in fragments:
        assert str(f) in lines[0], lines[0]


def test_extract_crops_missing_files(tmp_path):
    root = tmp_path / 'hospital'
    (root / 'annotations').mkdir(parents=True)
    proc = _tool(['tools/extract_crops.py', root, '--out-dir', tmp_path / 'out', '--splits', 'test'])
    _one_clear_line(proc, root / 'annotations' / 'test.json', 'not found')
    (root / 'annotations' / 'test.json').write_text(json.dumps(dict(images=[], annotations=[], categories=[])))
    proc = _tool(['tools/extract_crops.py', root, '--out-dir', tmp_path / 'out', '--splits', 'test',
                  '--det-config', 'configs/mmbus/faster_rcnn_vgg16_bus_cpu_quick.py',
                  '--det-checkpoint', tmp_path / 'nope.pth'])
    _one_clear_line(proc, tmp_path / 'nope.pth', 'not found')


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """32x32 images of two classes and a config factory (the tiny classifier of tiny_cls_config.py.tmpl)."""
    root = tmp_path_factory.mktemp('tiny_bad_input')
    rng = np.random.default_rng(0)
    for cls, level in (('benign', 60), ('malignant', 190)):
        os.makedirs(root / 'data' / cls)
        for i in range(4):
            img = np.clip(rng.normal(level, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / 'data' / cls / f'{i}.png')
    template = open(osp.join(HERE, 'tiny_cls_config.py.tmpl')).read()

    def make_config(name, max_iters=2, **dataset):
        text = template.format(data_root=str(root / 'data'), max_iters=max_iters, ckpt_interval=2)
        if dataset:
            extra = ''.join(f', {k}={v!r}' for k, v in dataset.items())
            text = text.replace('pipeline=pipeline)', f'pipeline=pipeline{extra})')
        path = root / f'{name}.py'
        path.write_text(text)
        return path

    return root, make_config


def test_train_missing_annotation_file(tiny):
    root, make_config = tiny
    proc = _tool(['tools/train.py', make_config('no_ann', ann_file='meta/train.txt'), '--work-dir',
                  root / 'work_no_ann'])
    _one_clear_line(proc, 'train_dataloader.dataset.ann_file', root / 'data' / 'meta' / 'train.txt')


def test_train_names_the_missing_unlabelled_split_of_a_soft_teacher(tmp_path):
    """A SoftTeacher config names its labelled dataset and the unlabelled split built on it: a missing
    extended-train file is named as that split's, before any dataset is built."""
    from mmengine.config import Config
    spec = importlib.util.spec_from_file_location('_train_tool', osp.join(REPO, 'tools', 'train.py'))
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    cfg = Config.fromfile(osp.join(REPO, 'configs/mmbus/soft_teacher_faster_rcnn_vgg16_bus_cpu_quick.py'))
    (tmp_path / 'annotations').mkdir()
    for split in ('basic_train', 'val'):
        (tmp_path / 'annotations' / f'{split}.json').write_text('{}')
    cfg.train_dataloader.dataset.labelled.data_root = str(tmp_path)
    cfg.val_dataloader.dataset.data_root = str(tmp_path)
    cfg.val_evaluator[0].ann_file = str(tmp_path / 'annotations' / 'val.json')
    with pytest.raises(FileNotFoundError, match=r'^train_dataloader\.dataset\.unlabelled\.ann_file: annotation '
                       rf'file {tmp_path}/annotations/extended_train\.json does not exist$'):
        train.check_data_files(cfg)
    (tmp_path / 'annotations' / 'extended_train.json').write_text('{}')
    train.check_data_files(cfg)  # everything there: no error


def test_copied_work_dir_resumes_from_its_own_checkpoint(tiny):
    root, make_config = tiny
    a, b, c = root / 'A', root / 'B', root / 'C'
    proc = _tool(['tools/train.py', make_config('two'), '--work-dir', a])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert open(a / 'last_checkpoint').read().strip() == str(a / 'iter_2.pth')  # mmengine: an absolute path
    shutil.copytree(a, b)
    shutil.copytree(a, c)
    for f in a.glob('*.pth'):
        f.unlink()
    four = make_config('four', max_iters=4)
    proc = _tool(['tools/train.py', four, '--work-dir', b, '--resume'])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'resumed epoch: 0, iter: 2' in proc.stdout + proc.stderr
    assert torch.load(b / 'iter_4.pth', weights_only=False)['meta']['iter'] == 4
    assert str(b / 'iter_2.pth') in proc.stdout + proc.stderr and str(a) + '/' not in proc.stdout + proc.stderr
    # with the original's checkpoint back, the copy still reads its own
    shutil.copy(c / 'iter_2.pth', a / 'iter_2.pth')
    from mmbus.utils.checkpoint import find_resumable_checkpoint
    assert find_resumable_checkpoint(str(c)) == str(c / 'iter_2.pth')
    # the file the marker names is gone from the copy too: the newest intact one left, with a warning
    (c / 'iter_2.pth').rename(c / 'iter_1.pth')
    os.unlink(a / 'iter_2.pth')
    logs = []
    assert find_resumable_checkpoint(str(c), log=logs.append) == str(c / 'iter_1.pth')
    assert 'iter_2.pth' in logs[0] and 'iter_1.pth' in logs[0]
    # and none at all: a message naming what to delete
    (c / 'iter_1.pth').unlink()
    from mmbus.utils.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match='to start this run again from scratch, delete'):
        find_resumable_checkpoint(str(c))
