"""Class-activation maps (Grad-CAM) of the crop classifier, and how well they
point at the lesion.

The maps come from the ``grad-cam`` package (import name
``pytorch_grad_cam``; its 1.5 API: ``GradCAM(model=..., target_layers=[...])``
called with ``ClassifierOutputTarget`` targets). ``pytorch_grad_cam`` is imported
inside the functions that need it, so importing this module (and
``mmbus.apis``) works without ``grad-cam``; only computing a map or an
overlay needs it.

Crops follow the mmbus convention: BGR ``uint8`` arrays (``HxWx3``, as
:func:`mmbus.apis.crop_extraction.crop_nodule` and ``mmcv.imread`` give
them) or grey ``HxW`` arrays.

How a crop reaches the network: for an mmpretrain classifier (e.g. from
:func:`mmbus.apis.export.load_plain_classifier`) the crop goes through the
test pipeline of the classifier's own config (without its file loader, and
converted to grey first when that loader reads grey, exactly as
:class:`mmbus.apis.inference.BUSInferencer` does) and its data preprocessor,
so the map explains the same input the probability was computed on. The map
at network-input size is then mapped back onto the crop: the padding of a
letterbox resize is cut off and the rest resized to the crop's size.
Pipelines that crop the image (``CenterCrop``, ``RandomResizedCrop`` ...)
cannot be mapped back and are refused.

Measures against a lesion mask (Zhang et al., "Top-down neural attention by
excitation backprop", IJCV 2018, for the pointing game; the "energy-based
pointing game" of Score-CAM, Wang et al. 2020, for the energy):

* :func:`pointing_game`: a hit iff the map's maximum lies inside the mask or
  within ``tolerance`` pixels of it (Zhang et al. use 15 px on ~224 px
  images; crops here carry only a 10 px margin around the nodule, so the
  default is 5 px, otherwise almost any peak in the margin would count).
* :func:`energy_inside`: the share of the map's mass inside the mask; a
  uniform map scores the mask's area fraction (the chance level).
"""
import contextlib
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

#: Pointing-game tolerance in crop pixels (see the module doc).
DEFAULT_TOLERANCE = 5.0
#: Weight of the heat map in :func:`overlay` (the crop gets ``1 - alpha``).
DEFAULT_ALPHA = 0.5
#: Transforms whose geometry cannot be undone on the map.
_CROPPING_TRANSFORMS = ('Crop', )


# ----------------------------------------------------------------------------
# the classifier as a plain logits module
# ----------------------------------------------------------------------------
def _is_mmpretrain_classifier(model) -> bool:
    return hasattr(model, 'extract_feat') and hasattr(model,
                                                      'data_preprocessor')


