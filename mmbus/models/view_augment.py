"""Batch-level stochastic view augmentation for ultrasound crops.

Mean teacher needs the student and the teacher to see *independently*
augmented views of the same images. Doing the augmentation on the normalised
batch tensor (as the original mean-teacher code does inside the graph) lets
the model draw two views from one loaded image, on the accelerator, without
doubling data loading.

Augmentations (all per sample, on normalised inputs):

* random translation by up to ``translate`` pixels in x and y (edges
  replicated at the border; the original mean teacher shifts by 2 px;
  off by default);
* random anisotropic scaling: x and y each stretched by an independent
  factor in ``[1 - scale, 1 + scale]`` about the image centre (bilinear,
  border replicated; off by default). Unlike noise or shifts it moves a
  nodule's shape features (size, aspect ratio) a little, so the consistency
  term asks for predictions that are smooth along them too;
* horizontal flip with probability ``flip_prob``; never vertical: nodule
  orientation ("taller than wide") is diagnostic;
* brightness: add a uniform offset in ``[-brightness, brightness]``;
* contrast: multiply by a uniform factor in ``[1-contrast, 1+contrast]``
  (off by default);
* additive Gaussian noise with std ``noise_std`` (paper: input noise 0.15).

Units: the inputs are what the data preprocessor outputs, e.g. ``(x - 127.5)
/ 127.5`` in [-1, 1], so ``noise_std=0.15`` is 0.15 of that scale.

Registered both in mmpretrain ``MODELS`` (used by :class:`SemiClassifier`)
and ``BATCH_AUGMENTS`` (so a plain ``ImageClassifier`` gets the same
augmentation via ``ClsDataPreprocessor(batch_augments=...)``).
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import BATCH_AUGMENTS, MODELS


@MODELS.register_module()
@BATCH_AUGMENTS.register_module()
class BatchViewAugment(nn.Module):
    """Random h-flip, brightness/contrast jitter and Gaussian noise.

    Args:
        flip_prob (float): Horizontal flip probability.
        brightness (float): Max absolute additive brightness offset.
        contrast (float): Max relative contrast change (0 = off).
        noise_std (float): Std of the additive Gaussian input noise.
        translate (int): Max random shift in pixels (0 = off).
        scale (float): Max relative stretch per axis (0 = off, < 1).
        zoom (float): Max relative isotropic zoom, both axes by the same
            factor in ``[1 - zoom, 1 + zoom]`` (0 = off, < 1); keeps aspect
            ratios, changes size and how much of the surroundings is seen.
    """

    def __init__(self,
                 flip_prob: float = 0.5,
                 brightness: float = 0.2,
                 contrast: float = 0.0,
                 noise_std: float = 0.15,
                 translate: int = 0,
                 scale: float = 0.0,
                 zoom: float = 0.0):
        super().__init__()
        for name, v in dict(flip_prob=flip_prob, brightness=brightness,
                            contrast=contrast, noise_std=noise_std,
                            translate=translate, scale=scale,
                            zoom=zoom).items():
            if v < 0:
                raise ValueError(f'{name} must be >= 0, got {v}')
        if flip_prob > 1:
            raise ValueError(f'flip_prob must be <= 1, got {flip_prob}')
        if scale >= 1:
            raise ValueError(f'scale must be < 1, got {scale}')
        if zoom >= 1:
            raise ValueError(f'zoom must be < 1, got {zoom}')
        self.scale = float(scale)
        self.zoom = float(zoom)
        self.flip_prob = flip_prob
        self.brightness = brightness
        self.contrast = contrast
        self.noise_std = noise_std
        self.translate = int(translate)

    def _translate(self, x: torch.Tensor) -> torch.Tensor:
        # integer shifts: pad by t, then take a per-sample window of the
        # original size (one gather, no interpolation)
        t = self.translate
        b, c, h, w = x.shape
        padded = F.pad(x, (t, t, t, t), mode='replicate')
        dy = torch.randint(0, 2 * t + 1, (b, 1, 1), device=x.device)
        dx = torch.randint(0, 2 * t + 1, (b, 1, 1), device=x.device)
        rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy).expand(
            b, h, w)
        cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx).expand(
            b, h, w)
        flat = rows * (w + 2 * t) + cols  # (b, h, w) index into padded
        out = padded.flatten(2).gather(
            2, flat.view(b, 1, h * w).expand(b, c, h * w))
        return out.view(b, c, h, w)

    def _stretch(self, x: torch.Tensor) -> torch.Tensor:
        # output pixel p samples the input at p / s about the centre, so
        # content is magnified by s per axis (affine_grid works in [-1, 1])
        b = x.size(0)
        s = 1 + (torch.rand(b, 2, device=x.device, dtype=x.dtype) * 2 - 1) \
            * self.scale
        s = s * (1 + (torch.rand(b, 1, device=x.device, dtype=x.dtype) * 2 -
                      1) * self.zoom)
        theta = x.new_zeros(b, 2, 3)
        theta[:, 0, 0] = 1 / s[:, 0]
        theta[:, 1, 1] = 1 / s[:, 1]
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode='bilinear', padding_mode='border',
                             align_corners=False)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """Return an augmented copy of the (B, C, H, W) batch ``x``."""
        b = x.size(0)
        shape = (b, 1, 1, 1)
        if self.scale > 0 or self.zoom > 0:
            x = self._stretch(x)
        if self.translate > 0:
            x = self._translate(x)
        if self.flip_prob > 0:
            flip = torch.rand(shape, device=x.device) < self.flip_prob
            x = torch.where(flip, x.flip(-1), x)
        if self.contrast > 0:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            f = 1 + (torch.rand(shape, device=x.device) * 2 - 1) * \
                self.contrast
            x = (x - mean) * f + mean
        if self.brightness > 0:
            x = x + (torch.rand(shape, device=x.device) * 2 - 1) * \
                self.brightness
        if self.noise_std > 0:
            x = x + torch.randn_like(x) * self.noise_std
        return x

    def forward(self, x: torch.Tensor,
                batch_score: Optional[torch.Tensor] = None):
        """``MODELS`` use: ``aug(x) -> x'``. ``BATCH_AUGMENTS`` use:
        ``aug(x, batch_score) -> (x', batch_score)`` (labels unchanged)."""
        out = self.augment(x)
        if batch_score is None:
            return out
        return out, batch_score.float()  # soft-label format expected by the loss
