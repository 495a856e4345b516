"""WGAN critics of the official release (``net/discriminator.py``, stroke-mask setting): global and patch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vcn.blocks import same_conv


def _conv_stack(in_channels: int, widths: tuple[int, ...]) -> nn.ModuleList:
    convs = []
    for w in widths:
        convs.append(same_conv(in_channels, w, 5, stride=2))
        in_channels = w
    return nn.ModuleList(convs)


def masked_average(score_map: Tensor, mask: Tensor | None, eps: float = 1e-8) -> Tensor:
    """Average a (B, 1, h, w) score map over a (B, 1, H, W) mask max-pooled down to (h, w) -> (B,).

    The mask is max-pooled 2×2 until it has the map's size (five times at 256² for the patch critic), as in
    the official code. Without a mask (or with an empty one) this is the plain spatial mean.
    """
    if mask is None:
        return score_map.mean(dim=(1, 2, 3))
    m = mask.to(score_map.dtype)
    while m.shape[-1] > score_map.shape[-1] or m.shape[-2] > score_map.shape[-2]:
        m = F.max_pool2d(m, 2, ceil_mode=True)
    if m.shape[-2:] != score_map.shape[-2:]:
        raise ValueError(f"mask {tuple(mask.shape)} does not pool down to the critic map {tuple(score_map.shape)}")
    total = m.sum(dim=(1, 2, 3))
    weighted = (score_map * m).sum(dim=(1, 2, 3)) / (total + eps)
    return weighted.where(total > 0, score_map.mean(dim=(1, 2, 3)))


class GlobalCritic(nn.Module):
    """Global WGAN critic: 4 × [5×5 stride-2 conv + LeakyReLU(0.2)] (w, 2w, 4w, 4w) -> flatten -> dense 1.

    2,733,441 parameters at ``width=64, image_size=256`` (official). The dense layer fixes the input size.

    Args:
        width: first conv width (official ``d_cnum`` = 64).
        image_size: side of the square input images.
        in_channels: input channels.

    Shape:
        (B, in_channels, image_size, image_size) -> (B,)
    """

    def __init__(self, width: int = 64, image_size: int = 256, in_channels: int = 3) -> None:
        super().__init__()
        if image_size % 16:
            raise ValueError(f"GlobalCritic image_size must be divisible by 16, got {image_size}")
        self.image_size = image_size
        self.convs = _conv_stack(in_channels, (width, 2 * width, 4 * width, 4 * width))
        self.fc = nn.Linear(4 * width * (image_size // 16) ** 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"GlobalCritic was built for {self.image_size}² inputs, got {tuple(x.shape[-2:])}")
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        return self.fc(x.flatten(1)).squeeze(1)


class PatchCritic(nn.Module):
    """Patch WGAN critic: 4 × [5×5 s2 conv + LeakyReLU(0.2)] (w, 2w, 4w, 8w), 5×5 s2 conv -> 1-channel map.

    The map (H/32 × W/32) is averaged over the max-pooled mask (:func:`masked_average`), so the score
    concerns the damaged region. 4,319,361 parameters at ``width=64`` (official). Any input size divisible
    by 32 works.

    Args:
        width: first conv width (official 64).
        in_channels: input channels.

    Shape:
        x (B, in_channels, H, W), mask (B, 1, H, W) or None -> (B,)
    """

    def __init__(self, width: int = 64, in_channels: int = 3) -> None:
        super().__init__()
        self.convs = _conv_stack(in_channels, (width, 2 * width, 4 * width, 8 * width))
        self.head = same_conv(8 * width, 1, 5, stride=2)

    def score_map(self, x: Tensor) -> Tensor:
        """(B, 1, H/32, W/32) patch scores before the masked average."""
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        return self.head(x)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return masked_average(self.score_map(x), mask)


def smooth_mask(mask: Tensor, iterations: int = 4, kernel: int = 15) -> Tensor:
    """The official priority smoothing of a (soft) mask: ``p = box(init) ⊙ (1 − m); init = p + m`` repeated,
    then ``min(m + p, 1)``; a box filter with zero padding (the official 15×15 kernel is numerically flat).

    Shape: (B, 1, H, W) in [0, 1] -> (B, 1, H, W) in [0, 1].
    """
    init, halo = mask, torch.zeros_like(mask)
    for _ in range(iterations):
        halo = F.avg_pool2d(init, kernel, stride=1, padding=kernel // 2, count_include_pad=True) * (1.0 - mask)
        init = halo + mask
    return (mask + halo).clamp(max=1.0)


def critic_view(image: Tensor, restored: Tensor, mask_logits: Tensor | None) -> Tensor:
    """What the official critics judge: ``Ô ⊙ M̃̂ + I ⊙ (1 − M̃̂)`` with M̃̂ the smoothed predicted mask.

    Models without an MPN give their raw output. Shape: (B, 3, H, W) each -> (B, 3, H, W).
    """
    if mask_logits is None:
        return restored
    mask = smooth_mask(mask_logits.sigmoid().to(restored.dtype))
    return restored * mask + image.to(restored.dtype) * (1.0 - mask)
