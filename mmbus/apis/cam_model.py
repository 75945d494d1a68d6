"""The crop classifier as Grad-CAM sees it: a plain module returning logits
(:func:`logits_module`), in-place activations switched off while a map is
computed, and the target layer (:func:`find_last_conv` by default, or one
named by the caller)."""
import contextlib
from typing import Tuple

import torch
import torch.nn as nn


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
