"""The registry's contract, for every registered model at its tiny preset (timm's test_models.py shape).

Shapes and range, a gradient for every parameter, the declared size multiple, a save/load round trip, and the
``mask=`` / ``beta=`` arguments. A new registry entry is tested here without a line of its own.
"""

from __future__ import annotations

import io

import pytest
import torch

from blindbench.models import create_model, get_entry, model_names
from vcn.types import InpaintOutput

NAMES = model_names()
def _model(name: str, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, "tiny").to(device)


def _image(model: torch.nn.Module, batch: int = 2) -> torch.Tensor:
    m, device = model.size_multiple, next(model.parameters()).device
    image = torch.rand(batch, 3, 3 * m, 5 * m, generator=torch.Generator().manual_seed(1)) * 2 - 1  # (B, 3, 3m, 5m)
    return image.to(device)


@pytest.mark.parametrize("name", NAMES)
def test_output_shapes_and_range(name: str, device: torch.device) -> None:
    model = _model(name, device).eval()
    image = _image(model)
    with torch.no_grad():
        out = model(image)
    assert isinstance(out, InpaintOutput)
    assert out.image.shape == image.shape and out.image.dtype == image.dtype
    assert out.image.min() >= -1 and out.image.max() <= 1 and torch.isfinite(out.image).all()
    if out.mask_logits is not None:
        assert out.mask_logits.shape == (2, 1, *image.shape[-2:]) and torch.isfinite(out.mask_logits).all()
    else:
        assert getattr(model, "mpn", None) is None  # only the ablations without an MPN predict no mask


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_gets_a_gradient(name: str, device: torch.device) -> None:
    model = _model(name, device).train()
    out = model(_image(model))
    loss = out.image.square().mean() + (out.mask_logits.mean() if out.mask_logits is not None else 0)
    loss.backward()
    # connected to the loss (a gradient that happens to be 0 at this input, a closed ReLU, still counts); no model
    # carries parameters that no loss reaches (the baselines build no MPN fusion block)
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing[:5]
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_size_multiple_is_declared_and_enough(name: str, device: torch.device) -> None:
    model = _model(name, device).eval()
    multiple = model.size_multiple
    assert isinstance(multiple, int) and multiple >= 1 and multiple & (multiple - 1) == 0  # a power of two
    for height, width in ((multiple, multiple), (3 * multiple, 2 * multiple)):
        with torch.no_grad():
            assert model(torch.zeros(1, 3, height, width, device=device)).image.shape[-2:] == (height, width)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name: str, device: torch.device) -> None:
    model = _model(name, device).eval()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(123)  # different initial weights, then the saved ones
    other = create_model(name, "tiny").to(device).eval()
    other.load_state_dict(torch.load(buffer, weights_only=True, map_location=device))
    image = _image(model, 1)
    with torch.no_grad():
        assert torch.equal(model(image).image, other(image).image)


@pytest.mark.parametrize("name", NAMES)
def test_mask_and_beta_arguments(name: str, device: torch.device) -> None:
    model = _model(name, device).eval()
    image = _image(model, 1)
    hole = torch.zeros(1, 1, *image.shape[-2:], device=device)
    hole[..., : image.shape[-2] // 2, :] = 1
    with torch.no_grad():
        blind, guided = model(image).image, model(image, mask=hole).image
        assert guided.shape == image.shape
        if getattr(model, "mpn", None) is not None:  # the given mask replaces M̂
            assert not torch.equal(blind, guided)
        assert model(image, beta=0.5).image.shape == image.shape
    with pytest.raises(ValueError):
        model(image, mask=hole[..., :-1, :])  # a mask of another size
    with pytest.raises(ValueError):
        model(image, beta=1.5)
    assert get_entry(name).table in (1, 3)
