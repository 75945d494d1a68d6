"""BoxIoUMetric: how well the detector's boxes match the doctors' boxes (paper, Table 2).

The paper's "average similarity criterion" (ASC) is, for one nodule, the IoU between the box
given by the ultrasound doctor (R_d) and the box predicted for that nodule (R_p):
``|R_d n R_p| / |R_d u R_p|``, reported as mean and standard deviation over the test nodules.
The paper feeds "the bounding box" found by Faster R-CNN to the classifier, i.e. the detector's
top-scoring box per image; it does not define what happens with several boxes. This metric
offers both readings:

- ``best_box='top_score'`` (default, the paper's pipeline): the image's answer is its
  ``k`` highest-scoring boxes, ``k = top_k`` or, when ``top_k`` is None, the number of
  ground-truth nodules in the image (1 for the paper's data). A nodule's IoU is the largest IoU
  with one of these boxes.
- ``best_box='max_iou'``: a nodule's IoU is the largest IoU with any predicted box whose score
  is at least ``score_thr`` (an upper bound that ignores the ranking).

A nodule without any (qualifying) prediction scores IoU 0 and still counts in the mean.

Reported (keys prefixed with ``prefix``, default ``bus_box``):

- ``mean_iou``, ``std_iou``: mean and population standard deviation (ddof=0) of the per-nodule
  IoU (ASC) over all ground-truth nodules;
- ``detected@0.5``: share of nodules whose IoU (as above) is >= ``iou_thr`` (0.5);
- ``froc_sens@{f}fp`` for f in ``fp_rates`` (0.5, 1, 2, 4): FROC sensitivity, i.e. the share
  of nodules hit (IoU >= ``iou_thr``) by some box, over all boxes of all images ranked by score,
  at the lowest score threshold where the false positives per image stay <= f. A box is a true
  positive if it hits a nodule not yet hit by a higher-scoring box of the same image (greedy,
  as in VOC/COCO); every other box is a false positive. Images without nodules (normal) count
  in the image total and all their boxes are false positives.
- ``num_nodules``, ``num_images``.

Boxes are ``[x1, y1, x2, y2]`` in pixels of the original image. Predictions are rescaled to it
by the model. Ground truth comes either from ``ann_file`` (the COCO JSON, looked up by
``img_id``, independent of the pipeline) or, without ``ann_file``, from the data sample's
``gt_instances``, which are in original-image pixels when the test pipeline loads annotations
AFTER ``Resize`` (mmdet's convention for test pipelines, which VOCMetric relies on too, and what
the mmbus configs do). IoU uses the continuous convention (area = w * h, no +1).

Distributed evaluation: ``process`` keeps one dict of plain numpy arrays per image, which
mmengine's BaseMetric gathers from all ranks (``collect_results``) before ``compute_metrics``
runs on rank 0, so the result is the same as in a single process.
"""
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from mmdet.registry import METRICS


