"""Box geometry of the nodule crops (numpy only): COCO ``[x, y, w, h]`` -> ``[x1, y1, x2, y2]`` pixel edges,
the margin, clipping to the image and the crop itself; conventions in :mod:`mmbus.apis.crop_extraction`."""
import math
from typing import List, Sequence, Tuple

import numpy as np


def xywh_to_xyxy(bbox: Sequence[float]) -> List[float]:
    """COCO ``[x, y, w, h]`` -> ``[x1, y1, x2, y2]`` (pixels)."""
    x, y, w, h = [float(v) for v in bbox]
    return [x, y, x + w, y + h]


def expand_and_clip_box(bbox_xyxy: Sequence[float],
                        img_shape: Tuple[int, int],
                        margin: float = 10.,
                        relative_margin: float = 0.) -> List[int]:
    """Grow a box by a margin and clip it to the image.

    Args:
        bbox_xyxy: ``[x1, y1, x2, y2]`` in pixels (float allowed).
        img_shape: ``(height, width)`` of the source image in pixels.
        margin: pixels added on every side.
        relative_margin: extra margin as a fraction of ``max(w, h)`` of the
            box (e.g. 0.1 adds 10 % of the longer side on every side).

    Returns:
        ``[x1, y1, x2, y2]`` integer pixel edges with
        ``0 <= x1 < x2 <= width`` and ``0 <= y1 < y2 <= height``.
    """
    h_img, w_img = int(img_shape[0]), int(img_shape[1])
    x1, y1, x2, y2 = [float(v) for v in bbox_xyxy]
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f'degenerate box {list(bbox_xyxy)} (need x2>x1, '
                         'y2>y1)')
    pad = float(margin) + float(relative_margin) * max(x2 - x1, y2 - y1)
    # round outwards: never cut into the nodule because of rounding
    cx1 = max(0, int(math.floor(x1 - pad)))
    cy1 = max(0, int(math.floor(y1 - pad)))
    cx2 = min(w_img, int(math.ceil(x2 + pad)))
    cy2 = min(h_img, int(math.ceil(y2 + pad)))
    if cx2 <= cx1 or cy2 <= cy1:
        raise ValueError(f'box {list(bbox_xyxy)} lies outside the '
                         f'{w_img}x{h_img} image')
    return [cx1, cy1, cx2, cy2]


def crop_nodule(img: np.ndarray,
                bbox_xyxy: Sequence[float],
                margin: float = 10.,
                relative_margin: float = 0.) -> Tuple[np.ndarray, List[int]]:
    """Crop one nodule with margin; returns ``(crop, crop_box_xyxy)`` where
    ``crop`` is a copy of ``img[y1:y2, x1:x2]`` (clipped at the borders)."""
    box = expand_and_clip_box(bbox_xyxy, img.shape[:2], margin,
                              relative_margin)
    x1, y1, x2, y2 = box
    return img[y1:y2, x1:x2].copy(), box
