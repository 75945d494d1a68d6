"""Nodule crop extraction: COCO split + boxes (ground truth or a trained
detector) -> the mmpretrain crops dataset of the data contract.

Conventions
-----------
* COCO ``bbox`` is ``[x, y, w, h]`` in pixels; everything else in this module
  uses ``[x1, y1, x2, y2]`` pixel *edges* (x2/y2 exclusive, so a box covering
  pixel columns 3..6 is ``[3, y1, 7, y2]`` and has width 4).
* Margin: the paper's boxes keep "about 10 pixels" of surrounding tissue, so
  every box is grown by ``margin`` pixels on each side plus
  ``relative_margin * max(w, h)`` pixels (0 by default).  The grown box is
  rounded outwards to whole pixels (floor of x1/y1, ceil of x2/y2).
* Borders: the grown box is **clipped** to the image, never padded.  Padding
  would invent tissue (a black band is a strong, fake cue for a classifier
  that is later fed real crops); clipping only loses margin.  The written
  ``bbox`` is the clipped crop box, so ``crop == image[y1:y2, x1:x2]`` exactly.
* Labels: ``pathology`` "benign" -> 0, "malignant" -> 1.  In unlabelled
  splits (``extended_train`` by default, or any image with
  ``label_hidden: true``) ``gt_label`` is -1 and ``true_label`` keeps the
  real class for the fully supervised baseline and for analysis.
* Images whose pathology is neither benign nor malignant (BUSI "normal") have
  no nodule to classify; they are counted in ``metainfo['num_skipped_normal']``
  and printed, not cropped.
* Images where the detector finds no box above the threshold are written to
  ``<crop_dir>/<split>_missed.json``; evaluation counts them as failures.
"""
import json
import math
import os
import os.path as osp
import re
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

import mmcv
import numpy as np

from mmbus.utils.io import atomic_write_json, make_dirs, make_temp_dir

CLASSES = ('benign', 'malignant')
PATHOLOGY_TO_LABEL = {'benign': 0, 'malignant': 1}
#: splits whose labels are hidden from the semi-supervised learner.
UNLABELLED_SPLITS = ('extended_train', )


# ----------------------------------------------------------------------------
# small, exact helpers
# ----------------------------------------------------------------------------
def dump_json_atomic(obj, path: str, **kwargs) -> None:
    """Write JSON to ``path`` via a temp file + ``os.replace`` so a crash never
    leaves a half-written file behind (mode from the umask, see
    :mod:`mmbus.utils.io`)."""
    atomic_write_json(obj, path, **kwargs)


