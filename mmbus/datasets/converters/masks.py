"""Lesion masks -> boxes, with the regions of a mask counted and tiny specks left out.

Box convention: COCO ``[x, y, w, h]`` in pixels, ``x, y`` the top-left lesion pixel and ``w, h``
counting pixels *inclusively* (a mask spanning columns 10..19 gives ``x=10, w=10``).

Public masks often carry stray specks (1-8 px: a slip of the brush, JPEG residue) next to the
lesion. Counted as lesion they widen a box by a few pixels, or become boxes of 1-16 px^2 of
their own; regions under ``min_region_area`` pixels (default :data:`DEFAULT_MIN_REGION_AREA`)
are therefore left out -- except the largest region of a mask, which is always kept (a small
lesion in a small image is a lesion, not a speck) -- and the converter reports them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import cv2
import numpy as np

#: regions smaller than this (pixels) are specks, not lesions: 16 px is a 4 x 4 square
DEFAULT_MIN_REGION_AREA = 16


def mask_boxes(mask: np.ndarray, per_region: bool = False,
               min_region_area: int = 1) -> List[List[int]]:
    """Boxes ``[x, y, w, h]`` (pixels, inclusive extent) of the foreground of ``mask``.

    With ``per_region=False`` one box spans every 8-connected region of at least
    ``min_region_area`` pixels, and the largest region whatever its size (BUSI: one box per
    mask file). With ``per_region=True`` each such region gets its own box (sorted
    top-to-bottom, left-to-right). An empty mask gives ``[]``.
    """
    return analyse_mask(mask, per_region, min_region_area).boxes


@dataclass
class MaskRegions:
    """What :func:`analyse_mask` found: the boxes and the regions behind them."""
    boxes: List[List[int]] = field(default_factory=list)
    areas: List[int] = field(default_factory=list)      # kept regions, pixels, largest first
    specks: List[int] = field(default_factory=list)     # left-out regions, pixels

    @property
    def n_regions(self) -> int:
        return len(self.areas)


def analyse_mask(mask: np.ndarray, per_region: bool = False,
                 min_region_area: int = 1) -> MaskRegions:
    """Boxes of ``mask`` (see :func:`mask_boxes`) plus the areas of its regions."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(np.asarray(mask, np.uint8),
                                                      connectivity=8)
    largest = int(np.argmax(stats[1:, 4])) + 1 if n > 1 else 0
    keep = [k for k in range(1, n) if stats[k, 4] >= min_region_area or k == largest]
    out = MaskRegions(areas=sorted((int(stats[k, 4]) for k in keep), reverse=True),
                      specks=sorted(int(stats[k, 4]) for k in range(1, n) if k not in keep))
    if not keep:
        return out
    if per_region:
        boxes = [[int(stats[k, 0]), int(stats[k, 1]), int(stats[k, 2]), int(stats[k, 3])]
                 for k in keep]
        out.boxes = sorted(boxes, key=lambda b: (b[1], b[0]))
    else:
        x0 = min(int(stats[k, 0]) for k in keep)
        y0 = min(int(stats[k, 1]) for k in keep)
        x1 = max(int(stats[k, 0] + stats[k, 2]) for k in keep)
        y1 = max(int(stats[k, 1] + stats[k, 3]) for k in keep)
        out.boxes = [[x0, y0, x1 - x0, y1 - y0]]
    return out
