"""BoxIoUMetric maths on hand-worked cases (numbers in the comments)."""
import math
import os
import sys

import numpy as np
import pytest
import torch

from mmbus.evaluation.box_iou_metric import BoxIoUMetric, box_iou_matrix


def result(gts, boxes, scores, img_id=0):
    return dict(img_id=img_id, gt_bboxes=np.array(gts, np.float32).reshape(-1, 4),
                pred_bboxes=np.array(boxes, np.float32).reshape(-1, 4),
                pred_scores=np.array(scores, np.float32).reshape(-1))


# Image 1: G1=[0,0,10,10], G2=[20,20,30,30]
#   P1=[0,0,10,5] s.9 (IoU G1 = 50/100 = 0.5), P2=G2 s.8 (IoU 1), P3=G1 s.3 (IoU 1)
# Image 2: G3=[0,0,20,20]
#   P4=[10,0,30,20] s.7 (inter 200, union 600: IoU 1/3), P5=G3 s.2 (IoU 1)
# Image 3: normal, P6=[0,0,5,5] s.6 (false positive)
CASE = [
    result([[0, 0, 10, 10], [20, 20, 30, 30]],
           [[0, 0, 10, 5], [20, 20, 30, 30], [0, 0, 10, 10]], [.9, .8, .3], 1),
    result([[0, 0, 20, 20]], [[10, 0, 30, 20], [0, 0, 20, 20]], [.7, .2], 2),
    result([], [[0, 0, 5, 5]], [.6], 3),
]


def test_box_iou_matrix_hand_values():
    ious = box_iou_matrix([[0, 0, 10, 10], [0, 0, 20, 20]],
                          [[0, 0, 10, 5], [10, 0, 30, 20], [50, 50, 60, 60]])
    np.testing.assert_allclose(ious, [[0.5, 0, 0], [50 / 400, 1 / 3, 0]], atol=1e-7)
    assert box_iou_matrix(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)


def test_no_prediction_counts_as_zero():
    metric = BoxIoUMetric()
    out = metric.compute_metrics([result([[0, 0, 10, 10]], [], [])])
    assert out['mean_iou'] == 0 and out['std_iou'] == 0
    assert out['detected@0.5'] == 0
    assert all(out[f'froc_sens@{f:g}fp'] == 0 for f in (0.5, 1, 2, 4))
    assert out['num_nodules'] == 1 and out['num_images'] == 1


def test_top_score_several_nodules_and_predictions():
    # top_k = number of GT per image: image 1 keeps P1, P2 -> G1 0.5, G2 1.0;
    # image 2 keeps P4 -> 1/3. mean = 1.8333/3 = 0.61111, population std = 0.28328.
    out = BoxIoUMetric().compute_metrics(CASE)
    ious = np.array([0.5, 1.0, 1 / 3])
    assert out['mean_iou'] == pytest.approx(ious.mean(), abs=1e-6)
    assert out['mean_iou'] == pytest.approx(0.611111, abs=1e-6)
    assert out['std_iou'] == pytest.approx(0.283279, abs=1e-6)
    assert out['detected@0.5'] == pytest.approx(2 / 3)  # IoU 0.5 counts (>=)
    assert out['num_nodules'] == 3 and out['num_images'] == 3


def test_top1_and_max_iou_modes():
    # top_k=1: image 1 keeps only P1 -> G1 0.5, G2 0; image 2 P4 -> 1/3.
    out = BoxIoUMetric(top_k=1).compute_metrics(CASE)
    assert out['mean_iou'] == pytest.approx((0.5 + 0 + 1 / 3) / 3, abs=1e-6)
    # max_iou over all boxes: every nodule has an exact box -> 1, 1, 1.
    out = BoxIoUMetric(best_box='max_iou').compute_metrics(CASE)
    assert out['mean_iou'] == pytest.approx(1.0) and out['std_iou'] == pytest.approx(0)
    # max_iou with score_thr 0.5 drops P3 (.3) and P5 (.2): G1 0.5, G2 1, G3 1/3.
    out = BoxIoUMetric(best_box='max_iou', score_thr=0.5).compute_metrics(CASE)
    assert out['mean_iou'] == pytest.approx(0.611111, abs=1e-6)


def test_froc_hand_worked():
    # Ranked: P1 .9 TP(G1) | P2 .8 TP(G2) | P4 .7 FP | P6 .6 FP | P3 .3 FP (G1 already hit)
    #         | P5 .2 TP(G3).   cumulative (tp, fp): (1,0) (2,0) (2,1) (2,2) (2,3) (3,3)
    # 3 images: 0.5 FP/img -> fp <= 1.5 -> tp 2 -> 2/3 ; 1 FP/img -> fp <= 3 -> tp 3 -> 1.
    out = BoxIoUMetric().compute_metrics(CASE)
    assert out['froc_sens@0.5fp'] == pytest.approx(2 / 3)
    assert out['froc_sens@1fp'] == pytest.approx(1.0)
    assert out['froc_sens@2fp'] == pytest.approx(1.0)
    assert out['froc_sens@4fp'] == pytest.approx(1.0)
    # A stricter IoU threshold turns P1 (IoU 0.5) into a FP: (0,1) (1,1) (1,2) (1,3) (2,3) (3,3)
    # -> 0.5 FP/img: fp <= 1.5 -> tp 1 -> 1/3.
    out = BoxIoUMetric(iou_thr=0.6, fp_rates=(0.5, 1)).compute_metrics(CASE)
    assert out['froc_sens@0.5fp'] == pytest.approx(1 / 3)
    assert out['froc_sens@1fp'] == pytest.approx(1.0)
    assert out['detected@0.6'] == pytest.approx(1 / 3)


