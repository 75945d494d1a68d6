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

The maps and the overlay for display live here; the other pieces, all
importable from this module, are

* :mod:`mmbus.apis.cam_model`: the classifier as a logits module and the
  target layer (:func:`logits_module`, :func:`find_last_conv`);
* :mod:`mmbus.apis.cam_input`: crops -> network input, and the map back;
* :mod:`mmbus.apis.cam_measures`: measures against a lesion mask
  (:func:`pointing_game`, :func:`energy_inside`, :func:`cam_peak`).
"""
from typing import List, Optional, Sequence, Union

import numpy as np
import torch

from .cam_input import _check_crop, _Preparer, _to_crop_size
from .cam_measures import (DEFAULT_TOLERANCE, _check_cam, cam_peak,
                           energy_inside, pointing_game)
from .cam_model import (ClassifierLogits, _no_inplace, _resolve_layer,
                        find_last_conv, logits_module)

__all__ = [
    'cam_for_crops', 'overlay', 'DEFAULT_ALPHA', 'DEFAULT_TOLERANCE',
    'cam_peak', 'pointing_game', 'energy_inside', 'find_last_conv',
    'logits_module', 'ClassifierLogits'
]

#: Weight of the heat map in :func:`overlay` (the crop gets ``1 - alpha``).
DEFAULT_ALPHA = 0.5


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
