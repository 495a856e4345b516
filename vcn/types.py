"""The one output type every inpainting model in the zoo returns."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class InpaintOutput(NamedTuple):
    """What a blind inpainting model returns.

    Attributes:
        mask_logits: (B, 1, H, W) logits of the predicted damage mask (1 = damaged); ``None`` for models
            without a mask prediction network (the ``vcn-no-mpn`` ablation).
        image: (B, 3, H, W) restored image in [-1, 1].
    """

    mask_logits: Tensor | None
    image: Tensor
