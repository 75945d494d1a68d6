"""The bundle's input contract as data: which colour and resize steps of a
config's test pipeline the bundle reproduces (:func:`preprocess_spec`, at
export), and that resize done in numpy / OpenCV on a crop
(:func:`preprocess_crop`, at prediction and for the export's parity check).

The resize matches the training test pipeline: ``LetterboxResize``
(aspect-preserving, centred padding) or a plain ``Resize`` to a fixed size,
bilinear like ``mmcv.imresize``. Normalisation is not done here: it is inside
the ONNX graph (see :mod:`mmbus.apis.bundle`).
"""
import numpy as np

from .bundle_format import BundleError
from .pipeline_colour import is_loader, pipeline_reads_grey

#: mmcv interpolation names -> OpenCV flags (mmcv.imresize uses these).
_INTERPOLATION = {'nearest': 0, 'bilinear': 1, 'bicubic': 2, 'area': 3,
                  'lanczos': 4}
#: test-pipeline steps that do not change the pixels the network sees.
_NEUTRAL_STEPS = ('PackInputs', 'mmpretrain.PackInputs', 'LoadImageFromFile',
                  'mmpretrain.LoadImageFromFile', 'RandomGrayscale',
                  'mmpretrain.RandomGrayscale')


def _pipeline_of(pcfg) -> list:
    for key in ('test_dataloader', 'val_dataloader'):
        ds = (pcfg.get(key) or {}).get('dataset') or {}
        if isinstance(ds.get('pipeline'), list):
            return list(ds['pipeline'])
    return list(pcfg.get('test_pipeline') or [])


def preprocess_spec(pcfg, config_name: str) -> dict:
    """Colour and resize steps of the config's test pipeline, as data.

    Only pixel-preserving steps and one resize (``LetterboxResize`` or a
    fixed-size ``Resize``) are understood: any other step would make the
    bundle's preprocessing differ from the one the model was tested with, so
    it is refused naming the config and the step.
    """
    pipeline = _pipeline_of(pcfg)
    in_ch = ((pcfg.model.get('backbone') or {}).get('in_channels'))
    colour = 'grey' if pipeline_reads_grey(pipeline) else 'bgr'
    resize = None
    for step in pipeline:
        kind = str(step.get('type', ''))
        if is_loader(step):
            pass  # its colour is read above
        elif kind.endswith('LetterboxResize'):
            resize = dict(mode='letterbox', width=int(step['size']),
                          height=int(step['size']),
                          pad_val=float(step.get('pad_val', 0)),
                          interpolation=step.get('interpolation',
                                                 'bilinear'))
        elif kind in ('Resize', 'mmpretrain.Resize', 'mmcv.Resize'):
            scale = step.get('scale')
            if step.get('keep_ratio') or scale is None:
                raise BundleError(
                    f'config {config_name}: test-pipeline step {dict(step)} '
                    'is not a fixed-size resize; the bundle supports '
                    'LetterboxResize or Resize(scale=(w, h))')
            w, h = (scale, scale) if isinstance(scale, int) else scale
            resize = dict(mode='stretch', width=int(w), height=int(h),
                          interpolation=step.get('interpolation',
                                                 'bilinear'))
        elif kind not in _NEUTRAL_STEPS:
            raise BundleError(
                f'config {config_name}: test-pipeline step {kind!r} is not '
                'supported by the bundle (only LoadImageFromFile, '
                'LetterboxResize, a fixed-size Resize and PackInputs are)')
    if resize is None:
        raise BundleError(f'config {config_name}: no LetterboxResize / '
                          'Resize in the test pipeline; the bundle needs a '
                          'fixed input size')
    if resize['interpolation'] not in _INTERPOLATION:
        raise BundleError(f'config {config_name}: interpolation '
                          f'{resize["interpolation"]!r} is not supported')
    channels = int(in_ch) if isinstance(in_ch, int) else \
        (1 if colour == 'grey' else 3)
    if channels == 1:
        colour = 'grey'
    elif channels == 3 and colour == 'grey':
        colour = 'grey3'  # grey replicated to 3 channels, as mmcv does
    return dict(channels=channels, colour=colour, resize=resize)


def preprocess_crop(crop: np.ndarray, spec: dict) -> np.ndarray:
    """One uint8 crop (``HxW`` grey or ``HxWx3`` BGR) -> float32
    ``C x H x W`` raw pixel values at the bundle's input size."""
    import cv2
    crop = np.asarray(crop)
    if crop.dtype != np.uint8:
        raise ValueError(f'crops must be uint8 images, got dtype {crop.dtype}')
    if crop.ndim == 3 and crop.shape[2] == 1:
        crop = crop[:, :, 0]
    if crop.ndim not in (2, 3) or (crop.ndim == 3 and crop.shape[2] != 3):
        raise ValueError('crops must be H x W (grey) or H x W x 3 (BGR), got '
                         f'shape {crop.shape}')
    if crop.shape[0] == 0 or crop.shape[1] == 0:
        raise ValueError(f'empty crop (shape {crop.shape})')
    if spec['colour'] in ('grey', 'grey3') and crop.ndim == 3:
        crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    elif spec['colour'] == 'bgr' and crop.ndim == 2:
        crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
    rs = spec['resize']
    interp = _INTERPOLATION[rs['interpolation']]
    size_w, size_h = rs['width'], rs['height']
    if rs['mode'] == 'letterbox':
        h, w = crop.shape[:2]
        scale = size_w / max(h, w)
        new_w = min(size_w, max(1, int(round(w * scale))))
        new_h = min(size_h, max(1, int(round(h * scale))))
        small = cv2.resize(crop, (new_w, new_h), interpolation=interp)
        out = np.full((size_h, size_w) + small.shape[2:], rs['pad_val'],
                      dtype=small.dtype)
        left, top = (size_w - new_w) // 2, (size_h - new_h) // 2
        out[top:top + new_h, left:left + new_w] = small
    else:
        out = cv2.resize(crop, (size_w, size_h), interpolation=interp)
    out = out.astype(np.float32)
    if out.ndim == 2:
        out = out[None] if spec['channels'] == 1 else \
            np.repeat(out[None], spec['channels'], axis=0)
    else:
        out = out.transpose(2, 0, 1)
    return np.ascontiguousarray(out)
