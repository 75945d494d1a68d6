"""Checks on an uploaded image before any model sees it
(:func:`decode_upload`): size, format, pixel count and bit depth, each
refused with a message that says what is wrong and an HTTP status.

16-bit images are refused, not converted: an 8-bit copy needs a choice of
grey-level window (full range / 257, the used range, a DICOM window ...),
and a choice that differs from how the training images were made shifts
the probability without any visible sign. The message gives the value
range found and a conversion command, so the person converting decides.
"""
import io
import os.path as osp

import numpy as np

#: Upload limits (overridable per app): file size and the longer image side.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_SIDE = 4096
#: Shorter sides than this leave the detector nothing to look at.
MIN_SIDE = 32
ACCEPTED_FORMATS = ('PNG', 'JPEG')


class InputError(ValueError):
    """A bad upload: ``status`` is the HTTP status of the answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def _mb(n: float) -> str:
    return f'{n / 1024 / 1024:.1f} MB'


SIXTEEN_BIT_HELP = (
    'Convert it to an 8-bit PNG with the grey-level window your images were '
    'trained with, e.g. for a full-range image: python -c "import cv2; '
    "im = cv2.imread('in.png', cv2.IMREAD_UNCHANGED); "
    "cv2.imwrite('out.png', (im // 257).astype('uint8'))\" "
    '(or ImageMagick: convert in.png -depth 8 out.png).')


def wide_samples_reason(raw: np.ndarray) -> str:
    """Why a decoded image whose samples are wider than 8 bits is refused
    (the page's upload check and :func:`mmbus.apis.image_io.read_image`
    say the same), after the name of the file."""
    bits = raw.dtype.itemsize * 8
    return (f'is a {bits}-bit image (values {int(raw.min())} to '
            f'{int(raw.max())}); the model takes 8-bit images and a 16-bit '
            'image is not converted here, because the right grey-level '
            f'window is not known. {SIXTEEN_BIT_HELP}')


def decode_upload(data: bytes, filename: str = 'upload',
                  max_bytes: int = MAX_UPLOAD_BYTES,
                  max_side: int = MAX_SIDE,
                  min_side: int = MIN_SIDE) -> np.ndarray:
    """Check an uploaded file and decode it to a BGR ``uint8`` ``HxWx3``
    array, as ``mmcv.imread`` gives the command-line tools (grey images are
    replicated to 3 channels, an alpha channel is dropped, the JPEG EXIF
    orientation is applied).

    The image header is read first (Pillow, lazily): format, size and the
    pixel-count guard come before any pixel is decoded, so a small file that
    claims a huge image costs no memory.

    Raises:
        InputError: empty, too large, not a PNG / JPEG, too many or too few
            pixels, 16-bit, or undecodable; the message says which.
    """
    import cv2
    from PIL import Image
    name = osp.basename(filename or 'upload')
    if not data:
        raise InputError(f'"{name}" is an empty file (0 bytes): choose an '
                         'ultrasound image (PNG or JPEG).')
    if len(data) > max_bytes:
        raise InputError(f'"{name}" is {_mb(len(data))}; the limit is '
                         f'{_mb(max_bytes)}. Export a smaller PNG or JPEG.',
                         413)
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, (width, height) = im.format, im.size
    except Image.DecompressionBombError:
        raise InputError(f'"{name}" claims an image of more than '
                         f'{Image.MAX_IMAGE_PIXELS} pixels; the limit is '
                         f'{max_side} px per side.', 413) from None
    except Exception:  # Pillow raises several types for non-images
        raise InputError(f'"{name}" is not an image that can be read (its '
                         'content is not PNG or JPEG data, whatever its name '
                         'says). Choose an ultrasound image saved as PNG or '
                         'JPEG.', 415) from None
    if fmt not in ACCEPTED_FORMATS:
        raise InputError(f'"{name}" is a {fmt} image; only PNG and JPEG are '
                         'accepted. Save it as PNG.', 415)
    if max(width, height) > max_side:
        raise InputError(f'"{name}" is {width} x {height} px; the limit is '
                         f'{max_side} px per side. Downscale it first.', 413)
    if min(width, height) < min_side:
        raise InputError(f'"{name}" is {width} x {height} px; at least '
                         f'{min_side} px per side are needed.', 422)
    buf = np.frombuffer(data, np.uint8)
    raw = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if raw is None or raw.size == 0:
        raise InputError(f'"{name}" could not be decoded: the {fmt} file is '
                         'truncated or corrupt.', 422)
    if raw.dtype != np.uint8:
        raise InputError(f'"{name}" {wide_samples_reason(raw)}', 422)
    # IMREAD_COLOR as mmcv.imread: EXIF orientation, grey -> 3 channels,
    # alpha dropped (a 4th channel is transparency, not tissue)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None or img.ndim != 3 or img.shape[2] != 3:
        raise InputError(f'"{name}" could not be decoded as a colour or grey '
                         'image.', 422)
    return img
