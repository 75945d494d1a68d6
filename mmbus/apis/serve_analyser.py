"""The models behind the web page, loaded once, and the JSON answer for one
image (:class:`Analyser`).

:class:`Analyser` holds the detector (mmdet), the portable recogniser bundle
(:class:`~mmbus.apis.bundle.BundleClassifier`, which gives the calibrated
probability and the operating points) and, optionally, the PyTorch
classifier the bundle was exported from, used only for the class-activation
map (the ONNX graph has no gradients). When that classifier is given, its
raw probability is compared with the bundle's and a mismatch is reported on
the page: the map would otherwise explain a different model than the one
whose probability is shown.
"""
import base64
import os.path as osp
import threading
import time
from typing import Dict, Optional

import numpy as np

from .serve_labels import describe_operating_point, headline, operating_points

#: The CAM model's raw probability may differ from the bundle's by float32
#: and resize rounding; more than this means they are different models.
CAM_PARITY_TOLERANCE = 0.01
RESEARCH_NOTICE = ('Research use only: not a diagnostic device, not cleared '
                   'or approved by any regulator. The result must be reviewed '
                   'by a qualified reader.')


def png_data_url(img: np.ndarray, rgb: bool = False) -> str:
    """PNG data URL of a ``uint8`` image (BGR unless ``rgb``)."""
    import cv2
    if rgb and img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, enc = cv2.imencode('.png', img)
    if not ok:
        raise RuntimeError('PNG encoding failed')
    return 'data:image/png;base64,' + base64.b64encode(
        enc.tobytes()).decode('ascii')


class Analyser:
    """Detector + recogniser bundle (+ optional CAM classifier), loaded once.

    Args:
        det_config, det_checkpoint: the trained mmdet detector.
        bundle_dir: a folder written by :func:`mmbus.apis.bundle.
            export_bundle` (calibrated probability, operating points).
        cls_config, cls_checkpoint: optional, the PyTorch classifier the
            bundle was exported from; only for the class-activation map.
        device: 'cpu' or 'cuda:0' (detector and CAM classifier; the bundle
            runs with onnxruntime on the CPU).
        score_thr: minimum detection score of a nodule.
        margin, relative_margin: crop margin, as in ``tools/infer.py``.
    """

    def __init__(self, det_config: str, det_checkpoint: str, bundle_dir: str,
                 cls_config: Optional[str] = None,
                 cls_checkpoint: Optional[str] = None,
                 device: str = 'cpu', score_thr: float = 0.05,
                 margin: float = 10., relative_margin: float = 0.):
        from .bundle import BundleClassifier
        from .crop_extraction import DetectorBoxes, load_detector
        if (cls_config is None) != (cls_checkpoint is None):
            raise ValueError('give both --cls-config and --cls-checkpoint '
                             '(for the class-activation map) or neither')
        self.detector = load_detector(det_config, det_checkpoint, device)
        self.boxes = DetectorBoxes(self.detector, score_thr, keep='top')
        self.score_thr = float(score_thr)
        self.bundle = BundleClassifier(bundle_dir)
        self.margin, self.relative_margin = margin, relative_margin
        self.cam_model, self.cam_note = None, None
        if cls_config is None:
            self.cam_note = ('no class-activation map: the server was '
                             'started without --cls-config / '
                             '--cls-checkpoint')
        else:
            try:
                from . import explain  # noqa: F401  (needs grad-cam)
                import pytorch_grad_cam  # noqa: F401
            except ImportError as e:
                self.cam_note = f'no class-activation map: {e}'
            else:
                from mmengine.registry import DefaultScope

                from .export import load_plain_classifier
                with DefaultScope.overwrite_default_scope('mmpretrain'):
                    self.cam_model, _ = load_plain_classifier(
                        cls_config, cls_checkpoint, device)
        # one request at a time through the models: neither torch modules
        # with hooks (Grad-CAM) nor the detector are safe to share
        self.lock = threading.Lock()
        src = self.bundle.info.get('source') or {}
        self.model_info = dict(
            detector=osp.basename(det_checkpoint),
            bundle=osp.basename(osp.normpath(bundle_dir)),
            recogniser=src.get('checkpoint'),
            temperature=self.bundle.temperature,
            cam=self.cam_model is not None)

    def _cam(self, crop: np.ndarray, raw_prob: float):
        from .explain import cam_for_crops, overlay
        maps, scores = cam_for_crops(self.cam_model, [crop], target_class=1,
                                     return_scores=True)
        ov = overlay(crop, maps[0])
        note = None
        diff = abs(float(scores[0][1]) - raw_prob)
        if diff > CAM_PARITY_TOLERANCE:
            note = (f'the class-activation map comes from a classifier whose '
                    f'probability ({float(scores[0][1]):.3f}) differs from '
                    f"the bundle's ({raw_prob:.3f}): it may explain a "
                    'different model than the one scored here')
        return ov, note

    def analyse(self, img: np.ndarray) -> Dict:
        """Both stages on one BGR image; the JSON answer of the API."""
        from .crop_extraction import crop_nodule
        from .inference import draw_result
        h, w = img.shape[:2]
        out = dict(status='ok', width=int(w), height=int(h),
                   score_thr=self.score_thr, box=None, crop_box=None,
                   det_score=None, probability=None, raw_probability=None,
                   operating_points=[], label=None, label_text=None,
                   image=None, cam=None, cam_note=self.cam_note,
                   notice=RESEARCH_NOTICE)
        t0 = time.perf_counter()
        with self.lock:
            boxes = self.boxes(dict(file_name='upload'), img)
            if not boxes:
                out.update(status='no_nodule',
                           label_text='No nodule found (no detection scored '
                                      f'{self.score_thr:g} or more).',
                           image=png_data_url(draw_result(
                               img, dict(nodules=[]))))
                out['seconds'] = round(time.perf_counter() - t0, 3)
                return out
            box, score = boxes[0]
            crop, cbox = crop_nodule(img, box, self.margin,
                                     self.relative_margin)
            pred = self.bundle.predict([crop])[0]
            p = float(pred['malignancy_prob'])
            cam_url = None
            if self.cam_model is not None:
                ov, note = self._cam(crop, float(pred['raw_prob']))
                cam_url = png_data_url(ov, rgb=True)
                out['cam_note'] = note
        ops = operating_points(p, self.bundle.thresholds,
                               self.bundle.classes)
        head = headline(p, ops)
        # the box is labelled neutrally: the label depends on the operating
        # point, which the page states in words
        nodule = dict(bbox=[float(v) for v in box], malignancy_prob=p,
                      label='nodule')
        out.update(box=[round(float(v), 2) for v in box], crop_box=cbox,
                   det_score=round(float(score), 6), probability=p,
                   raw_probability=float(pred['raw_prob']),
                   operating_points=ops, label=head,
                   label_text=head['text'],
                   image=png_data_url(draw_result(img, dict(nodules=[nodule]))),
                   cam=cam_url)
        out['seconds'] = round(time.perf_counter() - t0, 3)
        return out

    def describe(self) -> Dict:
        ops = [describe_operating_point(k, v)
               for k, v in self.bundle.thresholds.items()]
        return dict(models=self.model_info, operating_points=ops,
                    cam_note=self.cam_note)