def box_iou_matrix(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """IoU between every box of ``boxes1`` (N, 4) and ``boxes2`` (M, 4), xyxy pixels -> (N, M)."""
    boxes1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    boxes2 = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    area1 = np.clip(boxes1[:, 2] - boxes1[:, 0], 0, None) * np.clip(
        boxes1[:, 3] - boxes1[:, 1], 0, None)
    area2 = np.clip(boxes2[:, 2] - boxes2[:, 0], 0, None) * np.clip(
        boxes2[:, 3] - boxes2[:, 1], 0, None)
    lt = np.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = np.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


@METRICS.register_module()
class BoxIoUMetric(BaseMetric):
    """Per-nodule box IoU (the paper's ASC), hit rate and FROC sensitivity.

    Args:
        best_box (str): 'top_score' (default) or 'max_iou'; see the module docstring.
        top_k (int, optional): boxes kept per image in 'top_score' mode; None = number of
            ground-truth nodules of the image (at least 1).
        score_thr (float): minimum score of a box for 'max_iou' mode and for FROC. Default 0.
        iou_thr (float): IoU from which a nodule counts as found. Default 0.5.
        fp_rates (sequence of float): false positives per image at which FROC sensitivity is
            reported. Default (0.5, 1, 2, 4).
        label (int, optional): only boxes of this class label count (None = all).
        ann_file (str, optional): COCO JSON to read ground-truth boxes from (by image id,
            all non-crowd boxes with positive size); None = use ``gt_instances``.
        collect_device (str): 'cpu' or 'gpu', for gathering results across ranks.
        prefix (str, optional): metric key prefix; default 'bus_box' so it can sit beside
            CocoMetric ('coco/...') in a list of evaluators.
    """
    default_prefix: Optional[str] = 'bus_box'

    def __init__(self,
                 best_box: str = 'top_score',
                 top_k: Optional[int] = None,
                 score_thr: float = 0.0,
                 iou_thr: float = 0.5,
                 fp_rates: Sequence[float] = (0.5, 1, 2, 4),
                 label: Optional[int] = None,
                 ann_file: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if best_box not in ('top_score', 'max_iou'):
            raise ValueError(f"best_box must be 'top_score' or 'max_iou', got {best_box!r}")
        if top_k is not None and top_k < 1:
            raise ValueError(f'top_k must be >= 1 or None, got {top_k}')
        if not 0 < iou_thr <= 1:
            raise ValueError(f'iou_thr must be in (0, 1], got {iou_thr}')
        self.best_box = best_box
        self.top_k = top_k
        self.score_thr = score_thr
        self.iou_thr = iou_thr
        self.fp_rates = tuple(float(f) for f in fp_rates)
        self.label = label
        self.ann_file = ann_file
        self._gt_by_img = _load_coco_boxes(ann_file) if ann_file else None

    # ------------------------------------------------------------------ collection
    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Store one dict of numpy arrays per image (picklable, rank-independent)."""
        for sample in data_samples:
            pred = sample['pred_instances']
            bboxes = _to_numpy(pred['bboxes']).reshape(-1, 4)
            scores = _to_numpy(pred['scores']).reshape(-1)
            if self.label is not None and 'labels' in pred:
                keep = _to_numpy(pred['labels']).reshape(-1) == self.label
                bboxes, scores = bboxes[keep], scores[keep]
            gt_bboxes = _to_numpy(sample['gt_instances']['bboxes']).reshape(-1, 4) \
                if 'gt_instances' in sample else np.zeros((0, 4))
            if 'gt_instances' in sample and self.label is not None \
                    and 'labels' in sample['gt_instances']:
                keep = _to_numpy(sample['gt_instances']['labels']).reshape(-1) == self.label
                gt_bboxes = gt_bboxes[keep]
            if self._gt_by_img is not None:
                img_id = sample['img_id']
                if img_id not in self._gt_by_img:
                    raise KeyError(f'BoxIoUMetric: image id {img_id} is not in {self.ann_file}')
                gt_bboxes = self._gt_by_img[img_id]
            self.results.append(
                dict(
                    img_id=sample.get('img_id', len(self.results)),
                    gt_bboxes=gt_bboxes.astype(np.float32),
                    pred_bboxes=bboxes.astype(np.float32),
                    pred_scores=scores.astype(np.float32)))

    # ------------------------------------------------------------------ maths
    def _nodule_ious(self, result: dict) -> np.ndarray:
        """Per-nodule IoU with the 'best prediction' of ``best_box`` mode (0 if none)."""
        gts, boxes, scores = result['gt_bboxes'], result['pred_bboxes'], result['pred_scores']
        if len(gts) == 0:
            return np.zeros(0)
        if self.best_box == 'top_score':
            k = self.top_k if self.top_k is not None else max(len(gts), 1)
            order = np.argsort(-scores, kind='stable')[:k]
        else:
            order = np.nonzero(scores >= self.score_thr)[0]
        if len(order) == 0:
            return np.zeros(len(gts))
        return box_iou_matrix(gts, boxes[order]).max(axis=1)

    def _froc_marks(self, result: dict):
        """(scores, is_true_positive) of the image's boxes with greedy matching."""
        gts, boxes, scores = result['gt_bboxes'], result['pred_bboxes'], result['pred_scores']
        keep = scores >= self.score_thr
        boxes, scores = boxes[keep], scores[keep]
        order = np.argsort(-scores, kind='stable')
        boxes, scores = boxes[order], scores[order]
        tp = np.zeros(len(scores), dtype=bool)
        if len(gts) and len(boxes):
            ious = box_iou_matrix(boxes, gts)
            hit = np.zeros(len(gts), dtype=bool)
            for i in range(len(boxes)):
                cand = np.where(hit, -1.0, ious[i])
                j = int(np.argmax(cand))
                if cand[j] >= self.iou_thr:
                    hit[j] = True
                    tp[i] = True
        return scores, tp

    def froc(self, results: List[dict]) -> Dict[float, float]:
        """FROC sensitivity at each rate in ``fp_rates`` (false positives per image)."""
        num_images = len(results)
        num_nodules = sum(len(r['gt_bboxes']) for r in results)
        all_scores, all_tp = [], []
        for r in results:
            s, t = self._froc_marks(r)
            all_scores.append(s)
            all_tp.append(t)
        scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
        tp = np.concatenate(all_tp) if all_tp else np.zeros(0, dtype=bool)
        order = np.argsort(-scores, kind='stable')
        scores, tp = scores[order], tp[order]
        # Only cut between distinct scores: boxes with equal scores enter together.
        last_of_score = np.r_[scores[1:] != scores[:-1], True] if len(scores) else \
            np.zeros(0, dtype=bool)
        cum_tp = np.cumsum(tp)[last_of_score]
        cum_fp = np.cumsum(~tp)[last_of_score]
        out = {}
        for rate in self.fp_rates:
            if num_nodules == 0 or num_images == 0:
                out[rate] = 0.0
                continue
            ok = cum_fp <= rate * num_images
            out[rate] = float(cum_tp[ok].max()) / num_nodules if ok.any() else 0.0
        return out

    def compute_metrics(self, results: list) -> Dict[str, float]:
        logger = MMLogger.get_current_instance()
        ious = [self._nodule_ious(r) for r in results]
        ious = np.concatenate(ious) if ious else np.zeros(0)
        metrics = dict(num_images=len(results), num_nodules=int(len(ious)))
        if len(ious) == 0:
            logger.warning('BoxIoUMetric: no ground-truth nodule in the evaluated images; '
                           'box IoU metrics are reported as 0.')
            metrics.update(mean_iou=0.0, std_iou=0.0)
            metrics[f'detected@{self.iou_thr:g}'] = 0.0
        else:
            metrics.update(mean_iou=float(ious.mean()), std_iou=float(ious.std()))
            metrics[f'detected@{self.iou_thr:g}'] = float((ious >= self.iou_thr).mean())
        for rate, sens in self.froc(results).items():
            metrics[f'froc_sens@{rate:g}fp'] = sens
        logger.info(
            f'Box IoU ({self.best_box}) over {metrics["num_nodules"]} nodules in '
            f'{metrics["num_images"]} images: mean {metrics["mean_iou"]:.4f}, '
            f'std {metrics["std_iou"]:.4f}')
        return metrics


def _load_coco_boxes(ann_file: str) -> Dict[int, np.ndarray]:
    """{image id: (N, 4) xyxy pixel boxes} from a COCO detection JSON."""
    from mmengine.fileio import load
    coco = load(ann_file)
    try:
        boxes = {int(img['id']): [] for img in coco['images']}
        for ann in coco['annotations']:
            x, y, w, h = ann['bbox']
            if ann.get('iscrowd', 0) or w <= 0 or h <= 0:
                continue
            boxes[int(ann['image_id'])].append([x, y, x + w, y + h])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f'BoxIoUMetric: {ann_file} is not a COCO detection file ({err!r})')
    return {k: np.array(v, np.float32).reshape(-1, 4) for k, v in boxes.items()}


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, 'tensor'):  # mmdet box structures (HorizontalBoxes)
        x = x.tensor
    if hasattr(x, 'detach'):
        x = x.detach().cpu().numpy()
    return np.asarray(x)
