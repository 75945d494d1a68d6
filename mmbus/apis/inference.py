"""Two-stage inference: ultrasound image -> nodule boxes (Faster R-CNN) ->
crops with margin -> malignancy probability (mean-teacher classifier).

Output per image (``BUSInferencer.__call__``)::

    {"image": path, "status": "ok" | "no_nodule" | "error", "error": str|None,
     "width": W, "height": H,
     "nodules": [{"bbox": [x1, y1, x2, y2]  (detector box, pixels, xyxy),
                  "crop_bbox": [x1, y1, x2, y2]  (box + margin, clipped),
                  "det_score": float, "malignancy_prob": float,
                  "label": "benign" | "malignant"}, ...]}

``malignancy_prob`` is the classifier's softmax score of class 1
(malignant); ``label`` is malignant when it is >= ``malignancy_thr`` (0.5).

Faults stay with their image: a missing, empty or undecodable file, and any
error inside the detector or the classifier (e.g. a 2 x 5000 px image that
mmdet's ``Resize`` cannot scale), give that image ``status: "error"`` with a
message naming it, and the batch goes on. Every output file (results,
annotated images) is written atomically (temp file + rename) with the
permissions the umask gives. Checkpoints are read weights-only and checked
against their configs (:mod:`mmbus.utils.checkpoint`).
"""
import csv
import io
import os
import os.path as osp
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, \
    Union

import numpy as np

from mmbus.classes import CLASSES
from mmbus.utils.io import atomic_imwrite, atomic_write_text, make_dirs
from .crop_extraction import (DetectorBoxes, crop_nodule, dump_json_atomic,
                              load_detector, read_image)
from .export import load_plain_classifier
from .pipeline_colour import pipeline_reads_grey

IMG_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')


