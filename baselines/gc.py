"""GC: the DeepFill v2 generator (Yu et al., ICCV 2019) — gated convolutions in the DeepFill two-stage skeleton.

A gated convolution is one ``nn.Conv2d`` with 2·n outputs split by channel into features and gates:
``out = ELU(features) ⊙ σ(gates)`` (the paper's Gating = W_g·I, Feature = W_f·I), so a layer written with
width ``c`` in the official code lets ``c/2`` channels through. The output convolution is plain, followed by
tanh. Topology and contextual attention as in :mod:`baselines.ca`.

Where M̂ enters: stage 1 gets [I, M̂] (4 ch; official v2: [I·(1−M), 1, M]); stage 2 gets the composite
x₁·M̂ + I·(1 − M̂) alone (3 ch, as official v2); contextual attention uses M̂ resized nearest to H/4.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines._layers import same_conv
from baselines.ca import DeepFillGenerator, Layer


def gated_activation(x: Tensor, activation: Callable[[Tensor], Tensor] = F.elu) -> Tensor:
    """Split ``x`` (B, 2n, H, W) by channel into features and gates; return ``activation(features) ⊙ σ(gates)``.

    Shapes: (B, 2n, H, W) -> (B, n, H, W).
    """
    if x.shape[1] % 2:
        raise ValueError(f"gated activation needs an even channel count, got {x.shape[1]}")
    features, gates = x.chunk(2, dim=1)
    return activation(features) * torch.sigmoid(gates)


class GatedConv2d(nn.Module):
    """Gated convolution: one "same"-padded ``nn.Conv2d`` with ``2·out_channels`` outputs + :func:`gated_activation`.

    Args:
        in_channels: input channels.
        out_channels: channels that leave the layer (the convolution has twice as many).
        kernel_size: odd kernel size.
        stride: convolution stride.
        dilation: convolution dilation.
        activation: ``"elu"`` or ``"relu"`` on the feature half.

    Shape:
        (B, in_channels, H, W) -> (B, out_channels, ceil(H / stride), ceil(W / stride))
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        activation: str = "elu",
    ) -> None:
        super().__init__()
        if activation not in ("elu", "relu"):
            raise ValueError(f"activation must be 'elu' or 'relu', got {activation!r}")
        self.conv = same_conv(in_channels, 2 * out_channels, kernel_size, stride, dilation)
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        return gated_activation(self.conv(x), F.relu if self.activation == "relu" else F.elu)


def gated_block(in_channels: int, layer: Layer) -> tuple[nn.Module, int]:
    """DeepFill v2 ``gen_conv``: a convolution with ``layer.width`` outputs, half of them gates (an odd width takes
    the next even one, so that ``cnum`` need only be even)."""
    out = (layer.width + 1) // 2
    module = GatedConv2d(in_channels, out, layer.kernel_size, layer.stride, layer.dilation, layer.activation)
    return module, out


class GCGenerator(DeepFillGenerator):
    """DeepFill v2 gated-convolution generator fed [I, M̂] (``cnum=54``: 5,125,364 parameters; official 48).

    Args:
        cnum: base width, even (the c/2 layer is gated too and takes the next even width). The official v2 width
            is 48; 54 brings the MPN + GC total to the paper's 6.06M with live parameters (see ``baselines.blind``).
        fuse_k, softmax_scale: contextual attention settings, as in :class:`DeepFillGenerator`.

    Shape:
        image (B, 3, H, W) in [-1, 1], mask_prob (B, 1, H, W) in [0, 1], H and W divisible by 8
        -> (B, 3, H, W) in [-1, 1]
    """

    def __init__(self, cnum: int = 54, fuse_k: int = 3, softmax_scale: float = 10.0) -> None:
        if cnum % 2:
            raise ValueError(f"cnum must be even for gated layers, got {cnum}")
        super().__init__(
            cnum, gated_block, stage2_mask=False, output="tanh", fuse_k=fuse_k, softmax_scale=softmax_scale
        )
