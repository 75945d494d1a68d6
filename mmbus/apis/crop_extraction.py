"""Nodule crop extraction: COCO split + boxes (ground truth or a trained
detector) -> the mmpretrain crops dataset of the data contract.

The public entry points live here; the pieces are in

* :mod:`mmbus.apis.boxes`: box geometry (margin, clipping, the crop);
* :mod:`mmbus.apis.image_io`: reading a source image (BGR, errors name the file);
* :mod:`mmbus.datasets.coco_split`: loading a COCO split file (``pycocotools``);
* :mod:`mmbus.apis.detector_boxes`: loading a trained detector and its top box per image;
* :mod:`mmbus.apis.crop_writer`: writing the crops dataset of one split.

Conventions
-----------
* COCO ``bbox`` is ``[x, y, w, h]`` in pixels; everything else
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
from typing import Dict, List, Sequence, Tuple

from mmbus.utils.io import atomic_write_json
from .boxes import crop_nodule, expand_and_clip_box, xywh_to_xyxy
from .crop_writer import (UNLABELLED_SPLITS, GroundTruthBoxes,
                          extract_split_crops)
from .detector_boxes import (DetectorBoxes, build_ndarray_test_pipeline,
                             load_detector)
from .image_io import read_image

__all__ = [
    'extract_crops', 'extract_split_crops', 'crop_nodule',
    'expand_and_clip_box', 'xywh_to_xyxy', 'read_image', 'load_detector',
    'DetectorBoxes', 'GroundTruthBoxes', 'build_ndarray_test_pipeline',
    'dump_json_atomic', 'UNLABELLED_SPLITS'
]


def dump_json_atomic(obj, path: str, **kwargs) -> None:
    """Write JSON to ``path`` via a temp file + ``os.replace`` so a crash never
    leaves a half-written file behind (mode from the umask, see
    :mod:`mmbus.utils.io`)."""
    atomic_write_json(obj, path, **kwargs)


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
