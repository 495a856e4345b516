from __future__ import annotations

import pytest
import torch
from torch import nn

from vcn.critics import GlobalCritic, PatchCritic, masked_average
from vcn.model import VCN, VCNConfig, vcn, vcn_ed, vcn_no_fusion, vcn_no_mpn, vcn_rm
from vcn.pcn import PCN
from vcn.types import InpaintOutput

MODELS = {"vcn": vcn, "vcn-ed": vcn_ed, "vcn-no-mpn": vcn_no_mpn, "vcn-no-fusion": vcn_no_fusion, "vcn-rm": vcn_rm}


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _image(b: int = 2, s: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, s, s, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("name", sorted(MODELS))
def test_tiny_forward_and_every_parameter_gets_gradient(name: str) -> None:
    torch.manual_seed(0)
    model = MODELS[name]("tiny")
    out = model(_image())
    assert isinstance(out, InpaintOutput)
    assert out.image.shape == (2, 3, 32, 32)
    assert torch.isfinite(out.image).all() and out.image.abs().max() <= 1.0
    has_mpn = name not in ("vcn-ed", "vcn-no-mpn")
    assert (out.mask_logits is not None) == has_mpn
    loss = out.image.square().mean()
    if has_mpn:
        assert out.mask_logits.shape == (2, 1, 32, 32) and torch.isfinite(out.mask_logits).all()
        loss = loss + out.mask_logits.mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    # every gradient is non-zero, except inside an SE module whose few hidden ReLUs may all be inactive at
    # init (its output bias, i.e. beta itself, always gets one)
    zero = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert all(".se.fc1." in n or ".se.fc2.weight" in n for n in zero), zero


def test_paper_parameter_counts_on_meta() -> None:
    with torch.device("meta"):
        full = vcn("paper")
        official = vcn("paper", fixed_beta=0.5)
        models = {name: f("paper") for name, f in MODELS.items()}
    assert n_params(full.mpn) == 1_261_825
    assert n_params(official) == 3_789_892  # the official TF build (fixed beta = 0.5)
    assert n_params(official.rin) == 2_528_067
    assert n_params(full) == 3_824_832  # + SE beta (ratio 8) in all 14 PCBs
    for name in ("vcn", "vcn-rm"):
        assert abs(n_params(models[name]) / 3.79e6 - 1) < 0.03, name
    assert n_params(models["vcn-no-fusion"]) == 3_824_832 - 311_680 - 128 * 32 * 9  # no MPN d4 block, no fusion
    assert n_params(models["vcn-ed"]) == 2_491_203
    assert n_params(models["vcn-no-mpn"]) == 2_526_143


def test_joint_path_sends_gradient_into_mpn() -> None:
    torch.manual_seed(0)
    model = vcn("tiny")
    model(_image()).image.mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.mpn.parameters())


def test_gradient_reaches_mpn_through_the_mask_alone() -> None:
    torch.manual_seed(0)
    model = vcn("tiny", fusion=False)
    model(_image()).image.mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.mpn.parameters())


def test_mask_override_is_used_by_rin() -> None:
    torch.manual_seed(0)
    model = vcn("tiny").eval()
    image = _image()
    with torch.no_grad():
        out = model(image)
        same = model(image, mask=torch.sigmoid(out.mask_logits))
        zeros = model(image, mask=torch.zeros(2, 1, 32, 32))
        ones = model(image, mask=torch.ones(2, 1, 32, 32))
    torch.testing.assert_close(same.image, out.image)
    torch.testing.assert_close(zeros.mask_logits, out.mask_logits)  # the MPN is unaffected
    assert (zeros.image - ones.image).abs().max() > 1e-4
    with pytest.raises(ValueError, match="mask must be"):
        model(image, mask=torch.zeros(2, 1, 16, 16))


def test_beta_zero_leaves_pcn_features_unnormalised() -> None:
    torch.manual_seed(0)
    model = vcn("tiny")
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        seen.append((args[0], output))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, PCN)]
    model(_image(), beta=0.0)
    for h in handles:
        h.remove()
    assert len(seen) == 14
    for x, y in seen:
        torch.testing.assert_close(y, x)
    seen.clear()
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, PCN)]
    model(_image(), beta=1.0)
    assert any((y - x).abs().max() > 1e-3 for x, y in seen)


def test_vcn_rm_feeds_masked_image() -> None:
    torch.manual_seed(0)
    model = vcn_rm("tiny")
    captured: list[torch.Tensor] = []
    model.rin.register_forward_pre_hook(lambda m, args: captured.append(args[0]))
    image = _image()
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., 8:20, 4:12] = 1.0
    model(image, mask=mask)
    torch.testing.assert_close(captured[0], image * (1 - mask))


def test_ed_ignores_mask_and_no_mpn_uses_it() -> None:
    torch.manual_seed(0)
    image, zeros, ones = _image(), torch.zeros(2, 1, 32, 32), torch.ones(2, 1, 32, 32)
    ed, no_mpn = vcn_ed("tiny"), vcn_no_mpn("tiny")
    with torch.no_grad():
        torch.testing.assert_close(ed(image, mask=zeros).image, ed(image, mask=ones).image)
        torch.testing.assert_close(ed(image).image, ed(image, mask=ones).image)
        half = torch.full((2, 1, 32, 32), 0.5)
        torch.testing.assert_close(no_mpn(image).image, no_mpn(image, mask=half).image)
        assert (no_mpn(image, mask=zeros).image - no_mpn(image).image).abs().max() > 1e-5


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match="unknown VCN preset 'huge'"):
        vcn("huge")
    with pytest.raises(ValueError, match="unknown VCN option"):
        vcn("tiny", widht=4)
    with pytest.raises(ValueError, match="fusion=True needs use_mpn"):
        VCN(VCNConfig(use_mpn=False))
    with pytest.raises(ValueError, match="divisible by 4"):
        vcn("tiny")(torch.zeros(1, 3, 30, 30))
    with pytest.raises(ValueError, match="beta must be in"):
        vcn("tiny")(torch.zeros(1, 3, 32, 32), beta=1.5)


def test_meta_device_forward() -> None:
    with torch.device("meta"):
        model = vcn("paper")
        out = model(torch.empty(1, 3, 256, 256))
    assert out.image.shape == (1, 3, 256, 256) and out.image.device.type == "meta"


def test_critics_official_counts_and_shapes() -> None:
    with torch.device("meta"):
        assert n_params(GlobalCritic()) == 2_733_441
        assert n_params(PatchCritic()) == 4_319_361
    torch.manual_seed(0)
    glob, patch = GlobalCritic(width=8, image_size=64), PatchCritic(width=8)
    image = _image(s=64)
    mask = torch.zeros(2, 1, 64, 64)
    mask[0, :, :20, :20] = 1.0
    assert glob(image).shape == (2,)
    assert patch(image, mask).shape == (2,) and patch(image).shape == (2,)
    with pytest.raises(ValueError, match="built for 64"):
        glob(_image(s=32))


def test_masked_average() -> None:
    scores = torch.arange(4.0).view(1, 1, 2, 2).repeat(2, 1, 1, 1)  # [[0, 1], [2, 3]]
    mask = torch.zeros(2, 1, 8, 8)
    mask[0, :, 0, 5] = 1.0  # pools to the top-right cell only
    # sample 0: only the cell with score 1; sample 1: empty mask -> plain mean 1.5
    torch.testing.assert_close(masked_average(scores, mask), torch.tensor([1.0, 1.5]))
    torch.testing.assert_close(masked_average(scores, None), torch.tensor([1.5, 1.5]))
