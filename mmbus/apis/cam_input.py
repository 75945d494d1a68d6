"""Crops -> the classifier's network input, and a map at network-input size
back onto the crop.

For an mmpretrain classifier the crop goes through the test pipeline of the
classifier's own config (without its file loader, and converted to grey
first when that loader reads grey, as :class:`mmbus.apis.inference.
BUSInferencer` does) and its data preprocessor, so a map explains the input
the probability was computed on. A map is mapped back by cutting off the
padding of a letterbox resize and resizing the rest to the crop's size;
pipelines that crop the image cannot be undone and are refused.
"""
from typing import Sequence

import numpy as np
import torch

from .cam_model import _is_mmpretrain_classifier
from .pipeline_colour import is_loader, pipeline_reads_grey

#: Transforms whose geometry cannot be undone on the map.
_CROPPING_TRANSFORMS = ('Crop', )


def _classifier_cfg(classifier):
    cfg = getattr(classifier, '_config', None) or getattr(
        classifier, 'cfg', None)
    return cfg


class _Preparer:
    """Crop -> (network input tensor, content window in that input).

    The window ``(top, left, height, width)`` is where the crop's pixels
    landed in the network input (all of it after a plain resize; the
    unpadded middle after a letterbox resize)."""

    def __init__(self, classifier):
        self.mm = _is_mmpretrain_classifier(classifier)
        self.classifier = classifier
        self.transforms, self.pack, self.grey = [], None, False
        if not self.mm:
            return
        cfg = _classifier_cfg(classifier)
        pipeline_cfg = []
        if cfg is not None and cfg.get('test_dataloader'):
            pipeline_cfg = list(cfg.test_dataloader.dataset.pipeline)
        self.grey = pipeline_reads_grey(pipeline_cfg)
        from mmengine.registry import DefaultScope
        from mmpretrain.registry import TRANSFORMS
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            for t in pipeline_cfg:
                kind = str(t.get('type', ''))
                if is_loader(t):
                    continue  # the crop is already in memory
                if any(c in kind for c in _CROPPING_TRANSFORMS):
                    raise ValueError(
                        f'the classifier test pipeline crops the image '
                        f'({kind}): its class-activation map cannot be '
                        'mapped back onto the nodule crop')
                built = TRANSFORMS.build(dict(t))
                if 'Pack' in kind:
                    self.pack = built
                else:
                    self.transforms.append(built)
            if self.pack is None:
                self.pack = TRANSFORMS.build(dict(type='PackInputs'))

    def _one(self, crop: np.ndarray):
        h, w = crop.shape[:2]
        if not self.mm:
            arr = crop[None] if crop.ndim == 2 else crop.transpose(2, 0, 1)
            return torch.from_numpy(np.ascontiguousarray(arr)).float(), \
                (0, 0, h, w)
        if self.grey and crop.ndim == 3:
            import mmcv
            crop = mmcv.bgr2gray(crop)
        res = dict(img=crop, img_shape=crop.shape[:2],
                   ori_shape=crop.shape[:2])
        for t in self.transforms:
            res = t(res)
        out_h, out_w = res['img'].shape[:2]
        if 'pad_offset' in res:  # LetterboxResize: content in the middle
            left, top = res['pad_offset']
            sf = res.get('scale_factor', 1.0)
            sx, sy = (sf, sf) if np.isscalar(sf) else (sf[0], sf[1])
            cw = min(out_w - left, max(1, int(round(w * sx))))
            ch = min(out_h - top, max(1, int(round(h * sy))))
            window = (int(top), int(left), ch, cw)
        else:
            window = (0, 0, out_h, out_w)
        packed = self.pack(res)
        return packed, window

    def __call__(self, crops: Sequence[np.ndarray]):
        """List of (packed sample or tensor, window)."""
        return [self._one(c) for c in crops]

    def batch(self, samples):
        """Stack prepared samples into one float input batch."""
        if not self.mm:
            return torch.stack(samples)
        data = dict(inputs=[s['inputs'] for s in samples],
                    data_samples=[s['data_samples'] for s in samples])
        return self.classifier.data_preprocessor(data, False)['inputs']


def _check_crop(crop, k: int) -> np.ndarray:
    crop = np.asarray(crop)
    if crop.ndim not in (2, 3) or crop.shape[0] == 0 or crop.shape[1] == 0:
        raise ValueError(f'crop {k}: expected a non-empty HxW or HxWxC '
                         f'image, got shape {crop.shape}')
    return crop


def _to_crop_size(cam: np.ndarray, window, size_hw) -> np.ndarray:
    import cv2
    top, left, h, w = window
    cam = cam[top:top + h, left:left + w]
    cam = cv2.resize(np.ascontiguousarray(cam, dtype=np.float32),
                     (int(size_hw[1]), int(size_hw[0])),
                     interpolation=cv2.INTER_LINEAR)
    cam = np.clip(cam, 0.0, None)
    # rescale to a maximum of 1 on the crop itself: evidence the network put
    # on letterbox padding is not tissue and is dropped with the padding
    top_value = float(cam.max())
    return (cam / top_value if top_value > 0 else cam).astype(np.float32)
