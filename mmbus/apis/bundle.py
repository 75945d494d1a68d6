"""A portable model bundle of the malignancy recogniser: one folder that runs
with onnxruntime, numpy and OpenCV (no torch, mmengine or mmpretrain model
code; the bundle modules import torch only inside :func:`export_bundle`,
although importing them through the ``mmbus.apis`` package loads that
package's other modules, which do import torch).

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

At export the same crops run through PyTorch and onnxruntime; the largest
absolute difference of the probabilities is stored, and the export fails
(nothing is written) when it exceeds :data:`PARITY_TOLERANCE`.

The export lives here; the other pieces, all importable from this module, are

* :mod:`mmbus.apis.bundle_format`: file names, :class:`BundleError`, the
  JSON and calibration readers;
* :mod:`mmbus.apis.bundle_preprocess`: the resize contract
  (:func:`preprocess_spec` from a config, :func:`preprocess_crop` on a crop);
* :mod:`mmbus.apis.bundle_card`: ``MODEL_CARD.md``
  (:func:`render_model_card`);
* :mod:`mmbus.apis.bundle_classifier`: :class:`BundleClassifier`, which runs
  a bundle folder.
"""
import datetime
import hashlib
import os
import os.path as osp
import shutil
from typing import Callable, Optional, Sequence, Union

import numpy as np

from mmbus.classes import CLASSES
from mmbus.utils.io import (atomic_write, atomic_write_json,
                            atomic_write_text, make_temp_dir, replace_dir)
from .bundle_card import render_model_card
from .bundle_classifier import BundleClassifier, _ort_session
from .bundle_format import (BUNDLE_FORMAT, BUNDLE_JSON, BUNDLE_VERSION,
                            CALIBRATION_JSON, MODEL_CARD, ONNX_NAME,
                            BundleError, _read_json, read_calibration)
from .bundle_preprocess import preprocess_crop, preprocess_spec

__all__ = [
    'export_bundle', 'BundleClassifier', 'BundleError', 'read_calibration',
    'preprocess_spec', 'preprocess_crop', 'render_model_card', 'OPSET',
    'PARITY_TOLERANCE', 'BUNDLE_FORMAT', 'BUNDLE_VERSION', 'ONNX_NAME',
    'BUNDLE_JSON', 'CALIBRATION_JSON', 'MODEL_CARD'
]

#: opset 17: the newest the TorchScript exporter of torch 2.x handles without
#: onnxscript, and run by every onnxruntime since 1.14.
OPSET = 17
#: largest allowed |p_torch - p_onnx| over the parity crops.
PARITY_TOLERANCE = 1e-4


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


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


def _parity_inputs(sample_crops, spec, n_random: int, seed: int):
    if sample_crops is not None and len(sample_crops):
        batch = np.stack([preprocess_crop(c, spec) for c in sample_crops])
        return batch, f'{len(sample_crops)} given crops'
    rng = np.random.default_rng(seed)
    shape = (n_random, spec['channels'], spec['resize']['height'],
             spec['resize']['width'])
    batch = rng.integers(0, 256, shape).astype(np.float32)
    return batch, f'{n_random} random uint8-range images (seed {seed})'


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
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f'bundle written: {out_dir}')
    return dict(info, out_dir=out_dir)
