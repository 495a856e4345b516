"""Small layer helpers shared by the baseline generators (plain ``nn.Conv2d`` so hook-based MAC counters see them)."""

from __future__ import annotations

from torch import Tensor, nn

from vcn.blocks import same_conv
from vcn.mpn import check_image_size

__all__ = ["check_inputs", "conv_elu", "same_conv"]


def conv_elu(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1
) -> nn.Sequential:
    """``same_conv`` followed by ELU (the DeepFill / GMCNN ``gen_conv``)."""
    return nn.Sequential(same_conv(in_channels, out_channels, kernel_size, stride, dilation), nn.ELU())


def check_inputs(image: Tensor, mask_prob: Tensor, multiple: int = 1) -> None:
    """Raise a one-line ``ValueError`` unless ``image`` is (B, 3, H, W), ``mask_prob`` is (B, 1, H, W), and
    H, W are divisible by ``multiple``."""
    check_image_size(image, multiple)
    b, _, h, w = image.shape
    if tuple(mask_prob.shape) != (b, 1, h, w):
        raise ValueError(f"expected a mask of shape {(b, 1, h, w)}, got {tuple(mask_prob.shape)}")