def test_froc_equal_scores_enter_together():
    # Two boxes with the same score: one TP and one FP; one image, one nodule.
    # They cannot be separated, so at 0.5 FP/image (fp <= 0.5) nothing is found.
    res = [result([[0, 0, 10, 10]], [[0, 0, 10, 10], [50, 50, 60, 60]], [.5, .5])]
    out = BoxIoUMetric(fp_rates=(0.5, 1)).compute_metrics(res)
    assert out['froc_sens@0.5fp'] == 0.0
    assert out['froc_sens@1fp'] == 1.0


def test_only_normal_images_warns_and_reports_zero():
    out = BoxIoUMetric().compute_metrics([result([], [[0, 0, 5, 5]], [.9])])
    assert out['num_nodules'] == 0 and out['mean_iou'] == 0.0


def test_bad_arguments():
    with pytest.raises(ValueError, match='best_box'):
        BoxIoUMetric(best_box='best')
    with pytest.raises(ValueError, match='top_k'):
        BoxIoUMetric(top_k=0)
    with pytest.raises(ValueError, match='iou_thr'):
        BoxIoUMetric(iou_thr=0)


def make_sample(img_id=7):
    from mmdet.structures import DetDataSample
    from mmdet.structures.bbox import HorizontalBoxes
    from mmengine.structures import InstanceData
    sample = DetDataSample(metainfo=dict(img_id=img_id, scale_factor=(2.0, 0.5)))
    # test pipelines load annotations after Resize: GT in original-image pixels
    sample.gt_instances = InstanceData(
        bboxes=HorizontalBoxes(torch.tensor([[0., 0., 10., 10.]])), labels=torch.tensor([0]))
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor([[0., 0., 10., 5.]]), scores=torch.tensor([0.9]),
        labels=torch.tensor([0]))
    return sample.to_dict()


def test_process_keeps_plain_arrays_with_default_prefix():
    metric = BoxIoUMetric()
    metric.process({}, [make_sample()])
    (stored, ) = metric.results
    assert all(isinstance(v, np.ndarray) for k, v in stored.items() if k != 'img_id')
    np.testing.assert_allclose(stored['gt_bboxes'], [[0, 0, 10, 10]])
    out = metric.evaluate(1)
    assert out['bus_box/mean_iou'] == pytest.approx(0.5)  # default prefix bus_box


def test_ground_truth_from_ann_file(tmp_path):
    import json
    coco = dict(images=[dict(id=7, file_name='a.png', width=50, height=50)],
                annotations=[dict(id=1, image_id=7, category_id=1, bbox=[0, 0, 10, 5],
                                  area=50, iscrowd=0)],
                categories=[dict(id=1, name='nodule')])
    (tmp_path / 'a.json').write_text(json.dumps(coco))
    metric = BoxIoUMetric(ann_file=str(tmp_path / 'a.json'), prefix='x')
    metric.process({}, [make_sample()])  # the file's box equals the prediction
    assert metric.evaluate(1)['x/mean_iou'] == pytest.approx(1.0)
    with pytest.raises(KeyError, match='image id 8'):
        metric.process({}, [make_sample(img_id=8)])
    (tmp_path / 'b.json').write_text('{"images": [{"file_name": "a.png"}]}')
    with pytest.raises(ValueError, match='b.json'):
        BoxIoUMetric(ann_file=str(tmp_path / 'b.json'))


def test_two_ranks_concatenated_equal_single_process():
    # BaseMetric.collect_results concatenates per-rank result lists; the metric must not
    # depend on which rank saw which image.
    rank0, single = BoxIoUMetric(), BoxIoUMetric()
    assert rank0.compute_metrics(CASE[0::2] + CASE[1::2]) == single.compute_metrics(CASE)


def _dist_worker(rank, world_size, port, out_dir):
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=world_size)
    from mmbus.evaluation.box_iou_metric import BoxIoUMetric as Metric
    metric = Metric()
    # Each rank holds its own share of images (as DefaultSampler would give it).
    metric.results.extend(CASE[rank::world_size])
    out = metric.evaluate(size=len(CASE))
    torch.save(out, os.path.join(out_dir, f'rank{rank}.pt'))
    from mmbus.utils.distributed import teardown_distributed
    teardown_distributed()  # a barrier and the gloo threads' settling first: see its docstring


@pytest.mark.skipif(sys.platform != 'linux', reason='gloo test written for linux')
def test_real_two_process_gloo_collection(tmp_path):
    import socket
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    mp.start_processes(_dist_worker, args=(2, port, str(tmp_path)), nprocs=2,
                       start_method='fork')
    expected = {f'bus_box/{k}': v for k, v in BoxIoUMetric().compute_metrics(CASE).items()}
    for rank in (0, 1):  # rank 0 computes, the result is broadcast to every rank
        got = torch.load(tmp_path / f'rank{rank}.pt', weights_only=False)
        assert got.keys() == expected.keys()
        for k in expected:
            assert math.isclose(got[k], expected[k], abs_tol=1e-9), k
