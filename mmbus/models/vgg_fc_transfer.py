"""ImageNet VGG16 initialisation of the Faster R-CNN VGG16: conv layers and fc6/fc7.

The paper initialises its Faster R-CNN from an ImageNet VGG16. As in the original Faster R-CNN,
this covers the box head too: the two 4096-d fully connected layers applied to the 7x7x512 RoI
features are VGG16's classifier layers fc6 (25088 -> 4096) and fc7 (4096 -> 4096). mmengine's
``Pretrained`` init only copies keys with matching names, so this initializer maps the names.

Key names (checked against the library sources):

- mmpretrain ``VGG`` (``mmpretrain/models/backbones/vgg.py``) with ``num_classes > 0``, as in its
  ImageNet checkpoints: conv layers ``backbone.features.{i}.conv.{weight,bias}`` (ConvModule,
  i over conv+pool modules: 0 1 | 3 4 | 6 7 8 | 10 11 12 | 14 15 16 for VGG16, pools in
  between), BN ``backbone.features.{i}.bn.*``; classifier ``backbone.classifier.{0,3,6}.*``
  (fc6, fc7, fc8: Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear).
- torchvision ``vgg16`` (``torchvision/models/vgg.py``): ``features.{i}.{weight,bias}`` with
  conv at 0 2 5 7 10 12 14 17 19 21 24 26 28 (ReLU and pool modules in between, BN at i+1 in
  ``vgg16_bn``), classifier ``classifier.{0,3,6}.*``.
- detector targets: ``backbone.features.{i}.conv.*`` (our mmpretrain VGG, with or without
  the last pool) and ``roi_head.bbox_head.shared_fcs.{0,1}.*`` (Shared2FCBBoxHead).

Both input layouts flatten the 512x7x7 pooled map channel-major (C, H, W), the same order as
mmdet's ``ConvFCBBoxHead`` (``x.flatten(1)``) applies to its 512x7x7 RoI features, so fc6 is
copied as is.

Usage in a config (``part`` says which module the init_cfg sits on)::

    backbone=dict(type='mmpretrain.VGG', ...,
                  init_cfg=dict(type='VGGImageNetInit', checkpoint=URL, part='features'))
    bbox_head=dict(type='Shared2FCBBoxHead', fc_out_channels=4096, ...,
                   init_cfg=[..., dict(type='VGGImageNetInit', checkpoint=URL, part='fc67')])
"""
import re
from collections import OrderedDict
from typing import Dict, List, Tuple

import torch
from mmengine.logging import print_log
from mmengine.registry import WEIGHT_INITIALIZERS

#: mmpretrain's ImageNet VGG16 (top-1 71.62), the paper's kind of initialisation.
MMPRETRAIN_VGG16_URL = ('https://download.openmmlab.com/mmclassification/v0/vgg/'
                        'vgg16_batch256_imagenet_20210208-db26f1a5.pth')
#: torchvision's ImageNet VGG16 (IMAGENET1K_V1), the alternative.
TORCHVISION_VGG16_URL = 'https://download.pytorch.org/models/vgg16-397923af.pth'


def _strip_state_dict(checkpoint) -> Dict[str, torch.Tensor]:
    if isinstance(checkpoint, dict) and 'state_dict' in checkpoint:
        checkpoint = checkpoint['state_dict']
    if not isinstance(checkpoint, dict):
        raise ValueError('VGG checkpoint: expected a state dict (or a dict with "state_dict")')
    out = OrderedDict()
    for k, v in checkpoint.items():
        out[k[len('module.'):] if k.startswith('module.') else k] = v
    return out


def vgg_layer_tensors(state_dict: Dict[str, torch.Tensor]) -> Tuple[str, List[dict], List[dict]]:
    """Split a VGG ImageNet state dict into conv layers and classifier (fc) layers.

    Returns ``(layout, convs, fcs)``: layout is 'mmpretrain' or 'torchvision'; ``convs`` lists,
    in network order, dicts ``{'weight', 'bias', optional 'bn': {name: tensor}}``; ``fcs`` lists
    the classifier Linear layers in order (fc6, fc7, fc8) as ``{'weight', 'bias'}``.
    """
    mmpre = re.compile(r'^(?:backbone\.)?features\.(\d+)\.conv\.(weight|bias)$')
    mmpre_bn = re.compile(r'^(?:backbone\.)?features\.(\d+)\.bn\.(\w+)$')
    tv = re.compile(
        r'^features\.(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$')
    fc = re.compile(r'^(?:backbone\.)?classifier\.(\d+)\.(weight|bias)$')
    if any(mmpre.match(k) for k in state_dict):
        layout = 'mmpretrain'
        convs: Dict[int, dict] = {}
        for k, v in state_dict.items():
            m = mmpre.match(k)
            if m:
                convs.setdefault(int(m.group(1)), {})[m.group(2)] = v
            m = mmpre_bn.match(k)
            if m:
                convs.setdefault(int(m.group(1)), {}).setdefault('bn', {})[m.group(2)] = v
        conv_list = [convs[i] for i in sorted(convs)]
    elif any(tv.match(k) for k in state_dict):
        layout = 'torchvision'
        mods: Dict[int, dict] = {}
        for k, v in state_dict.items():
            m = tv.match(k)
            if m:
                mods.setdefault(int(m.group(1)), {})[m.group(2)] = v
        conv_list = []
        for i in sorted(mods):
            t = mods[i]
            if 'weight' in t and t['weight'].dim() == 4:
                conv_list.append(dict(weight=t['weight'], bias=t.get('bias')))
            elif 'running_mean' in t:  # vgg16_bn: BN right after its conv
                conv_list[-1]['bn'] = dict(t)
    else:
        raise ValueError('VGG checkpoint: no VGG feature layers found (expected keys like '
                         '"backbone.features.0.conv.weight" (mmpretrain) or '
                         '"features.0.weight" (torchvision))')
    fcs: Dict[int, dict] = {}
    for k, v in state_dict.items():
        m = fc.match(k)
        if m:
            fcs.setdefault(int(m.group(1)), {})[m.group(2)] = v
    return layout, conv_list, [fcs[i] for i in sorted(fcs)]


