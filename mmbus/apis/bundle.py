"""A portable model bundle of the malignancy recogniser: one folder that runs
with onnxruntime, numpy and OpenCV (no torch, mmengine or mmpretrain model
code; this module imports torch only inside :func:`export_bundle`, although
importing it through the ``mmbus.apis`` package loads that package's other
modules, which do import torch).

Layout written by :func:`export_bundle`::

    <out_dir>/recogniser.onnx    the plain (teacher) classifier
    <out_dir>/bundle.json        input contract, class names, opset, parity
    <out_dir>/calibration.json   temperature + operating points (if given)
    <out_dir>/MODEL_CARD.md      what the model is, its figures, its limits

Input contract of ``recogniser.onnx`` (also in ``bundle.json``): a float32
batch ``N x C x H x W`` of *raw pixel values* (0-255, not normalised) at the
training input size, channel order as OpenCV reads images (BGR for 3
channels). The data preprocessor's mean/std normalisation (and its BGR->RGB
flip, if any) is inside the graph, so a caller only resizes: a second copy of
the normalisation outside the model is the usual way a deployed model goes
wrong silently. The batch axis is dynamic. Outputs: ``probs`` (``N x 2``,
softmax of the head's logits, column 1 = malignant) and ``logits``
(``N x 2``, the head's raw scores; kept so that temperature scaling does not
have to invert a float32 softmax near 0 or 1).

:class:`BundleClassifier` does the resizing of the test pipeline in numpy /
OpenCV (``LetterboxResize``: aspect-preserving, centred padding; or a plain
``Resize`` to a fixed size; bilinear like ``mmcv.imresize``), applies the
temperature of the calibration (``p = sigmoid((l1 - l0) / T)``, which equals
``sigmoid(logit(p_raw) / T)`` for two classes) and maps the calibrated
probability to a label at every operating point (malignant iff
``p >= threshold``; the thresholds of the calibration file apply to the
calibrated probability, see :mod:`mmbus.evaluation.calibration`).

At export the same crops run through PyTorch and onnxruntime; the largest
absolute difference of the probabilities is stored, and the export fails
(nothing is written) when it exceeds :data:`PARITY_TOLERANCE`.
"""
import datetime
import hashlib
import json
import math
import os
import os.path as osp
import shutil
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from mmbus.classes import CLASSES
from mmbus.utils.io import (atomic_write, atomic_write_json,
                            atomic_write_text, make_temp_dir)

BUNDLE_FORMAT = 'mmbus-recogniser-bundle'
BUNDLE_VERSION = 1
ONNX_NAME = 'recogniser.onnx'
BUNDLE_JSON = 'bundle.json'
CALIBRATION_JSON = 'calibration.json'
MODEL_CARD = 'MODEL_CARD.md'
#: opset 17: the newest the TorchScript exporter of torch 2.x handles without
#: onnxscript, and run by every onnxruntime since 1.14.
OPSET = 17
#: largest allowed |p_torch - p_onnx| over the parity crops.
PARITY_TOLERANCE = 1e-4
#: mmcv interpolation names -> OpenCV flags (mmcv.imresize uses these).
_INTERPOLATION = {'nearest': 0, 'bilinear': 1, 'bicubic': 2, 'area': 3,
                  'lanczos': 4}
#: test-pipeline steps that do not change the pixels the network sees.
_NEUTRAL_STEPS = ('PackInputs', 'mmpretrain.PackInputs', 'LoadImageFromFile',
                  'mmpretrain.LoadImageFromFile', 'RandomGrayscale',
                  'mmpretrain.RandomGrayscale')


class BundleError(ValueError):
    """A bundle cannot be written or read; the message names the file."""


# ----------------------------------------------------------------- helpers
def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


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


# ------------------------------------------------------- preprocessing spec
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
    colour = 'bgr'
    resize = None
    for step in pipeline:
        kind = str(step.get('type', ''))
        if 'LoadImageFromFile' in kind:
            if step.get('color_type', 'color') in ('grayscale',
                                                   'unchanged_grayscale'):
                colour = 'grey'
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


