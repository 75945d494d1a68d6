"""Reading a source image for the detector and the recogniser: ``mmcv.imread`` (BGR ``uint8`` ``HxWx3``)
with errors that name the file. A 16-bit image is refused, as the browser page refuses it: ``mmcv.imread``
would keep the top 8 bits, which turns a 12-bit image nearly black, and any other grey-level window is a
choice that shifts the probability without a visible sign (the converter's 8-bit copies of 16-bit files are
what training saw; see :mod:`mmbus.apis.serve_upload`).

This is the reader of crop extraction, inference and the command-line tools. The converters'
:func:`mmbus.datasets.converters.imread.read_image` decodes to 8-bit *grayscale* with Pillow for the COCO
writer, and :func:`mmbus.apis.serve_app.decode_upload` checks uploaded bytes; neither gives the BGR array the
models were trained on from a file path.
"""
import os.path as osp

import mmcv
import numpy as np


def _wide_samples(path: str):
    """The decoded file where its samples are wider than 8 bits, else None. The header alone would not do:
    Pillow reports a 16-bit colour PNG as plain ``RGB``."""
    import cv2
    try:
        raw = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    except Exception:  # noqa: BLE001  (not decodable: mmcv says why below)
        return None
    return None if raw is None or raw.dtype == np.uint8 else raw  # 8-bit, or undecodable (mmcv says why)


def read_image(path: str, what: str = 'image') -> np.ndarray:
    """``mmcv.imread`` (BGR) with errors that name the file: missing, empty
    (0 bytes), 16-bit or not decodable (raises ``FileNotFoundError`` /
    ``ValueError``, never a raw OpenCV assertion)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} not found: {path}')
    if osp.getsize(path) == 0:
        raise ValueError(f'{what} {path} is an empty file (0 bytes)')
    wide = _wide_samples(path)
    if wide is not None:
        from .serve_upload import wide_samples_reason
        raise ValueError(f'{what} {path} {wide_samples_reason(wide)}')
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
