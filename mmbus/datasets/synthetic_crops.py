"""Synthetic nodule crops in the mmbus crops-JSON format: the classification
tests' data and the small mean-teacher demo (``tools/analysis/
mean_teacher_demo.py``).

Benign: smooth oval, wider than tall. Malignant: irregular (lobulated /
spiculated) outline, taller than wide. Class distributions overlap (random
aspect ratio and irregularity; ``difficulty`` scales the spread), speckle
background, random crop size, so a few labels are not enough for a perfect
classifier.

Command line: ``tools/dataset_converters/make_synthetic_crops.py``.
"""
import json
import os
import os.path as osp
from typing import Optional

import cv2
import numpy as np

from mmbus.classes import CLASSES

SPLITS = ('basic_train', 'extended_train', 'val', 'test')


FRAMINGS = ('random', 'margin', 'square')


def draw_nodule(rng: np.random.Generator, malignant: bool,
                difficulty: float = 1.0, framing: str = 'random',
                gain: float = 1.0) -> np.ndarray:
    """One grey-scale crop (uint8, HxW); ``difficulty`` widens the class
    overlap.

    ``framing``: ``'random'`` -- a crop of random height and width (36-71 px)
    with the nodule in its centre, so the crop's shape says nothing about
    the nodule (a nuisance a few labels can be fitted to); ``'margin'`` --
    the nodule's bounding box plus a margin of 15% of its longer side (at
    least 3 px), as ``tools/extract_crops.py`` cuts real crops, so the crop
    follows the nodule's shape; ``'square'`` -- a square crop centred on the
    nodule, its side 1.3-2.6 times the nodule's longer side, so the nodule's
    scale in the crop varies continuously and only the nodule itself shows
    its shape. Random framing, once letterboxed, puts the padding either
    above-and-below or left-and-right: a two-valued feature unrelated to the
    class, which a few labels can coincide with and a semi-supervised
    learner can then spread to the unlabelled crops; square framing has no
    such feature.

    ``gain`` > 1: the whole crop is multiplied by a factor drawn
    log-uniformly from ``[1/gain, gain]``, as the scanner's overall gain
    differs between operators: a brightness that says nothing about the
    class. 1 (default) draws nothing, so the other crops stay as they were.
    """
    if framing not in FRAMINGS:
        raise ValueError(f'framing must be one of {FRAMINGS}, got {framing!r}')
    if not gain >= 1:
        raise ValueError(f'gain must be >= 1, got {gain}')
    if framing in ('margin', 'square'):
        scale = int(rng.integers(36, 72))
        # room around the nodule, cropped below (a square crop may be 2.6x
        # the nodule's extent, which reaches ~1.1 * scale)
        h = w = (2 if framing == 'margin' else 3) * scale
        size = 0.32 * scale * rng.uniform(0.8, 1.2)
    else:
        h = int(rng.integers(36, 72))
        w = int(rng.integers(36, 72))
    # Rayleigh-like speckle background
    img = rng.rayleigh(0.35, size=(h, w)) * 110 + 40
    cy, cx = h / 2 + rng.normal(0, 2), w / 2 + rng.normal(0, 2)
    if framing == 'random':
        size = 0.32 * min(h, w) * rng.uniform(0.8, 1.2)
    # aspect: width / height
    if malignant:
        aspect = rng.normal(0.85, 0.25 * difficulty)
        irregular = abs(rng.normal(0.22, 0.12 * difficulty))
    else:
        aspect = rng.normal(1.35, 0.25 * difficulty)
        irregular = abs(rng.normal(0.05, 0.08 * difficulty))
    aspect = float(np.clip(aspect, 0.5, 2.2))
    theta = np.linspace(0, 2 * np.pi, 180, endpoint=False)
    r = np.ones_like(theta)
    for k in (3, 5, 8, 13):
        r += irregular / 2 * rng.normal() * np.sin(k * theta +
                                                   rng.uniform(0, 6.3))
    r = np.clip(r, 0.4, 2.0)
    ax, ay = size * np.sqrt(aspect), size / np.sqrt(aspect)
    pts = np.stack([cx + ax * r * np.cos(theta), cy + ay * r * np.sin(theta)],
                   axis=1).astype(np.int32)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [pts], 1)
    lesion = rng.rayleigh(0.35, size=(h, w)) * 30 + 15  # hypo-echoic
    img = np.where(mask > 0, lesion, img)
    img = cv2.GaussianBlur(img.astype(np.float32), (3, 3), 0)
    if framing == 'margin':
        ys, xs = np.nonzero(mask)
        m = max(3, int(round(0.15 * max(np.ptp(ys), np.ptp(xs)))))
        img = img[max(0, ys.min() - m):ys.max() + m + 1,
                  max(0, xs.min() - m):xs.max() + m + 1]
    elif framing == 'square':
        ys, xs = np.nonzero(mask)
        side = int(round(rng.uniform(1.3, 2.6) *
                         (max(np.ptp(ys), np.ptp(xs)) + 1)))
        side = min(side, h, w)
        y0 = int(np.clip(round((ys.min() + ys.max() - side) / 2), 0, h - side))
        x0 = int(np.clip(round((xs.min() + xs.max() - side) / 2), 0, w - side))
        img = img[y0:y0 + side, x0:x0 + side]
    if gain > 1:
        img = img * np.exp(rng.uniform(-np.log(gain), np.log(gain)))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_crop_set(out_dir: str, counts: dict, seed: int = 0,
                  difficulty: float = 1.0, malignant_frac: float = 0.4,
                  balanced_basic: bool = False, framing: str = 'random',
                  gain: float = 1.0, basic_gain: Optional[float] = None):
    """Write ``<out_dir>/<split>/*.png`` and ``<out_dir>/<split>.json``.

    ``counts`` maps split name -> number of crops. ``extended_train``
    samples get ``gt_label = -1`` (hidden) and keep ``true_label``.
    ``balanced_basic`` gives ``basic_train`` alternating labels (half
    malignant), so a handful of labels always holds both classes.
    ``framing``: how each crop is cut, ``gain``: the spread of the overall
    brightness (see :func:`draw_nodule`); ``basic_gain``, if given, replaces
    ``gain`` for ``basic_train`` (e.g. 1: the labelled crops all come from
    one scanner setting, the others from many). Returns
    ``{split: json path}``.
    """
    rng = np.random.default_rng(seed)
    paths = {}
    image_id = 0
    for split, n in counts.items():
        os.makedirs(osp.join(out_dir, split), exist_ok=True)
        data_list = []
        for i in range(n):
            label = int(rng.random() < malignant_frac)
            if balanced_basic and split == 'basic_train':
                label = i % 2
            g = basic_gain if split == 'basic_train' and \
                basic_gain is not None else gain
            img = draw_nodule(rng, bool(label), difficulty, framing, g)
            name = f'{split}_{i:05d}.png'
            cv2.imwrite(osp.join(out_dir, split, name), img)
            image_id += 1
            data_list.append(
                dict(img_path=f'{split}/{name}',
                     gt_label=-1 if split == 'extended_train' else label,
                     true_label=label, image_id=image_id,
                     file_name=f'{"malignant" if label else "benign"}/'
                     f'{name}',
                     patient_id=f'p{image_id}',
                     bbox=[0, 0, img.shape[1], img.shape[0]], det_score=1.0))
        path = osp.join(out_dir, f'{split}.json')
        with open(path, 'w') as f:
            json.dump(dict(metainfo=dict(classes=list(CLASSES)),
                           data_list=data_list), f)
        with open(osp.join(out_dir, f'{split}_missed.json'), 'w') as f:
            json.dump([], f)
        paths[split] = path
    return paths
