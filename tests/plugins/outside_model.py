"""An outside model for the plug-in tests: a registered tiny VCN behind a plain callable, and one that returns
only an image (a stand-in for any PyTorch repository's network)."""

import torch
from torch import nn


class ImageOnly(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.5))

    def forward(self, image):
        return image * self.scale


def build_image_only() -> nn.Module:
    return ImageOnly()


def build_tuple() -> nn.Module:
    class Pair(nn.Module):
        def forward(self, image, mask=None):
            logits = torch.zeros_like(image[:, :1]) if mask is None else mask * 20 - 10
            return logits, image

    return Pair()
