"""A trained mmdet detector as a box source for crop extraction and inference: loading it from a config and
a checkpoint (:func:`load_detector`) and its boxes per image (:class:`DetectorBoxes`)."""
import os.path as osp
import re
from typing import List, Tuple

import numpy as np


class DetectorBoxes:
    """Boxes from a trained mmdet detector.

    Called as ``(image_record, img) -> [([x1, y1, x2, y2], score), ...]``, the box-source protocol of
    :func:`mmbus.apis.crop_extraction.extract_split_crops`.

    Args:
        model: an mmdet detector built by :func:`mmdet.apis.init_detector`.
        score_thr: boxes scoring below this are ignored.
        keep: 'top' keeps only the highest-scoring box per image (the paper
            has one nodule per image), 'all' keeps every box above
            ``score_thr``.
    """

    name = 'detector'

    def __init__(self, model, score_thr: float = 0.05, keep: str = 'top'):
        if keep not in ('top', 'all'):
            raise ValueError(f"keep must be 'top' or 'all', got {keep!r}")
        self.model = model
        self.score_thr = float(score_thr)
        self.keep = keep
        self.pipeline = build_ndarray_test_pipeline(model.cfg)

    def detect(self, img: np.ndarray) -> List[Tuple[List[float], float]]:
        """All boxes ``([x1, y1, x2, y2], score)`` above the threshold, best
        first."""
        from mmdet.apis import inference_detector
        result = inference_detector(
            self.model, img, test_pipeline=self.pipeline)
        inst = result.pred_instances
        boxes = inst.bboxes.detach().cpu().numpy().reshape(-1, 4)
        scores = inst.scores.detach().cpu().numpy().reshape(-1)
        order = np.argsort(-scores, kind='stable')
        out = [(boxes[i].tolist(), float(scores[i])) for i in order
               if scores[i] >= self.score_thr
               and boxes[i][2] > boxes[i][0] and boxes[i][3] > boxes[i][1]]
        return out

    def __call__(self, image_record: dict,
                 img: np.ndarray) -> List[Tuple[List[float], float]]:
        boxes = self.detect(img)
        return boxes[:1] if self.keep == 'top' else boxes


def build_ndarray_test_pipeline(cfg):
    """The detector's test pipeline, fed with an in-memory BGR array and with
    ground-truth loading removed (inference has no annotations)."""
    from mmcv.transforms import Compose
    from mmdet.utils import get_test_pipeline_cfg
    from mmengine.registry import DefaultScope
    pipeline = [
        t.copy() for t in get_test_pipeline_cfg(cfg.copy())
        if 'LoadAnnotations' not in str(t.get('type', ''))
    ]
    pipeline[0].type = 'mmdet.LoadImageFromNDArray'
    with DefaultScope.overwrite_default_scope('mmdet'):
        return Compose(pipeline)


def load_detector(config: str, checkpoint: str, device: str = 'cpu'):
    """Build a trained detector; names the missing file if any.

    The checkpoint is read with the safe loader (weights only) and checked
    against the detector the config builds: a classifier checkpoint (or any
    other model's) raises :class:`~mmbus.utils.checkpoint.CheckpointError`
    naming both files instead of leaving the detector untrained.
    """
    for path, what in ((config, 'detector config'),
                       (checkpoint, 'detector checkpoint')):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{what} not found: {path}')
    import warnings

    import mmbus.registry  # noqa: F401  registers BUSDataset etc.
    from mmdet.apis import init_detector
    from mmdet.utils import register_all_modules
    from mmengine.runner import load_state_dict

    from mmbus.utils.checkpoint import (check_checkpoint_fits,
                                        load_checkpoint_safely,
                                        state_dict_of)
    from mmengine.registry import DefaultScope
    register_all_modules(init_default_scope=False)
    ckpt = load_checkpoint_safely(checkpoint, map_location='cpu')
    # init_detector would otherwise leave 'mmdet' as the process-wide
    # default scope, breaking the caller's later mmpretrain builds
    with warnings.catch_warnings(), \
            DefaultScope.overwrite_default_scope('mmdet'):
        warnings.simplefilter('ignore')  # "checkpoint is None, use COCO ..."
        model = init_detector(config, None, device=device)
    state = state_dict_of(ckpt)
    check_checkpoint_fits(model, state, checkpoint, config)
    state = {re.sub(r'^module\.', '', k): v for k, v in state.items()}
    load_state_dict(model, state, strict=False)
    meta = (ckpt.get('meta') or {}) if isinstance(ckpt, dict) else {}
    palette = (model.dataset_meta or {}).get('palette')
    if 'dataset_meta' in meta:
        model.dataset_meta = {k.lower(): v
                              for k, v in meta['dataset_meta'].items()}
    elif 'CLASSES' in meta:
        model.dataset_meta = {'classes': meta['CLASSES']}
    else:
        model.dataset_meta = {'classes': ('nodule', )}
    if palette is not None and 'palette' not in model.dataset_meta:
        model.dataset_meta['palette'] = palette
    model.eval()
    return model
