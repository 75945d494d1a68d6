"""Reading a source image for the detector and the recogniser: ``mmcv.imread`` (BGR ``uint8`` ``HxWx3``)
with errors that name the file.

This is the reader of crop extraction, inference and the command-line tools. The converters'
:func:`mmbus.datasets.converters.imread.read_image` decodes to 8-bit *grayscale* with Pillow for the COCO
writer, and :func:`mmbus.apis.serve_app.decode_upload` checks uploaded bytes; neither gives the BGR array the
models were trained on from a file path.
"""
import os.path as osp

import mmcv
import numpy as np


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
