"""The stock-style tools: train, resume, test (with mmengine checkpoints under torch's weights_only default)
and a real 2-process CPU distributed run."""
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
HERE = osp.dirname(osp.abspath(__file__))


def _run(args, cwd, env_extra=None, timeout=600):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, REPO]), OMP_NUM_THREADS='1')
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable] + args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f'{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}'
    return proc


@pytest.fixture(scope='module')
def tiny_project(tmp_path_factory):
    """32x32 images of two classes (bright vs dark) and a config factory."""
    root = tmp_path_factory.mktemp('tiny_cls')
    rng = np.random.default_rng(0)
    for cls, level in (('benign', 60), ('malignant', 190)):
        os.makedirs(root / 'data' / cls)
        for i in range(8):
            img = np.clip(rng.normal(level, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / 'data' / cls / f'{i}.png')
    template = open(osp.join(HERE, 'tiny_cls_config.py.tmpl')).read()

    def make_config(max_iters, ckpt_interval):
        path = root / f'cfg_{max_iters}_{ckpt_interval}.py'
        path.write_text(template.format(data_root=str(root / 'data'), max_iters=max_iters,
                                        ckpt_interval=ckpt_interval))
        return str(path)

    return root, make_config


def test_train_resume_and_test(tiny_project):
    root, make_config = tiny_project
    cfg = make_config(max_iters=6, ckpt_interval=3)
    work = root / 'work_resume'
    # stop after 3 iterations, then resume the same run to 6
    _run(['tools/train.py', cfg, '--work-dir', str(work), '--cfg-options', 'train_cfg.max_iters=3'], REPO)
    assert osp.isfile(work / 'iter_3.pth')
    # the checkpoint holds mmengine's message hub (HistoryBuffer, numpy): must load under weights_only=True
    import mmbus.registry  # noqa: F401
    ckpt = torch.load(work / 'iter_3.pth', weights_only=True)
    assert ckpt['meta']['iter'] == 3
    proc = _run(['tools/train.py', cfg, '--work-dir', str(work), '--resume', str(work / 'iter_3.pth')], REPO)
    assert 'resumed epoch: 0, iter: 3' in proc.stdout + proc.stderr
    assert torch.load(work / 'iter_6.pth', weights_only=True)['meta']['iter'] == 6
    # auto-resume (no path) picks the latest checkpoint and has nothing left to do
    _run(['tools/train.py', cfg, '--work-dir', str(work), '--resume'], REPO)

    metrics_file = root / 'metrics.json'
    _run(['tools/test.py', cfg, str(work / 'iter_6.pth'), '--work-dir', str(work),
          '--out', str(root / 'preds.pkl'), '--out-metrics', str(metrics_file)], REPO)
    metrics = json.loads(metrics_file.read_text())
    assert 0.0 <= metrics['accuracy/top1'] <= 100.0
    assert osp.getsize(root / 'preds.pkl') > 0


def test_bad_resume_path_is_named(tiny_project):
    root, make_config = tiny_project
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, REPO]))
    proc = subprocess.run([sys.executable, 'tools/train.py', make_config(2, 2), '--resume',
                           str(root / 'nope.pth')], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert 'nope.pth does not exist' in proc.stderr
    # a missing load_from (e.g. SoftTeacher before its supervised detector exists): one line, no traceback
    cfg = make_config(2, 2)
    proc = subprocess.run([sys.executable, 'tools/train.py', cfg, '--cfg-options',
                           f'load_from={root / "absent.pth"}'], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    assert f'{cfg}: load_from checkpoint {root / "absent.pth"} does not exist' in proc.stderr


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_process_cpu_distributed_training(tiny_project):
    root, make_config = tiny_project
    cfg = make_config(max_iters=4, ckpt_interval=4)
    work = root / 'work_ddp'
    _run(['-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={_free_port()}',
          'tools/train.py', cfg, '--launcher', 'pytorch', '--work-dir', str(work)], REPO,
         env_extra={'CUDA_VISIBLE_DEVICES': ''})
    w0 = torch.load(work / 'rank0_weights.pt')
    w1 = torch.load(work / 'rank1_weights.pt')
    assert w0.keys() == w1.keys()
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=0, msg=f'ranks differ in {k}')
    import mmbus.registry  # noqa: F401  (the safe globals of mmengine's checkpoints, as in the test above)
    initial = torch.load(work / 'iter_4.pth', weights_only=True)
    assert initial['meta']['iter'] == 4
    # the log says both processes took part
    logs = [open(osp.join(dp, f)).read() for dp, _, fs in os.walk(work) for f in fs if f.endswith('.log')]
    assert any('world_size: 2' in log.replace('World size', 'world_size') or 'Distributed training: True' in log
               for log in logs)


def test_an_empty_test_split_is_evaluated_from_its_misses(tiny_project):
    """Detector crops where the detector found no nodule: the crop split is empty, its misses are listed; the
    test reports the misses as wrong answers instead of failing in mmengine's loop."""
    root, make_config = tiny_project
    cfg = make_config(max_iters=2, ckpt_interval=2)
    work = root / 'work_empty'
    _run(['tools/train.py', cfg, '--work-dir', str(work)], REPO)
    crops = root / 'empty_crops'
    crops.mkdir()
    (crops / 'test.json').write_text(json.dumps(dict(metainfo=dict(classes=['benign', 'malignant']), data_list=[])))
    missed = [dict(file_name='a.png', true_label=1), dict(file_name='b.png', true_label=0),
              dict(file_name='c.png', true_label=1)]
    (crops / 'test_missed.json').write_text(json.dumps(missed))
    derived = root / 'empty_test.py'
    derived.write_text(f"_base_ = ['{cfg}']\n"
                       f"test_dataloader = dict(dataset=dict(_delete_=True, type='BUSCropDataset', "
                       f"data_root='{crops}', ann_file='test.json', pipeline={{{{_base_.pipeline}}}}))\n"
                       f"test_evaluator = dict(_delete_=True, type='BinaryDiagnosticMetric', prefix='diag', "
                       f"missed='{crops / 'test_missed.json'}')\n")
    metrics_file = root / 'empty_metrics.json'
    proc = _run(['tools/test.py', str(derived), str(work / 'iter_2.pth'), '--work-dir', str(work),
                 '--out', str(root / 'empty.pkl'), '--out-metrics', str(metrics_file)], REPO)
    assert 'no sample to test' in proc.stdout
    m = json.loads(metrics_file.read_text())
    # three misses, all wrong answers: both malignant ones scored 0, the benign one 1 -> AUC 0, accuracy 0
    assert (m['diag/num_samples'], m['diag/num_missed']) == (3.0, 3.0)
    assert m['diag/auc'] == 0.0 and m['diag/accuracy'] == 0.0
    import pickle
    with open(root / 'empty.pkl', 'rb') as f:
        assert pickle.load(f) == []
