"""BUSDetVisualizer: doctor's box yellow, detector's top box red (paper, Figure 3)."""
import mmcv
import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.structures import InstanceData

import mmbus.registry  # noqa: F401
from mmbus.visualization.bus_det_visualizer import BUSDetVisualizer

YELLOW_BGR = np.array([0, 255, 255])
RED_BGR = np.array([0, 0, 255])


def sample():
    s = DetDataSample(metainfo=dict(img_id=1, ori_shape=(120, 160), img_shape=(120, 160)))
    s.gt_instances = InstanceData(bboxes=HorizontalBoxes(torch.tensor([[20., 20., 80., 70.]])),
                                  labels=torch.tensor([0]))
    s.pred_instances = InstanceData(
        bboxes=torch.tensor([[100., 30., 150., 100.], [30., 30., 90., 80.]]),
        scores=torch.tensor([0.4, 0.9]), labels=torch.tensor([0, 0]))
    return s


def near(pixel, colour, tol=60):
    return np.abs(pixel.astype(int) - colour).max() <= tol


@pytest.mark.parametrize('top_k', [1, None])
def test_gt_yellow_top_prediction_red(tmp_path, top_k):
    vis = BUSDetVisualizer(name=f'bus_vis_{top_k}', top_k=top_k, line_width=3)
    image = np.full((120, 160, 3), 90, np.uint8)
    out = tmp_path / 'drawn.png'
    vis.add_datasample('x', image, data_sample=sample(), out_file=str(out), pred_score_thr=0.3)
    drawn = mmcv.imread(str(out))  # BGR on disk
    assert drawn.shape == (120, 160, 3)  # one image, not GT/prediction side by side
    assert near(drawn[45, 20], YELLOW_BGR)  # left edge of the GT box
    assert near(drawn[55, 90], RED_BGR)  # right edge of the 0.9 box
    # the 0.4 box is drawn only when every box above the threshold is asked for
    assert near(drawn[65, 150], RED_BGR) == (top_k is None)
    assert near(drawn[5, 5], np.array([90, 90, 90]), tol=2)  # background untouched


def test_threshold_and_no_prediction(tmp_path):
    vis = BUSDetVisualizer(name='bus_vis_thr', top_k=None)
    image = np.full((120, 160, 3), 90, np.uint8)
    drawn = vis.draw_nodules(image, sample(), pred_score_thr=0.95)  # nothing above 0.95
    assert not near(drawn[55, 90], [255, 0, 0])  # RGB in memory
    assert near(drawn[45, 20], [255, 255, 0])
    with pytest.raises(ValueError, match='top_k'):
        BUSDetVisualizer(name='bus_vis_bad', top_k=0)