def list_images(inputs: Union[str, Sequence[str]]) -> List[str]:
    """Expand files and folders (recursively, sorted) into image paths.
    Paths that do not exist are kept so that they are reported per image."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    out = []
    for item in inputs:
        item = str(item)
        if osp.isdir(item):
            for root, _, files in sorted(os.walk(item)):
                out += [
                    osp.join(root, f) for f in sorted(files)
                    if f.lower().endswith(IMG_EXTENSIONS)
                    and not osp.splitext(f)[0].endswith('_mask')
                ]
        else:
            out.append(item)
    return out


class BUSInferencer:
    """Detector + classifier, loaded once.

    Args:
        det_config, det_checkpoint: trained mmdet detector.
        cls_config, cls_checkpoint: trained classifier; a SemiClassifier
            checkpoint is reduced to its teacher, a plain ImageClassifier
            (e.g. from ``tools/export_teacher.py``) is used as is.
        device: 'cpu' or 'cuda:0'.
        score_thr: minimum detection score of a nodule.
        keep: 'top' (one nodule per image, as in the paper) or 'all'.
        margin, relative_margin: crop margin, see
            :func:`mmbus.apis.crop_extraction.expand_and_clip_box`.
        malignancy_thr: probability at or above which a nodule is called
            malignant.
    """

    def __init__(self,
                 det_config: str,
                 det_checkpoint: str,
                 cls_config: str,
                 cls_checkpoint: str,
                 device: str = 'cpu',
                 score_thr: float = 0.05,
                 keep: str = 'top',
                 margin: float = 10.,
                 relative_margin: float = 0.,
                 malignancy_thr: float = 0.5):
        from mmengine.registry import DefaultScope
        from mmpretrain.apis import ImageClassificationInferencer
        self.detector = load_detector(det_config, det_checkpoint, device)
        self.boxes = DetectorBoxes(self.detector, score_thr, keep)
        # each library's transforms are looked up in its own scope
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            model, pcfg = load_plain_classifier(cls_config, cls_checkpoint,
                                                device)
            model._dataset_meta = dict(classes=list(CLASSES))
            self.classifier = ImageClassificationInferencer(
                model, device=device)
        # the classifier's loader decides the crop's colour: crops are
        # handed over in memory, so mimic LoadImageFromFile(color_type)
        self.grayscale = pipeline_reads_grey(
            pcfg.test_dataloader.dataset.pipeline)
        self.margin = margin
        self.relative_margin = relative_margin
        self.malignancy_thr = malignancy_thr

    def classify(self, crops: List[np.ndarray]) -> List[float]:
        """Malignancy probability (softmax score of class 1) per BGR crop."""
        if not crops:
            return []
        if self.grayscale:
            import mmcv
            crops = [mmcv.bgr2gray(c) if c.ndim == 3 else c for c in crops]
        results = self.classifier(crops, batch_size=max(1, len(crops)))
        return [float(r['pred_scores'][1]) for r in results]

    def infer_image(self, path: str) -> dict:
        """Run both stages on one image file; never raises for a bad image
        or a failure of either model on it (the error is returned in the
        record, naming the image)."""
        rec = dict(image=path, status='ok', error=None, width=None,
                   height=None, nodules=[])
        try:
            img = read_image(path)
        except (FileNotFoundError, ValueError) as e:
            rec.update(status='error', error=str(e))
            return rec
        rec['height'], rec['width'] = int(img.shape[0]), int(img.shape[1])
        stage = 'detector'
        try:
            boxes = self.boxes(dict(file_name=path), img)
            if not boxes:
                rec['status'] = 'no_nodule'
                return rec
            stage = 'classifier'
            crops, crop_boxes = [], []
            for box, _ in boxes:
                crop, cbox = crop_nodule(img, box, self.margin,
                                         self.relative_margin)
                crops.append(crop)
                crop_boxes.append(cbox)
            probs = self.classify(crops)
        except Exception as e:  # one odd image must not end the batch
            msg = ' '.join(str(e).split())[:300]
            rec.update(status='error', nodules=[], error=(
                f'{stage} failed on {path} ({rec["width"]}x{rec["height"]} '
                f'px): {type(e).__name__}: {msg}'))
            return rec
        for (box, score), cbox, p in zip(boxes, crop_boxes, probs):
            rec['nodules'].append(
                dict(
                    bbox=[round(float(v), 2) for v in box],
                    crop_bbox=cbox,
                    det_score=round(float(score), 6),
                    malignancy_prob=round(p, 6),
                    label=CLASSES[int(p >= self.malignancy_thr)]))
        return rec

    def iter_results(self, images: Union[str, Iterable[str]],
                     show_progress: bool = False) -> Iterator[dict]:
        """One record per image, as each is done (a caller can keep the
        finished ones when the batch is interrupted)."""
        paths = list_images(images)
        progress = None
        if show_progress and paths:
            from mmengine.utils import ProgressBar
            progress = ProgressBar(len(paths))
        for p in paths:
            yield self.infer_image(p)
            if progress:
                progress.update()
        if progress:
            print()

    def __call__(self, images: Union[str, Iterable[str]],
                 show_progress: bool = False) -> List[dict]:
        return list(self.iter_results(images, show_progress))


def init_two_stage(det_config: str,
                   det_checkpoint: str,
                   cls_config: str,
                   cls_checkpoint: str,
                   device: str = 'cpu',
                   **kwargs) -> BUSInferencer:
    """Functional alias: ``infer(init_two_stage(...), images)``."""
    return BUSInferencer(det_config, det_checkpoint, cls_config,
                         cls_checkpoint, device, **kwargs)


def infer(inferencer: BUSInferencer, images) -> List[dict]:
    return inferencer(images)


# ----------------------------------------------------------------------------
# outputs
# ----------------------------------------------------------------------------
CSV_FIELDS = ('image', 'status', 'nodule', 'x1', 'y1', 'x2', 'y2',
              'det_score', 'malignancy_prob', 'label', 'error')


def results_to_csv_rows(results: List[dict]) -> List[dict]:
    """One row per nodule; images without a nodule (or with an error) get
    one row with empty box fields, so every input image appears."""
    rows = []
    for r in results:
        if not r['nodules']:
            rows.append(
                dict(image=r['image'], status=r['status'], nodule='',
                     error=r['error'] or ''))
        for k, n in enumerate(r['nodules']):
            x1, y1, x2, y2 = n['bbox']
            rows.append(
                dict(image=r['image'], status=r['status'], nodule=k, x1=x1,
                     y1=y1, x2=x2, y2=y2, det_score=n['det_score'],
                     malignancy_prob=n['malignancy_prob'], label=n['label'],
                     error=''))
    return rows


def write_results(results: List[dict], out_dir: str) -> dict:
    """Write ``results.json`` and ``results.csv`` atomically."""
    make_dirs(out_dir)
    json_path = osp.join(out_dir, 'results.json')
    csv_path = osp.join(out_dir, 'results.csv')
    dump_json_atomic(results, json_path, indent=1)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, restval='')
    writer.writeheader()
    writer.writerows(results_to_csv_rows(results))
    atomic_write_text(buf.getvalue(), csv_path, newline='')
    return dict(json=json_path, csv=csv_path)


def draw_result(img: np.ndarray, result: dict) -> np.ndarray:
    """Draw each nodule box (red, BGR (0, 0, 255)) with its malignancy
    probability; "no nodule found" when there is none."""
    import cv2
    canvas = img.copy()
    thick = max(1, round(max(img.shape[:2]) / 300))
    scale = max(0.4, max(img.shape[:2]) / 800)
    if not result['nodules']:
        cv2.putText(canvas, 'no nodule found', (5, int(20 * scale) + 5),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 255, 255), thick)
    for n in result['nodules']:
        x1, y1, x2, y2 = [int(round(v)) for v in n['bbox']]
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 0, 255), thick)
        text = f"{n['label']} p={n['malignancy_prob']:.2f}"
        cv2.putText(canvas, text, (x1, max(int(15 * scale), y1 - 4)),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 255), thick)
    return canvas


def annotated_name(image: str, used: set) -> str:
    """``<stem>.png``, made unique within ``used`` (same file name from two
    folders gets ``<stem>_1.png``); the name is added to ``used``."""
    stem = osp.splitext(osp.basename(image))[0]
    name, i = f'{stem}.png', 1
    while name in used:
        name, i = f'{stem}_{i}.png', i + 1
    used.add(name)
    return name


def save_one_annotated(result: dict, out_dir: str, used: set) -> str:
    """Write the annotated copy of one readable input atomically; returns
    its path (raises for an image that cannot be read or drawn)."""
    img = read_image(result['image'])
    path = osp.join(out_dir, annotated_name(result['image'], used))
    atomic_imwrite(draw_result(img, result), path)
    return path


def save_annotated(results: List[dict], out_dir: str,
                   on_error: Optional[Callable[[str, str], None]] = None
                   ) -> List[str]:
    """Annotated copies of every readable input under ``out_dir``, each
    written atomically. An image that fails to draw is reported through
    ``on_error(image, message)`` (default: a warning) and skipped."""
    make_dirs(out_dir)
    written, used = [], set()
    for r in results:
        if r['status'] == 'error':
            continue
        try:
            written.append(save_one_annotated(r, out_dir, used))
        except Exception as e:
            msg = f'cannot write the annotated copy of {r["image"]}: {e}'
            if on_error is None:
                import warnings
                warnings.warn(msg)
            else:
                on_error(r['image'], msg)
    return written
