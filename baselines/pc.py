"""PC: a U-Net of partial convolutions (Liu et al., ECCV 2018) driven by the soft validity 1 − M̂.

Partial convolution (NVIDIA ``partialconv2d.py``) with a validity mask m ∈ [0, 1] (1 = valid pixel):

    out = (W ∗ (x ⊙ m)) · k² / Σm + b      then      out ⊙ m',      m' = max-pool_k(m),

where Σm is the sum of m over the k×k window (channel-averaged for multi-channel masks, so k² is the
per-channel window size) and m' is the updated mask with the convolution's stride / padding / dilation.

Soft-mask rule (our choice). The paper's update "m' = 1 if any valid pixel in the window" is kept for binary
masks and extended to soft ones by a max-pool: the new validity of a pixel is the validity of the most
valid input in its window. It is monotone, reproduces the binary rule exactly, and is what the official
VCNet PC baseline does. Thresholding (m' = [Σm > 0]) would turn every sigmoid output valid after one layer,
and clamp(Σm, 0, 1) saturates after a few soft pixels. With this rule the effective gain on the valid
inputs, k² · max(m) / Σm, never exceeds k² (k²·C for a C-channel mask, as NVIDIA's multi-channel ratio), so
tiny validities are not blown up. Where a window holds no valid input at all, the output and the new mask
are 0. The window statistics are computed in float32 even under fp16 autocast.

U-Net (``depth`` levels, base width w): encoder partial convs with kernels 7, 5, 5, 3, 3, … at stride 2,
widths w, 2w, 4w, 8w, 8w, … (capped at 8w), ReLU; decoder: nearest ×2 of features *and* mask, concatenation
with the encoder features and masks of the same level (the last level concatenates the input image and
validity), 3×3 partial conv back to that level's width, LeakyReLU(0.2); the last layer has 3 outputs and no
activation, then the image is clipped to [-1, 1] (as the official VCNet baseline). No batch norm (the VCNet
baseline has none; BN statistics of soft-masked features are ill-defined). The decoder concatenation is
handled with a multi-channel mask (each channel group keeps its own validity).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines._layers import check_inputs, same_conv


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def partial_conv_mask_update(
    mask: Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    eps: float = 1e-8,
) -> tuple[Tensor, Tensor]:
    """Renormalisation gain and updated mask of a partial convolution (see the module docstring).

    The window statistics are computed in at least float32 (outside any autocast down-cast), so ``eps`` and
    small soft validities survive fp16 training; the returned gain is bounded by k²·C and safe to cast back.

    Args:
        mask: (B, 1, H, W) or (B, C, H, W) validity in [0, 1], 1 = valid.
        kernel_size, stride, padding, dilation: those of the convolution (zero padding counts as invalid).
        eps: added to Σm before dividing.

    Returns:
        ``(gain, new_mask)``, both (B, 1, H', W') in ``mask``'s dtype: ``new_mask`` = max-pool of the
        channel-max mask, ``gain = k² / (Σm + eps) · new_mask`` with Σm the window sum of the channel-mean
        mask (0 where the window holds no valid input).
    """
    kh, kw = _pair(kernel_size)
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    m = mask.to(torch.promote_types(mask.dtype, torch.float32))
    mean = m.mean(dim=1, keepdim=True)
    peak = m.amax(dim=1, keepdim=True)
    if dilation == (1, 1) and 2 * max(padding) <= min(kh, kw):
        window_sum = F.avg_pool2d(mean, (kh, kw), stride, padding, count_include_pad=True, divisor_override=1)
        new_mask = F.max_pool2d(peak, (kh, kw), stride, padding)
    else:  # pools take no dilation or wide padding; unfold stays in the statistics dtype too
        h_out = (m.shape[-2] + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
        unfold = {"kernel_size": (kh, kw), "dilation": dilation, "padding": padding, "stride": stride}
        window_sum = F.unfold(mean, **unfold).sum(dim=1).view(m.shape[0], 1, h_out, -1)
        new_mask = F.unfold(peak, **unfold).amax(dim=1).view(m.shape[0], 1, h_out, -1)
    gain = (kh * kw) / (window_sum + eps) * new_mask
    return gain.to(mask.dtype), new_mask.to(mask.dtype)


def partial_conv2d(
    x: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    eps: float = 1e-8,
) -> tuple[Tensor, Tensor]:
    """Partial convolution with a (possibly soft) validity mask.

    ``out = (conv(x ⊙ mask, weight) · k²/(Σmask + eps) + bias) ⊙ new_mask``, ``new_mask = max-pool(mask)``.

    Args:
        x: (B, C, H, W) input features.
        mask: (B, 1, H, W) or (B, C, H, W) validity in [0, 1], 1 = valid.
        weight: (C_out, C, k, k) convolution weight.
        bias: (C_out,) or None.
        stride, padding, dilation: as in ``F.conv2d`` (zero padding).
        eps: added to the window sum before dividing.

    Returns:
        ``(out, new_mask)``: (B, C_out, H', W') and (B, 1, H', W').
    """
    _check_mask(x, mask)
    gain, new_mask = partial_conv_mask_update(mask, weight.shape[-2:], stride, padding, dilation, eps)
    out = F.conv2d(x * mask, weight, None, _pair(stride), _pair(padding), _pair(dilation)) * gain
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1) * new_mask
    return out, new_mask


def _check_mask(x: Tensor, mask: Tensor) -> None:
    if mask.ndim != 4 or mask.shape[1] not in (1, x.shape[1]) or mask.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit features of shape {tuple(x.shape)}")


class PartialConv2d(nn.Module):
    """Partial convolution layer: a plain "same"-padded ``nn.Conv2d`` (so MAC counters see it) + the renormalisation.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel size.
        stride: stride.
        dilation: dilation.
        bias: whether the convolution has a bias.
        eps: added to the window sum before dividing.

    Shape:
        x (B, in_channels, H, W), mask (B, 1 or in_channels, H, W) ->
        (out (B, out_channels, H', W'), new_mask (B, 1, H', W')), H' = ceil(H / stride)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        bias: bool = True,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        self.conv = same_conv(in_channels, out_channels, kernel_size, stride, dilation, bias)
        self.eps = eps

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        _check_mask(x, mask)
        c = self.conv
        gain, new_mask = partial_conv_mask_update(mask, c.kernel_size, c.stride, c.padding, c.dilation, self.eps)
        out = c(x * mask)  # the module call, so forward hooks fire
        if c.bias is None:
            return out * gain, new_mask
        b = c.bias.view(1, -1, 1, 1)
        return (out - b) * gain + b * new_mask, new_mask


