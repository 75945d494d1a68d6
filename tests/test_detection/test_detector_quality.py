"""Quality bar (slow, ``-m slow``): the CPU-quick detector config learns the synthetic
ultrasound data, mean box IoU (paper's ASC) >= 0.75 on the test split.

Uses the data developer's generator (mmbus.datasets.synthetic + the BUSI converter/splitter),
hospital style 'a', 320 images (the main job's hospital A), and trains
configs/mmbus/faster_rcnn_vgg16_bus_cpu_quick.py unchanged except for the data location.
About 12 min on 2 idle cores (README, Stage 1: 0.780 on this data).
"""
import os.path as osp

import pytest
import torch

pytestmark = pytest.mark.slow

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='module')
def hospital_a(tmp_path_factory):
    synthetic = pytest.importorskip('mmbus.datasets.synthetic_dataset')
    convert = pytest.importorskip('mmbus.datasets.converters.convert')
    root = str(tmp_path_factory.mktemp('hospital_a'))
    synthetic.make_synthetic_dataset(root, n_images=320, style='a', seed=0, progress=False)
    convert.convert_and_split('busi', root, root, seed=0, balanced=('basic_train', 'val'),
                              verbose=False)
    return root


def test_cpu_quick_detector_reaches_mean_iou_075(hospital_a, tmp_path):
    from mmengine.config import Config
    from mmengine.runner import Runner

    import mmbus.registry  # noqa: F401
    from det_fixtures import set_data
    torch.set_num_threads(2)
    cfg = Config.fromfile(osp.join(REPO, 'configs/mmbus/faster_rcnn_vgg16_bus_cpu_quick.py'))
    img_scale = next(t['scale'] for t in cfg.test_pipeline if t['type'] == 'Resize')
    set_data(cfg, hospital_a, img_scale)
    cfg.train_dataloader.batch_size = 2
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    assert metrics['bus_box/mean_iou'] >= 0.75, metrics
