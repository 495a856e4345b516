"""CA: the DeepFill v1 generator (Yu et al., CVPR 2018) — two-stage coarse-to-fine with contextual attention.

The two-stage skeleton here is shared with DeepFill v2 (``baselines.gc``), which swaps the plain ELU
convolutions for gated ones. Layout (``cnum`` = c, every conv "same"-padded, ELU unless noted):

- stage 1, input [I, M̂] (4 ch): 5×5 c → 3×3/2 2c → 2c → 3×3/2 4c → 4c → 4c → dilated 4c (2, 4, 8, 16)
  → 4c → 4c → ↑2 2c → 2c → ↑2 c → c/2 → 3 (no activation) → output function;
- stage 2, input [x₁·M̂ + I·(1 − M̂), M̂]: a hallucination encoder (5×5 c, 3×3/2 c, 2c, 3×3/2 2c, 4c, 4c,
  dilated 4c ×4) and an attention encoder (5×5 c, 3×3/2 c, 2c, 3×3/2 4c, 4c, 4c ReLU → contextual attention
  → 4c → 4c), concatenated (8c) → 4c → 4c → ↑2 2c → 2c → ↑2 c → c/2 → 3 → output function.

↑2 is nearest-neighbour upsampling followed by a 3×3 conv (``gen_deconv``). The MPN's soft mask M̂ enters
as the 4th input channel of both stages, as the blending weight of the stage-1 composite, and (resized
nearest to H/4) as the hole mask of contextual attention. Differences from the official code: zero "same"
padding is symmetric (TF pads stride-2 convs bottom/right only), the input is [I, M̂] instead of
[I·(1−M), 1, M] (the paper's MPN variant, as in the official VCNet ``InpaintCAModel_MEN``), and the
attention masks each image with its own mask (the official code used image 0's mask for the whole batch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines._layers import check_inputs, same_conv


def _diagonal_sum(scores: Tensor, k: int) -> Tensor:
    """Sum ``scores`` (B, N, M) along its diagonals over a window of ``k``: out[i, j] = Σ_d s[i+d, j+d], |d| ≤ k//2.

    This is DeepFill's "fuse" step: a 2-D convolution of the score matrix with a k×k identity kernel.
    """
    p = k // 2
    n, m = scores.shape[-2:]
    padded = F.pad(scores, (p, p, p, p))
    return sum(padded[:, d : d + n, d : d + m] for d in range(k))


def contextual_attention(
    fg: Tensor,
    bg: Tensor,
    mask: Tensor | None = None,
    ksize: int = 3,
    rate: int = 2,
    fuse_k: int = 3,
    softmax_scale: float = 10.0,
    eps: float = 1e-4,
) -> Tensor:
    """Contextual attention of DeepFill: fill every foreground position with a soft mix of background patches.

    Batched: each image attends only to its own background and is masked by its own mask (no Python loop
    over the batch). Algorithm (official ``inpaint_ops.contextual_attention``):

    1. raw 2·rate × 2·rate patches of ``bg`` at stride ``rate`` (the patches that get pasted);
    2. ``fg``, ``bg`` and ``mask`` downsampled ×1/rate (nearest); ksize×ksize matching patches of the
       downsampled ``bg`` at stride 1, each L2-normalised (norm clamped at ``eps``); each patch gets a
       usability u = 1 − (largest mask value in its ksize×ksize window);
    3. scores = ⟨fg window, normalised bg patch⟩ for every (fg position, bg patch) pair;
    4. fuse (``fuse_k`` > 1): scores summed along diagonals of the (fg × bg) score matrix in row-major, then in
       column-major order, so neighbouring fg pixels prefer neighbouring bg patches;
    5. attention = softmax(scores · u · ``softmax_scale``) · u over the bg patches;
    6. paste: the raw patches weighted by the attention, overlap-added at stride ``rate`` (transposed
       convolution) and divided by 4 (every interior pixel is covered by 2×2 patches).

    With a binary mask, u is exactly the official usability (1 iff the window mean is 0, else 0). With the MPN's
    soft M̂, u is continuous: patches that touch likely damage are down-weighted rather than cut by a threshold
    (a threshold would switch the whole attention branch off, gradients included, whenever M̂ > 0.5
    everywhere, as happens for an untrained MPN). ``mask`` is not detached. If u = 0 for every patch of an
    image (M̂ = 1 everywhere), its output is zero.

    Args:
        fg: (B, C, H, W) features to fill (DeepFill passes the same tensor as ``fg`` and ``bg``).
        bg: (B, C, H, W) features to borrow patches from.
        mask: (B, 1, H, W) hole mask at feature resolution, 1 = hole; ``None`` = nothing is a hole.
        ksize: size of the matching patches (odd).
        rate: downsampling factor for matching; the pasted patches are 2·rate wide. H and W must be
            divisible by ``rate``.
        fuse_k: size of the diagonal fuse window; ≤ 1 turns fusing off.
        softmax_scale: inverse temperature of the softmax over background patches.
        eps: lower bound of the background patch norms.

    Returns:
        (B, C, H, W) the attended features.
    """
    if fg.ndim != 4 or fg.shape != bg.shape:
        raise ValueError(f"fg and bg must be (B, C, H, W) of equal shape, got {tuple(fg.shape)} and {tuple(bg.shape)}")
    if ksize % 2 != 1:
        raise ValueError(f"ksize must be odd, got {ksize}")
    b, c, h, w = fg.shape
    if rate < 1 or h % rate or w % rate:
        raise ValueError(f"feature height and width ({h}x{w}) must be divisible by rate={rate}")
    if mask is not None and tuple(mask.shape) != (b, 1, h, w):
        raise ValueError(f"expected a mask of shape {(b, 1, h, w)}, got {tuple(mask.shape)}")
    hs, ws = h // rate, w // rate
    k_raw = 2 * rate

    # 1. raw patches to paste, TF-SAME padded: (B, C*k_raw*k_raw, L), L = hs*ws
    pad = (rate // 2, rate - rate // 2, rate // 2, rate - rate // 2)
    raw = F.unfold(F.pad(bg, pad), kernel_size=k_raw, stride=rate)

    # 2. matching patches on the 1/rate copies
    f_small = F.interpolate(fg, size=(hs, ws), mode="nearest")
    b_small = F.interpolate(bg, size=(hs, ws), mode="nearest")
    f_cols = F.unfold(f_small, kernel_size=ksize, padding=ksize // 2)  # (B, C*k*k, Lf)
    b_cols = F.unfold(b_small, kernel_size=ksize, padding=ksize // 2)  # (B, C*k*k, L)
    b_cols = b_cols / b_cols.norm(dim=1, keepdim=True).clamp_min(eps)
    if mask is None:
        usable = fg.new_ones(b, hs * ws, 1)
    else:
        mask_small = F.interpolate(mask.to(fg.dtype), size=(hs, ws), mode="nearest")
        worst = F.max_pool2d(mask_small, ksize, stride=1, padding=ksize // 2)  # largest mask value per window
        usable = (1.0 - worst).clamp(0.0, 1.0).view(b, hs * ws, 1)  # (B, L, 1)

    # 3. scores (B, L, Lf): rows = background patches, columns = foreground positions
    scores = torch.bmm(b_cols.transpose(1, 2), f_cols)

    # 4. fuse along x (row-major flattening), then along y (column-major flattening)
    if fuse_k > 1:
        scores = _diagonal_sum(scores, fuse_k)
        scores = scores.view(b, hs, ws, hs, ws).permute(0, 2, 1, 4, 3).reshape(b, hs * ws, hs * ws)
        scores = _diagonal_sum(scores, fuse_k)
        scores = scores.view(b, ws, hs, ws, hs).permute(0, 2, 1, 4, 3).reshape(b, hs * ws, hs * ws)

    # 5. softmax over background patches weighted by their usability
    attn = torch.softmax(scores * usable * softmax_scale, dim=1) * usable  # (B, L, Lf)

    # 6. paste raw patches: the adjoint of unfold (= transposed conv), then undo the SAME padding
    pasted = F.fold(
        torch.bmm(raw, attn), output_size=((hs + 1) * rate, (ws + 1) * rate), kernel_size=k_raw, stride=rate
    )
    return pasted[:, :, pad[2] : pad[2] + h, pad[0] : pad[0] + w] / 4.0


class ContextualAttention(nn.Module):
    """Module form of :func:`contextual_attention` (no parameters).

    Shape:
        fg, bg (B, C, H, W), mask (B, 1, H, W) or None -> (B, C, H, W)
    """

    def __init__(self, ksize: int = 3, rate: int = 2, fuse_k: int = 3, softmax_scale: float = 10.0) -> None:
        super().__init__()
        self.ksize, self.rate, self.fuse_k, self.softmax_scale = ksize, rate, fuse_k, softmax_scale

    def forward(self, fg: Tensor, bg: Tensor, mask: Tensor | None = None) -> Tensor:
        return contextual_attention(fg, bg, mask, self.ksize, self.rate, self.fuse_k, self.softmax_scale)

    def extra_repr(self) -> str:
        return f"ksize={self.ksize}, rate={self.rate}, fuse_k={self.fuse_k}, softmax_scale={self.softmax_scale}"


class Layer(NamedTuple):
    """One ``gen_conv`` of a DeepFill layout: ``width`` is the convolution's output count as written in the
    official code (a gated block lets half of it out), ``up`` prepends nearest ×2 upsampling (``gen_deconv``)."""

    width: int
    kernel_size: int = 3
    stride: int = 1
    dilation: int = 1
    activation: str = "elu"
    up: bool = False


BlockFactory = Callable[[int, Layer], tuple[nn.Module, int]]
"""Builds one layer: ``(in_channels, layer) -> (module, out_channels)``."""


def plain_block(in_channels: int, layer: Layer) -> tuple[nn.Module, int]:
    """DeepFill v1 ``gen_conv``: conv + ELU (or ReLU)."""
    act = nn.ReLU() if layer.activation == "relu" else nn.ELU()
    conv = same_conv(in_channels, layer.width, layer.kernel_size, layer.stride, layer.dilation)
    return nn.Sequential(conv, act), layer.width


def build_layers(block: BlockFactory, in_channels: int, layers: Sequence[Layer]) -> tuple[nn.Sequential, int]:
    """Stack ``layers`` with ``block``; return the stack and its output channel count."""
    modules: list[nn.Module] = []
    ch = in_channels
    for layer in layers:
        if layer.up:
            modules.append(nn.Upsample(scale_factor=2.0, mode="nearest"))
        module, ch = block(ch, layer)
        modules.append(module)
    return nn.Sequential(*modules), ch


def _dilated(width: int) -> list[Layer]:
    return [Layer(width, dilation=d) for d in (2, 4, 8, 16)]


def _decoder(c: int) -> list[Layer]:
    return [Layer(4 * c), Layer(4 * c), Layer(2 * c, up=True), Layer(2 * c), Layer(c, up=True), Layer(c // 2)]


class DeepFillGenerator(nn.Module):
    """The two-stage DeepFill skeleton (v1 and v2); see the module docstring for the layout.

    Contextual attention matches 3×3 patches at rate 2 in both versions (``size_multiple`` counts on the rate).

    Args:
        cnum: base width ``c``.
        block: layer factory (plain conv + ELU for v1, gated conv for v2).
        stage2_mask: feed [composite, M̂] (4 ch) to stage 2 instead of the composite alone (3 ch).
        output: ``"clamp"`` (v1: clip to [-1, 1]) or ``"tanh"`` (v2).
        fuse_k: contextual attention fuse window (official 3).
        softmax_scale: contextual attention softmax scale (official 10).

    Shape:
        image (B, 3, H, W) in [-1, 1], mask_prob (B, 1, H, W) in [0, 1], H and W divisible by 8
        -> (B, 3, H, W) in [-1, 1]
    """

    size_multiple = 8  # two stride-2 stages, then contextual attention at half that (rate 2): 1/8

    def __init__(
        self,
        cnum: int,
        block: BlockFactory,
        stage2_mask: bool = True,
        output: str = "clamp",
        fuse_k: int = 3,
        softmax_scale: float = 10.0,
    ) -> None:
        super().__init__()
        if output not in ("clamp", "tanh"):
            raise ValueError(f"output must be 'clamp' or 'tanh', got {output!r}")
        c = cnum
        self.cnum = cnum
        self.stage2_mask = stage2_mask
        self.output = output
        self.attention = ContextualAttention(ksize=3, rate=2, fuse_k=fuse_k, softmax_scale=softmax_scale)
        coarse = [Layer(c, 5), Layer(2 * c, stride=2), Layer(2 * c), Layer(4 * c, stride=2), Layer(4 * c), Layer(4 * c)]
        self.coarse, ch = build_layers(block, 4, coarse + _dilated(4 * c) + _decoder(c))
        self.coarse_out = same_conv(ch, 3, 3)
        cin2 = 4 if stage2_mask else 3
        hallucination = [Layer(c, 5), Layer(c, stride=2), Layer(2 * c), Layer(2 * c, stride=2), Layer(4 * c)]
        self.hallucination, ch_h = build_layers(block, cin2, [*hallucination, Layer(4 * c), *_dilated(4 * c)])
        attention_enc = [Layer(c, 5), Layer(c, stride=2), Layer(2 * c), Layer(4 * c, stride=2), Layer(4 * c)]
        self.attention_encoder, ch_a = build_layers(block, cin2, [*attention_enc, Layer(4 * c, activation="relu")])
        self.attention_decoder, ch_a = build_layers(block, ch_a, [Layer(4 * c), Layer(4 * c)])
        self.refine, ch = build_layers(block, ch_h + ch_a, _decoder(c))
        self.refine_out = same_conv(ch, 3, 3)

    def _squash(self, x: Tensor) -> Tensor:
        return torch.tanh(x) if self.output == "tanh" else x.clamp(-1.0, 1.0)

    def stages(self, image: Tensor, mask_prob: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(coarse, fine)``, both (B, 3, H, W) in [-1, 1]; DeepFill puts an L1 loss on both."""
        check_inputs(image, mask_prob, multiple=4 * self.attention.rate)
        coarse = self._squash(self.coarse_out(self.coarse(torch.cat([image, mask_prob], dim=1))))
        composite = coarse * mask_prob + image * (1.0 - mask_prob)
        x = torch.cat([composite, mask_prob], dim=1) if self.stage2_mask else composite
        hallucinated = self.hallucination(x)  # (B, 4c', H/4, W/4)
        feats = self.attention_encoder(x)  # (B, 4c', H/4, W/4)
        mask_small = F.interpolate(mask_prob, size=feats.shape[-2:], mode="nearest")
        attended = self.attention_decoder(self.attention(feats, feats, mask_small))
        fine = self._squash(self.refine_out(self.refine(torch.cat([hallucinated, attended], dim=1))))
        return coarse, fine

    def forward(self, image: Tensor, mask_prob: Tensor) -> Tensor:
        """Return the stage-2 image (B, 3, H, W); ``mask_prob`` is the soft damage mask, 1 = damaged."""
        return self.stages(image, mask_prob)[1]


class CAGenerator(DeepFillGenerator):
    """DeepFill v1 generator with contextual attention, fed [I, M̂] (3,599,142 parameters at ``cnum=32``).

    Args:
        cnum: base width (official 32; the blind ``ca`` paper preset uses 33, see ``baselines.blind``).
        fuse_k, softmax_scale: contextual attention settings, as in :class:`DeepFillGenerator`.

    Shape:
        image (B, 3, H, W) in [-1, 1], mask_prob (B, 1, H, W) in [0, 1], H and W divisible by 8
        -> (B, 3, H, W) in [-1, 1]
    """

    def __init__(self, cnum: int = 32, fuse_k: int = 3, softmax_scale: float = 10.0) -> None:
        super().__init__(
            cnum, plain_block, stage2_mask=True, output="clamp", fuse_k=fuse_k, softmax_scale=softmax_scale
        )
