"""BUSDetVisualizer: the paper's Figure 3 look, doctor's box in yellow, detector's box in red.

mmdet's DetLocalVisualizer draws ground truth and prediction side by side in class colours.
For nodule localisation the overlap is what matters, so this visualizer draws both on ONE image:
the ground-truth boxes in yellow and the ``top_k`` highest-scoring predictions (score >=
``pred_score_thr``) in red, each with its score. It keeps DetLocalVisualizer's ``add_datasample``
signature, so mmdet's ``DetVisualizationHook`` (``tools/test.py --show-dir``) drives it unchanged.

Coordinates: boxes are drawn as given, in pixels of ``image``: predictions are in original-image
pixels (the model rescales them) and so is the ground truth when the test pipeline loads
annotations after ``Resize`` (mmdet's test-pipeline convention, followed by the mmbus configs).
Images are RGB.
"""
from typing import Optional, Tuple, Union

import mmcv
import numpy as np
from mmdet.registry import VISUALIZERS
from mmdet.visualization import DetLocalVisualizer

YELLOW = (255, 255, 0)  # RGB
RED = (255, 0, 0)


def _boxes_numpy(bboxes) -> np.ndarray:
    if hasattr(bboxes, 'tensor'):
        bboxes = bboxes.tensor
    if hasattr(bboxes, 'detach'):
        bboxes = bboxes.detach().cpu().numpy()
    return np.asarray(bboxes, dtype=np.float32).reshape(-1, 4)


@VISUALIZERS.register_module()
class BUSDetVisualizer(DetLocalVisualizer):
    """Draw GT nodules (yellow) and top predictions (red, with score) on one image.

    Args:
        top_k (int, optional): number of predictions drawn (highest scores first); None = all
            above the score threshold. Default 1 (the box the paper's pipeline crops).
        gt_color, pred_color: RGB tuples or colour names. Defaults yellow / red.
        line_width (int | float): box line width in pixels. Default 2.
        Other arguments as :class:`mmdet.visualization.DetLocalVisualizer`.
    """

    def __init__(self,
                 name: str = 'visualizer',
                 image: Optional[np.ndarray] = None,
                 vis_backends: Optional[list] = None,
                 save_dir: Optional[str] = None,
                 top_k: Optional[int] = 1,
                 gt_color: Union[str, Tuple[int, int, int]] = YELLOW,
                 pred_color: Union[str, Tuple[int, int, int]] = RED,
                 line_width: Union[int, float] = 2,
                 **kwargs) -> None:
        super().__init__(name=name, image=image, vis_backends=vis_backends,
                         save_dir=save_dir, line_width=line_width, **kwargs)
        if top_k is not None and top_k < 1:
            raise ValueError(f'top_k must be >= 1 or None, got {top_k}')
        self.top_k = top_k
        self.gt_color = gt_color
        self.pred_color = pred_color

    def draw_nodules(self, image: np.ndarray, data_sample, draw_gt: bool = True,
                     draw_pred: bool = True, pred_score_thr: float = 0.3) -> np.ndarray:
        """Return ``image`` (RGB uint8) with GT (yellow) and top predictions (red) drawn."""
        image = np.ascontiguousarray(image.clip(0, 255).astype(np.uint8))
        self.set_image(image)
        h, w = image.shape[:2]
        if data_sample is not None:
            data_sample = data_sample.cpu()
        if draw_gt and data_sample is not None and 'gt_instances' in data_sample:
            gt = _boxes_numpy(data_sample.gt_instances.bboxes)
            if len(gt):
                self.draw_bboxes(gt, edge_colors=self.gt_color, line_widths=self.line_width)
        if draw_pred and data_sample is not None and 'pred_instances' in data_sample:
            pred = data_sample.pred_instances
            boxes = _boxes_numpy(pred.bboxes)
            scores = pred.scores.detach().cpu().numpy().reshape(-1) if hasattr(
                pred.scores, 'detach') else np.asarray(pred.scores).reshape(-1)
            order = np.argsort(-scores, kind='stable')
            order = order[scores[order] >= pred_score_thr]
            if self.top_k is not None:
                order = order[:self.top_k]
            if len(order):
                self.draw_bboxes(boxes[order], edge_colors=self.pred_color,
                                 line_widths=self.line_width)
                font = max(int(13 * min(h, w) / 512), 8)
                for i in order:
                    x1, y1 = boxes[i, 0], boxes[i, 1]
                    self.draw_texts(
                        f'{scores[i]:.2f}', np.array([x1 + 2, max(y1 - font - 4, 0)]),
                        colors=self.pred_color, font_sizes=font,
                        bboxes=[dict(facecolor='black', alpha=0.6, pad=0.5,
                                     edgecolor='none')])
        return self.get_image()

    def add_datasample(self,
                       name: str,
                       image: np.ndarray,
                       data_sample=None,
                       draw_gt: bool = True,
                       draw_pred: bool = True,
                       show: bool = False,
                       wait_time: float = 0,
                       out_file: Optional[str] = None,
                       pred_score_thr: float = 0.3,
                       step: int = 0) -> None:
        """Same contract as DetLocalVisualizer.add_datasample (RGB image, out_file as BGR PNG)."""
        drawn = self.draw_nodules(image, data_sample, draw_gt, draw_pred, pred_score_thr)
        self.set_image(drawn)
        if show:
            self.show(drawn, win_name=name, wait_time=wait_time)
        if out_file is not None:
            mmcv.imwrite(drawn[..., ::-1], out_file)
        else:
            self.add_image(name, drawn, step)