def _cat_masked(parts: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Concatenate features and expand each group's (B, 1, H, W) mask to its channel count."""
    feats = torch.cat([f for f, _ in parts], dim=1)
    masks = torch.cat([m.expand(-1, f.shape[1], -1, -1) for f, m in parts], dim=1)
    return feats, masks


class PCGenerator(nn.Module):
    """Partial-convolution U-Net driven by the validity 1 − M̂; see the module docstring.

    Args:
        width: base width w (encoder widths w, 2w, 4w, 8w, 8w, …). ``width=24, depth=7`` gives 3,628,404
            parameters, which with the MPN (less its fusion block) lands on the paper's PC total (4.69M, −2.4%).
        depth: number of stride-2 levels (7 in Liu et al. at 256²; H and W should be ≥ 2**depth).

    Shape:
        image (B, 3, H, W) in [-1, 1], mask_prob (B, 1, H, W) in [0, 1] -> (B, 3, H, W) in [-1, 1]
    """

    def __init__(self, width: int = 24, depth: int = 7) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.width, self.depth = width, depth
        self.size_multiple = 2**depth  # one stride-2 partial conv per level
        widths = [min(width * 2**i, 8 * width) for i in range(depth)]
        kernels = [7 if i == 0 else 5 if i < 3 else 3 for i in range(depth)]
        chans = [3, *widths]  # chans[i]: channels of encoder level i (0 = the input image)
        self.encoder = nn.ModuleList(PartialConv2d(chans[i], chans[i + 1], kernels[i], stride=2) for i in range(depth))
        # decoder layer j (j = depth .. 1): upsampled level j (chans[j]) + skip level j-1 -> chans[j-1]
        self.decoder = nn.ModuleList(
            PartialConv2d(chans[j] + chans[j - 1], chans[j - 1], 3) for j in range(depth, 0, -1)
        )

    def forward(self, image: Tensor, mask_prob: Tensor) -> Tensor:
        """Return the restored image (B, 3, H, W); ``mask_prob`` is the soft damage mask, 1 = damaged."""
        check_inputs(image, mask_prob)
        skips = [(image, 1.0 - mask_prob)]
        h, m = skips[0]
        for layer in self.encoder:
            h, m = layer(h, m)
            h = F.relu(h)
            skips.append((h, m))
        skips.pop()  # the bottleneck is not a skip
        for i, layer in enumerate(self.decoder):
            skip_h, skip_m = skips.pop()
            size = skip_h.shape[-2:]
            h = F.interpolate(h, size=size, mode="nearest")
            m = F.interpolate(m, size=size, mode="nearest")
            h, m = layer(*_cat_masked([(h, m), (skip_h, skip_m)]))
            if i < len(self.decoder) - 1:
                h = F.leaky_relu(h, 0.2)
        return h.clamp(-1.0, 1.0)
