"""Running a bundle folder with onnxruntime, numpy and OpenCV (no torch,
mmengine or mmpretrain model code): :class:`BundleClassifier`.

It resizes each crop like the training test pipeline
(:func:`~mmbus.apis.bundle_preprocess.preprocess_crop`), applies the
temperature of the calibration (``p = sigmoid((l1 - l0) / T)``, which equals
``sigmoid(logit(p_raw) / T)`` for two classes) and maps the calibrated
probability to a label at every operating point (malignant iff
``p >= threshold``; the thresholds of the calibration file apply to the
calibrated probability, see :mod:`mmbus.evaluation.calibration`).
"""
import os
import os.path as osp
from typing import Dict, List, Sequence

import numpy as np

from mmbus.classes import CLASSES
from .bundle_format import (BUNDLE_FORMAT, BUNDLE_JSON, CALIBRATION_JSON,
                            ONNX_NAME, BundleError, _read_json,
                            read_calibration)
from .bundle_preprocess import preprocess_crop


def _ort_session(path: str):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError('the model bundle needs onnxruntime: pip install '
                          'onnxruntime') from None
    opts = ort.SessionOptions()
    # onnxruntime ignores OMP_NUM_THREADS; honour it so that a shared
    # machine's thread limit holds for the bundle too (0: onnxruntime picks)
    threads = os.environ.get('OMP_NUM_THREADS', '')
    opts.intra_op_num_threads = int(threads) if threads.isdigit() else 0
    try:
        return ort.InferenceSession(path, sess_options=opts,
                                    providers=['CPUExecutionProvider'])
    except Exception as e:  # onnxruntime raises its own exception types
        raise BundleError(f'cannot load ONNX model {path}: '
                          f'{" ".join(str(e).split())[:300]}') from None


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warnings


def _malignancy(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature-scaled malignancy probability of ``N x 2`` logits."""
    return _sigmoid((logits[:, 1] - logits[:, 0]) / temperature)


class BundleClassifier:
    """Run a bundle folder with onnxruntime (no torch needed).

    Args:
        bundle_dir: folder written by
            :func:`~mmbus.apis.bundle.export_bundle`.
        calibrated: apply the bundle's temperature (when it has one).

    ``predict(crops)`` takes uint8 crops (``HxW`` grey or ``HxWx3`` BGR, as
    OpenCV reads them), resizes each like the training test pipeline
    (``bundle.json`` ``input.resize``) and returns one dict per crop::

        {"malignancy_prob": calibrated p, "raw_prob": softmax p (T = 1),
         "labels": {"threshold_0.5": "benign" | "malignant",
                    "<operating point>": ..., ...}}
    """

    def __init__(self, bundle_dir: str, calibrated: bool = True):
        self.bundle_dir = bundle_dir
        path = osp.join(bundle_dir, BUNDLE_JSON)
        info = _read_json(path, 'bundle description')
        if not isinstance(info, dict) or info.get('format') != BUNDLE_FORMAT:
            raise BundleError(f'{path} is not an mmbus recogniser bundle '
                              f'(format {BUNDLE_FORMAT!r} expected)')
        self.info = info
        self.spec = dict(channels=info['input']['channels'],
                         colour=info['input']['colour'],
                         resize=info['input']['resize'])
        cal_path = osp.join(bundle_dir, CALIBRATION_JSON)
        if osp.isfile(cal_path):
            cal = read_calibration(cal_path)
        else:
            cal = info.get('calibration')
            cal = read_calibration(cal, path) if cal else None
        self.calibration = cal
        self.temperature = float(cal['temperature']) if cal and calibrated \
            else 1.0
        self.thresholds = {'threshold_0.5': 0.5}
        self.thresholds.update((cal or {}).get('thresholds') or {})
        onnx_path = osp.join(bundle_dir, info.get('model_file', ONNX_NAME))
        if not osp.isfile(onnx_path):
            raise FileNotFoundError(f'bundle model not found: {onnx_path}')
        self.session = _ort_session(onnx_path)
        self.classes = tuple(info.get('class_names', CLASSES))

    @staticmethod
    def _as_list(crops) -> list:
        """A single ``HxW`` / ``HxWx3`` array counts as one crop."""
        if isinstance(crops, np.ndarray) and (
                crops.ndim == 2 or (crops.ndim == 3 and crops.shape[2] in
                                    (1, 3))):
            return [crops]
        return list(crops)

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """uint8 crops -> the float32 batch the ONNX graph takes."""
        return np.stack([preprocess_crop(c, self.spec)
                         for c in self._as_list(crops)])

    def logits(self, crops: Sequence[np.ndarray],
               batch_size: int = 64) -> np.ndarray:
        """``N x 2`` head logits."""
        crops = self._as_list(crops)
        out = []
        for i in range(0, len(crops), batch_size):
            batch = self.preprocess(crops[i:i + batch_size])
            out.append(self.session.run(['logits'], {'input': batch})[0])
        return np.concatenate(out) if out else np.zeros((0, 2), np.float32)

    def predict_proba(self, crops: Sequence[np.ndarray],
                      calibrated: bool = True) -> np.ndarray:
        """Malignancy probability per crop (float64), temperature-scaled
        unless ``calibrated=False``."""
        lg = self.logits(crops).astype(np.float64)
        return _malignancy(lg, self.temperature if calibrated else 1.0)

    def label(self, probs, operating_point: str = 'threshold_0.5'
              ) -> List[str]:
        """Class name per probability at one operating point."""
        if operating_point not in self.thresholds:
            raise KeyError(f'unknown operating point {operating_point!r}; '
                           f'this bundle has {sorted(self.thresholds)}')
        t = self.thresholds[operating_point]
        return [self.classes[int(p >= t)] for p in np.atleast_1d(probs)]

    def predict(self, crops: Sequence[np.ndarray]) -> List[Dict]:
        """One dict per crop (see the class doc); a single ``HxW`` or
        ``HxWx3`` array is one crop."""
        lg = self.logits(crops).astype(np.float64)
        raw, cal = _malignancy(lg, 1.0), _malignancy(lg, self.temperature)
        out = []
        for p_raw, p in zip(raw, cal):
            out.append(dict(
                malignancy_prob=float(p), raw_prob=float(p_raw),
                labels={k: self.classes[int(p >= t)]
                        for k, t in self.thresholds.items()}))
        return out

    __call__ = predict
