from __future__ import annotations

import pytest
import torch
from torch import nn

import blindbench
from blindbench.errors import ConfigError
from blindbench.models import REGISTRY, count_macs, create_model, model_names, summarize
from vcn.types import InpaintOutput


@pytest.mark.parametrize("name", model_names())
def test_every_model_has_the_same_call_shape(name: str) -> None:
    torch.manual_seed(0)
    model = blindbench.create_model(name, preset="tiny")
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    out = model(image)
    assert isinstance(out, InpaintOutput)
    assert out.image.shape == (2, 3, 32, 32) and out.image.abs().max() <= 1 and torch.isfinite(out.image).all()
    if out.mask_logits is not None:
        assert out.mask_logits.shape == (2, 1, 32, 32) and torch.isfinite(out.mask_logits).all()
    user_mask = torch.zeros(2, 1, 32, 32)
    user_mask[..., 8:20, 8:20] = 1
    assert model(image, mask=user_mask).image.shape == (2, 3, 32, 32)


@pytest.mark.parametrize("name", [n for n, e in REGISTRY.items() if e.paper_params])
def test_paper_sizes_within_three_percent(name: str) -> None:
    summary = summarize(name, "paper")
    assert abs(summary.deviation) <= 0.03, (name, summary.params)
    assert summary.gmacs > 1.0


def test_mac_counter_on_a_hand_worked_network() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 1, stride=2))

    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    # conv1: 8 x 16 x 16 outputs x (3*3*3) = 55,296; conv2: 4 x 8 x 8 outputs x 8 = 2,048
    assert count_macs(Wrapper(), size=16, device="cpu") == 55_296 + 2_048


def test_unknown_model_or_preset_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match="unknown model 'vnc'; did you mean 'vcn'"):
        create_model("vnc")
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        create_model("vcn", preset="huge")