@WEIGHT_INITIALIZERS.register_module(name='VGGImageNetInit')
class VGGImageNetInit:
    """Initialise a VGG backbone (``part='features'``) or a box head's two shared FCs
    (``part='fc67'``) from an ImageNet VGG checkpoint, mmpretrain or torchvision layout.

    Args:
        checkpoint (str): path or URL (mmengine's ``CheckpointLoader``: http(s), local, ...).
        part (str): 'features' for ``mmpretrain.VGG`` (copies every conv layer, BN statistics
            when both sides have BN; conv count must match) or 'fc67' for a
            ``Shared2FCBBoxHead`` (copies fc6 -> ``shared_fcs.0``, fc7 -> ``shared_fcs.1``).
        map_location (str): where tensors are loaded. Default 'cpu'.

    Shapes must match exactly; a mismatch (e.g. ``fc_out_channels=1024`` against the 4096-d
    ImageNet fc6, or a RoI size other than 7) raises a ValueError naming both shapes.
    """

    def __init__(self, checkpoint: str, part: str = 'fc67', map_location: str = 'cpu') -> None:
        if part not in ('features', 'fc67'):
            raise ValueError(f"VGGImageNetInit: part must be 'features' or 'fc67', got {part!r}")
        self.checkpoint = checkpoint
        self.part = part
        self.map_location = map_location
        self.wholemodule = False

    def _load(self) -> Dict[str, torch.Tensor]:
        from mmengine.runner.checkpoint import CheckpointLoader
        ckpt = CheckpointLoader.load_checkpoint(
            self.checkpoint, map_location=self.map_location, logger='current')
        return _strip_state_dict(ckpt)

    @staticmethod
    def _copy(dst: torch.Tensor, src: torch.Tensor, what: str) -> None:
        if tuple(dst.shape) != tuple(src.shape):
            raise ValueError(f'VGGImageNetInit: {what}: checkpoint shape {tuple(src.shape)} '
                             f'does not fit model shape {tuple(dst.shape)}')
        with torch.no_grad():
            dst.copy_(src.to(dtype=dst.dtype))

    def __call__(self, module: torch.nn.Module) -> None:
        layout, convs, fcs = vgg_layer_tensors(self._load())
        if self.part == 'fc67':
            self._init_fc67(module, fcs)
        else:
            self._init_features(module, convs)
        print_log(f'VGGImageNetInit: {self.part} of {type(module).__name__} initialised from '
                  f'{self.checkpoint} ({layout} layout)', logger='current')
        if hasattr(module, '_params_init_info'):
            from mmengine.model.weight_init import update_init_info
            update_init_info(module, init_info=f'VGGImageNetInit({self.part}): '
                             f'load from {self.checkpoint}')

    def _init_fc67(self, head: torch.nn.Module, fcs: List[dict]) -> None:
        shared = getattr(head, 'shared_fcs', None)
        if shared is None or len(shared) < 2:
            raise ValueError('VGGImageNetInit(part="fc67") needs a box head with at least two '
                             f'shared FC layers (Shared2FCBBoxHead); got {type(head).__name__}')
        if len(fcs) < 2:
            raise ValueError('VGGImageNetInit: the checkpoint has no classifier fc6/fc7 '
                             '(mmpretrain "backbone.classifier.0/3" or torchvision '
                             '"classifier.0/3"); use a checkpoint of VGG with num_classes>0')
        for i, name in ((0, 'fc6'), (1, 'fc7')):
            self._copy(shared[i].weight, fcs[i]['weight'], f'{name} weight')
            self._copy(shared[i].bias, fcs[i]['bias'], f'{name} bias')

    def _init_features(self, backbone: torch.nn.Module, convs: List[dict]) -> None:
        targets = [m for m in backbone.modules() if isinstance(m, torch.nn.Conv2d)]
        if len(targets) != len(convs):
            raise ValueError(f'VGGImageNetInit: the checkpoint has {len(convs)} conv layers, '
                             f'the backbone {len(targets)} (VGG depth mismatch?)')
        bns = {}
        for m in backbone.modules():
            # mmcv ConvModule keeps conv and its norm side by side.
            if hasattr(m, 'conv') and isinstance(getattr(m, 'conv'), torch.nn.Conv2d) \
                    and getattr(m, 'with_norm', False):
                bns[m.conv] = getattr(m, m.norm_name)
        for i, (conv, src) in enumerate(zip(targets, convs)):
            self._copy(conv.weight, src['weight'], f'conv {i} weight')
            if conv.bias is not None and src.get('bias') is not None:
                self._copy(conv.bias, src['bias'], f'conv {i} bias')
            bn = bns.get(conv)
            if bn is not None and 'bn' in src:
                for key in ('weight', 'bias', 'running_mean', 'running_var'):
                    if key in src['bn']:
                        self._copy(getattr(bn, key), src['bn'][key], f'conv {i} bn {key}')