class ClassifierLogits(nn.Module):
    """An mmpretrain ``ImageClassifier`` as a plain module returning logits.

    ``ImageClassifier.forward(x, mode='tensor')`` runs backbone, neck and
    head and returns the head's raw scores (``LinearClsHead``: the ``fc``
    output, before softmax), which is what Grad-CAM differentiates. A
    classifier without a head returns backbone features there, which have no
    class to explain: refused.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x, mode='tensor')
        if isinstance(out, (tuple, list)):
            raise TypeError(
                f'{type(self.model).__name__}(mode="tensor") returned '
                'features, not class scores: the classifier has no head to '
                'explain')
        return out


def logits_module(classifier) -> nn.Module:
    """``classifier`` as an ``nn.Module`` mapping a preprocessed batch to
    ``(B, num_classes)`` logits: an mmpretrain classifier is wrapped in
    :class:`ClassifierLogits`, a plain ``nn.Module`` is returned as is."""
    if _is_mmpretrain_classifier(classifier):
        return ClassifierLogits(classifier)
    if isinstance(classifier, nn.Module):
        return classifier
    raise TypeError('classifier must be an mmpretrain ImageClassifier or a '
                    'torch.nn.Module returning logits, got '
                    f'{type(classifier).__name__}')


@contextlib.contextmanager
def _no_inplace(module):
    """Switch off ``inplace`` activations while the map is computed: an
    in-place ReLU right after the target layer would overwrite the
    activation Grad-CAM keeps (and break its gradient hook); numbers do not
    change."""
    changed = []
    for m in module.modules():
        if getattr(m, 'inplace', False) is True:
            m.inplace = False
            changed.append(m)
    try:
        yield
    finally:
        for m in changed:
            m.inplace = True


# ----------------------------------------------------------------------------
# crops -> network input, and the geometry back
# ----------------------------------------------------------------------------
def _classifier_cfg(classifier):
    cfg = getattr(classifier, '_config', None) or getattr(
        classifier, 'cfg', None)
    return cfg


def _loader_is_grey(pipeline_cfg) -> bool:
    loader = [t for t in pipeline_cfg
              if 'LoadImageFromFile' in str(t.get('type'))]
    return bool(loader) and loader[0].get(
        'color_type', 'color') in ('grayscale', 'unchanged_grayscale')


class _Preparer:
    """Crop -> (network input tensor, content window in that input).

    The window ``(top, left, height, width)`` is where the crop's pixels
    landed in the network input (all of it after a plain resize; the
    unpadded middle after a letterbox resize)."""

    def __init__(self, classifier):
        self.mm = _is_mmpretrain_classifier(classifier)
        self.classifier = classifier
        self.transforms, self.pack, self.grey = [], None, False
        if not self.mm:
            return
        cfg = _classifier_cfg(classifier)
        pipeline_cfg = []
        if cfg is not None and cfg.get('test_dataloader'):
            pipeline_cfg = list(cfg.test_dataloader.dataset.pipeline)
        self.grey = _loader_is_grey(pipeline_cfg)
        from mmengine.registry import DefaultScope
        from mmpretrain.registry import TRANSFORMS
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            for t in pipeline_cfg:
                kind = str(t.get('type', ''))
                if 'LoadImageFromFile' in kind:
                    continue  # the crop is already in memory
                if any(c in kind for c in _CROPPING_TRANSFORMS):
                    raise ValueError(
                        f'the classifier test pipeline crops the image '
                        f'({kind}): its class-activation map cannot be '
                        'mapped back onto the nodule crop')
                built = TRANSFORMS.build(dict(t))
                if 'Pack' in kind:
                    self.pack = built
                else:
                    self.transforms.append(built)
            if self.pack is None:
                self.pack = TRANSFORMS.build(dict(type='PackInputs'))

    def _one(self, crop: np.ndarray):
        h, w = crop.shape[:2]
        if not self.mm:
            arr = crop[None] if crop.ndim == 2 else crop.transpose(2, 0, 1)
            return torch.from_numpy(np.ascontiguousarray(arr)).float(), \
                (0, 0, h, w)
        if self.grey and crop.ndim == 3:
            import mmcv
            crop = mmcv.bgr2gray(crop)
        res = dict(img=crop, img_shape=crop.shape[:2],
                   ori_shape=crop.shape[:2])
        for t in self.transforms:
            res = t(res)
        out_h, out_w = res['img'].shape[:2]
        if 'pad_offset' in res:  # LetterboxResize: content in the middle
            left, top = res['pad_offset']
            sf = res.get('scale_factor', 1.0)
            sx, sy = (sf, sf) if np.isscalar(sf) else (sf[0], sf[1])
            cw = min(out_w - left, max(1, int(round(w * sx))))
            ch = min(out_h - top, max(1, int(round(h * sy))))
            window = (int(top), int(left), ch, cw)
        else:
            window = (0, 0, out_h, out_w)
        packed = self.pack(res)
        return packed, window

    def __call__(self, crops: Sequence[np.ndarray]):
        """List of (packed sample or tensor, window)."""
        return [self._one(c) for c in crops]

    def batch(self, samples):
        """Stack prepared samples into one float input batch."""
        if not self.mm:
            return torch.stack(samples)
        data = dict(inputs=[s['inputs'] for s in samples],
                    data_samples=[s['data_samples'] for s in samples])
        return self.classifier.data_preprocessor(data, False)['inputs']


def _check_crop(crop, k: int) -> np.ndarray:
    crop = np.asarray(crop)
    if crop.ndim not in (2, 3) or crop.shape[0] == 0 or crop.shape[1] == 0:
        raise ValueError(f'crop {k}: expected a non-empty HxW or HxWxC '
                         f'image, got shape {crop.shape}')
    return crop


# ----------------------------------------------------------------------------
# target layer
# ----------------------------------------------------------------------------
def find_last_conv(model, example_input) -> Tuple[str, object]:
    """The default target layer: the last ``nn.Conv2d`` that runs in a
    forward pass of ``example_input`` and still has a spatial output (H or W
    above 1), searched in the classifier's ``backbone`` when it has one
    (so a neck or head conv is never picked), else in the whole model.

    Found by execution order (forward hooks), not by registration order,
    which need not match the order a network runs its layers in.

    Returns ``(dotted name, module)``.
    """
    root = getattr(model, 'backbone', None)
    root = root if isinstance(root, nn.Module) else model
    prefix = 'backbone.' if root is not model else ''
    order, handles = [], []
    for name, m in root.named_modules():
        if isinstance(m, nn.Conv2d):
            def hook(mod, inp, out, name=name):
                if out.dim() == 4 and (out.shape[-1] > 1 or out.shape[-2] > 1):
                    order.append((prefix + name, mod))
            handles.append(m.register_forward_hook(hook))
    if not handles:
        raise ValueError(f'{type(root).__name__} has no Conv2d layer; pass '
                         'the target layer explicitly (layer=...)')
    try:
        with torch.no_grad():
            logits_module(model)(example_input)
    finally:
        for h in handles:
            h.remove()
    if not order:
        raise ValueError(
            f'no Conv2d of {type(root).__name__} has a spatial output for an '
            f'input of shape {tuple(example_input.shape)}; pass the target '
            'layer explicitly (layer=...)')
    return order[-1]


def _resolve_layer(model, layer):
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError:
            raise ValueError(f'{type(model).__name__} has no layer named '
                             f'{layer!r}') from None
    return layer


# ----------------------------------------------------------------------------
# maps
# ----------------------------------------------------------------------------
def _to_crop_size(cam: np.ndarray, window, size_hw) -> np.ndarray:
    import cv2
    top, left, h, w = window
    cam = cam[top:top + h, left:left + w]
    cam = cv2.resize(np.ascontiguousarray(cam, dtype=np.float32),
                     (int(size_hw[1]), int(size_hw[0])),
                     interpolation=cv2.INTER_LINEAR)
    cam = np.clip(cam, 0.0, None)
    # rescale to a maximum of 1 on the crop itself: evidence the network put
    # on letterbox padding is not tissue and is dropped with the padding
    top_value = float(cam.max())
    return (cam / top_value if top_value > 0 else cam).astype(np.float32)


def cam_for_crops(classifier,
                  crops: Sequence[np.ndarray],
                  target_class: Union[int, Sequence[int], None] = 1,
                  layer=None,
                  batch_size: int = 16,
                  return_scores: bool = False):
    """Grad-CAM map of each crop, at the crop's own size.

    Args:
        classifier: an mmpretrain ``ImageClassifier`` (its config's test
            pipeline and its data preprocessor are used, see the module doc)
            or a plain ``nn.Module`` mapping a float ``(B, C, H, W)`` batch
            of raw pixel values to logits.
        crops: BGR ``HxWx3`` or grey ``HxW`` arrays; sizes may differ.
        target_class: the class whose evidence is shown (1 = malignant, the
            default), one class per crop, or ``None`` for each crop's
            predicted class.
        layer: the target layer (a module or its dotted name in
            ``classifier``, e.g. ``'backbone.features.24'``); default: the
            last conv layer of the backbone (:func:`find_last_conv`).
        batch_size: crops whose network inputs have the same shape are run
            together, at most this many at a time.
        return_scores: also return the softmax scores, ``(N, num_classes)``.

    Returns:
        A list of float32 ``HxW`` maps in ``[0, 1]`` (each scaled so that its
        maximum on the crop is 1, unless the map is zero everywhere: no
        positive evidence for the class), and with ``return_scores`` the
        scores as well.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    crops = [_check_crop(c, k) for k, c in enumerate(crops)]
    n = len(crops)
    if target_class is None or isinstance(target_class, (int, np.integer)):
        targets = [target_class] * n
    else:
        targets = list(target_class)
        if len(targets) != n:
            raise ValueError(f'{len(targets)} target classes for {n} crops')
    if n == 0:
        return ([], np.zeros((0, 0), np.float32)) if return_scores else []
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')

    prep = _Preparer(classifier)
    prepared = prep(crops)
    module = logits_module(classifier)
    module.eval()
    device = next(iter(module.parameters())).device

    # group crops whose network inputs share a shape (no padding in batches)
    groups = {}
    for i, (sample, _) in enumerate(prepared):
        t = sample if torch.is_tensor(sample) else sample['inputs']
        groups.setdefault(tuple(t.shape), []).append(i)

    first = prep.batch([prepared[0][0]]).to(device)
    with torch.no_grad():
        num_classes = int(module(first).shape[-1])
    bad = sorted({t for t in targets
                  if t is not None and not 0 <= int(t) < num_classes})
    if bad:
        raise ValueError(f'target class(es) {bad} out of range for a '
                         f'{num_classes}-class classifier')
    if layer is None:
        _, target_layer = find_last_conv(classifier, first)
    else:
        target_layer = _resolve_layer(classifier, layer)

    maps: List[Optional[np.ndarray]] = [None] * n
    scores: List[Optional[np.ndarray]] = [None] * n
    with _no_inplace(module), torch.enable_grad(), \
            GradCAM(model=module, target_layers=[target_layer]) as cam:
        for idx in groups.values():
            for s in range(0, len(idx), batch_size):
                chunk = idx[s:s + batch_size]
                x = prep.batch([prepared[i][0] for i in chunk]).to(device)
                # the input needs a gradient for the layer hooks to fire
                # even when the classifier's weights are frozen
                x = x.float().requires_grad_(True)
                tg = None if any(targets[i] is None for i in chunk) else [
                    ClassifierOutputTarget(int(targets[i])) for i in chunk]
                if tg is None:  # per crop: its predicted class
                    with torch.no_grad():
                        pred = module(x).argmax(-1).tolist()
                    tg = [ClassifierOutputTarget(
                        int(pred[j] if targets[i] is None else targets[i]))
                        for j, i in enumerate(chunk)]
                out = cam(input_tensor=x, targets=tg)
                probs = torch.softmax(cam.outputs.detach().float(), -1)
                for j, i in enumerate(chunk):
                    maps[i] = _to_crop_size(out[j], prepared[i][1],
                                            crops[i].shape[:2])
                    scores[i] = probs[j].cpu().numpy()
    if return_scores:
        return maps, np.stack(scores)
    return maps


