"""Image and mask decoding for the converters: any common file mode to 8-bit grayscale."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List

import numpy as np
from PIL import Image, UnidentifiedImageError


@dataclass
class DecodedImage:
    """An image decoded to 8-bit grayscale plus notes on what had to be converted."""
    gray: np.ndarray                      # HxW uint8
    mode: str                             # PIL mode of the file ('L', 'RGB', 'I;16', ...)
    notes: List[str] = field(default_factory=list)

    @property
    def needs_copy(self) -> bool:
        """True when the file cannot be fed to mmcv as is (16-bit/32-bit data would be
        truncated by OpenCV's 8-bit conversion instead of rescaled)."""
        return self.mode in ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I', 'F')


def _to_uint8_rescaled(arr: np.ndarray) -> np.ndarray:
    """Rescale a high bit-depth array to 0..255 using its own min/max (linear)."""
    arr = arr.astype(np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return np.round((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _head_bytes(path: str, n: int = 8) -> bytes:
    try:
        with open(path, 'rb') as f:
            return f.read(n)
    except OSError:
        return b''


def looks_like_image(path: str) -> bool:
    """True when PIL recognises the file's format from its header (nothing is decoded)."""
    try:
        with Image.open(path):
            return True
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False


def read_image(path: str) -> DecodedImage:
    """Decode an image file to 8-bit grayscale.

    Raises ``ValueError`` with a short reason for unreadable/corrupt/truncated files.
    RGB/RGBA/palette images are converted with ITU-R 601 luma (alpha dropped), 16-bit and
    32-bit images are linearly rescaled from their min..max to 0..255; each conversion is
    recorded in ``notes`` so the converter can report it as ``info``.
    """
    try:
        with Image.open(path) as im:
            im.load()  # forces full decoding: truncated files fail here, not later
            mode = im.mode
            notes = []
            if mode == 'L':
                gray = np.asarray(im)
            elif mode == '1':
                gray = np.asarray(im.convert('L'))
            elif mode in ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I', 'F'):
                gray = _to_uint8_rescaled(np.asarray(im))
                notes.append(f'{mode} (high bit depth) image rescaled min..max to 8 bit')
            elif mode in ('RGB', 'RGBA', 'P', 'LA', 'CMYK', 'YCbCr', 'PA', 'RGBX'):
                if mode in ('RGBA', 'LA', 'PA'):
                    notes.append(f'{mode} image: alpha channel dropped, converted to grayscale')
                elif mode != 'P':
                    notes.append(f'{mode} image converted to grayscale')
                gray = np.asarray(im.convert('L'))
            else:
                gray = np.asarray(im.convert('L'))
                notes.append(f'unusual mode {mode} converted to grayscale')
    except UnidentifiedImageError:
        raise ValueError(f'not an image: the content of this {os.path.splitext(path)[1]} file '
                         'is no known image format (starts with '
                         f'{_head_bytes(path)!r})') from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f'unreadable or corrupt image ({type(exc).__name__}: {exc})') from None
    if gray.ndim != 2 or gray.size == 0:
        raise ValueError(f'unreadable image: decoded to shape {gray.shape}')
    return DecodedImage(np.ascontiguousarray(gray), mode, notes)


def read_mask(path: str) -> np.ndarray:
    """Decode a lesion mask to a boolean HxW array (any non-zero pixel is lesion).

    RGB masks count a pixel as lesion when any channel is non-zero; JPEG masks use > 127
    (compression ringing around the edge is not lesion); raises ``ValueError`` for
    unreadable files.
    """
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f'unreadable or corrupt mask ({type(exc).__name__}: {exc})') from None
    if arr.ndim == 3:
        if arr.shape[2] in (2, 4):  # ignore alpha
            arr = arr[..., :-1]
        arr = arr.max(axis=2)
    if os.path.splitext(path)[1].lower() in ('.jpg', '.jpeg') and arr.dtype == np.uint8:
        return arr > 127   # lossy masks: compression ringing is not lesion
    return arr > 0
