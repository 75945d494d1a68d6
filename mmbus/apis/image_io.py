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

#: Pillow modes of images with more than 8 bits per sample (read from the header; nothing is decoded)
WIDE_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I', 'F')


def _pil_mode(path: str):
    """The file's Pillow mode from its header, or None where Pillow cannot open it (mmcv says why)."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            return im.mode
    except Exception:  # noqa: BLE001  (not an image Pillow knows: the decoder below reports it)
        return None


def read_image(path: str, what: str = 'image') -> np.ndarray:
    """``mmcv.imread`` (BGR) with errors that name the file: missing, empty
    (0 bytes), 16-bit or not decodable (raises ``FileNotFoundError`` /
    ``ValueError``, never a raw OpenCV assertion)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} not found: {path}')
    if osp.getsize(path) == 0:
        raise ValueError(f'{what} {path} is an empty file (0 bytes)')
    mode = _pil_mode(path)
    if mode in WIDE_MODES:
        from .serve_upload import SIXTEEN_BIT_HELP
        raise ValueError(f'{what} {path} is a 16-bit image (mode {mode}); the models take 8-bit images and it is '
                         f'not converted here, because the right grey-level window is not known. '
                         f'{SIXTEEN_BIT_HELP}')
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
