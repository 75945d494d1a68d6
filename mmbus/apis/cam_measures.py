"""How well a class-activation map points at the lesion, against a lesion
mask at the crop's size (numpy only).

* :func:`pointing_game` (Zhang et al., "Top-down neural attention by
  excitation backprop", IJCV 2018): a hit iff the map's maximum lies inside
  the mask or within ``tolerance`` pixels of it (Zhang et al. use 15 px on
  ~224 px images; crops here carry only a 10 px margin around the nodule, so
  the default is 5 px, otherwise almost any peak in the margin would count).
* :func:`energy_inside` (the "energy-based pointing game" of Score-CAM, Wang
  et al. 2020): the share of the map's mass inside the mask; a uniform map
  scores the mask's area fraction (the chance level).
"""
from typing import Optional, Tuple

import numpy as np

#: Pointing-game tolerance in crop pixels (see the module doc).
DEFAULT_TOLERANCE = 5.0


def _check_cam(cam, what: str = 'cam') -> np.ndarray:
    cam = np.asarray(cam, dtype=np.float64)
    if cam.ndim != 2 or cam.size == 0:
        raise ValueError(f'{what} must be a non-empty HxW map, got shape '
                         f'{cam.shape}')
    if not np.isfinite(cam).all():
        raise ValueError(f'{what} holds NaN or infinite values')
    if cam.min() < 0:
        raise ValueError(f'{what} has negative values (min {cam.min():.3g}); '
                         'class-activation maps are non-negative')
    return cam


def _check_pair(cam, mask) -> Tuple[np.ndarray, np.ndarray]:
    cam = _check_cam(cam)
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] in (1, 3, 4):
        mask = mask[..., :3].max(axis=2)  # a colour-saved binary mask
    if mask.shape != cam.shape:
        raise ValueError(f'mask shape {mask.shape} differs from the cam '
                         f'shape {cam.shape}: cut the mask to the crop window '
                         'first')
    return cam, mask > 0


def cam_peak(cam: np.ndarray) -> Optional[Tuple[int, int]]:
    """``(row, col)`` of the map's maximum, or ``None`` for a flat map (no
    peak to point with).

    Coarse maps up-sampled to the crop often have a plateau of equal maxima
    (a whole feature-map cell); the peak is then the plateau pixel nearest
    to the plateau's centroid, not its top-left corner, so ties do not pull
    the peak towards one side of the crop.
    """
    cam = _check_cam(cam)
    top, low = cam.max(), cam.min()
    if top - low <= 1e-12:
        return None
    rows, cols = np.nonzero(cam >= top - 1e-6 * (top - low))
    k = int(np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2))
    return int(rows[k]), int(cols[k])


def pointing_game(cam: np.ndarray, mask: np.ndarray,
                  tolerance: float = DEFAULT_TOLERANCE) -> bool:
    """Pointing game (Zhang et al. 2018): a hit iff the map's maximum lies
    inside the mask or within ``tolerance`` pixels (Euclidean) of a mask
    pixel.

    A flat map (e.g. zero everywhere: no positive evidence for the class)
    points nowhere and is a miss; so is an empty mask.

    Raises:
        ValueError: ``mask`` and ``cam`` differ in shape, or ``cam`` is not a
            finite non-negative ``HxW`` map.
    """
    cam, mask = _check_pair(cam, mask)
    if tolerance < 0:
        raise ValueError(f'tolerance must be >= 0, got {tolerance}')
    peak = cam_peak(cam)
    if peak is None or not mask.any():
        return False
    if mask[peak]:
        return True
    rows, cols = np.nonzero(mask)
    d2 = (rows - peak[0]) ** 2 + (cols - peak[1]) ** 2
    return bool(d2.min() <= tolerance * tolerance)


def energy_inside(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's mass inside the mask: ``sum(cam * mask) /
    sum(cam)``, in ``[0, 1]``; a uniform map scores the mask's area fraction.
    ``nan`` for a map that is zero everywhere (no mass to share).

    Raises:
        ValueError: as :func:`pointing_game`.
    """
    cam, mask = _check_pair(cam, mask)
    total = cam.sum()
    if total <= 0:
        return float('nan')
    return float(cam[mask].sum() / total)