def overlay(crop: np.ndarray, cam: np.ndarray,
            alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """The map over the crop for display: ``uint8`` RGB ``HxWx3``, jet
    colour map (red = strongest evidence) blended with weight ``alpha``.

    ``crop`` is BGR ``HxWx3`` or grey ``HxW`` (``uint8``); ``cam`` is ``HxW``
    in ``[0, 1]`` at the crop's size.
    """
    import cv2
    from pytorch_grad_cam.utils.image import show_cam_on_image
    crop = np.asarray(crop)
    cam = _check_cam(cam, 'cam')
    if crop.shape[:2] != cam.shape:
        raise ValueError(f'cam shape {cam.shape} differs from the crop size '
                         f'{crop.shape[:2]}')
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f'alpha must be in [0, 1], got {alpha}')
    if crop.ndim == 2:
        rgb = cv2.cvtColor(crop.astype(np.uint8), cv2.COLOR_GRAY2RGB)
    elif crop.ndim == 3 and crop.shape[2] == 3:
        rgb = cv2.cvtColor(crop.astype(np.uint8), cv2.COLOR_BGR2RGB)
    else:
        raise ValueError(f'crop must be HxW or HxWx3, got {crop.shape}')
    return show_cam_on_image(rgb.astype(np.float32) / 255.0,
                             np.clip(cam, 0, 1), use_rgb=True,
                             image_weight=1.0 - alpha)


