"""Convolution helpers and the residual block shared by the MPN and the RIN.

The layout follows the official TensorFlow release (``net/ops.py`` ``resblock``): two k×k convolutions with
ELU in between, a 1×1 projection shortcut that is *always* present (even when the channel count and stride
would allow an identity), and an ELU after the sum. No normalisation anywhere, biases on.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def same_conv(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1, bias: bool = True
) -> nn.Conv2d:
    """A plain ``nn.Conv2d`` with "same" padding (odd kernels): output size = ceil(input / stride).

    TensorFlow's SAME padding puts the extra pixel of a stride-2 convolution at the bottom/right; here the
    padding is symmetric (``dilation * (k - 1) // 2``), which shifts the sampling grid by half a pixel at
    stride 2 but gives the same output size and the same parameter count.
    """
    padding = dilation * (kernel_size - 1) // 2
    return nn.Conv2d(
        in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=bias
    )


def upsample2x(x: Tensor) -> Tensor:
    """Nearest-neighbour ×2 upsampling (the official decoders' ``resize_nearest_neighbor``)."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


class ResBlock(nn.Module):
    """Residual block of the official release: ``ELU(conv1x1(x) + conv2(ELU(conv1(x))))``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: kernel of both k×k convolutions.
        stride: stride of the first convolution and of the shortcut.
        dilation: dilation of both k×k convolutions.

    Shape:
        (B, in_channels, H, W) -> (B, out_channels, ceil(H / stride), ceil(W / stride))
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1
    ) -> None:
        super().__init__()
        self.conv1 = same_conv(in_channels, out_channels, kernel_size, stride, dilation)
        self.conv2 = same_conv(out_channels, out_channels, kernel_size, 1, dilation)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(F.elu(self.conv1(x)))
        return F.elu(self.shortcut(x) + out)
