"""Synthetic breast-ultrasound images with BI-RADS-like nodule cues (the embedded default data).

Each image is built in "echogenicity" space (mean backscatter per pixel, float), then turned
into a B-mode image:

1. tissue layers below the probe: skin (thin bright line), subcutaneous fat (dark, lobular,
   Cooper's ligaments), fibroglandular tissue (bright, horizontally streaked), retromammary
   fat and pectoral muscle (striated), with wavy boundaries;
2. a nodule (hypoechoic) whose look follows the BI-RADS lexicon, see :class:`NoduleCues`:
   benign = oval, parallel to the skin (wider than tall), circumscribed (sharp margin, thin
   echogenic capsule), homogeneous, sometimes posterior enhancement; malignant = irregular,
   not parallel (taller than wide), angular/spiculated margins with an echogenic halo,
   heterogeneous, posterior shadowing, microcalcifications;
3. posterior acoustic features (a column below the nodule brightened or darkened);
4. depth attenuation with partial time-gain compensation;
5. fully developed speckle: multiplicative Rayleigh envelope of spatially correlated complex
   Gaussian noise (lateral correlation longer than axial);
6. log compression, gain, the probe's field of view and scanner overlays (text, depth ruler,
   grey colour bar, focus marker, body marker, and -- in both classes alike, so they leak
   nothing -- calipers).

The latent model (the cues, their class overlap set by ``difficulty``, the nodule shapes and the
hospital styles) is in :mod:`mmbus.datasets.synthetic_cues`; this module renders it.

Sizes are pixels; ``[x, y, w, h]`` boxes are inclusive pixel extents (as in the converters).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import List, Optional

import cv2
import numpy as np

# the latent model, re-exported: callers import it from here
from .synthetic_cues import (CUE_NAMES, STYLES, HospitalStyle, NoduleCues, NoduleShape,  # noqa: F401
                             cue_separation, sample_cues, sample_shape)


# -----------------------------------------------------------------------------------------
# noise helpers (all vectorised; low-resolution noise upsampled = smooth random fields)
# -----------------------------------------------------------------------------------------
def _smooth_noise(rng, h, w, cell_h, cell_w):
    gh, gw = max(2, int(h / cell_h) + 2), max(2, int(w / cell_w) + 2)
    small = rng.standard_normal((gh, gw), dtype=np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _wave(rng, x, amp, n=2):
    out = np.zeros_like(x, dtype=np.float32)
    for _ in range(n):
        out += amp * rng.uniform(0.3, 1.0) * np.sin(
            2 * np.pi * rng.uniform(0.5, 2.0) * x + rng.uniform(0, 2 * np.pi))
    return out


# a microcalcification: 3 x 3 px, bright centre
_FLECK = np.array([[0.3, 0.6, 0.3], [0.6, 1.0, 0.6], [0.3, 0.6, 0.3]], np.float32)


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


# -----------------------------------------------------------------------------------------
# image synthesis
# -----------------------------------------------------------------------------------------
@dataclass
class SyntheticCase:
    image: np.ndarray                  # HxW uint8
    masks: List[np.ndarray]            # one HxW uint8 (0/255) mask per nodule
    boxes: List[List[int]]             # [x, y, w, h] per nodule, inclusive pixel extents
    meta: dict = field(default_factory=dict)


def _tissue(rng, h, w, fov):
    """Echogenicity of the breast layers (float32 HxW) in the FOV rectangle."""
    y0, y1, x0, x1 = fov
    fh = y1 - y0
    ys = (np.arange(h, dtype=np.float32) - y0) / fh          # depth 0..1 in the FOV
    xs = np.arange(w, dtype=np.float32) / w
    skin = 0.035 + _wave(rng, xs, 0.006)
    fat = skin + rng.uniform(0.12, 0.28) + _wave(rng, xs, 0.04)
    gland = fat + rng.uniform(0.30, 0.45) + _wave(rng, xs, 0.06)
    muscle = gland + rng.uniform(0.06, 0.12) + _wave(rng, xs, 0.02)
    d = ys[:, None]
    soft = 0.015
    in_fat = _smoothstep((d - skin[None]) / soft)
    in_gland = _smoothstep((d - fat[None]) / (3 * soft))
    in_retro = _smoothstep((d - gland[None]) / (3 * soft))
    in_muscle = _smoothstep((d - muscle[None]) / soft)

    lobules = _smooth_noise(rng, h, w, 14, 20)
    streaks = _smooth_noise(rng, h, w, 5, 28)               # horizontally elongated texture
    striation = np.sin(d * fh * rng.uniform(0.35, 0.6) + 2.0 * _smooth_noise(rng, h, w, 30, 60))
    e_skin = 1.3
    e_fat = 0.28 + 0.08 * lobules
    e_gland = 0.62 + 0.18 * streaks + 0.06 * lobules
    e_retro = 0.25 + 0.06 * lobules
    e_muscle = 0.42 + 0.10 * striation
    e = e_skin * (1 - in_fat) + e_fat * in_fat
    e = e * (1 - in_gland) + e_gland * in_gland
    e = e * (1 - in_retro) + e_retro * in_retro
    e = e * (1 - in_muscle) + e_muscle * in_muscle
    # Cooper's ligaments: a few bright curved lines crossing the fat layer
    # (only the rows of the fat layer are computed)
    r0 = max(0, int(y0 + skin.min() * fh))
    r1 = min(h, int(y0 + (fat.max() + 3 * soft) * fh) + 1)
    lig = np.zeros((r1 - r0, w), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        xc = rng.uniform(0.1, 0.9)
        curve = xc + 0.15 * np.sin(np.pi * (d[r0:r1, 0] - skin.mean()) * rng.uniform(1, 3))
        dist = np.abs(xs[None, :] - curve[:, None]) * (w / 1.2)
        lig += np.exp(-dist * dist) * 0.5
    e[r0:r1] += lig * in_fat[r0:r1] * (1 - in_gland[r0:r1])
    return np.clip(e, 0.02, None).astype(np.float32), (float(fat.mean()), float(gland.mean()))


def _nodule(rng, e, cues: NoduleCues, shape: NoduleShape, center, fov, view_scale):
    """Composite one nodule into echogenicity ``e`` (in place); returns its mask (bool) and
    a per-column posterior gain map handled by the caller."""
    h, w = e.shape
    y0, y1, x0, x1 = fov
    fw = x1 - x0
    cx, cy = center
    r = shape.radius_frac * fw
    aspect = math.exp(np.interp(cues.orientation, [0, 1], [math.log(2.0), math.log(0.6)]))
    a = r * math.sqrt(aspect) * view_scale      # half width
    b = r / math.sqrt(aspect) / view_scale      # half height
    # largest radius the margin function can reach (harmonics + polygon + spicules), so the
    # patch is only as big as needed
    r_max = 1.0 + float(np.abs(shape.harmonics[:, 0]).sum()) + 0.2 + \
        float(np.sort(shape.spikes[:, 1])[-2:].sum())   # two spicules may overlap
    ext = r_max * max(a, b) + 12
    px0, px1 = int(max(0, cx - ext)), int(min(w, cx + ext + 1))
    py0, py1 = int(max(y0, cy - ext)), int(min(h, cy + ext + 1))
    dx = np.arange(px0, px1, dtype=np.float32)[None, :] - np.float32(cx)
    dy = np.arange(py0, py1, dtype=np.float32)[:, None] - np.float32(cy)
    ct, st = math.cos(shape.tilt), math.sin(shape.tilt)
    u = (dx * ct + dy * st) / a
    v = (-dx * st + dy * ct) / b
    rho = np.sqrt(u * u + v * v)
    # shape harmonics cos(k*theta + phase) as Re(e^{i k theta} e^{i phase}), by powers of
    # e^{i theta} = (u + iv) / rho: much cheaper than one cos per harmonic
    unit = (u + 1j * v).astype(np.complex64) / np.maximum(rho, 1e-6)
    power = unit * unit
    rad = np.ones_like(rho)
    for amp, ph in shape.harmonics:       # k = 2, 3, ...
        rad += (power * np.complex64(amp * np.exp(1j * ph))).real
        power *= unit
    ang = 0.55 * max(0.0, cues.spiculation - 0.3)
    theta = np.arctan2(v, u) if ang > 0 or len(shape.spikes) else None
    if ang > 0:  # angular margins: pull towards a polygon
        n = shape.polygon_n
        seg = np.mod(theta - shape.polygon_phase, 2 * np.pi / n) - np.pi / n
        poly = math.cos(np.pi / n) / np.cos(seg)
        rad = (1 - ang) * rad + ang * poly
    for th, amp, wid in shape.spikes:
        dth = np.abs(np.mod(theta - th + np.pi, 2 * np.pi) - np.pi)
        rad += amp * np.clip(1 - dth / wid, 0, 1) ** 2
    rpx = 0.5 * (a + b)
    sd = (rad - rho) * rpx                      # ~signed distance to the margin, px (>0 inside)
    mask = sd > 0
    # margin features scale with the nodule (a crop of it is resized to a fixed input, ~2.5x smaller for a
    # mid-sized nodule): widths in units of rpx / 15, i.e. pixels for the smallest nodules
    unit = max(1.0, rpx / 15.0)
    edge = (0.6 + 2.6 * cues.margin_blur) * unit        # margin width, px
    alpha = np.clip(0.5 + sd / (2 * edge), 0, 1)
    # echo pattern: darker and coarser-grained heterogeneous interior (grain of ~2 units: it survives the resize)
    interior = 0.14 - 0.10 * cues.heterogeneity
    hetero = (0.015 + 0.14 * cues.heterogeneity) * _smooth_noise(rng, py1 - py0, px1 - px0, 2 * unit, 2 * unit)
    e_nod = np.clip(interior + hetero, 0.015, None)
    patch = e[py0:py1, px0:px1]
    mixed = patch * (1 - alpha) + e_nod * alpha
    outside = np.clip(-sd, 0, None)
    halo = 0.7 * max(0.0, cues.margin_blur - 0.35) * np.exp(-(outside / (3.5 * unit)) ** 2) * (sd < 0)
    capsule = 0.7 * max(0.0, 0.55 - cues.margin_blur) * np.exp(-(sd / unit) ** 2)
    e[py0:py1, px0:px1] = mixed + halo + capsule
    full = np.zeros((h, w), bool)
    full[py0:py1, px0:px1] = mask
    return full


def _posterior(e, mask, cues: NoduleCues, rng, fov):
    """Posterior enhancement (<0.5) or shadowing (>0.5) below the nodule, in place."""
    y0, y1, _, _ = fov
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        return
    sub = mask[:, cols[0]:cols[-1] + 1]
    height = sub.sum(axis=0).astype(np.float32)
    weight = np.sqrt(height / height.max())
    bottom = sub.shape[0] - 1 - np.argmax(sub[::-1], axis=0)
    p = cues.posterior
    gain = 1.6 * (0.5 - p) if p < 0.5 else -1.5 * (p - 0.5)   # +0.8 .. -0.75
    gain = float(np.clip(gain + rng.normal(0, 0.05), -0.8, 0.9))
    length = (y1 - y0) * rng.uniform(0.35, 0.8)
    ys = np.arange(e.shape[0], dtype=np.float32)[:, None]
    dist = ys - bottom[None, :]
    prof = np.where(dist > 0, np.exp(-dist / length) * (1 - np.exp(-dist / 3.0)), 0.0)
    e[:, cols[0]:cols[-1] + 1] *= (1 + gain * prof * weight[None, :]).astype(np.float32)


def _overlays(rng, img, style: HospitalStyle, fov, depth_cm, calipers, side, case_no):
    """Scanner overlays, drawn in place on the uint8 image."""
    h, w = img.shape
    y0, y1, x0, x1 = fov
    font = cv2.FONT_HERSHEY_SIMPLEX
    fs = 0.26 if w <= 256 else 0.3
    col = int(rng.integers(200, 256))
    tx = 2 if style.text_side == 'left' else int(w * 0.62)
    lines = [style.label, f'BREAST {side}', f'D{depth_cm:.1f}cm G{int(rng.integers(40, 70))}',
             f'{int(rng.integers(1, 29)):02d}/{int(rng.integers(1, 13)):02d} #{case_no}']
    for i, t in enumerate(lines):
        if 8 + 8 * i > y0 - 2:   # text stays above the field of view
            break
        cv2.putText(img, t, (tx, 8 + 8 * i), font, fs, col, 1, cv2.LINE_AA)
    # depth ruler with 1 cm ticks, on the side opposite the colour bar
    px_per_cm = (y1 - y0) / depth_cm
    rx = x1 + 2 if style.text_side == 'left' else max(0, x0 - 5)
    for k in range(int(depth_cm) + 1):
        yk = int(y0 + k * px_per_cm)
        if yk < h:
            cv2.line(img, (rx, yk), (rx + 3, yk), 220, 1)
            if k % 2 == 0 and k > 0 and rx + 5 < w - 6:
                cv2.putText(img, str(k), (rx + 4, min(h - 1, yk + 3)), font, 0.22, 200, 1)
    # grey colour bar
    bx = w - 5 if style.text_side == 'left' else 1
    by0, by1 = y0, y0 + int(0.35 * (y1 - y0))
    img[by0:by1, bx:bx + 3] = np.linspace(255, 0, by1 - by0)[:, None].astype(np.uint8)
    # focus marker
    fy = int(y0 + rng.uniform(0.3, 0.6) * (y1 - y0))
    fx = rx + (5 if style.text_side == 'left' else -3)
    if 0 <= fx < w - 3:
        cv2.fillPoly(img, [np.array([[fx, fy - 2], [fx, fy + 2], [fx + 3, fy]], np.int32)], 230)
    # body marker: small breast pictogram with the probe position
    cxm, cym = (x0 + 10, h - 12) if style.text_side == 'left' else (x1 - 12, h - 12)
    cv2.circle(img, (cxm, cym), 7, 180, 1)
    ang = rng.uniform(0, np.pi)
    cv2.line(img, (int(cxm - 6 * np.cos(ang)), int(cym - 6 * np.sin(ang))),
             (int(cxm + 6 * np.cos(ang)), int(cym + 6 * np.sin(ang))), 255, 1)
    for (ax, ay), (bx2, by2) in calipers:   # '+' calipers with a dotted line between
        for (px, py) in ((ax, ay), (bx2, by2)):
            cv2.drawMarker(img, (int(px), int(py)), 255, cv2.MARKER_CROSS, 5, 1)
        n = max(2, int(math.hypot(bx2 - ax, by2 - ay) / 4))
        for t in np.linspace(0, 1, n)[1:-1]:
            img[int(ay + t * (by2 - ay)), int(ax + t * (bx2 - ax))] = 200


def render_case(rng: np.random.Generator, pathology: str, style: HospitalStyle,
                cues: Optional[List[NoduleCues]] = None,
                shapes: Optional[List[NoduleShape]] = None, view_scale: float = 1.0,
                caliper_prob: float = 0.3, case_no: int = 0) -> SyntheticCase:
    """Render one image; ``cues``/``shapes`` (one per nodule, empty for normal) are sampled
    by the caller so that two views of one patient share them."""
    cues = cues or []
    shapes = shapes or []
    w = style.width
    h = int(rng.integers(style.height_range[0], style.height_range[1] + 1))
    mt, mb, ml, mr = style.margins
    fov = (int(mt * h), h - int(mb * h), int(ml * w), w - int(mr * w))
    y0, y1, x0, x1 = fov
    e, (fat_d, gland_d) = _tissue(rng, h, w, fov)
    masks, boxes, nod_meta = [], [], []
    taken = []
    for c, s in zip(cues, shapes):
        for _ in range(20):  # place nodules in the glandular layer, not overlapping
            cx = rng.uniform(x0 + 0.25 * (x1 - x0), x1 - 0.25 * (x1 - x0))
            cy = y0 + (y1 - y0) * rng.uniform(max(0.22, fat_d + 0.05), min(0.7, gland_d))
            if all(math.hypot(cx - tx, cy - ty) > 0.35 * (x1 - x0) for tx, ty in taken):
                break
        taken.append((cx, cy))
        mask = _nodule(rng, e, c, s, (cx, cy), fov, view_scale)
        mask[:y0] = False
        _posterior(e, mask, c, rng, fov)
        masks.append(mask)
    # depth attenuation with partial TGC
    depth = np.clip((np.arange(h, dtype=np.float32) - y0) / (y1 - y0), 0, 1)[:, None]
    e *= np.exp(-style.attenuation * depth) * (1 + style.tgc * depth)
    # speckle: Rayleigh envelope of correlated complex Gaussian noise (mean ~1)
    sl, sa = style.speckle_sigma
    re = cv2.GaussianBlur(rng.standard_normal((h, w), dtype=np.float32), (0, 0), sl, sigmaY=sa)
    im = cv2.GaussianBlur(rng.standard_normal((h, w), dtype=np.float32), (0, 0), sl, sigmaY=sa)
    env = np.sqrt(re * re + im * im)
    env *= 1.0 / (env.mean() + 1e-6)
    inten = e * env
    for c, mask in zip(cues, masks):   # microcalcifications: bright specular flecks
        n_calc = int(rng.poisson(14 * max(0.0, c.calcification - 0.5)))
        ys, xs = np.nonzero(mask)
        if n_calc and ys.size:
            # 2-3 px flecks (a one-pixel dot vanishes when the crop is resized to the recogniser's input)
            idx = rng.integers(0, ys.size, n_calc)
            for y, x, amp in zip(ys[idx], xs[idx], rng.uniform(3, 6, n_calc)):
                y0c, y1c, x0c, x1c = max(0, y - 1), min(h, y + 2), max(0, x - 1), min(w, x + 2)
                inten[y0c:y1c, x0c:x1c] += amp * _FLECK[y0c - y + 1:y1c - y + 1, x0c - x + 1:x1c - x + 1]
    inten += 0.01 * np.abs(rng.standard_normal((h, w), dtype=np.float32))  # electronic noise
    out = np.log1p(style.dynamic_range * inten) / math.log1p(style.dynamic_range * 2.0)
    out = np.clip(out, 0, 1) ** style.gamma * style.gain
    img = np.clip(out * 255, 0, 255).astype(np.uint8)
    # field of view (linear probe; style b: trapezoid) -- outside is black
    fov_mask = np.zeros((h, w), bool)
    if style.trapezoid > 0:
        extra = (depth[:, 0] * style.trapezoid * w).astype(int)
        cols = np.arange(w)[None, :]
        fov_mask = (cols >= x0 + style.trapezoid * w - extra[:, None]) & \
                   (cols < x1 - style.trapezoid * w + extra[:, None])
    else:
        fov_mask[:, x0:x1] = True
    fov_mask[:y0] = False
    fov_mask[y1:] = False
    img[~fov_mask] = 0
    for m in masks:
        m &= fov_mask
        ys, xs = np.nonzero(m)
        boxes.append([int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                      int(ys.max() - ys.min() + 1)] if ys.size else [])
    calipers = []
    if boxes and boxes[0] and rng.random() < caliper_prob:
        bx, by, bw, bh = boxes[0]
        calipers = [((bx - 2, by + bh / 2), (bx + bw + 1, by + bh / 2))]
        if rng.random() < 0.6:
            calipers.append(((bx + bw / 2, by - 2), (bx + bw / 2, by + bh + 1)))
    depth_cm = float(rng.uniform(*style.depth_cm))
    _overlays(rng, img, style, fov, depth_cm, calipers, 'L' if rng.random() < 0.5 else 'R',
              case_no)
    for c in cues:
        nod_meta.append(asdict(c))
    return SyntheticCase(img, [m.astype(np.uint8) * 255 for m in masks], boxes,
                         {'pathology': pathology, 'nodules': nod_meta, 'calipers': bool(calipers),
                          'depth_cm': round(depth_cm, 2)})
