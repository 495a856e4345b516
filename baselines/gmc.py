"""GMC: the generative multi-column CNN of GMCNN (Wang et al., NeurIPS 2018), fed [I, M̂].

Three columns see the same 4-channel input [I, M̂] and differ in kernel size (7×7, 5×5, 3×3). Each encodes
to H/4: k×k c → k×k/2 2c → 2c → k×k/2 4c → 4c → 4c → dilated 4c (2, 4, 8, 16) → 4c → 4c (ELU after every
conv), then returns to full resolution its own way:

- column 1 (7×7): bilinear ×4 (align corners) → 4c;
- column 2 (5×5): nearest ×2 → 3×3 2c → 5×5 2c → bilinear ×2 (align corners) → 2c;
- column 3 (3×3, first conv 5×5): nearest ×2 → 3×3 2c → 3×3 2c → nearest ×2 → 3×3 c → 3×3 c/2.

The 6.5c concatenation goes through 3×3 c/2 (ELU) → 3×3 3 → clip to [-1, 1]. This is the layout of the
official VCNet ``GMCNNModel_MEN`` (12,425,939 parameters at ``cnum=32``), with two changes: the columns see
the image (the official code reuses a variable and feeds the MPN's features instead) and the extra
dilation-32 layer the official code adds only when ``cnum > 32`` is left out. Padding is zero "same"
padding (GMCNN-PyTorch reflects, which fails when a dilation exceeds a small feature map).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines._layers import check_inputs, conv_elu


def _column(in_channels: int, c: int, k: int, first_k: int) -> nn.Sequential:
    """One GMCNN encoder column at H/4 with kernel ``k`` (first layer ``first_k``)."""
    layers = [
        conv_elu(in_channels, c, first_k),
        conv_elu(c, 2 * c, k, stride=2),
        conv_elu(2 * c, 2 * c, k),
        conv_elu(2 * c, 4 * c, k, stride=2),
        conv_elu(4 * c, 4 * c, k),
        conv_elu(4 * c, 4 * c, k),
        *[conv_elu(4 * c, 4 * c, k, dilation=d) for d in (2, 4, 8, 16)],
        conv_elu(4 * c, 4 * c, k),
        conv_elu(4 * c, 4 * c, k),
    ]
    return nn.Sequential(*layers)


class GMCGenerator(nn.Module):
    """GMCNN multi-column generator (VCNet TF layout) fed [I, M̂]; see the module docstring.

    Args:
        cnum: base width ``c`` (official 32; must be even).

    Shape:
        image (B, 3, H, W) in [-1, 1], mask_prob (B, 1, H, W) in [0, 1], H and W divisible by 4
        -> (B, 3, H, W) in [-1, 1]
    """

    size_multiple = 4  # each column downsamples twice by 2

    def __init__(self, cnum: int = 32) -> None:
        super().__init__()
        c = cnum
        self.cnum = cnum
        self.column7 = _column(4, c, 7, 7)
        self.column5 = _column(4, c, 5, 5)
        self.column3 = _column(4, c, 3, 5)
        self.up5 = nn.Sequential(conv_elu(4 * c, 2 * c, 3), conv_elu(2 * c, 2 * c, 5))
        self.up3_half = nn.Sequential(conv_elu(4 * c, 2 * c, 3), conv_elu(2 * c, 2 * c, 3))
        self.up3_full = nn.Sequential(conv_elu(2 * c, c, 3), conv_elu(c, c // 2, 3))
        self.merge = nn.Sequential(conv_elu(4 * c + 2 * c + c // 2, c // 2, 3), nn.Conv2d(c // 2, 3, 3, padding=1))

    def forward(self, image: Tensor, mask_prob: Tensor) -> Tensor:
        """Return the restored image (B, 3, H, W); ``mask_prob`` is the soft damage mask, 1 = damaged."""
        check_inputs(image, mask_prob, multiple=4)
        h, w = image.shape[-2:]
        x = torch.cat([image, mask_prob], dim=1)
        x1 = F.interpolate(self.column7(x), size=(h, w), mode="bilinear", align_corners=True)  # (B, 4c, H, W)
        x2 = F.interpolate(self.column5(x), size=(h // 2, w // 2), mode="nearest")
        x2 = F.interpolate(self.up5(x2), size=(h, w), mode="bilinear", align_corners=True)  # (B, 2c, H, W)
        x3 = F.interpolate(self.column3(x), size=(h // 2, w // 2), mode="nearest")
        x3 = F.interpolate(self.up3_half(x3), size=(h, w), mode="nearest")
        x3 = self.up3_full(x3)  # (B, c/2, H, W)
        return self.merge(torch.cat([x1, x2, x3], dim=1)).clamp(-1.0, 1.0)
