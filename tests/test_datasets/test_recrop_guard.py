"""The re-crop guard on generated copies: recall, precision and the recovered geometry.

Copies are made the way public sets hold them: 60-95 % of a scan cut at a random offset,
rescaled (x0.75-1.5), with overlay text added (and the original's own text missing from the
copy, i.e. removed) and Gaussian noise of 6 grey levels (a quarter of the speckle's own
standard deviation). Different acquisitions are other generator seeds, and second views of one
patient (same nodule, new speckle): none of them may be flagged.
"""
import cv2
import numpy as np
import pytest

from mmbus.datasets.converters import neardup
from mmbus.datasets.converters.neardup import candidate_pairs, fingerprint
from mmbus.datasets.converters.neardup_verify import find_recrops, speckle_ncc, verify_pair
from mmbus.datasets.synthetic import STYLES, render_case, sample_cues, sample_shape


def scan(seed, k, view=0, style='a'):
    """One synthetic acquisition (image, mask); ``view`` > 0: another view of the same nodule."""
    prng = np.random.default_rng([seed, k, 1])
    malignant = k % 3 == 0
    cues = sample_cues(prng, malignant, 0.5)
    shape = sample_shape(prng, cues)
    rng = np.random.default_rng([seed, k, 2, view])
    case = render_case(rng, 'malignant' if malignant else 'benign', STYLES[style], [cues],
                       [shape], view_scale=1.0 if view == 0 else 1.1, case_no=k)
    return case.image, case.masks[0]