# ------------------------------------------------------------------ export
def _recogniser_module(model, channels: int):
    """``model`` with its data preprocessor's normalisation in front and a
    softmax behind: raw pixels in, ``(probs, logits)`` out."""
    import torch
    import torch.nn.functional as F

    dp = model.data_preprocessor
    enable = bool(getattr(dp, '_enable_normalize', False))

    class Recogniser(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.model = model
            if enable:
                self.register_buffer('mean', dp.mean.detach().clone().float())
                self.register_buffer('std', dp.std.detach().clone().float())
            else:
                self.mean = self.std = None
            # as ClsDataPreprocessor: to_rgb flips 3-channel input only
            self.flip = bool(getattr(dp, 'to_rgb', False)) and channels == 3

        def forward(self, x):
            if self.flip:
                x = x[:, [2, 1, 0]]
            if self.mean is not None:
                x = (x - self.mean) / self.std
            logits = self.model(x, mode='tensor')
            if isinstance(logits, (tuple, list)):
                logits = logits[-1]
            return F.softmax(logits, dim=1), logits

    return Recogniser().eval()


def _normalisation_of(model) -> dict:
    dp = model.data_preprocessor
    if not getattr(dp, '_enable_normalize', False):
        return dict(in_graph=True, mean=None, std=None,
                    to_rgb=bool(getattr(dp, 'to_rgb', False)))
    return dict(in_graph=True, mean=[float(v) for v in dp.mean.flatten()],
                std=[float(v) for v in dp.std.flatten()],
                to_rgb=bool(getattr(dp, 'to_rgb', False)))


def _architecture_of(pcfg, model) -> dict:
    bb = dict(pcfg.model.get('backbone') or {})
    head = dict(pcfg.model.get('head') or {})
    return dict(classifier='ImageClassifier',
                backbone=bb.get('type'),
                backbone_args={k: v for k, v in bb.items()
                               if k in ('widen_factor', 'in_channels',
                                        'depth', 'dropout')},
                head=head.get('type'),
                num_classes=head.get('num_classes'),
                parameters=int(sum(p.numel() for p in model.parameters())))


def _onnx_export(module, example, path: str, opset: int) -> None:
    import warnings

    import torch
    try:
        import onnx  # noqa: F401  (torch's exporter writes through it)
    except ImportError:
        raise ImportError('exporting the model bundle needs onnx: pip '
                          'install onnx') from None
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of the dynamo
        # one, which needs onnxscript; this small static graph exports the
        # same with either
        warnings.simplefilter('ignore', DeprecationWarning)
        with torch.no_grad():
            torch.onnx.export(
                module, (example, ), path, opset_version=opset,
                input_names=['input'], output_names=['probs', 'logits'],
                dynamic_axes={'input': {0: 'batch'}, 'probs': {0: 'batch'},
                              'logits': {0: 'batch'}},
                do_constant_folding=True, dynamo=False)


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


def _parity_inputs(sample_crops, spec, n_random: int, seed: int):
    if sample_crops is not None and len(sample_crops):
        batch = np.stack([preprocess_crop(c, spec) for c in sample_crops])
        return batch, f'{len(sample_crops)} given crops'
    rng = np.random.default_rng(seed)
    shape = (n_random, spec['channels'], spec['resize']['height'],
             spec['resize']['width'])
    batch = rng.integers(0, 256, shape).astype(np.float32)
    return batch, f'{n_random} random uint8-range images (seed {seed})'


def _place_bundle(tmp_dir: str, out_dir: str) -> None:
    """Move the finished ``tmp_dir`` onto ``out_dir``: a reader never sees a
    half-written bundle; an older bundle there is replaced."""
    if osp.isdir(out_dir) and os.listdir(out_dir):
        old = out_dir.rstrip(os.sep) + '.old-' + osp.basename(tmp_dir)
        os.rename(out_dir, old)
        os.rename(tmp_dir, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if osp.isdir(out_dir):
            os.rmdir(out_dir)
        os.rename(tmp_dir, out_dir)


def export_bundle(config,
                  checkpoint: str,
                  out_dir: str,
                  calibration: Union[str, dict, None] = None,
                  metrics: Union[str, dict, None] = None,
                  card_info: Union[str, dict, None] = None,
                  sample_crops: Optional[Sequence[np.ndarray]] = None,
                  opset: int = OPSET,
                  n_random: int = 8,
                  seed: int = 0,
                  log: Optional[Callable[[str], None]] = print) -> dict:
    """Write the bundle folder ``out_dir`` (see the module doc).

    Args:
        config: SemiClassifier or plain ImageClassifier config (path or
            :class:`mmengine.Config`).
        checkpoint: its checkpoint (a SemiClassifier's is reduced to the
            teacher, as by ``tools/export_teacher.py``).
        out_dir: bundle folder; created, or replaced when it holds an older
            bundle (a non-empty folder without ``bundle.json`` is refused).
        calibration: calibration JSON path or dict (the format of
            :mod:`mmbus.evaluation.calibration`: temperature, thresholds,
            fitted_on), checked and copied to ``calibration.json``.
        metrics: metrics JSON of ``tools/test.py --out-metrics`` (path or
            dict), for the model card.
        card_info: path or dict with the card's free text and data counts
            (see :func:`render_model_card`).
        sample_crops: uint8 crops for the parity check; default
            ``n_random`` seeded random images at the input size.
        log: progress messages (``None``: silent).

    Returns:
        The content of ``bundle.json`` plus ``out_dir``.

    Raises:
        FileNotFoundError: a missing input (named).
        CheckpointError: unreadable / foreign checkpoint (named).
        ValueError: a bad calibration file (named, with the bad key).
        BundleError: bad JSON input, unsupported pipeline, or the parity
            check failed; nothing is written then.
    """
    say = log or (lambda msg: None)
    cfg_name = config if isinstance(config, str) else \
        (getattr(config, 'filename', None) or 'the given config')
    if isinstance(config, str) and not osp.isfile(config):
        raise FileNotFoundError(f'classifier config not found: {config}')
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(
            f'classifier checkpoint not found: {checkpoint}')
    out_dir = osp.abspath(out_dir)
    if osp.isdir(out_dir) and os.listdir(out_dir) and \
            not osp.isfile(osp.join(out_dir, BUNDLE_JSON)):
        raise BundleError(f'output folder {out_dir} is not empty and holds '
                          f'no {BUNDLE_JSON}; refusing to replace it')
    if osp.exists(out_dir) and not osp.isdir(out_dir):
        raise BundleError(f'output path {out_dir} exists and is not a folder')
    cal = None
    if calibration is not None:
        cal = read_calibration(calibration, 'calibration given as a dict')
    if isinstance(metrics, str):
        metrics = _read_json(metrics, 'metrics file')
    if metrics is not None and not isinstance(metrics, dict):
        raise BundleError('metrics must be a JSON object of name -> value, '
                          f'got {type(metrics).__name__}')
    if isinstance(card_info, str):
        card_info = _read_json(card_info, 'card info file')
    if card_info is not None and not isinstance(card_info, dict):
        raise BundleError('card info must be a JSON object, got '
                          f'{type(card_info).__name__}')

    import torch
    from mmengine.config import Config

    from .export import load_plain_classifier
    if isinstance(config, str):
        try:
            config = Config.fromfile(config)
        except Exception as e:  # syntax errors, bad _base_ ... of the file
            raise BundleError(f'cannot read classifier config {cfg_name}: '
                              f'{type(e).__name__}: {e}') from None
    semi = str((config.get('model') or {}).get('type', '')).split('.')[-1] \
        != 'ImageClassifier'
    say(f'loading classifier {osp.basename(cfg_name)} + '
        f'{osp.basename(checkpoint)}')
    model, pcfg = load_plain_classifier(config, checkpoint, device='cpu')
    num_classes = (pcfg.model.get('head') or {}).get('num_classes')
    if num_classes != 2:
        raise BundleError(f'config {cfg_name}: the bundle is for a benign / '
                          f'malignant classifier (2 classes), the head has '
                          f'{num_classes}')
    spec = preprocess_spec(pcfg, cfg_name)
    module = _recogniser_module(model, spec['channels'])
    batch, parity_source = _parity_inputs(sample_crops, spec, n_random, seed)

    parent = osp.dirname(out_dir)
    tmp = make_temp_dir(parent, '.' + osp.basename(out_dir) + '.')
    try:
        onnx_path = osp.join(tmp, ONNX_NAME)
        say(f'exporting ONNX (opset {opset}, input {spec["channels"]} x '
            f'{spec["resize"]["height"]} x {spec["resize"]["width"]})')
        atomic_write(onnx_path, lambda p: _onnx_export(
            module, torch.from_numpy(batch[:1]), p, opset))
        with torch.no_grad():
            p_torch = module(torch.from_numpy(batch))[0].numpy()
        p_onnx = _ort_session(onnx_path).run(['probs'], {'input': batch})[0]
        diff = float(np.abs(p_torch.astype(np.float64) - p_onnx).max())
        say(f'parity PyTorch vs onnxruntime on {parity_source}: max |diff| '
            f'of probabilities = {diff:.3g} (tolerance {PARITY_TOLERANCE:g})')
        if not diff <= PARITY_TOLERANCE:
            raise BundleError(
                f'parity check failed for {cfg_name} + {checkpoint}: '
                f'onnxruntime and PyTorch probabilities differ by {diff:.3g} '
                f'(> {PARITY_TOLERANCE:g}) on {parity_source}; no bundle '
                'written')
        import onnxruntime
        info = dict(
            format=BUNDLE_FORMAT, format_version=BUNDLE_VERSION,
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec='seconds'),
            model_file=ONNX_NAME,
            input=dict(
                name='input', layout='NCHW', dtype='float32',
                batch='dynamic', channels=spec['channels'],
                height=spec['resize']['height'],
                width=spec['resize']['width'],
                colour=spec['colour'],
                value_range=[0, 255],
                note='raw pixel values; normalisation is inside the graph',
                resize=spec['resize']),
            normalisation=_normalisation_of(model),
            outputs=dict(
                probs='N x 2 softmax of the logits; column 1 = malignant',
                logits='N x 2 head logits (temperature scaling input)'),
            class_names=list(CLASSES), positive_index=1,
            opset=opset, exporter=f'torch.onnx (TorchScript) '
            f'torch {torch.__version__}',
            onnxruntime_version=onnxruntime.__version__,
            parity=dict(max_abs_diff=diff, tolerance=PARITY_TOLERANCE,
                        inputs=parity_source),
            source=dict(config=osp.basename(cfg_name),
                        checkpoint=osp.basename(checkpoint),
                        checkpoint_sha256=_sha256(checkpoint),
                        exported_part='EMA teacher of a SemiClassifier'
                        if semi else 'the classifier as trained'),
            architecture=_architecture_of(pcfg, model),
            onnx_sha256=_sha256(onnx_path),
            calibration=cal)
        if cal is not None:
            atomic_write_json(cal, osp.join(tmp, CALIBRATION_JSON), indent=2)
        atomic_write_json(info, osp.join(tmp, BUNDLE_JSON), indent=2)
        atomic_write_text(render_model_card(info, metrics, card_info),
                          osp.join(tmp, MODEL_CARD))
        _place_bundle(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f'bundle written: {out_dir}')
    return dict(info, out_dir=out_dir)


# -------------------------------------------------------------- model card
_NP = '_not provided_'
_METRIC_ROWS = (('auc', 'ROC AUC'), ('sensitivity', 'Sensitivity'),
                ('specificity', 'Specificity'), ('accuracy', 'Accuracy'))


def _metric_prefixes(metrics: dict) -> List[str]:
    """Prefixes of the BinaryDiagnosticMetric keys (``teacher/auc`` ->
    ``teacher``; a bare ``auc`` -> ``''``), the teacher first."""
    found = []
    for k in metrics:
        if k == 'auc' or k.endswith('/auc'):
            found.append(k[:-len('auc')].rstrip('/'))
    order = {'teacher': 0, 'diag': 1}
    return sorted(found, key=lambda p: (order.get(p, 2), p))


def _fmt(v, digits=3) -> str:
    return f'{v:.{digits}f}' if _finite(v) else 'n/a'


def _metrics_section(metrics) -> List[str]:
    if not metrics:
        return [f'Test figures: {_NP}.']
    prefixes = _metric_prefixes(metrics)
    if not prefixes:
        return [f'Test figures: {_NP} (no `<prefix>/auc` key in the metrics '
                'given).']
    lines = ['Figures from `tools/test.py --out-metrics` '
             '(BinaryDiagnosticMetric: DeLong CI for the AUC, Wilson CIs for '
             'the proportions, at the metric\'s `ci_level`, 0.95 by '
             'default).', '']
    for p in prefixes:
        key = (lambda name: f'{p}/{name}') if p else (lambda name: name)
        lines += [f'**{p or "model"}**', '',
                  '| figure | value | CI |', '|---|---|---|']
        for name, label in _METRIC_ROWS:
            if key(name) in metrics:
                lo, hi = metrics.get(key(f'{name}_ci_low')), \
                    metrics.get(key(f'{name}_ci_high'))
                ci = f'[{_fmt(lo)}, {_fmt(hi)}]' if lo is not None else 'n/a'
                lines.append(f'| {label} | {_fmt(metrics[key(name)])} | '
                             f'{ci} |')
        extra = []
        if key('threshold') in metrics:
            extra.append(f'decision threshold {_fmt(metrics[key("threshold")], 4)}')
        for name in ('num_samples', 'num_missed', 'tp', 'fn', 'tn', 'fp'):
            if _finite(metrics.get(key(name))):
                extra.append(f'{name} {int(metrics[key(name)])}')
        if extra:
            lines += ['', '; '.join(extra) + '.']
        lines.append('')
    return lines


_OP_MEANING = {
    'youden': 'maximises sensitivity + specificity - 1 on the fitting set',
}


def _op_meaning(name: str) -> str:
    if name in _OP_MEANING:
        return _OP_MEANING[name]
    for kind in ('sensitivity', 'specificity'):
        if name.startswith(kind + '_'):
            target = name[len(kind) + 1:]
            return (f'the highest threshold keeping {kind} >= {target} on '
                    'the fitting set' if kind == 'sensitivity' else
                    f'the lowest threshold reaching {kind} >= {target} on '
                    'the fitting set')
    return 'see the calibration tool'


def _metric(metrics: Optional[dict], name: str):
    """``<prefix>/<name>`` of the first BinaryDiagnosticMetric prefix (the teacher first), else None."""
    for p in _metric_prefixes(metrics or {}):
        v = (metrics or {}).get(f'{p}/{name}' if p else name)
        if v is not None:
            return v
    return None


def _ci_cell(metrics: Optional[dict], name: str) -> str:
    v = _metric(metrics, name)
    if not _finite(v):
        return 'n/a'
    lo, hi = _metric(metrics, f'{name}_ci_low'), _metric(metrics, f'{name}_ci_high')
    return f'{_fmt(v, 2)} [{_fmt(lo, 2)}, {_fmt(hi, 2)}]' if _finite(lo) else _fmt(v, 2)


def _test_calibration(metrics: Optional[dict]) -> str:
    """'on the test crops: ECE 0.16 -> 0.07, Brier 0.22 -> 0.18' from the metric's raw and calibrated keys."""
    ece, brier = _metric(metrics, 'ece'), _metric(metrics, 'brier')
    if not _finite(ece):
        return ''
    raw_e, raw_b = _metric(metrics, 'ece_raw'), _metric(metrics, 'brier_raw')
    arrow = (lambda raw, cal: f'{_fmt(raw, 3)} -> {_fmt(cal, 3)}' if _finite(raw) else _fmt(cal, 3))
    return f'on the test crops, before -> after the temperature: ECE {arrow(raw_e, ece)}, Brier {arrow(raw_b, brier)}'


def _find_ece(cal: dict) -> dict:
    found = {}
    for where in (cal, cal.get('fitted_on') or {}):
        if isinstance(where, dict):
            for k, v in where.items():
                if 'ece' in str(k).lower() and _finite(v):
                    found[k] = v
    return found


def _info(card_info, *names):
    for n in names:
        if card_info and card_info.get(n) not in (None, ''):
            return card_info[n]
    return None


def render_model_card(info: dict, metrics: Optional[dict] = None,
                      card_info: Optional[dict] = None) -> str:
    """``MODEL_CARD.md`` text from ``bundle.json`` content, the test metrics
    and ``card_info``. Every section says "not provided" for missing input.

    ``card_info`` keys (all optional): ``name``, ``version``, ``description``,
    ``training_data`` (text), ``num_labelled``, ``num_unlabelled``,
    ``split`` (text), ``test_data`` (text), ``known_limits`` (list or text),
    ``contact``, ``license``.
    """
    card_info = card_info or {}
    inp, arch = info['input'], info.get('architecture') or {}
    norm = info.get('normalisation') or {}
    name = _info(card_info, 'name') or 'mmbus malignancy recogniser'
    lines = [f'# Model card: {name}', '']
    if _info(card_info, 'version'):
        lines += [f'Version: {card_info["version"]}', '']
    if _info(card_info, 'description'):
        lines += [str(card_info['description']), '']

    lines += ['## Model', '',
              f'- Architecture: {arch.get("classifier", "ImageClassifier")} '
              f'with backbone {arch.get("backbone") or "n/a"} '
              f'{arch.get("backbone_args") or ""} and head '
              f'{arch.get("head") or "n/a"} ({arch.get("parameters", "n/a")} '
              'parameters); weights: '
              f'{info["source"].get("exported_part", "n/a")}.',
              f'- Source: config `{info["source"]["config"]}`, checkpoint '
              f'`{info["source"]["checkpoint"]}` (sha256 '
              f'`{info["source"]["checkpoint_sha256"][:16]}...`).',
              f'- File: `{info["model_file"]}`, ONNX opset {info["opset"]}, '
              f'{info["exporter"]}.',
              f'- Input: float32 N x {inp["channels"]} x {inp["height"]} x '
              f'{inp["width"]}, raw pixel values 0-255 '
              f'({"grey" if inp["colour"].startswith("grey") else "BGR"}); '
              'the normalisation '
              f'(mean {norm.get("mean")}, std {norm.get("std")}) is inside '
              'the graph.',
              f'- Resize (done by the caller, `BundleClassifier` does it): '
              f'{_resize_text(inp["resize"])}.',
              f'- Output: `probs` N x 2 (softmax; column 1 = '
              f'{info["class_names"][1]}), `logits` N x 2.',
              f'- Export parity (PyTorch vs onnxruntime, {info["parity"]["inputs"]}): '
              f'max |diff| = {info["parity"]["max_abs_diff"]:.3g}.', '']

    lines += ['## Training data and split', '']
    n_lab = _info(card_info, 'num_labelled', 'labelled')
    n_unl = _info(card_info, 'num_unlabelled', 'unlabelled')
    lines += [f'- Training data: {_info(card_info, "training_data") or _NP}.',
              f'- Labelled crops: {n_lab if n_lab is not None else _NP}; '
              f'unlabelled crops: {n_unl if n_unl is not None else _NP}.',
              f'- Split: {_info(card_info, "split") or _NP}.',
              f'- Test data: {_info(card_info, "test_data") or _NP}.', '']

    lines += ['## Test figures', ''] + _metrics_section(metrics) + ['']

    cal = info.get('calibration')
    lines += ['## Calibration', '']
    if cal:
        lines.append(f'- Temperature T = {_fmt(cal["temperature"], 4)}: the '
                     'calibrated malignancy probability is '
                     'sigmoid((logit_malignant - logit_benign) / T).')
        ece = _find_ece(cal)
        test = _test_calibration(metrics)
        lines.append('- ECE: ' + (', '.join(f'{k} = {_fmt(v, 4)}'
                                            for k, v in ece.items())
                                  if ece else test or _NP) + '.')
        fitted = cal.get('fitted_on')
        lines.append('- Fitted on: ' + (json.dumps(fitted, sort_keys=True)
                                        if fitted else _NP) + '.')
    else:
        lines.append(f'Calibration: {_NP} (probabilities are the raw '
                     'softmax, T = 1).')
    lines.append('')

    lines += ['## Operating points', '']
    thr = (cal or {}).get('thresholds') or {}
    if thr:
        lines += ['A nodule is called malignant when the calibrated '
                  'probability is >= the threshold. Test figures: the '
                  'thresholds applied unchanged to the test crops (95 % '
                  'Wilson CIs).', '',
                  '| operating point | threshold | meaning | test sensitivity '
                  '| test specificity | test PPV | test NPV |',
                  '|---|---|---|---|---|---|---|']
        for k, v in thr.items():
            figs = [_ci_cell(metrics, f'{k}/{f}')
                    for f in ('sensitivity', 'specificity', 'ppv', 'npv')]
            lines.append(f'| {k} | {_fmt(v, 4)} | {_op_meaning(k)} | '
                         + ' | '.join(figs) + ' |')
    else:
        lines.append(f'Operating points: {_NP}; `BundleClassifier` labels at '
                     'probability 0.5 only.')
    lines.append('')

    lines += ['## Intended use', '',
              'Research decision support: a second opinion on the '
              'benign / malignant character of a breast-ultrasound nodule '
              'crop, to be reviewed by a qualified reader. It is not a '
              'diagnostic device, is not cleared or approved by any '
              'regulator, and must not be the sole basis of a clinical '
              'decision.', '']

    limits = card_info.get('known_limits')
    if isinstance(limits, str):
        limits = [limits]
    lines += ['## Known limits', '',
              '- Input is a nodule crop (detector box plus margin), not a '
              'whole image; crops cut differently from training shift the '
              'figures.',
              '- Figures and thresholds hold for data like the test / '
              'calibration sets; other scanners, hospitals or populations '
              'need their own validation and calibration.',
              '- Thresholds chosen on a small set carry the uncertainty of '
              'that set (see the CIs).']
    lines += [f'- {x}' for x in (limits or [])]
    if card_info.get('contact') or card_info.get('license'):
        lines += ['', '## Contact and licence', '']
        for k in ('contact', 'license'):
            if card_info.get(k):
                lines.append(f'- {k}: {card_info[k]}')
    return '\n'.join(lines).rstrip() + '\n'


def _resize_text(rs: dict) -> str:
    if rs['mode'] == 'letterbox':
        return (f'letterbox to {rs["width"]} x {rs["height"]} (aspect ratio '
                f'kept, centred, padding value {rs["pad_val"]:g}), '
                f'{rs["interpolation"]}')
    return f'stretch to {rs["width"]} x {rs["height"]}, {rs["interpolation"]}'


# --------------------------------------------------------------- inference
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warnings


class BundleClassifier:
    """Run a bundle folder with onnxruntime (no torch needed).

    Args:
        bundle_dir: folder written by :func:`export_bundle`.
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
        t = self.temperature if calibrated else 1.0
        return _sigmoid((lg[:, 1] - lg[:, 0]) / t)

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
        raw = _sigmoid(lg[:, 1] - lg[:, 0])
        cal = _sigmoid((lg[:, 1] - lg[:, 0]) / self.temperature)
        out = []
        for p_raw, p in zip(raw, cal):
            out.append(dict(
                malignancy_prob=float(p), raw_prob=float(p_raw),
                labels={k: self.classes[int(p >= t)]
                        for k, t in self.thresholds.items()}))
        return out

    __call__ = predict
