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


def composite(image: Tensor, output: InpaintOutput) -> Tensor:
    """The official "bled" image ``Ô ⊙ M̂ + I ⊙ (1 − M̂)``: the input kept where the MPN sees no damage.

    Models without a mask prediction return their raw output. Shape: image (B, 3, H, W) in [-1, 1] ->
    (B, 3, H, W) in [-1, 1].
    """
    if output.mask_logits is None:
        return output.image
    mask = output.mask_logits.sigmoid().to(output.image.dtype)  # (B, 1, H, W), M̂
    return output.image * mask + image.to(output.image.dtype) * (1.0 - mask)