# ----------------------------------------------------------------------------
# measures against a lesion mask
# ----------------------------------------------------------------------------
def _check_cam(cam, what: str = 'cam') -> np.ndarray:
    cam = np.asarray(cam, dtype=np.float64)
    if cam.ndim != 2 or cam.size == 0:
        raise ValueError(f'{what} must be a non-empty HxW map, got shape '
                         f'{cam.shape}')
    if not np.isfinite(cam).all():
        raise ValueError(f'{what} holds NaN or infinite values')
    if cam.min() < 0:
        raise ValueError(f'{what} has negative values (min {cam.min():.3g}); '
                         'class-activation maps are non-negative')
    return cam


def _check_pair(cam, mask) -> Tuple[np.ndarray, np.ndarray]:
    cam = _check_cam(cam)
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] in (1, 3, 4):
        mask = mask[..., :3].max(axis=2)  # a colour-saved binary mask
    if mask.shape != cam.shape:
        raise ValueError(f'mask shape {mask.shape} differs from the cam '
                         f'shape {cam.shape}: cut the mask to the crop window '
                         'first')
    return cam, mask > 0


def cam_peak(cam: np.ndarray) -> Optional[Tuple[int, int]]:
    """``(row, col)`` of the map's maximum, or ``None`` for a flat map (no
    peak to point with).

    Coarse maps up-sampled to the crop often have a plateau of equal maxima
    (a whole feature-map cell); the peak is then the plateau pixel nearest
    to the plateau's centroid, not its top-left corner, so ties do not pull
    the peak towards one side of the crop.
    """
    cam = _check_cam(cam)
    top, low = cam.max(), cam.min()
    if top - low <= 1e-12:
        return None
    rows, cols = np.nonzero(cam >= top - 1e-6 * (top - low))
    k = int(np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2))
    return int(rows[k]), int(cols[k])


