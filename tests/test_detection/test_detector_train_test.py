"""A few-iteration train + test of the detector on a tiny synthetic fixture (mmengine Runner),
the same through a config living outside the repository (custom_imports only), and the
CLI (tools/train.py, tools/test.py --show-dir)."""
import glob
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.runner import Runner

import mmbus.registry  # noqa: F401
from det_fixtures import PYTHON, REPO, make_bus_coco, tiny_detector_cfg

SPLITS = dict(basic_train=4, val=2, test=3)


@pytest.fixture(scope='module')
def fixture_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('bus_det'))
    make_bus_coco(root, SPLITS, normal_every=3)  # includes normal images (no box)
    return root


def test_train_then_test_with_runner(fixture_root, tmp_path):
    torch.set_num_threads(1)
    cfg = tiny_detector_cfg(fixture_root, str(tmp_path / 'work'), max_iters=3)
    cfg.train_dataloader.dataset.filter_cfg = dict(filter_empty_gt=False)  # normal images too
    cfg.custom_hooks = [dict(type='TwoPhaseFineTuneHook', freeze_iters=2)]
    cfg.default_hooks.visualization = dict(type='DetVisualizationHook', draw=True,
                                           test_out_dir='vis', score_thr=0.0)
    runner = Runner.from_cfg(cfg)
    runner.train()
    ckpt = tmp_path / 'work' / 'iter_3.pth'
    assert ckpt.exists()
    metrics = runner.test()
    for key in ('coco/bbox_mAP', 'bus_box/mean_iou', 'bus_box/std_iou', 'bus_box/detected@0.5',
                'bus_box/froc_sens@1fp'):
        assert key in metrics, key
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics['bus_box/num_images'] == 3 and metrics['bus_box/num_nodules'] == 2
    drawn = glob.glob(str(tmp_path / 'work' / '*' / 'vis' / '*.png'))
    assert len(drawn) == 3  # BUSDetVisualizer wrote every test image


EXTERNAL_CONFIG = '''
# An mmdet project elsewhere that reuses mmbus's detector through _base_ and custom_imports.
_base_ = [{base!r}]
custom_imports = dict(imports=['mmbus.registry'], allow_failed_imports=False)
work_dir = {work_dir!r}
'''

EXTERNAL_SCRIPT = '''
import sys
sys.path.insert(0, {tests_dir!r})
assert 'mmbus' not in sys.modules
from mmengine.config import Config
from mmengine.runner import Runner
import torch
torch.set_num_threads(1)
cfg = Config.fromfile({config!r})  # imports mmbus through custom_imports
from det_fixtures import set_data
set_data(cfg, {root!r})
cfg.model.roi_head.bbox_head.fc_out_channels = 64
cfg.model.rpn_head.feat_channels = 32
cfg.model.train_cfg.rcnn.sampler.num = 16
cfg.train_cfg.max_iters = 2
cfg.train_cfg.val_interval = 100
cfg.param_scheduler = []
cfg.default_hooks.checkpoint.interval = 2
runner = Runner.from_cfg(cfg)
runner.train()
print('METRICS', runner.test())
'''


def test_config_outside_the_repo_with_custom_imports_only(fixture_root, tmp_path):
    cfg_path = tmp_path / 'elsewhere' / 'my_bus_detector.py'
    cfg_path.parent.mkdir()
    cfg_path.write_text(EXTERNAL_CONFIG.format(
        base=osp.join(REPO, 'configs/mmbus/faster_rcnn_vgg16_bus_cpu_quick.py'),
        work_dir=str(tmp_path / 'work')))
    script = EXTERNAL_SCRIPT.format(tests_dir=osp.dirname(osp.abspath(__file__)),
                                    config=str(cfg_path), root=fixture_root)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('PYTHONPATH', None)
    proc = subprocess.run([sys.executable, '-c', script], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'bus_box/mean_iou' in proc.stdout and 'coco/bbox_mAP' in proc.stdout
    assert (tmp_path / 'work' / 'iter_2.pth').exists()


@pytest.mark.skipif(not osp.exists(osp.join(REPO, 'tools/train.py'))
                    or not osp.exists(osp.join(REPO, 'tools/test.py')),
                    reason='tools/train.py / tools/test.py not written yet')
def test_cli_train_and_test_show_dir(fixture_root, tmp_path):
    cfg = tiny_detector_cfg(fixture_root, str(tmp_path / 'work'), max_iters=2)
    cfg_path = tmp_path / 'tiny_det.py'
    cfg.dump(str(cfg_path))
    env = dict(os.environ, OMP_NUM_THREADS='1')
    train = subprocess.run([PYTHON, osp.join(REPO, 'tools/train.py'), str(cfg_path)],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    test = subprocess.run(
        [PYTHON, osp.join(REPO, 'tools/test.py'), str(cfg_path),
         str(tmp_path / 'work' / 'iter_2.pth'), '--show-dir', 'shown'],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert test.returncode == 0, test.stdout[-3000:] + test.stderr[-3000:]
    log = test.stdout + test.stderr
    assert 'coco/bbox_mAP' in log and 'bus_box/mean_iou' in log
    assert len(glob.glob(str(tmp_path / 'work' / '*' / 'shown' / '*.png'))) == SPLITS['test']
