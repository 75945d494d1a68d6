"""MTConvNet: the recognition network of the paper (mean-teacher ConvNet-Large).

The paper (section "Network training (2)") describes the student/teacher network
as three modules of three convolution layers, each module followed by max
pooling and dropout, then two convolution layers, average pooling and a fully
connected layer; kernels are initialised from N(0, 0.05^2) and then
L2-normalised (weight normalisation). This is the ConvNet-Large of the original
mean-teacher code (Tarvainen & Valpola 2017), which also uses batch
normalisation and leaky ReLU with slope 0.1; both are kept here.

Layout (full width, ``widen_factor=1``)::

    block 1: 3 x [conv3x3 128, BN, LReLU]        -> maxpool 2x2 -> dropout
    block 2: 3 x [conv3x3 256, BN, LReLU]        -> maxpool 2x2 -> dropout
    block 3: 3 x [conv3x3 512, BN, LReLU]        -> maxpool 2x2 -> dropout
    neck   : conv1x1 256, BN, LReLU ; conv1x1 128, BN, LReLU
    output : global average pooling -> (B, 128) feature
             (the linear layer is the mmpretrain head, e.g. LinearClsHead)

``widen_factor`` scales every width (0.25 gives 32-64-128 / 64-32), which is
about 16x cheaper in FLOPs and what the CPU-sized configs use.
"""
from typing import Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS


@MODELS.register_module()
class MTConvNet(BaseModule):
    """Mean-teacher ConvNet-Large backbone.

    Args:
        in_channels (int): Input channels (1 for grey-scale ultrasound crops,
            3 for colour images).
        widen_factor (float): Multiplier of every layer width. 1.0 is the
            paper/original network (128-256-512, then 256-128).
        stage_channels (Sequence[int]): Widths of the three 3-conv blocks
            before ``widen_factor``.
        neck_channels (Sequence[int]): Widths of the two final 1x1 convs
            before ``widen_factor``.
        dropout (float): Dropout probability after each pooled block (paper:
            0.5).
        negative_slope (float): Leaky-ReLU slope (original: 0.1).
        use_bn (bool): Batch normalisation after each conv (original: yes).
        weight_norm (bool): Weight-normalise the conv kernels ("then L2 norm"
            in the paper). Off by default since BN already fixes the scale.
        init_std (float): Std of the Gaussian kernel initialisation (0.05).
    """

    def __init__(self,
                 in_channels: int = 3,
                 widen_factor: float = 1.0,
                 stage_channels: Sequence[int] = (128, 256, 512),
                 neck_channels: Sequence[int] = (256, 128),
                 dropout: float = 0.5,
                 negative_slope: float = 0.1,
                 use_bn: bool = True,
                 weight_norm: bool = False,
                 init_std: float = 0.05,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if widen_factor <= 0:
            raise ValueError(f'widen_factor must be > 0, got {widen_factor}')
        if len(stage_channels) != 3 or len(neck_channels) != 2:
            raise ValueError('MTConvNet needs 3 stage widths and 2 neck '
                             f'widths, got {stage_channels}, {neck_channels}')
        self.init_std = init_std
        self.negative_slope = negative_slope
        self.use_bn = use_bn
        self.weight_norm = weight_norm

        def width(c):
            return max(1, int(round(c * widen_factor)))

        layers = []
        c_in = in_channels
        for c in stage_channels:
            c = width(c)
            for _ in range(3):
                layers += self._conv(c_in, c, 3)
                c_in = c
            layers += [nn.MaxPool2d(2, 2), nn.Dropout(dropout)]
        for c in neck_channels:
            c = width(c)
            layers += self._conv(c_in, c, 1)
            c_in = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_channels = c_in

    def _conv(self, c_in: int, c_out: int, k: int):
        conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=not self.use_bn)
        # Gaussian init here (before weight norm, which then starts with
        # g = ||v|| so the initial effective kernel is the Gaussian one).
        nn.init.normal_(conv.weight, 0.0, self.init_std)
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
        if self.weight_norm:
            conv = nn.utils.parametrizations.weight_norm(conv)
        mods = [conv]
        if self.use_bn:
            mods.append(nn.BatchNorm2d(c_out))
        mods.append(nn.LeakyReLU(self.negative_slope, inplace=True))
        return mods

    def init_weights(self):
        # The Gaussian init is done at construction; only an explicit
        # init_cfg (e.g. a Pretrained checkpoint) overrides it.
        if self.init_cfg is not None:
            super().init_weights()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        """Return a 1-tuple with the (B, C) pooled feature (mmpretrain
        backbones return tuples; LinearClsHead takes the last item)."""
        x = self.pool(self.features(x))
        return (torch.flatten(x, 1), )
