"""Small layer helpers shared by the baseline generators (plain ``nn.Conv2d`` so hook-based MAC counters see them)."""

from __future__ import annotations

from torch import Tensor, nn


def same_conv(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1
) -> nn.Conv2d:
    """A plain ``nn.Conv2d`` with symmetric "same" zero padding ``dilation * (k - 1) // 2`` (odd kernels).

    Output size is ``ceil(input / stride)`` for even inputs, like TensorFlow's SAME padding (which puts the
    extra pixel of a stride-2 convolution at the bottom/right instead; parameter counts are identical).
    """
    return nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=dilation * (kernel_size - 1) // 2,
        dilation=dilation,
    )


def conv_elu(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1
) -> nn.Sequential:
    """``same_conv`` followed by ELU (the DeepFill / GMCNN ``gen_conv``)."""
    return nn.Sequential(same_conv(in_channels, out_channels, kernel_size, stride, dilation), nn.ELU())


def check_inputs(image: Tensor, mask_prob: Tensor, multiple: int = 1) -> None:
    """Raise a one-line ``ValueError`` unless ``image`` is (B, 3, H, W), ``mask_prob`` is (B, 1, H, W), and
    H, W are divisible by ``multiple``."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"expected an image batch of shape (B, 3, H, W), got {tuple(image.shape)}")
    b, _, h, w = image.shape
    if tuple(mask_prob.shape) != (b, 1, h, w):
        raise ValueError(f"expected a mask of shape {(b, 1, h, w)}, got {tuple(mask_prob.shape)}")
    if h % multiple or w % multiple:
        raise ValueError(f"image height and width must be divisible by {multiple}, got {h}x{w}")
