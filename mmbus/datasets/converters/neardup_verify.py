"""Re-crop guard, stage 2: verify candidate pairs by aligning them and comparing their speckle
(see :mod:`.neardup` for the whole method), and :func:`find_recrops`, which runs both stages.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .neardup import (DEFAULT_MIN_SPECKLE, TOP_K, Fingerprint, _run, best_window,
                      candidate_pairs)

# --------------------------------------------------------------------------------------
# stage 2: verification
# --------------------------------------------------------------------------------------
BAND = (0.7, 2.5)        # px of the working copy: the speckle band (difference of Gaussians)


def _bandpass(img: np.ndarray, band=None) -> np.ndarray:
    lo, hi = band or BAND
    img = img.astype(np.float32)
    return cv2.GaussianBlur(img, (0, 0), lo) - cv2.GaussianBlur(img, (0, 0), hi)


def speckle_ncc(a: np.ndarray, b: np.ndarray, blocks: int = 4, band=None) -> float:
    """Median over ``blocks x blocks`` tiles of the NCC of band-passed ``a`` and ``b`` (same
    shape); tiles flat in either image (no texture) are left out. 0 when none is left."""
    h, w = a.shape
    bh, bw = h // blocks, w // blocks
    if bh < 4 or bw < 4:
        return 0.0
    tiles = []
    for img in (a, b):
        t = _bandpass(img, band)[:bh * blocks, :bw * blocks]
        t = t.reshape(blocks, bh, blocks, bw).transpose(0, 2, 1, 3).reshape(blocks ** 2, -1)
        tiles.append(t - t.mean(axis=1, keepdims=True))
    x, y = tiles
    sxx, syy = (x * x).sum(axis=1), (y * y).sum(axis=1)
    ok = (sxx > 1e-3 * x.shape[1]) & (syy > 1e-3 * x.shape[1])
    if not ok.any():
        return 0.0
    return float(np.median((x * y).sum(axis=1)[ok] / np.sqrt(sxx[ok] * syy[ok])))


def _search(ref, tmpl_src, scale, centre, margin, steps, blur, subpixel=False,
            clip=(None, None)):
    """Best match ``(ncc, scale, y, x, n)`` of the square ``tmpl_src`` resized by
    ``scale * (1 + d)`` (``n`` px) for ``d`` in ``steps``, searched in ``ref`` within
    ``margin`` px of ``centre`` (both blurred by ``blur`` px); ``n = 0`` when no size fits.

    ``subpixel``: ``y, x`` and the scale are refined by parabolas through the neighbouring
    scores (positions then are floats). ``clip``: grey levels above which ``ref`` and the
    template are clipped.
    """
    best = (-2.0, scale, 0, 0, 0)
    best_res, scores = None, {}
    cy, cx = centre
    side = tmpl_src.shape[0]
    big = int(round(side * scale * (1 + max(steps)))) + 2 * int(np.ceil(margin)) + 2
    y0 = int(max(0, round(cy - big / 2)))
    x0 = int(max(0, round(cx - big / 2)))
    region = ref[y0:y0 + big, x0:x0 + big].astype(np.float32)
    src = tmpl_src.astype(np.float32)
    # burnt-in text and calipers are the brightest pixels: clipped, they pull less
    if clip[0] is not None:
        region = np.minimum(region, clip[0])
    if clip[1] is not None:
        src = np.minimum(src, clip[1])
    region = cv2.GaussianBlur(region, (0, 0), blur)
    src = cv2.GaussianBlur(src, (0, 0), blur / max(scale, 1e-3))
    for k, d in enumerate(steps):
        sc = scale * (1 + d)
        n = int(round(side * sc))
        if n < 8:
            continue
        ry0 = max(0, int(max(0, round(cy - n / 2 - margin))) - y0)
        rx0 = max(0, int(max(0, round(cx - n / 2 - margin))) - x0)
        ry1 = min(region.shape[0], int(min(ref.shape[0], round(cy + n / 2 + margin))) - y0)
        rx1 = min(region.shape[1], int(min(ref.shape[1], round(cx + n / 2 + margin))) - x0)
        if ry1 - ry0 < n or rx1 - rx0 < n:
            continue
        t = cv2.resize(src, (n, n), interpolation=cv2.INTER_AREA)
        res = cv2.matchTemplate(region[ry0:ry1, rx0:rx1], t, cv2.TM_CCOEFF_NORMED)
        _, mv, _, ml = cv2.minMaxLoc(res)
        if not np.isfinite(mv):
            continue
        scores[k] = float(mv)
        if mv > best[0]:
            best = (float(mv), n / side, y0 + ry0 + ml[1], x0 + rx0 + ml[0], n)
            best_res, best_k, best_ml = res, k, ml
    if not subpixel or best[4] == 0:
        return best
    ncc, sc, py, px, n = best
    mx, my = best_ml

    def vertex(a, b, c):   # offset of the top of a parabola through (-1, a), (0, b), (1, c)
        den = a - 2 * b + c
        return 0.0 if den >= 0 else max(-0.5, min(0.5, 0.5 * float(a - c) / float(den)))

    if 0 < my < best_res.shape[0] - 1:
        py += vertex(best_res[my - 1, mx], best_res[my, mx], best_res[my + 1, mx])
    if 0 < mx < best_res.shape[1] - 1:
        px += vertex(best_res[my, mx - 1], best_res[my, mx], best_res[my, mx + 1])
    if best_k - 1 in scores and best_k + 1 in scores:
        t = vertex(scores[best_k - 1], scores[best_k], scores[best_k + 1])
        step = steps[best_k + 1] - steps[best_k] if t > 0 else steps[best_k] - steps[best_k - 1]
        sc *= 1 + t * step / (1 + steps[best_k])
    return ncc, sc, py, px, n


_COARSE = tuple(np.linspace(-0.18, 0.18, 5))
_MEDIUM = (-0.04, 0.0, 0.04)
_FINE = (-0.02, 0.0, 0.02)
_MIN_ALIGN = 0.8   # coarse structure NCC below which a pair is not looked at closer
_FINE_SIDE = 64    # px: the fine alignment matches at most this much of the square
_REJECTED = {'align': -1.0, 'ncc': -1.0, 'speckle': 0.0, 'transform': None}


def _coarse(fq: Fingerprint, ft: Fingerprint, window=None) -> Optional[dict]:
    """Coarse alignment of ``fq``'s central square on ``ft`` (quarter resolution, scales within
    +-18 %, positions within 15 % of the window side of the candidate window)."""
    side_t, y_t, x_t = best_window(fq, ft) if window is None else window
    q, qy, qx = fq.query_box
    swap = side_t > q          # the target is finer: resample it down onto the query
    ref, mov = (fq, ft) if swap else (ft, fq)
    (r_side, ry, rx), (m_side, my, mx) = ((q, qy, qx), (side_t, y_t, x_t)) if swap else \
        ((side_t, y_t, x_t), (q, qy, qx))
    my0, mx0, m_n = int(round(my)), int(round(mx)), int(round(m_side))
    if m_n < 16 or my0 + m_n > mov.work.shape[0] or mx0 + m_n > mov.work.shape[1]:
        return None
    found = _align_at(ref.small, mov.small, mov.work.shape, (my0, mx0, m_n), r_side / m_n,
                      (ry + (r_side - 1) / 2, rx + (r_side - 1) / 2), 0.15 * r_side + 4,
                      _COARSE, 0.5, clip=(ref.clip, mov.clip))
    if found is None:
        return None
    align, sc, centre = found
    return dict(align=round(align, 4), swap=swap, ref=ref, mov=mov, box=(my0, mx0, m_n),
                scale=sc, centre=centre)


def _align_at(ref_img, mov_img, full_shape, box, scale, centre, margin, steps, blur,
              clip=(None, None)):
    """Align the square ``box = (y, x, side)`` (full-resolution px of mov) at the resolution of
    ``mov_img``/``ref_img`` (``full_shape`` is mov's full-resolution shape); ``centre`` (of the
    square, in ref) and ``margin`` are in full-resolution px. Returns ``(ncc, scale, centre)``
    of the best match (sub-pixel), ``None`` when nothing fits."""
    my0, mx0, m_n = box
    f = mov_img.shape[1] / full_shape[1]
    k0, k1, kn = int(round(my0 * f)), int(round(mx0 * f)), int(round(m_n * f))
    tmpl = mov_img[k0:k0 + kn, k1:k1 + kn]
    if kn < 8 or min(tmpl.shape) < kn:
        return None
    lo = lambda v: (v + 0.5) * f - 0.5      # full-res px -> px at this resolution  # noqa: E731
    hi = lambda v: (v + 0.5) / f - 0.5      # and back                              # noqa: E731
    # the template's centre is not quite the square's: shift the expected centre accordingly
    dy = (my0 + (m_n - 1) / 2) - hi(k0 + (kn - 1) / 2)
    dx = (mx0 + (m_n - 1) / 2) - hi(k1 + (kn - 1) / 2)
    ncc, sc, py, px, n = _search(ref_img, tmpl, scale,
                                 (lo(centre[0] - scale * dy) + 0.5, lo(centre[1] - scale * dx)
                                  + 0.5), margin * f, steps, blur, subpixel=True, clip=clip)
    if n == 0:
        return None
    return ncc, sc, (hi(py + (n - 1) / 2) + sc * dy, hi(px + (n - 1) / 2) + sc * dx)


def _fine(c: dict) -> dict:
    """Medium (half resolution, whole square, +-4 %) and fine alignment (full resolution,
    +-2 % scale, +-4 px), then the speckle check.

    The fine alignment matches the central part of the square (at most :data:`_FINE_SIDE` px
    once resized: a few hundred microseconds per size); the speckle check covers the whole
    square.
    """
    ref, mov = c['ref'], c['mov']
    my0, mx0, m_n = c['box']
    # medium: half resolution, whole square (its size pins the scale down), +-4 %
    mid = _align_at(ref.half, mov.half, mov.work.shape, c['box'], c['scale'], c['centre'], 6,
                    _MEDIUM, 0.6, clip=(ref.clip, mov.clip))
    if mid is not None:
        c = dict(c, scale=mid[1], centre=mid[2])
    crop = min(m_n, int(_FINE_SIDE / c['scale']))
    off = (m_n - crop) // 2
    src = mov.work[my0 + off:my0 + off + crop, mx0 + off:mx0 + off + crop]
    cy, cx = c['centre']    # where the square's centre should be; the crop shares it
    scale = c['scale']
    centre = (cy + scale * (off + crop / 2 - m_n / 2), cx + scale * (off + crop / 2 - m_n / 2))
    for _ in range(2):      # once more around the result when it lies at the edge of the range
        ncc, s, py, px, n = _search(ref.work, src, scale, centre, 4, _FINE, 0.7, subpixel=True,
                                    clip=(ref.clip, mov.clip))
        if n == 0:
            return dict(_REJECTED, align=c['align'])
        if abs(s / scale - 1) < 0.8 * _FINE[-1]:
            break
        scale, centre = s, (py + (n - 1) / 2, px + (n - 1) / 2)
    # mov-square px X -> ref px: s * X + b (the matched template's centre stays in place)
    by = py + (n - 1) / 2 - (off + (crop - 1) / 2) * s
    bx = px + (n - 1) / 2 - (off + (crop - 1) / 2) * s
    square = mov.work[my0:my0 + m_n, mx0:mx0 + m_n].astype(np.float32)
    if s < 0.95:       # anti-alias before shrinking
        square = cv2.GaussianBlur(square, (0, 0), 0.5 * (1 / s - 1) + 0.3)
    hr, wr = ref.work.shape
    yl, yh = max(0, int(np.ceil(by))), min(hr, int(np.floor(by + s * (m_n - 1))) + 1)
    xl, xh = max(0, int(np.ceil(bx))), min(wr, int(np.floor(bx + s * (m_n - 1))) + 1)
    if yh - yl < 16 or xh - xl < 16:
        return dict(_REJECTED, align=c['align'])
    warped = cv2.warpAffine(square, np.float32([[s, 0, bx - xl], [0, s, by - yl]]),
                            (xh - xl, yh - yl), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    speckle = speckle_ncc(ref.work[yl:yh, xl:xh], warped)
    # working px of mov -> working px of ref: x_r = s * (x_m - mx0) + bx; then original px
    dx = (bx - s * mx0) / ref.scale
    dy = (by - s * my0) / ref.scale
    s = s * mov.scale / ref.scale
    if c['swap']:   # ref is the query image: invert to map query -> target
        s, dx, dy = 1 / s, -dx / s, -dy / s
    return {'align': c['align'], 'ncc': round(ncc, 4), 'speckle': round(speckle, 4),
            'transform': (round(s, 5), round(dx, 2), round(dy, 2))}


def verify_pair(fq: Fingerprint, ft: Fingerprint, both: bool = True,
                min_speckle: float = DEFAULT_MIN_SPECKLE) -> dict:
    """Align one image's central square on the other and measure how well they agree.

    The coarse alignment is tried both ways (``fq`` inside ``ft`` and ``ft`` inside ``fq``;
    only the first with ``both=False``); the better one is refined and checked, then the
    other one if the first fell short of ``min_speckle``. Returns ``query`` (0:
    ``fq``'s square was aligned on ``ft``, 1: the other way), ``align`` (structure NCC at
    quarter resolution), ``ncc`` (structure NCC at the final alignment), ``speckle`` (see
    :func:`speckle_ncc`) and ``transform`` ``(s, dx, dy)`` mapping original pixels of the
    query image onto the other (``x' = s * x + dx``, ``y' = s * y + dy``).
    """
    tries = [(0, _coarse(fq, ft))] + ([(1, _coarse(ft, fq))] if both else [])
    tries = sorted(((k, c) for k, c in tries if c is not None), key=lambda kc: -kc[1]['align'])
    if not tries:
        return dict(_REJECTED, query=0)
    best = dict(_REJECTED, align=tries[0][1]['align'], query=tries[0][0])
    for k, c in tries:           # best alignment first; the other way round only if needed
        if c['align'] < _MIN_ALIGN:
            break
        v = dict(_fine(c), query=k)
        if v['speckle'] > best['speckle'] or best['transform'] is None:
            best = v
        if best['speckle'] >= min_speckle:
            break
    return best


_POOL_FPS: Sequence[Optional[Fingerprint]] = ()   # seen by the forked workers


def _verify_jobs(jobs):
    return [verify_pair(_POOL_FPS[a], _POOL_FPS[b]) for a, b in jobs]


def _verify_all(fps, jobs, workers):
    global _POOL_FPS
    size = max(8, -(-len(jobs) // (4 * max(1, workers))))
    _POOL_FPS = fps
    try:
        parts = _run(_verify_jobs, [jobs[s:s + size] for s in range(0, len(jobs), size)],
                     workers if len(jobs) >= 64 else 1)
    finally:
        _POOL_FPS = ()
    return [v for part in parts for v in part]


def find_recrops(fps: Sequence[Optional[Fingerprint]], min_speckle: float = DEFAULT_MIN_SPECKLE,
                 top_k: int = TOP_K, workers: int = 1, skip: Sequence[Tuple[int, int]] = (),
                 keep_rejected: bool = False) -> List[dict]:
    """Verified re-crop pairs among ``fps`` (indices into it).

    Returns dicts ``{pair: (i, j), query: q, coarse, align, ncc, speckle, transform,
    duplicate}`` with ``i < j``, ``q`` the image whose central square was aligned on the other
    and ``transform`` mapping ``q``'s pixels onto the other's; pairs in ``skip`` (already
    known duplicates) are not verified. ``keep_rejected`` also returns the pairs that failed
    (for calibration), with ``duplicate: False``.
    """
    cands = candidate_pairs(fps, top_k=top_k, workers=workers)
    skip = {tuple(sorted(p)) for p in skip}
    coarse: Dict[Tuple[int, int], float] = {}
    for (q, t), s in cands.items():
        key = (min(q, t), max(q, t))
        if key not in skip:
            coarse[key] = max(s, coarse.get(key, -1.0))
    order = sorted(coarse)
    res = _verify_all(fps, order, workers)
    out = []
    for key, v in zip(order, res):
        dup = v['speckle'] >= min_speckle
        if dup or keep_rejected:
            v = dict(v, query=key[v['query']])
            out.append(dict(pair=key, coarse=round(coarse[key], 4), duplicate=dup, **v))
    return out
