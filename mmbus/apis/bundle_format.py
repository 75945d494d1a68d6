"""The files of a recogniser bundle folder and how they are read: the names
and format tag that :func:`mmbus.apis.bundle.export_bundle` writes and
:class:`mmbus.apis.bundle_classifier.BundleClassifier` checks, the error both
raise, and the readers of its JSON files (errors name the file)."""
import json
import math
import os.path as osp
from typing import Optional, Union

BUNDLE_FORMAT = 'mmbus-recogniser-bundle'
BUNDLE_VERSION = 1
ONNX_NAME = 'recogniser.onnx'
BUNDLE_JSON = 'bundle.json'
CALIBRATION_JSON = 'calibration.json'
MODEL_CARD = 'MODEL_CARD.md'


class BundleError(ValueError):
    """A bundle cannot be written or read; the message names the file."""


def _read_json(path: str, what: str):
    """Parsed JSON of ``path``; errors name the file and what it should be."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} not found: {path}')
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f'{what} {path} is not valid JSON ({e})') from None


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and \
        math.isfinite(x)


def read_calibration(src: Union[str, dict], where: Optional[str] = None
                     ) -> dict:
    """A calibration file (path) or dict, checked by the calibration
    module's own reader (:func:`mmbus.evaluation.calibration.
    load_calibration`): errors name the file and the bad key."""
    from mmbus.evaluation.calibration import (load_calibration,
                                              validate_calibration)
    if isinstance(src, dict):
        cal = validate_calibration(dict(src), where or 'calibration')
    else:
        cal = load_calibration(src)
    return dict(cal, temperature=float(cal['temperature']),
                thresholds={str(k): float(v)
                            for k, v in cal['thresholds'].items()})
