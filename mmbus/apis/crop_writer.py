"""Writing the crops dataset of one COCO split: every nodule cropped with margin, the crops as PNG files and
the mmpretrain annotation file (``<crop_dir>/<split>/*.png``, ``<crop_dir>/<split>.json``,
``<crop_dir>/<split>_missed.json``). Labels, hidden labels, "normal" images and missed images follow the
conventions of :mod:`mmbus.apis.crop_extraction`.
"""
import os.path as osp
import re
import shutil
from typing import List, Optional, Tuple

import mmcv
import numpy as np
from pycocotools.coco import COCO

from mmbus.classes import CLASSES, pathology_label
from mmbus.datasets.coco_split import coco_from_dict, load_coco_split
from mmbus.utils.io import atomic_write_json, make_dirs, make_temp_dir, replace_dir
from .boxes import crop_nodule, xywh_to_xyxy
from .image_io import read_image

#: splits whose labels are hidden from the semi-supervised learner.
UNLABELLED_SPLITS = ('extended_train', )


class GroundTruthBoxes:
    """Ground-truth boxes of a COCO split (a :class:`~pycocotools.coco.COCO` index or its dict): every
    annotation -> one crop, detection score 1.0."""

    name = 'ground_truth'

    def __init__(self, coco):
        if not isinstance(coco, COCO):
            coco = coco_from_dict(coco)
        self._coco = coco

    def __call__(self, image_record: dict,
                 img: np.ndarray) -> List[Tuple[List[float], float]]:
        return [(xywh_to_xyxy(ann['bbox']), 1.0)
                for ann in self._coco.imgToAnns.get(image_record['id'], [])]


def _safe_name(file_name: str) -> str:
    """A file-system friendly stem from a dataset-relative path, e.g.
    'benign/benign (1).png' -> 'benign_benign_1'."""
    stem = osp.splitext(file_name)[0]
    stem = re.sub(r'[^A-Za-z0-9._-]+', '_', stem).strip('_')
    return stem or 'image'


def extract_split_crops(ann_file: str,
                        data_root: str,
                        crop_dir: str,
                        split: str,
                        box_source=None,
                        margin: float = 10.,
                        relative_margin: float = 0.,
                        unlabelled: Optional[bool] = None,
                        show_progress: bool = True) -> dict:
    """Crop every nodule of one COCO split and write the crops dataset.

    Args:
        ann_file: COCO split file (data contract).
        data_root: directory the ``file_name`` entries are relative to.
        crop_dir: output root; writes ``<crop_dir>/<split>/*.png``,
            ``<crop_dir>/<split>.json`` and ``<crop_dir>/<split>_missed.json``.
        split: output split name (``basic_train``, ``extended_train``,
            ``val``, ``test``, ``test_external`` ...).
        box_source: callable ``(image_record, img) -> [(xyxy, score), ...]``;
            ``None`` means the ground-truth boxes of ``ann_file``.
        margin / relative_margin: see
            :func:`mmbus.apis.boxes.expand_and_clip_box`.
        unlabelled: force hidden labels (``gt_label=-1``); ``None`` hides them
            for ``split in UNLABELLED_SPLITS`` and for images marked
            ``label_hidden``.

    Returns:
        A summary dict (counts and output paths).

    Raises:
        FileNotFoundError: an image named in ``ann_file`` is missing or
            unreadable (the message names it); nothing is written then.
    """
    coco = load_coco_split(ann_file)
    images = coco.dataset['images']
    if box_source is None:
        box_source = GroundTruthBoxes(coco)
    if unlabelled is None:
        unlabelled = split in UNLABELLED_SPLITS

    # Fail before any work if an image file is missing: a crops dataset with
    # silently dropped images would bias every later number.
    missing = [
        im['file_name'] for im in images
        if not osp.isfile(osp.join(data_root, im['file_name']))
    ]
    if missing:
        more = f' (and {len(missing) - 5} more)' if len(missing) > 5 else ''
        raise FileNotFoundError(
            f'{len(missing)} image(s) listed in {ann_file} do not exist under '
            f'data root {data_root}: {missing[:5]}{more}')

    make_dirs(crop_dir)
    final_dir = osp.join(crop_dir, split)
    # mode from the umask (mkdtemp alone gives 0700)
    tmp_dir = make_temp_dir(crop_dir, prefix=f'.{split}.tmp')
    data_list, missed, skipped = [], [], []
    progress = None
    if show_progress and images:
        from mmengine.utils import ProgressBar
        progress = ProgressBar(len(images))
    try:
        for im in images:
            label = pathology_label(im.get('pathology'))
            if label is None:
                skipped.append(im)
                if progress:
                    progress.update()
                continue
            img_path = osp.join(data_root, im['file_name'])
            try:
                img = read_image(img_path)  # BGR uint8, HxWx3
            except ValueError as e:
                raise FileNotFoundError(f'{e} (listed in {ann_file})') \
                    from None
            boxes = box_source(im, img)
            if not boxes:
                missed.append(dict(im))
            hidden = bool(unlabelled or im.get('label_hidden', False))
            for k, (box, score) in enumerate(boxes):
                crop, crop_box = crop_nodule(img, box, margin, relative_margin)
                name = f"{im['id']}_{_safe_name(im['file_name'])}_{k}.png"
                mmcv.imwrite(crop, osp.join(tmp_dir, name))
                data_list.append(
                    dict(
                        img_path=f'{split}/{name}',
                        gt_label=-1 if hidden else label,
                        true_label=label,
                        image_id=im['id'],
                        file_name=im['file_name'],
                        patient_id=str(im.get('patient_id', '')),
                        source=im.get('source', ''),
                        bbox=[int(v) for v in crop_box],
                        det_bbox=[round(float(v), 2) for v in box],
                        det_score=round(float(score), 6)))
            if progress:
                progress.update()
        # swap the finished directory in, then the index files
        replace_dir(tmp_dir, final_dir)
    finally:
        if osp.isdir(tmp_dir):
            shutil.rmtree(tmp_dir, ignore_errors=True)
    if progress:
        print()
    metainfo = dict(
        classes=list(CLASSES),
        split=split,
        source_ann_file=osp.abspath(ann_file),
        data_root=osp.abspath(data_root),
        box_source=getattr(box_source, 'name', type(box_source).__name__),
        margin_px=margin,
        relative_margin=relative_margin,
        border='clip',
        num_images=len(images),
        num_missed=len(missed),
        num_skipped_normal=len(skipped))
    ann_path = osp.join(crop_dir, f'{split}.json')
    missed_path = osp.join(crop_dir, f'{split}_missed.json')
    atomic_write_json(missed, missed_path, indent=1)
    atomic_write_json(dict(metainfo=metainfo, data_list=data_list), ann_path,
                      indent=1)
    summary = dict(
        split=split,
        images=len(images),
        crops=len(data_list),
        missed=len(missed),
        skipped_normal=len(skipped),
        labelled=sum(d['gt_label'] >= 0 for d in data_list),
        ann_file=ann_path,
        missed_file=missed_path)
    return summary
