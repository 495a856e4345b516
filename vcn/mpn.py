"""Mask prediction network (MPN): corrupted image -> logits of the damage mask (1 = damaged)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from vcn.blocks import ResBlock, same_conv, upsample2x


def check_image_size(image: Tensor, multiple: int = 4) -> None:
    """Raise a one-line ``ValueError`` unless ``image`` is (B, 3, H, W) with H and W divisible by ``multiple``."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"expected an image batch of shape (B, 3, H, W), got {tuple(image.shape)}")
    h, w = image.shape[-2:]
    if h % multiple or w % multiple:
        raise ValueError(f"image height and width must be divisible by {multiple}, got {h}x{w}")


class MPN(nn.Module):
    """Mask prediction network, official TensorFlow layout (1,261,825 parameters at ``width=32``).

    Encoder: resblock 3→2w (5×5, stride 2), 2w→4w (stride 2), 4w dilation 2, 4w dilation 4. The decoder
    branches from the dilation-2 block (not the dilation-4 one) through a 3×3 conv + ELU, then nearest ×2,
    resblock 4w→2w, nearest ×2, resblock 2w→w, conv w→w/2 + ELU, conv w/2→1 (logits, no activation).
    The output of the dilation-4 block (4w channels at H/4, official ``mask_conv5_atrous``) feeds only the
    MPN→RIN feature fusion. The soft mask is ``M̂ = sigmoid(logits)`` (the official code clips the logits
    to [0, 1] instead; see SPEC §3).

    Args:
        width: base width ``w`` (official ``g_cnum`` = 32).
        with_features: build the dilation-4 block that makes the fusion features. Without it (311,680
            fewer parameters at width 32) ``forward`` returns ``features=None``; use this when nothing
            consumes the features (e.g. an MPN in front of a baseline, or VCN without fusion).

    Shape:
        image (B, 3, H, W) in [-1, 1], H and W divisible by 4 -> mask_logits (B, 1, H, W),
        features (B, 4w, H/4, W/4) or None
    """

    size_multiple = 4  # two stride-2 stages: H and W must be divisible by 4

    def __init__(self, width: int = 32, with_features: bool = True) -> None:
        super().__init__()
        w = width
        self.width = width
        self.out_channels_features = 4 * w
        self.enc1 = ResBlock(3, 2 * w, 5, stride=2)  # mask_conv2          H/2
        self.enc2 = ResBlock(2 * w, 4 * w, 3, stride=2)  # mask_conv3      H/4
        self.enc3 = ResBlock(4 * w, 4 * w, 3, dilation=2)  # mask_conv4_atrous
        # mask_conv5_atrous -> fusion features only
        self.enc4 = ResBlock(4 * w, 4 * w, 3, dilation=4) if with_features else None
        self.dec_conv = same_conv(4 * w, 4 * w, 3)  # mask_conv8 (input: enc3)
        self.dec1 = ResBlock(4 * w, 2 * w, 3)  # mask_deconv9, H/2
        self.dec2 = ResBlock(2 * w, w, 3)  # mask_deconv10, H
        self.compress = same_conv(w, max(w // 2, 1), 3)  # mask_compress_conv
        self.out = same_conv(max(w // 2, 1), 1, 3)  # mask_output

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor | None]:
        """Return ``(mask_logits, features)``; see the class docstring for shapes."""
        check_image_size(image)
        x = self.enc2(self.enc1(image))  # (B, 4w, H/4, W/4)
        x = self.enc3(x)
        features = self.enc4(x) if self.enc4 is not None else None  # (B, 4w, H/4, W/4)
        y = F.elu(self.dec_conv(x))
        y = self.dec1(upsample2x(y))  # (B, 2w, H/2, W/2)
        y = self.dec2(upsample2x(y))  # (B, w, H, W)
        y = F.elu(self.compress(y))
        return self.out(y), features
