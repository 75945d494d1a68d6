"""The one COCO writer shared by all converters.

Output follows the team data contract: ``images`` carry ``id, file_name`` (relative to the
dataset root), ``width, height`` (pixels, of the real decoded file), ``pathology``
(``benign|malignant|normal``), ``patient_id`` (str), ``source`` and the two hashes used by
the leakage guard (``dhash``, ``pixel_sha1``); ``annotations`` carry ``bbox [x, y, w, h]``
(pixels), ``area = w * h`` (box area, pixels^2; there is no segmentation), ``iscrowd 0`` and
``category_id 1`` (the single category ``nodule``). Extra per-image keys are ignored by
mmdet's ``CocoDataset``. Files are written atomically by :mod:`mmbus.utils.io`.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Iterable, List, Optional, Sequence

from mmbus.utils.io import atomic_imwrite
from mmbus.utils.io import atomic_write_json as write_json_atomic  # noqa: F401  (the converters' name)
from mmbus.utils.io import atomic_write_text as write_text_atomic  # noqa: F401

from .common import ImageResult, ProblemLog

CATEGORIES = [{'id': 1, 'name': 'nodule'}]


def ordered_results(results: Iterable[ImageResult]) -> List[ImageResult]:
    """Results in image-id order (``file_name`` order; ids are 1..N in this order)."""
    return sorted(results, key=lambda r: r.task.rel)


def build_coco(results: Iterable[ImageResult], source: str,
               info: Optional[dict] = None) -> dict:
    """COCO dict from worker results (faulty results must be filtered out before).

    Images are numbered 1..N in ``file_name`` order so that the same dataset always gets the
    same ids whatever the file-system order; annotations 1..M in image order.
    """
    results = ordered_results(results)
    images, anns = [], []
    for img_id, r in enumerate(results, start=1):
        t = r.task
        entry = {
            'id': img_id, 'file_name': t.rel, 'width': r.width, 'height': r.height,
            'pathology': t.pathology, 'patient_id': str(t.patient_id), 'source': source,
            'dhash': r.dhash, 'pixel_sha1': r.digest,
        }
        entry.update(t.extra)
        images.append(entry)
        for box in r.boxes:
            x, y, w, h = (round(float(v), 2) for v in box)
            if float(x).is_integer() and float(y).is_integer() and float(w).is_integer() \
                    and float(h).is_integer():
                x, y, w, h = int(x), int(y), int(w), int(h)
            anns.append({'id': len(anns) + 1, 'image_id': img_id, 'category_id': 1,
                         'bbox': [x, y, w, h], 'area': w * h, 'iscrowd': 0})
    coco = {'info': dict(info or {}, description=f'mmbus breast ultrasound: {source}'),
            'images': images, 'annotations': anns, 'categories': CATEGORIES}
    return coco


def write_converted_copies(results: Sequence[ImageResult], root: str, out_dir: str,
                           problems: ProblemLog) -> None:
    """Save 8-bit copies of images that training code cannot read as is (16-bit files).

    The copy goes to ``out_dir/converted_images/<file_name>`` and the record's ``file_name``
    becomes the path of the copy relative to ``root`` (so ``data_root=root`` keeps working).
    """
    for r in results:
        if r.gray is None:
            continue
        dst = os.path.join(out_dir, 'converted_images', r.task.rel)
        dst = os.path.splitext(dst)[0] + '.png'
        atomic_imwrite(r.gray, dst)
        new_rel = os.path.relpath(dst, root)
        problems.info(r.task.rel, f'8-bit copy written to {new_rel} (used as file_name)')
        r.task.extra.setdefault('original_file_name', r.task.rel)
        r.task.rel = new_rel
        r.gray = None


def load_coco(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def subset_coco(coco: dict, image_ids: Iterable[int],
                image_updates: Optional[Dict[str, object]] = None) -> dict:
    """The part of ``coco`` with the given image ids (ids are kept, so they stay unique
    across split files); ``image_updates`` are merged into every kept image entry."""
    keep = set(image_ids)
    images = []
    for im in coco['images']:
        if im['id'] in keep:
            im = dict(im)
            if image_updates:
                im.update(image_updates)
            images.append(im)
    anns = [a for a in coco['annotations'] if a['image_id'] in keep]
    out = {k: v for k, v in coco.items() if k not in ('images', 'annotations')}
    out['images'] = images
    out['annotations'] = anns
    return out


def pathology_counts(images: Iterable[dict]) -> Dict[str, int]:
    counts = {'benign': 0, 'malignant': 0, 'normal': 0}
    for im in images:
        counts[im['pathology']] = counts.get(im['pathology'], 0) + 1
    return counts


def list_results_ok(results: Sequence[ImageResult]) -> List[ImageResult]:
    return [r for r in results if r.ok]
