"""Blind versions of the baselines: the VCN mask prediction network in front of each generator (paper §4).

Paper-preset sizes, live parameters only (the MPN without its dilation-4 fusion block: 950,145 parameters at the
official width 32; paper totals in brackets):

=====  ==========================  ==========  ==========  ==================
model  generator, widths            generator   total       paper total
=====  ==========================  ==========  ==========  ==================
ca     DeepFill v1, cnum 33         3,826,823   4,776,968   4.86M (−1.71%)
gmc    GMCNN (VCNet TF), cnum 32    12,425,939  13,376,084  13.7M (−2.36%)
pc     PConv U-Net, w 24, 7 levels  3,628,404   4,578,549   4.69M (−2.38%)
gc     DeepFill v2, cnum 54         5,125,364   6,075,509   6.06M (+0.26%)
=====  ==========================  ==========  ==========  ==================

The MPN's fusion block (``mpn.enc4``, 311,680 parameters) feeds only VCN's RIN, so in front of a baseline no loss
reaches it and it is not built. The paper's totals count it, so the generators are a little wider than the
official ones to stay within 3% with live parameters: CA cnum 33 (official 32: −6.4%), PC w 24 (23: −8.7%),
GC cnum 54 (the DeepFill v2 width 48: −17.5%; 52: −5.9%; its c/2 gated layer takes the next even width, 28);
GMC keeps the official 32. Weights saved before the block was dropped load unchanged: its keys are retired
(`BlindInpainter.retired_prefixes`) and, being unreachable, never changed the output.
The ``tiny`` presets (MPN width 8; CA/GMC/GC cnum 8, PC w 8 with 4 levels) train a step on CPU at 32–64 px.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from baselines.ca import CAGenerator
from baselines.gc import GCGenerator
from baselines.gmc import GMCGenerator
from baselines.pc import PCGenerator
from vcn.mpn import MPN, check_image_size
from vcn.types import InpaintOutput


class BlindInpainter(nn.Module):
    """An MPN that predicts the damage mask, followed by a generator that inpaints guided by it.

    The generator is called as ``generator(image, mask_prob)`` with ``mask_prob`` (B, 1, H, W) in [0, 1],
    1 = damaged: the ``mask`` argument when given (the ground truth in stage-1 training, or a user's mask),
    else ``M̂ = sigmoid(mask_logits)``. Nothing is detached, so in joint training the generator's losses
    reach the MPN through M̂. The MPN always runs and its logits are always returned (for the BCE loss).

    Args:
        mpn: mask prediction network, ``image -> (mask_logits, features)``, built without its fusion features.
        generator: ``(image, mask_prob) -> image``.

    Shape:
        image (B, 3, H, W) in [-1, 1] (H, W divisible by ``size_multiple``: 8 for CA/GC, 2**depth for PC, else 4);
        mask (B, 1, H, W) in [0, 1] -> InpaintOutput(mask_logits (B, 1, H, W), image (B, 3, H, W) in [-1, 1])
    """

    retired_prefixes = ("mpn.enc4.",)
    """Parameter names that earlier versions built but no loss reached; loaders drop them from old weights."""

    def __init__(self, mpn: nn.Module, generator: nn.Module) -> None:
        super().__init__()
        self.mpn = mpn
        self.generator = generator
        # H and W must suit both nets (powers of two here, so the larger is their least common multiple)
        self.size_multiple = math.lcm(mpn.size_multiple, generator.size_multiple)

    def forward(self, image: Tensor, mask: Tensor | None = None, beta: float | None = None) -> InpaintOutput:
        """Predict the mask and restore ``image``.

        Args:
            image: (B, 3, H, W) corrupted image in [-1, 1].
            mask: optional (B, 1, H, W) mask in [0, 1] (1 = damaged) that replaces M̂ as the generator's guide.
            beta: accepted for call compatibility with VCN, checked as VCN checks it, and ignored (only VCN's PCN
                has a β).
        """
        if beta is not None and not 0.0 <= beta <= 1.0:  # the same call is the same contract for every model
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        check_image_size(image)
        if mask is not None and (mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[-2:] != image.shape[-2:]):
            raise ValueError(f"mask must be (B, 1, H, W) matching the image, got {tuple(mask.shape)}")
        logits, _ = self.mpn(image)
        guide = torch.sigmoid(logits) if mask is None else mask.to(image.dtype)
        return InpaintOutput(mask_logits=logits, image=self.generator(image, guide))


_GENERATORS: dict[str, Callable[..., nn.Module]] = {
    "ca": CAGenerator,
    "gmc": GMCGenerator,
    "pc": PCGenerator,
    "gc": GCGenerator,
}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "ca": {"paper": {"mpn_width": 32, "cnum": 33}, "tiny": {"mpn_width": 8, "cnum": 8}},
    "gmc": {"paper": {"mpn_width": 32, "cnum": 32}, "tiny": {"mpn_width": 8, "cnum": 8}},
    "pc": {"paper": {"mpn_width": 32, "width": 24, "depth": 7}, "tiny": {"mpn_width": 8, "width": 8, "depth": 4}},
    "gc": {"paper": {"mpn_width": 32, "cnum": 54}, "tiny": {"mpn_width": 8, "cnum": 8}},
}
"""Per model and preset: ``mpn_width`` plus the generator's keyword arguments."""


def _build(name: str, preset: str, overrides: dict[str, Any]) -> BlindInpainter:
    presets = PRESETS[name]
    if preset not in presets:
        close = difflib.get_close_matches(preset, presets, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown {name} preset {preset!r}; choose one of {sorted(presets)}{hint}")
    valid = {"mpn_width", *inspect.signature(_GENERATORS[name]).parameters}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"unknown {name} option(s) {unknown}; valid: {sorted(valid)}")
    options = {**presets[preset], **overrides}
    mpn_width = options.pop("mpn_width")
    return BlindInpainter(MPN(mpn_width, with_features=False), _GENERATORS[name](**options))


def ca(preset: str = "paper", **overrides: Any) -> BlindInpainter:
    """MPN + DeepFill v1 with contextual attention; ``overrides``: ``mpn_width`` or :class:`CAGenerator` arguments."""
    return _build("ca", preset, overrides)


def gmc(preset: str = "paper", **overrides: Any) -> BlindInpainter:
    """MPN + GMCNN multi-column generator; ``overrides``: ``mpn_width`` or :class:`GMCGenerator` arguments."""
    return _build("gmc", preset, overrides)


def pc(preset: str = "paper", **overrides: Any) -> BlindInpainter:
    """MPN + partial-convolution U-Net; ``overrides``: ``mpn_width`` or :class:`PCGenerator` arguments."""
    return _build("pc", preset, overrides)


def gc(preset: str = "paper", **overrides: Any) -> BlindInpainter:
    """MPN + DeepFill v2 gated convolutions; ``overrides``: ``mpn_width`` or :class:`GCGenerator` arguments."""
    return _build("gc", preset, overrides)

