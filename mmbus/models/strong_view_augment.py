"""Strong views for FixMatch, safe for ultrasound.

The weak view's operations (:class:`BatchViewAugment`: shifts, zoom, h-flip, brightness, contrast, noise)
at larger strength, plus three that change the texture but not the anatomy:

* speckle: multiplicative noise ``x' = m + (x - m) * (1 + speckle * n)``, ``n ~ N(0, 1)`` per pixel, about the
  image mean ``m`` (ultrasound speckle is multiplicative);
* blur: Gaussian blur with a random sigma in ``[0, blur]`` pixels, with probability ``blur_prob``;
* cut-out: one square of side ``cutout`` x the image side, at a random position, set to the image mean,
  with probability ``cutout_prob``.

No vertical flips and no rotations: nodule orientation ("taller than wide") is diagnostic.
"""
import torch
import torch.nn.functional as F
from mmpretrain.registry import BATCH_AUGMENTS, MODELS

from .view_augment import BatchViewAugment


@MODELS.register_module()
@BATCH_AUGMENTS.register_module()
class StrongViewAugment(BatchViewAugment):
    """Strong, orientation-preserving views (see the module docstring).

    Args:
        speckle (float): Std of the multiplicative speckle noise (0 = off).
        blur (float): Max Gaussian blur sigma in pixels (0 = off).
        blur_prob (float): Probability of blurring a sample.
        cutout (float): Cut-out square side as a fraction of the image side (0 = off, < 1).
        cutout_prob (float): Probability of a cut-out per sample.
        **weak: :class:`BatchViewAugment` arguments (defaults here are stronger: brightness 0.4,
            contrast 0.5, translate 4, zoom 0.15).
    """

    def __init__(self, speckle: float = 0.3, blur: float = 1.5, blur_prob: float = 0.5, cutout: float = 0.3,
                 cutout_prob: float = 0.5, brightness: float = 0.4, contrast: float = 0.5, translate: int = 4,
                 zoom: float = 0.15, **weak):
        super().__init__(brightness=brightness, contrast=contrast, translate=translate, zoom=zoom, **weak)
        for name, v in dict(speckle=speckle, blur=blur, blur_prob=blur_prob, cutout=cutout,
                            cutout_prob=cutout_prob).items():
            if v < 0:
                raise ValueError(f'{name} must be >= 0, got {v}')
        if blur_prob > 1 or cutout_prob > 1:
            raise ValueError('blur_prob and cutout_prob must be <= 1')
        if cutout >= 1:
            raise ValueError(f'cutout must be < 1, got {cutout}')
        self.speckle, self.blur, self.blur_prob = float(speckle), float(blur), float(blur_prob)
        self.cutout, self.cutout_prob = float(cutout), float(cutout_prob)

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        b = x.size(0)
        sigma = torch.rand(b, device=x.device, dtype=x.dtype) * self.blur
        sigma = torch.where(torch.rand(b, device=x.device) < self.blur_prob, sigma, torch.zeros_like(sigma))
        radius = max(1, int(round(3 * self.blur)))
        t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
        # per-sample separable kernels; sigma 0 -> a delta
        k = torch.exp(-0.5 * (t.view(1, -1) / sigma.clamp(min=1e-3).view(-1, 1))**2)
        k = k / k.sum(dim=1, keepdim=True)
        c = x.size(1)
        xs = x.reshape(1, b * c, *x.shape[2:])
        kh = k.repeat_interleave(c, 0).view(b * c, 1, 1, -1)
        xs = F.conv2d(F.pad(xs, (radius, radius, 0, 0), mode='replicate'), kh, groups=b * c)
        xs = F.conv2d(F.pad(xs, (0, 0, radius, radius), mode='replicate'), kh.transpose(2, 3), groups=b * c)
        return xs.view_as(x)

    def _cutout(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        side_h, side_w = max(1, int(round(self.cutout * h))), max(1, int(round(self.cutout * w)))
        y0 = torch.randint(0, h - side_h + 1, (b, 1, 1, 1), device=x.device)
        x0 = torch.randint(0, w - side_w + 1, (b, 1, 1, 1), device=x.device)
        rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
        box = (rows >= y0) & (rows < y0 + side_h) & (cols >= x0) & (cols < x0 + side_w)
        box = box & (torch.rand(b, 1, 1, 1, device=x.device) < self.cutout_prob)
        mean = x.mean(dim=(1, 2, 3), keepdim=True).expand_as(x)
        return torch.where(box, mean, x)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        x = super().augment(x)
        if self.speckle > 0:
            m = x.mean(dim=(1, 2, 3), keepdim=True)
            x = m + (x - m) * (1 + self.speckle * torch.randn_like(x))
        if self.blur > 0 and self.blur_prob > 0:
            x = self._blur(x)
        if self.cutout > 0 and self.cutout_prob > 0:
            x = self._cutout(x)
        return x
