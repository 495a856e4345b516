"""VCN = MPN + RIN, its presets, and the Table 3 ablations as named constructors."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor, nn

from vcn.mpn import MPN, check_image_size
from vcn.rin import RIN
from vcn.types import InpaintOutput


@dataclass(frozen=True)
class VCNConfig:
    """Architecture options of :class:`VCN`; the defaults are the paper model.

    Attributes:
        width: RIN base width (official ``g_cnum`` = 32).
        mpn_width: MPN base width; ``None`` means ``width``.
        use_mpn: build the MPN. Without it the model returns ``mask_logits=None``.
        use_pcn: PCN in the RIN blocks; ``False`` gives plain residual blocks that ignore the mask.
        fusion: concatenate the MPN bottleneck features into the RIN (needs ``use_mpn``).
        rin_input: ``"image"`` feeds the corrupted image I to the RIN (paper, official); ``"masked"`` feeds
            I ⊙ (1 − M̂) (the VCN-RM ablation).
        se_reduction: reduction ratio of the β squeeze-and-excitation.
        fixed_beta: constant β instead of the SE module (the official release's build: 0.5).
        no_mpn_mask: the constant soft mask given to the PCN when there is no MPN and no user mask.
    """

    width: int = 32
    mpn_width: int | None = None
    use_mpn: bool = True
    use_pcn: bool = True
    fusion: bool = True
    rin_input: Literal["image", "masked"] = "image"
    se_reduction: int = 8
    fixed_beta: float | None = None
    no_mpn_mask: float = 0.5


PRESETS: dict[str, VCNConfig] = {
    "paper": VCNConfig(width=32),
    "tiny": VCNConfig(width=8),
}


class VCN(nn.Module):
    """Visual consistency network: MPN predicts the damage mask, RIN inpaints guided by it.

    The RIN receives ``mask`` when one is given (the ground-truth mask in stage-1 training, or a user's mask
    for non-blind use), else ``M̂ = sigmoid(mask_logits)``. Nothing is detached unless ``detach_features`` asks:
    RIN losses reach the MPN through M̂ (inside every PCN) and through the fused features.

    Without an MPN (``use_mpn=False``) and without a user mask, a PCN-equipped RIN gets the constant soft
    mask ``no_mpn_mask`` (0.5, "no idea where the damage is"). With a spatially constant H = 0.5 the damaged
    and clean statistics are identical, T(X, H) = X ⊙ H, and PCN reduces exactly to a learned channel gain
    ``X · (1 − β/4)`` driven by the SE module: the model keeps the PCB layout and all its parameters, but
    gets no spatial guidance. (H ≡ 0 would make PCN the identity and leave the SE parameters without
    gradient.)

    Args:
        config: architecture options; see :class:`VCNConfig`.

    Shape:
        image (B, 3, H, W) in [-1, 1], H and W divisible by 4; mask (B, 1, H, W) in [0, 1] ->
        InpaintOutput(mask_logits (B, 1, H, W) or None, image (B, 3, H, W) in [-1, 1])
    """

    size_multiple = 4  # MPN and RIN downsample by 4: H and W must be divisible by it

    def __init__(self, config: VCNConfig | None = None) -> None:
        super().__init__()
        config = config or VCNConfig()
        if config.fusion and not config.use_mpn:
            raise ValueError("VCNConfig: fusion=True needs use_mpn=True (the fused features come from the MPN)")
        if config.rin_input not in ("image", "masked"):
            raise ValueError(f"VCNConfig: rin_input must be 'image' or 'masked', got {config.rin_input!r}")
        self.config = config
        self.mpn = MPN(config.mpn_width or config.width, with_features=config.fusion) if config.use_mpn else None
        fusion_channels = self.mpn.out_channels_features if (self.mpn is not None and config.fusion) else 0
        self.rin = RIN(config.width, fusion_channels, config.use_pcn, config.se_reduction, config.fixed_beta)

    @property
    def fuses_features(self) -> bool:
        """Whether the RIN receives MPN features (then :meth:`forward` accepts ``detach_features``)."""
        return self.mpn is not None and self.config.fusion

    def forward(self, image: Tensor, mask: Tensor | None = None, beta: float | None = None,
                detach_features: bool = False) -> InpaintOutput:
        """Predict the mask and restore ``image``.

        Args:
            image: (B, 3, H, W) corrupted image in [-1, 1].
            mask: optional (B, 1, H, W) mask in [0, 1] (1 = damaged) that replaces M̂ as the RIN's guide;
                the MPN still runs and its logits are still returned.
            beta: fixed β in [0, 1] for every PCN instead of the SE prediction (test-time study).
            detach_features: cut the RIN's gradient into the MPN through the fused features (stage 1 "MPN on BCE
                only", as the paper and the PyTorch reproductions train it; the official TF code does not cut it).
        """
        check_image_size(image)
        if beta is not None and not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        if mask is not None and (mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[-2:] != image.shape[-2:]):
            raise ValueError(f"mask must be (B, 1, H, W) matching the image, got {tuple(mask.shape)}")
        logits = features = None
        guide = mask
        if self.mpn is not None:
            logits, features = self.mpn(image)
            if detach_features and features is not None:
                features = features.detach()
            if guide is None:
                guide = torch.sigmoid(logits)  # M̂
        elif guide is None:
            guide = image.new_full((image.shape[0], 1, *image.shape[-2:]), self.config.no_mpn_mask)
        guide = guide.to(image.dtype)
        rin_in = image * (1.0 - guide) if self.config.rin_input == "masked" else image
        out = self.rin(rin_in, guide if self.config.use_pcn else None, features, beta)
        return InpaintOutput(mask_logits=logits, image=out)


def _build(preset: str, defaults: dict[str, object], overrides: dict[str, object]) -> VCN:
    if preset not in PRESETS:
        raise ValueError(f"unknown VCN preset {preset!r}; choose one of {sorted(PRESETS)}")
    unknown = set(overrides) - set(VCNConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown VCN option(s) {sorted(unknown)}; valid: {sorted(VCNConfig.__dataclass_fields__)}")
    return VCN(replace(PRESETS[preset], **{**defaults, **overrides}))


def vcn(preset: str = "paper", **overrides: object) -> VCN:
    """Full VCN (Table 3 "VCN full"); ``overrides`` are :class:`VCNConfig` fields."""
    return _build(preset, {}, overrides)


def vcn_ed(preset: str = "paper", **overrides: object) -> VCN:
    """Table 3 "ED": the RIN layout with plain residual blocks, no MPN, no mask use, no fusion."""
    return _build(preset, {"use_mpn": False, "use_pcn": False, "fusion": False}, overrides)


def vcn_no_mpn(preset: str = "paper", **overrides: object) -> VCN:
    """Table 3 "VCN w/o MPN": PCB RIN without MPN; PCN gets the constant mask 0.5 (see :class:`VCN`)."""
    return _build(preset, {"use_mpn": False, "fusion": False}, overrides)


def vcn_no_fusion(preset: str = "paper", **overrides: object) -> VCN:
    """Table 3 "VCN w/o fusion": no MPN→RIN feature concatenation (and no MPN dilation-4 block, unused)."""
    return _build(preset, {"fusion": False}, overrides)


def vcn_rm(preset: str = "paper", **overrides: object) -> VCN:
    """Table 3 "VCN-RM": the RIN is fed I ⊙ (1 − M̂) instead of I."""
    return _build(preset, {"rin_input": "masked"}, overrides)