def add_text(img, rng, lines=None):
    """Burn 1-3 lines of scanner-like text (height ~3 % of the image) in at random places."""
    img = img.copy()
    h, w = img.shape
    for _ in range(lines or int(rng.integers(1, 4))):
        txt = f'COPY {int(rng.integers(100))} {int(rng.integers(10))}MM'
        org = (int(rng.integers(0, w // 2)), int(rng.integers(h // 10, h - 4)))
        cv2.putText(img, txt, org, cv2.FONT_HERSHEY_SIMPLEX, h / 700 * rng.uniform(0.8, 1.3),
                    int(rng.integers(200, 256)), 1, cv2.LINE_AA)
    return img


def make_copy(img, rng, mask=None, noise=6.0, text=True, fmin=0.6, fmax=0.95):
    """A re-cropped copy: returns (copy, copy mask or None, (scale, x0, y0)) where a copy
    pixel (u, v) shows original pixel (x0 + u / scale, y0 + v / scale)."""
    h, w = img.shape
    f = rng.uniform(fmin, fmax)
    cw = int(round(min(1.0, f * rng.uniform(0.95, 1.05)) * w))
    ch = int(round(f * h))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    s = rng.uniform(0.75, 1.5)
    size = (int(round(cw * s)), int(round(ch * s)))
    out = cv2.resize(img[y0:y0 + ch, x0:x0 + cw], size,
                     interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    if noise:
        out = np.clip(out + rng.normal(0, noise, out.shape), 0, 255).astype(np.uint8)
    if text:
        out = add_text(out, rng)
    m = None if mask is None else cv2.resize(mask[y0:y0 + ch, x0:x0 + cw], size,
                                             interpolation=cv2.INTER_NEAREST)
    return out, m, (size[0] / cw, x0, y0)


@pytest.fixture(scope='module')
def generated():
    """24 originals with their own text, 24 copies of them (without that text, with other
    text), 16 scans of another seed and 8 second views: 72 images."""
    rng = np.random.default_rng(11)
    images, truth, geometry = [], set(), {}
    for k in range(24):
        base, _ = scan(0, k)
        images.append(add_text(base, rng, lines=1))
    for k in range(24):
        base, _ = scan(0, k)
        copy, _, geo = make_copy(base, rng)
        truth.add((k, len(images)))
        geometry[(k, len(images))] = geo
        images.append(copy)
    images += [scan(1, k)[0] for k in range(16)]            # other acquisitions
    images += [scan(0, k, view=1)[0] for k in range(8)]     # second views of originals 0-7
    fps = [fingerprint(g) for g in images]
    found = find_recrops(fps, workers=1)
    return images, fps, truth, geometry, found


def test_generated_copies_recall_and_precision(generated):
    images, fps, truth, geometry, found = generated
    flagged = {r['pair'] for r in found}
    recall = len(flagged & truth) / len(truth)
    false = flagged - truth
    print(f'\nre-crop guard on generated copies: recall {recall:.3f} '
          f'({len(flagged & truth)}/{len(truth)}), false positives {len(false)} '
          f'among {len(images) * (len(images) - 1) // 2} pairs')
    assert recall >= 0.95
    assert not false, sorted(false)     # other seeds, second views: never flagged


def test_recovered_geometry_maps_copy_onto_original(generated):
    """The transform of a flagged pair maps the copy's pixels onto the original's."""
    _, _, truth, geometry, found = generated
    checked = 0
    for r in found:
        if r['pair'] not in truth:
            continue
        orig, copy = r['pair']
        s, dx, dy = r['transform']
        if r['query'] == orig:                       # stored orig -> copy: invert
            s, dx, dy = 1 / s, -dx / s, -dy / s
        scale, x0, y0 = geometry[r['pair']]
        assert s == pytest.approx(1 / scale, rel=0.03)
        for u, v in ((0, 0), (100, 80)):             # two copy pixels
            assert s * u + dx == pytest.approx(x0 + u / scale, abs=3)
            assert s * v + dy == pytest.approx(y0 + v / scale, abs=3)
        checked += 1
    assert checked >= 22


def test_candidate_stage_keeps_few_pairs(generated):
    """The cheap stage keeps at most TOP_K partners per image, not all pairs."""
    _, fps, truth, _, _ = generated
    cands = candidate_pairs(fps)
    assert len(cands) <= neardup.TOP_K * len(fps)
    assert truth <= {tuple(sorted(p)) for p in cands}


def test_speckle_separates_copies_from_other_frames():
    """Same anatomy, other speckle (a second view) scores near 0; a noisy copy high."""
    a, _ = scan(3, 1)
    b, _ = scan(3, 1, view=1)
    rng = np.random.default_rng(0)
    noisy = np.clip(a + rng.normal(0, 6, a.shape), 0, 255).astype(np.uint8)
    assert speckle_ncc(a, noisy) > 0.7
    v = verify_pair(fingerprint(a), fingerprint(b))
    assert v['speckle'] < 0.3
    assert speckle_ncc(np.zeros((64, 64), np.uint8), a[:64, :64]) == 0.0   # flat: no tiles


def test_whole_image_copies_and_tiny_images():
    a, _ = scan(4, 2)
    half = cv2.resize(a, (a.shape[1] // 2, a.shape[0] // 2), interpolation=cv2.INTER_AREA)
    v = verify_pair(fingerprint(half), fingerprint(a))
    assert v['speckle'] >= neardup.DEFAULT_MIN_SPECKLE
    assert v['transform'][0] == pytest.approx(2.0, rel=0.03)
    assert fingerprint(np.zeros((40, 200), np.uint8)) is None      # under MIN_SIDE
    assert find_recrops([None, fingerprint(a), None]) == []


@pytest.mark.slow
def test_generated_copies_large_sample():
    """The figure quoted in docs/converter.md: 150 copies among 150 originals, 150 other
    scans and 50 second views (about a minute)."""
    rng = np.random.default_rng(2026)
    images, truth = [], set()
    n = 150
    for k in range(n):
        images.append(add_text(scan(5, k)[0], rng, lines=1))
    for k in range(n):
        truth.add((k, len(images)))
        images.append(make_copy(scan(5, k)[0], rng)[0])
    images += [scan(6, k)[0] for k in range(n)]
    images += [scan(5, k, view=1)[0] for k in range(50)]
    found = {r['pair'] for r in find_recrops([fingerprint(g) for g in images], workers=2)}
    recall = len(found & truth) / n
    print(f'\nlarge sample: recall {recall:.3f} ({len(found & truth)}/{n}), '
          f'false positives {len(found - truth)}')
    assert recall >= 0.95 and not found - truth
