"""LetterboxResize: resize a nodule crop to a square network input without
distorting it.

Nodule shape is diagnostic ("taller than wide" suggests malignancy), so crops
are not stretched to a square: the longer side is scaled to ``size`` pixels,
the aspect ratio kept, and the shorter side padded symmetrically with
``pad_val`` (0 = the black background of ultrasound images).
"""
import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS


@TRANSFORMS.register_module()
class LetterboxResize(BaseTransform):
    """Aspect-preserving resize to ``size x size`` pixels with centred
    padding.

    Required keys: ``img``. Modified: ``img``, ``img_shape``. Added:
    ``scale_factor`` (resize factor, output px per input px), ``pad_offset``
    ((left, top) padding in output pixels).

    Args:
        size (int): Output height and width in pixels.
        pad_val (int | float): Padding value.
        interpolation (str): mmcv interpolation for the resize.
    """

    def __init__(self, size: int, pad_val=0, interpolation: str = 'bilinear'):
        if size < 1:
            raise ValueError(f'size must be >= 1, got {size}')
        self.size = int(size)
        self.pad_val = pad_val
        self.interpolation = interpolation

    def transform(self, results: dict) -> dict:
        img = results['img']
        h, w = img.shape[:2]
        if h == 0 or w == 0:
            raise ValueError(f'empty crop {results.get("img_path", "")} '
                             f'({w}x{h} px)')
        scale = self.size / max(h, w)
        new_w = min(self.size, max(1, int(round(w * scale))))
        new_h = min(self.size, max(1, int(round(h * scale))))
        img = mmcv.imresize(img, (new_w, new_h),
                            interpolation=self.interpolation)
        out = np.full((self.size, self.size) + img.shape[2:], self.pad_val,
                      dtype=img.dtype)
        left, top = (self.size - new_w) // 2, (self.size - new_h) // 2
        out[top:top + new_h, left:left + new_w] = img
        results['img'] = out
        results['img_shape'] = out.shape[:2]
        results['scale_factor'] = scale
        results['pad_offset'] = (left, top)
        return results

    def __repr__(self):
        return (f'{self.__class__.__name__}(size={self.size}, '
                f'pad_val={self.pad_val})')
