"""VGG19 feature extractor (up to relu4_2) with torchvision state-dict names, loaded from a local file only."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

ENV_VAR = "BLINDBENCH_VGG19"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision vgg19 ``features`` configuration up to conv4_2 (index 21); "M" = 2×2 max-pool.
_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512)
RELU3_2 = 13  # index of relu3_2 in torchvision's vgg19.features
RELU4_2 = 22  # index of relu4_2


class VGGFeatures(NamedTuple):
    """VGG19 activations used by the losses: relu3_2 (256 ch, H/4) and relu4_2 (512 ch, H/8)."""

    relu3_2: Tensor
    relu4_2: Tensor


class VGG19Features(nn.Module):
    """The first 23 layers of torchvision's ``vgg19().features`` (conv1_1 … relu4_2), same parameter names.

    Inputs are images in [−1, 1]; the ImageNet normalisation ((x + 1)/2 − mean)/std is applied inside.
    Load weights with :func:`load_vgg19`; an instance built directly is randomly initialised.

    Shape:
        (B, 3, H, W) -> VGGFeatures(relu3_2 (B, 256, H/4, W/4), relu4_2 (B, 512, H/8, W/8))
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in _CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU()]
                cin = int(v)
        self.features = nn.Sequential(*layers)  # indices 0 … 22, as torchvision
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> VGGFeatures:
        x = ((x + 1.0) / 2.0 - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        relu3_2 = x
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == RELU3_2:
                relu3_2 = x
        return VGGFeatures(relu3_2=relu3_2, relu4_2=x)


def load_vgg19(path: str | os.PathLike[str] | None = None) -> VGG19Features:
    """Build :class:`VGG19Features` from a local torchvision ``vgg19`` state-dict file (never downloads).

    Args:
        path: the ``.pth`` file (e.g. torchvision's ``vgg19-dcbb9e9d.pth``); ``None`` reads the path from the
            environment variable ``BLINDBENCH_VGG19``. Keys other than ``features.0`` … ``features.21``
            (``classifier.*``, deeper convs) are ignored.

    Returns:
        The extractor in eval mode with frozen parameters (gradients still flow to its input).

    Raises:
        FileNotFoundError: no path given and the variable unset, or the file is missing.
        ValueError: the file is not a state dict, or lacks a needed key, or a tensor has the wrong shape.
    """
    if path is None:
        path = os.environ.get(ENV_VAR)
        if not path:
            raise FileNotFoundError(f"no VGG19 weights: pass a path or set {ENV_VAR} to a torchvision vgg19 .pth file")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VGG19 weights not found at {path}; set {ENV_VAR} to a torchvision vgg19 .pth file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a loadable state-dict file ({type(exc).__name__})") from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors (got {type(state).__name__})")
    model = VGG19Features()
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise ValueError(f"{path} is not a torchvision vgg19 state dict: missing {missing[0]} ({len(missing)} keys)")
    for key, ref in own.items():
        if state[key].shape != ref.shape:
            raise ValueError(f"{path}: {key} has shape {tuple(state[key].shape)}, expected {tuple(ref.shape)}")
    model.load_state_dict({k: state[k] for k in own})
    return model.eval().requires_grad_(False)