def read_image(path: str, what: str = 'image') -> np.ndarray:
    """``mmcv.imread`` (BGR) with errors that name the file: missing, empty
    (0 bytes) or not decodable (raises ``FileNotFoundError`` /
    ``ValueError``, never a raw OpenCV assertion)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} not found: {path}')
    if osp.getsize(path) == 0:
        raise ValueError(f'{what} {path} is an empty file (0 bytes)')
    try:
        img = mmcv.imread(path)
    except Exception as e:  # cv2 / PIL errors on corrupt files
        first = str(e).strip().splitlines()[-1] if str(e).strip() else ''
        raise ValueError(f'cannot read {what} {path}: not a decodable image '
                         f'({type(e).__name__}: {first[:200]})') from None
    if img is None or img.size == 0:
        raise ValueError(f'cannot read {what} {path}: not a decodable image '
                         '(corrupt or unknown format)')
    return img


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


def pathology_label(pathology: Optional[str]) -> Optional[int]:
    """'benign' -> 0, 'malignant' -> 1, anything else (normal/None) -> None."""
    if pathology is None:
        return None
    return PATHOLOGY_TO_LABEL.get(str(pathology).lower())


def _safe_name(file_name: str) -> str:
    """A file-system friendly stem from a dataset-relative path, e.g.
    'benign/benign (1).png' -> 'benign_benign_1'."""
    stem = osp.splitext(file_name)[0]
    stem = re.sub(r'[^A-Za-z0-9._-]+', '_', stem).strip('_')
    return stem or 'image'


def load_coco(ann_file: str) -> dict:
    """Load and sanity-check a COCO split file of the data contract."""
    if not osp.isfile(ann_file):
        raise FileNotFoundError(f'annotation file not found: {ann_file}')
    try:
        with open(ann_file) as f:
            coco = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f'{ann_file} is not valid JSON: {e}') from e
    for key in ('images', 'annotations'):
        if key not in coco:
            raise ValueError(f'{ann_file} has no "{key}" list (not a COCO '
                             'annotation file?)')
    return coco


# ----------------------------------------------------------------------------
# box sources
# ----------------------------------------------------------------------------
class GroundTruthBoxes:
    """Ground-truth boxes of a COCO file: every annotation -> one crop,
    detection score 1.0."""

    name = 'ground_truth'

    def __init__(self, coco: dict):
        self._boxes: Dict[int, List[Tuple[List[float], float]]] = {}
        for ann in coco['annotations']:
            self._boxes.setdefault(ann['image_id'], []).append(
                (xywh_to_xyxy(ann['bbox']), 1.0))

    def __call__(self, image_record: dict,
                 img: np.ndarray) -> List[Tuple[List[float], float]]:
        return self._boxes.get(image_record['id'], [])


class DetectorBoxes:
    """Boxes from a trained mmdet detector.

    Args:
        model: an mmdet detector built by :func:`mmdet.apis.init_detector`.
        score_thr: boxes scoring below this are ignored.
        keep: 'top' keeps only the highest-scoring box per image (the paper
            has one nodule per image), 'all' keeps every box above
            ``score_thr``.
    """

    name = 'detector'

    def __init__(self, model, score_thr: float = 0.05, keep: str = 'top'):
        if keep not in ('top', 'all'):
            raise ValueError(f"keep must be 'top' or 'all', got {keep!r}")
        self.model = model
        self.score_thr = float(score_thr)
        self.keep = keep
        self.pipeline = build_ndarray_test_pipeline(model.cfg)

    def detect(self, img: np.ndarray) -> List[Tuple[List[float], float]]:
        """All boxes ``([x1, y1, x2, y2], score)`` above the threshold, best
        first."""
        from mmdet.apis import inference_detector
        result = inference_detector(
            self.model, img, test_pipeline=self.pipeline)
        inst = result.pred_instances
        boxes = inst.bboxes.detach().cpu().numpy().reshape(-1, 4)
        scores = inst.scores.detach().cpu().numpy().reshape(-1)
        order = np.argsort(-scores, kind='stable')
        out = [(boxes[i].tolist(), float(scores[i])) for i in order
               if scores[i] >= self.score_thr
               and boxes[i][2] > boxes[i][0] and boxes[i][3] > boxes[i][1]]
        return out

    def __call__(self, image_record: dict,
                 img: np.ndarray) -> List[Tuple[List[float], float]]:
        boxes = self.detect(img)
        return boxes[:1] if self.keep == 'top' else boxes


def build_ndarray_test_pipeline(cfg):
    """The detector's test pipeline, fed with an in-memory BGR array and with
    ground-truth loading removed (inference has no annotations)."""
    from mmcv.transforms import Compose
    from mmdet.utils import get_test_pipeline_cfg
    from mmengine.registry import DefaultScope
    pipeline = [
        t.copy() for t in get_test_pipeline_cfg(cfg.copy())
        if 'LoadAnnotations' not in str(t.get('type', ''))
    ]
    pipeline[0].type = 'mmdet.LoadImageFromNDArray'
    with DefaultScope.overwrite_default_scope('mmdet'):
        return Compose(pipeline)


def load_detector(config: str, checkpoint: str, device: str = 'cpu'):
    """Build a trained detector; names the missing file if any.

    The checkpoint is read with the safe loader (weights only) and checked
    against the detector the config builds: a classifier checkpoint (or any
    other model's) raises :class:`~mmbus.utils.checkpoint.CheckpointError`
    naming both files instead of leaving the detector untrained.
    """
    for path, what in ((config, 'detector config'),
                       (checkpoint, 'detector checkpoint')):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{what} not found: {path}')
    import warnings

    import mmbus.registry  # noqa: F401  registers BUSDataset etc.
    from mmdet.apis import init_detector
    from mmdet.utils import register_all_modules
    from mmengine.runner import load_state_dict

    from mmbus.utils.checkpoint import (check_checkpoint_fits,
                                        load_checkpoint_safely,
                                        state_dict_of)
    from mmengine.registry import DefaultScope
    register_all_modules(init_default_scope=False)
    ckpt = load_checkpoint_safely(checkpoint, map_location='cpu')
    # init_detector would otherwise leave 'mmdet' as the process-wide
    # default scope, breaking the caller's later mmpretrain builds
    with warnings.catch_warnings(), \
            DefaultScope.overwrite_default_scope('mmdet'):
        warnings.simplefilter('ignore')  # "checkpoint is None, use COCO ..."
        model = init_detector(config, None, device=device)
    state = state_dict_of(ckpt)
    check_checkpoint_fits(model, state, checkpoint, config)
    state = {re.sub(r'^module\.', '', k): v for k, v in state.items()}
    load_state_dict(model, state, strict=False)
    meta = (ckpt.get('meta') or {}) if isinstance(ckpt, dict) else {}
    palette = (model.dataset_meta or {}).get('palette')
    if 'dataset_meta' in meta:
        model.dataset_meta = {k.lower(): v
                              for k, v in meta['dataset_meta'].items()}
    elif 'CLASSES' in meta:
        model.dataset_meta = {'classes': meta['CLASSES']}
    else:
        model.dataset_meta = {'classes': ('nodule', )}
    if palette is not None and 'palette' not in model.dataset_meta:
        model.dataset_meta['palette'] = palette
    model.eval()
    return model


# ----------------------------------------------------------------------------
# extraction
# ----------------------------------------------------------------------------
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
        margin / relative_margin: see :func:`expand_and_clip_box`.
        unlabelled: force hidden labels (``gt_label=-1``); ``None`` hides them
            for ``split in UNLABELLED_SPLITS`` and for images marked
            ``label_hidden``.

    Returns:
        A summary dict (counts and output paths).

    Raises:
        FileNotFoundError: an image named in ``ann_file`` is missing or
            unreadable (the message names it); nothing is written then.
    """
    coco = load_coco(ann_file)
    if box_source is None:
        box_source = GroundTruthBoxes(coco)
    if unlabelled is None:
        unlabelled = split in UNLABELLED_SPLITS

    # Fail before any work if an image file is missing: a crops dataset with
    # silently dropped images would bias every later number.
    missing = [
        im['file_name'] for im in coco['images']
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
    if show_progress and coco['images']:
        from mmengine.utils import ProgressBar
        progress = ProgressBar(len(coco['images']))
    try:
        for im in coco['images']:
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
        if osp.isdir(final_dir):
            shutil.rmtree(final_dir)
        os.replace(tmp_dir, final_dir)
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
        num_images=len(coco['images']),
        num_missed=len(missed),
        num_skipped_normal=len(skipped))
    ann_path = osp.join(crop_dir, f'{split}.json')
    missed_path = osp.join(crop_dir, f'{split}_missed.json')
    dump_json_atomic(missed, missed_path, indent=1)
    dump_json_atomic(dict(metainfo=metainfo, data_list=data_list), ann_path,
                     indent=1)
    summary = dict(
        split=split,
        images=len(coco['images']),
        crops=len(data_list),
        missed=len(missed),
        skipped_normal=len(skipped),
        labelled=sum(d['gt_label'] >= 0 for d in data_list),
        ann_file=ann_path,
        missed_file=missed_path)
    return summary


def extract_crops(splits: Dict[str, Tuple[str, str]],
                  crop_dir: str,
                  detector=None,
                  gt_splits: Sequence[str] = (),
                  score_thr: float = 0.05,
                  keep: str = 'top',
                  margin: float = 10.,
                  relative_margin: float = 0.,
                  show_progress: bool = True) -> List[dict]:
    """Extract several splits with one (already loaded) detector.

    Args:
        splits: ``{split_name: (ann_file, data_root)}``.
        detector: an mmdet model, or ``None`` to use ground-truth boxes.
        gt_splits: splits cropped with ground-truth boxes even when a
            detector is given (e.g. the fully annotated basic_train and val).
    """
    summaries = []
    for split, (ann_file, data_root) in splits.items():
        source = None
        if detector is not None and split not in gt_splits:
            source = DetectorBoxes(detector, score_thr=score_thr, keep=keep)
        print(f'[extract_crops] {split}: {ann_file} '
              f"({'detector' if source else 'ground-truth'} boxes)")
        summaries.append(
            extract_split_crops(
                ann_file,
                data_root,
                crop_dir,
                split,
                box_source=source,
                margin=margin,
                relative_margin=relative_margin,
                show_progress=show_progress))
    return summaries