def pointing_game(cam: np.ndarray, mask: np.ndarray,
                  tolerance: float = DEFAULT_TOLERANCE) -> bool:
    """Pointing game (Zhang et al. 2018): a hit iff the map's maximum lies
    inside the mask or within ``tolerance`` pixels (Euclidean) of a mask
    pixel.

    A flat map (e.g. zero everywhere: no positive evidence for the class)
    points nowhere and is a miss; so is an empty mask.

    Raises:
        ValueError: ``mask`` and ``cam`` differ in shape, or ``cam`` is not a
            finite non-negative ``HxW`` map.
    """
    cam, mask = _check_pair(cam, mask)
    if tolerance < 0:
        raise ValueError(f'tolerance must be >= 0, got {tolerance}')
    peak = cam_peak(cam)
    if peak is None or not mask.any():
        return False
    if mask[peak]:
        return True
    rows, cols = np.nonzero(mask)
    d2 = (rows - peak[0]) ** 2 + (cols - peak[1]) ** 2
    return bool(d2.min() <= tolerance * tolerance)


def energy_inside(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's mass inside the mask: ``sum(cam * mask) /
    sum(cam)``, in ``[0, 1]``; a uniform map scores the mask's area fraction.
    ``nan`` for a map that is zero everywhere (no mass to share).

    Raises:
        ValueError: as :func:`pointing_game`.
    """
    cam, mask = _check_pair(cam, mask)
    total = cam.sum()
    if total <= 0:
        return float('nan')
    return float(cam[mask].sum() / total)
