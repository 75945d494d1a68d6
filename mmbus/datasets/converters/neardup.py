"""Re-crop guard: finds copies of one scan cut at another zoom or offset, rescaled, with other
text or calipers burnt in -- copies that whole-image hashes miss.

Two stages, so that a dataset costs far less than all pairs at full cost:

1. **candidates** (:func:`candidate_pairs`). Each image gets a *fingerprint*
   (:func:`fingerprint`, computed by the conversion workers while the image is decoded anyway):
   a working copy whose shorter side is :data:`WORK_SIDE` px, the descriptor of its central
   square (:data:`QUERY_FRACTION` of the shorter side) and a bank of descriptors of square
   windows of :data:`N_SCALES` sizes (:data:`MIN_FRACTION` to 1 times the central square's
   size) at every position on a grid of :data:`STRIDE` cells. A descriptor is a
   :data:`CELLS` x :data:`CELLS` grid of blurred cell means of the median-filtered image (thin
   text, calipers and dots vanish; black outside the field of view is filled with the image's
   mean grey), reduced to its 27 lowest 2-D DCT frequencies and normalised: a dot product is
   the normalised cross-correlation (NCC) of the coarse structure. Each image's central square
   is scored against every window of every other image (one small matrix product per image)
   and keeps its :data:`TOP_K` best partners (coarse NCC >= :data:`MIN_CANDIDATE_NCC`).
2. **verification** (:func:`.neardup_verify.verify_pair`, :func:`.neardup_verify.find_recrops`
   runs both stages). The central square of one image is aligned on the
   other by multi-scale template matching (OpenCV ``matchTemplate``, NCC), both ways round
   (either image may hold the other): coarse at quarter resolution (scales within +-18 %),
   medium at half resolution (+-4 %), fine at full working resolution (+-2 %, +-4 px), each
   refined to sub-pixel (and sub-step in scale) by parabolas through the neighbouring scores;
   the brightest 3 % of pixels (burnt-in text, calipers) are clipped while matching. The
   finer image is warped onto the coarser one and the pair is a copy when the *speckle*
   agrees: the median, over 4 x 4 tiles, of the NCC of band-passed pixels (difference of
   Gaussians, ``neardup_verify.BAND``) reaches ``min_speckle``
   (default :data:`DEFAULT_MIN_SPECKLE`). Speckle is a fingerprint of one acquisition: another
   frame of the same lesion, even one a second later, shares the anatomy but not the speckle
   (tile median 0.0-0.45 on BUS-BRA), a copy keeps it (0.6-1.0 even rescaled, with new text
   and added noise); the median ignores the tiles that only one image has text in.

Measured recall, precision and times are in ``docs/converter.md``. Images whose shorter side is
under :data:`MIN_SIDE` px get no fingerprint (only the exact and dHash checks apply to them).
The candidate scores are an ``N x N`` float32 matrix: fine for tens of thousands of images.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cached_property, lru_cache
from multiprocessing import get_context
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

WORK_SIDE = 160          # shorter side of the working copy (px); larger images are shrunk
MIN_SIDE = 64            # no fingerprint below this shorter side
QUERY_FRACTION = 0.9     # central square: this fraction of the shorter side
MIN_FRACTION = 0.6       # smallest window: the query square of a copy holding 60 % of a side
N_SCALES = 7             # window sizes, geometric from MIN_FRACTION to 1
CELLS = 10               # descriptor grid (CELLS x CELLS cells)
STRIDE = 1.25            # window positions every STRIDE cells
TOP_K = 2                # candidates kept per image
MIN_CANDIDATE_NCC = 0.7  # coarse NCC below which no candidate is kept
DEFAULT_MIN_SPECKLE = 0.5
CLIP_TEXT = 97           # percentile above which grey levels are clipped while aligning
BLACK_LEVEL = 3          # median-filtered grey at or below which a flat area is 'black'
_PIX = 4                 # resampled pixels per cell when building the window bank
DCT_MAX = 6              # DCT coefficients kept: 0 < u + v <= DCT_MAX (27 of them)


def _dct_basis() -> np.ndarray:
    """``CELLS^2 x n`` orthonormal 2-D DCT-II basis vectors (``0 < u + v <= DCT_MAX``),
    lowest frequencies first."""
    n = CELLS
    k = np.arange(n)
    c = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n))  # u x x
    c *= np.sqrt(2.0 / n)
    c[0] /= np.sqrt(2.0)
    freqs = sorted(((u, v) for u in range(n) for v in range(n) if 0 < u + v <= DCT_MAX),
                   key=lambda t: (t[0] + t[1], t[0]))
    basis = np.stack([np.outer(c[u], c[v]).ravel() for u, v in freqs], axis=1)
    return basis.astype(np.float32)


_BASIS = _dct_basis()


@lru_cache(maxsize=4096)
def _grid(hw: int, ww: int):
    """Per window size of a ``hw x ww`` working copy: ``(side, z, rh, rw, ys, xs)`` -- the
    side (working px), the resampling factor that makes a cell :data:`_PIX` px, the resampled
    size and the windows' top-left corners in resampled px."""
    q = QUERY_FRACTION * min(hw, ww)
    stride = int(round(STRIDE * _PIX))
    span = CELLS * _PIX
    out = []
    for r in np.geomspace(MIN_FRACTION, 1.0, N_SCALES):
        side = q * r
        z = span / side
        rh, rw = max(span, round(hw * z)), max(span, round(ww * z))
        ys = np.arange(((rh - span) % stride) // 2, rh - span + 1, stride)
        xs = np.arange(((rw - span) % stride) // 2, rw - span + 1, stride)
        out.append((side, z, rh, rw, ys, xs))
    return tuple(out)


@dataclass
class Fingerprint:
    """What the guard keeps of one image (about 45 kB for a BUS-BRA image).

    ``work``: the working copy; ``scale`` maps original to working pixels; ``clip`` is the
    grey level of percentile :data:`CLIP_TEXT` (brighter pixels, mostly text, are clipped
    while aligning); ``query`` is the central square's descriptor, ``bank`` (float16) the
    window descriptors. ``windows`` (their ``(side, y, x)`` in working px) and the working
    copy at half and quarter resolution are derived when first needed.
    """
    work: np.ndarray
    scale: float
    clip: float
    query: np.ndarray
    bank: np.ndarray

    @property
    def query_box(self) -> Tuple[float, float, float]:
        h, w = self.work.shape
        q = QUERY_FRACTION * min(h, w)
        return q, (h - q) / 2, (w - q) / 2

    @cached_property
    def windows(self) -> np.ndarray:
        rows = []
        for side, z, _, _, ys, xs in _grid(*self.work.shape):
            yy, xx = np.meshgrid(ys / z, xs / z, indexing='ij')
            rows.append(np.stack([np.full(yy.size, side), yy.ravel(), xx.ravel()], axis=1))
        return np.concatenate(rows).astype(np.float32)

    @cached_property
    def half(self) -> np.ndarray:
        h, w = self.work.shape
        return cv2.resize(self.work, ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA)

    @cached_property
    def small(self) -> np.ndarray:
        h, w = self.work.shape
        return cv2.resize(self.half, ((w + 3) // 4, (h + 3) // 4), interpolation=cv2.INTER_AREA)


def _describe(thumbs: np.ndarray) -> np.ndarray:
    """``(..., CELLS^2)`` cell means -> normalised low-frequency DCT descriptors."""
    d = thumbs.reshape(-1, CELLS * CELLS).astype(np.float32) @ _BASIS
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6)
    return d


def fingerprint(gray: np.ndarray) -> Optional[Fingerprint]:
    """Fingerprint of an 8-bit grayscale image, ``None`` when it is too small."""
    h, w = gray.shape
    if min(h, w) < MIN_SIDE:
        return None
    scale = min(1.0, WORK_SIDE / min(h, w))
    work = gray if scale == 1.0 else cv2.resize(
        gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    work = np.ascontiguousarray(work)
    hw, ww = work.shape
    smooth = cv2.medianBlur(work, 5)   # thin text, calipers and dots vanish
    # black outside the field of view looks alike in every image of a scanner: fill it with
    # the image's mean grey so that only the anatomy is compared
    black = cv2.morphologyEx((smooth <= BLACK_LEVEL).astype(np.uint8), cv2.MORPH_OPEN,
                             np.ones((5, 5), np.uint8)).astype(bool)
    if black.any() and not black.all():
        smooth = smooth.copy()
        smooth[black] = int(smooth[~black].mean())
    half = cv2.resize(smooth, ((ww + 1) // 2, (hw + 1) // 2), interpolation=cv2.INTER_AREA)
    span = CELLS * _PIX
    offs = _PIX // 2 + _PIX * np.arange(CELLS)
    grid = _grid(hw, ww)
    bank = []
    for side, z, rh, rw, ys, xs in grid:
        base = half if z <= 0.5 else smooth   # half resolution is plenty (and 4x cheaper)
        img = cv2.resize(base, (rw, rh), interpolation=cv2.INTER_AREA).astype(np.float32)
        img = cv2.GaussianBlur(img, (0, 0), 0.6 * _PIX)
        rows, cols = ys[:, None] + offs, xs[:, None] + offs
        bank.append(_describe(img[rows[:, None, :, None], cols[None, :, None, :]]))
    # the central square is the largest window, centred (img is still the last size's)
    y0, x0 = (grid[-1][2] - span) // 2, (grid[-1][3] - span) // 2
    query = _describe(img[y0 + _PIX // 2:y0 + span:_PIX, x0 + _PIX // 2:x0 + span:_PIX])[0]
    k = max(0, int(work.size * CLIP_TEXT / 100) - 1)
    clip = float(np.partition(work.ravel(), k)[k])
    return Fingerprint(work, scale, clip, query.astype(np.float32),
                       np.concatenate(bank).astype(np.float16))


# --------------------------------------------------------------------------------------
# stage 1: candidates
# --------------------------------------------------------------------------------------
_POOL_FPS: Sequence[Optional[Fingerprint]] = ()
_POOL_QUERIES: Optional[np.ndarray] = None


def _score_targets(targets: Sequence[int]) -> Tuple[Sequence[int], np.ndarray]:
    """Coarse NCC of every query against each target (best window): ``len(targets) x n``."""
    qt = _POOL_QUERIES
    out = np.empty((len(targets), qt.shape[1]), np.float32)
    for k, t in enumerate(targets):
        # one small product per target keeps the scores in cache (3x faster than big blocks)
        np.max(_POOL_FPS[t].bank.astype(np.float32) @ qt, axis=0, out=out[k])
    return targets, out


def _run(fn, jobs, workers):
    """``fn`` over ``jobs`` in a fork pool (children see the module globals) or in line."""
    if workers > 1 and len(jobs) > 1 and sys.platform != 'win32':
        with get_context('fork').Pool(min(workers, len(jobs))) as pool:
            return pool.map(fn, jobs)
    return [fn(j) for j in jobs]


def candidate_pairs(fps: Sequence[Optional[Fingerprint]], top_k: int = TOP_K,
                    min_ncc: float = MIN_CANDIDATE_NCC,
                    workers: int = 1) -> Dict[Tuple[int, int], float]:
    """``{(query, target): coarse NCC}``: for every image its ``top_k`` best targets.

    ``fps[i] is None`` images take no part. The work is one small matrix product per target
    (its window bank against all central squares), split over ``workers`` processes.
    """
    global _POOL_FPS, _POOL_QUERIES
    idx = [i for i, f in enumerate(fps) if f is not None]
    if len(idx) < 2:
        return {}
    n = len(idx)
    _POOL_FPS = [fps[i] for i in idx]
    _POOL_QUERIES = np.ascontiguousarray(np.stack([f.query for f in _POOL_FPS]).T)
    try:
        chunk = max(16, -(-n // (4 * max(1, workers))))
        parts = _run(_score_targets, [range(s, min(n, s + chunk)) for s in range(0, n, chunk)],
                     workers)
    finally:
        _POOL_FPS, _POOL_QUERIES = (), None
    scores = np.empty((n, n), np.float32)            # scores[query, target]
    for targets, block in parts:
        scores[:, targets.start:targets.stop] = block.T
    np.fill_diagonal(scores, -np.inf)
    k = min(top_k, n - 1)
    best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    out = {}
    for qi in range(n):
        for t in best[qi]:
            s = float(scores[qi, t])
            if s >= min_ncc:
                out[(idx[qi], idx[int(t)])] = s
    return out


def best_window(fq: Fingerprint, ft: Fingerprint) -> np.ndarray:
    """``(side, y, x)`` of the window of ``ft`` that best matches ``fq``'s central square."""
    return ft.windows[int(np.argmax(ft.bank.astype(np.float32) @ fq.query))]
