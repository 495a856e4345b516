"""Robust inpainting network (RIN): encoder–decoder of probabilistic contextual blocks (PCB)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vcn.blocks import same_conv, upsample2x
from vcn.pcn import PCN


class PCB(nn.Module):
    """Probabilistic contextual block: a residual block whose second conv is followed by PCN.

    ``ELU(conv1x1(x) + PCN(conv2(ELU(conv1(x))), mask))``. With ``shortcut=False`` it is the official
    ``'old'`` context block ``ELU(PCN(conv2(ELU(conv1(x))), mask))`` (no residual path at all); with
    ``use_pcn=False`` the PCN is skipped and the block is a plain residual block (the ED ablation).

    Args:
        in_channels, out_channels, kernel_size, stride, dilation: as in :class:`vcn.blocks.ResBlock`.
        shortcut: build the 1×1 projection shortcut (always a projection, as in the official release).
        use_pcn: apply PCN after the second convolution.
        se_reduction: reduction ratio of the β squeeze-and-excitation.
        fixed_beta: constant β instead of the SE (official release: 0.5).

    Shape:
        x (B, in_channels, H, W), mask (B, 1, H', W') -> (B, out_channels, ceil(H / stride), ceil(W / stride))
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        shortcut: bool = True,
        use_pcn: bool = True,
        se_reduction: int = 8,
        fixed_beta: float | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = same_conv(in_channels, out_channels, kernel_size, stride, dilation)
        self.conv2 = same_conv(out_channels, out_channels, kernel_size, 1, dilation)
        self.pcn = PCN(out_channels, se_reduction, fixed_beta) if use_pcn else None
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride) if shortcut else None

    def forward(self, x: Tensor, mask: Tensor | None, beta_override: float | None = None) -> Tensor:
        out = self.conv2(F.elu(self.conv1(x)))
        if self.pcn is not None:
            if mask is None:
                raise ValueError("this PCB applies PCN and needs a mask, got mask=None")
            out = self.pcn(out, mask, beta_override)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.elu(out)


# (name in the official TF graph, out-channel multiple of the width, kernel, stride, dilation, shortcut)
_ENCODER = (
    ("cmp_conv1", 1, 5, 1, 1, True),
    ("cmp_conv2", 2, 3, 2, 1, True),
    ("cmp_conv21", 2, 3, 1, 1, True),
    ("cmp_conv3", 4, 3, 2, 1, True),
    ("cmp_conv31", 4, 3, 1, 1, True),
    ("cmp_conv4_atrous", 4, 3, 1, 2, True),
    ("cmp_conv5_atrous", 4, 3, 1, 2, False),  # official 'old' context block: no shortcut
    ("cmp_conv6_atrous", 4, 3, 1, 4, False),  # official 'old' context block: no shortcut
    ("cmp_conv7_atrous", 4, 3, 1, 4, True),
    ("cmp_conv8", 4, 3, 1, 1, True),
)


class RIN(nn.Module):
    """Robust inpainting network, official TensorFlow layout (2,528,067 parameters at width 32 with fixed β).

    Encoder at H, H/2, H/4 with widths w, 2w, 4w; four dilated blocks (2, 2, 4, 4) at H/4; decoder with
    nearest ×2 upsampling (4w→2w, 2w, 2w→w, w). MPN→RIN fusion follows the official code, not the paper's
    wording: the MPN bottleneck features are bilinearly upsampled (``align_corners=True``, as TF's
    ``resize_bilinear``) to H×W and concatenated with the last decoder features before the output convs
    (conv (w + fusion_channels)→w + ELU, conv w→w/2 + ELU, conv w/2→3). The output is clipped to [−1, 1]
    as in the official code (no tanh).

    Args:
        width: base width ``w`` (official 32).
        fusion_channels: channels of the MPN features fused before the output convs; 0 disables fusion.
        use_pcn: PCN inside every block (False: plain residual blocks, the ED ablation; the mask is unused).
        se_reduction: reduction ratio of the β squeeze-and-excitation.
        fixed_beta: constant β instead of the SE module (official release: 0.5).

    Shape:
        image (B, 3, H, W), mask_prob (B, 1, H, W), fusion_features (B, fusion_channels, H/4, W/4)
        -> (B, 3, H, W) in [-1, 1]
    """

    def __init__(
        self,
        width: int = 32,
        fusion_channels: int = 128,
        use_pcn: bool = True,
        se_reduction: int = 8,
        fixed_beta: float | None = None,
    ) -> None:
        super().__init__()
        w = width
        self.width = width
        self.fusion_channels = fusion_channels
        self.use_pcn = use_pcn

        def block(cin: int, cout: int, k: int = 3, s: int = 1, d: int = 1, shortcut: bool = True) -> PCB:
            return PCB(cin, cout, k, s, d, shortcut, use_pcn, se_reduction, fixed_beta)

        encoder = []
        cin = 3
        for _, mult, k, s, d, shortcut in _ENCODER:
            encoder.append(block(cin, mult * w, k, s, d, shortcut))
            cin = mult * w
        self.encoder = nn.ModuleList(encoder)
        self.dec1 = block(4 * w, 2 * w)  # cmp_deconv9, after ×2 -> H/2
        self.dec2 = block(2 * w, 2 * w)  # cmp_deconv91
        self.dec3 = block(2 * w, w)  # cmp_deconv10, after ×2 -> H
        self.dec4 = block(w, w)  # cmp_deconv101 -> xb1
        self.compress1 = same_conv(w + fusion_channels, w, 3)  # cmp_compress_conv1
        self.compress2 = same_conv(w, max(w // 2, 1), 3)  # cmp_compress_conv2
        self.out = same_conv(max(w // 2, 1), 3, 3)  # cmp_output

    def forward(
        self,
        image: Tensor,
        mask_prob: Tensor | None,
        fusion_features: Tensor | None = None,
        beta_override: float | None = None,
    ) -> Tensor:
        """Inpaint ``image`` guided by the soft mask ``mask_prob`` (1 = damaged; unused without PCN)."""
        if self.fusion_channels and fusion_features is None:
            raise ValueError(f"this RIN fuses {self.fusion_channels} MPN feature channels, got fusion_features=None")
        if not self.fusion_channels and fusion_features is not None:
            raise ValueError("this RIN was built without fusion (fusion_channels=0) but got fusion_features")
        x = image
        for blk in self.encoder:
            x = blk(x, mask_prob, beta_override)  # ends at (B, 4w, H/4, W/4)
        x = self.dec1(upsample2x(x), mask_prob, beta_override)  # (B, 2w, H/2, W/2)
        x = self.dec2(x, mask_prob, beta_override)
        x = self.dec3(upsample2x(x), mask_prob, beta_override)  # (B, w, H, W)
        x = self.dec4(x, mask_prob, beta_override)
        if fusion_features is not None:
            up = F.interpolate(fusion_features, size=x.shape[-2:], mode="bilinear", align_corners=True)
            x = torch.cat([x, up], dim=1)  # (B, w + fusion_channels, H, W)
        x = F.elu(self.compress1(x))
        x = F.elu(self.compress2(x))
        return self.out(x).clamp(-1.0, 1.0)
