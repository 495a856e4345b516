from __future__ import annotations

import math

import pytest
import torch

from vcn.pcn import PCN, pcn, resize_mask, weighted_mean, weighted_std


def _inputs(b: int = 2, c: int = 4, s: int = 8, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, c, s, s, generator=g, dtype=dtype) * 2 + 1
    h = torch.rand(b, 1, s, s, generator=g, dtype=dtype)
    beta = torch.rand(b, c, 1, 1, generator=g, dtype=dtype)
    return x, h, beta


def test_zero_mask_is_identity() -> None:
    x, _, beta = _inputs()
    torch.testing.assert_close(pcn(x, torch.zeros_like(x[:, :1]), beta), x)


def test_zero_beta_is_identity() -> None:
    x, h, _ = _inputs()
    torch.testing.assert_close(pcn(x, h, 0.0), x)
    torch.testing.assert_close(pcn(x, h, torch.zeros(x.shape[1])), x)


def test_statistics_are_per_sample() -> None:
    x, h, beta = _inputs()
    both = pcn(x, h, beta)
    for i in range(2):
        torch.testing.assert_close(both[i : i + 1], pcn(x[i : i + 1], h[i : i + 1], beta[i : i + 1]))


def test_literal_sigma_hand_computed() -> None:
    # y = [1, 2, 3, 4], t = [1, 1, 0, 0]: mu = (1 + 2) / (2 + eps) ~ 1.5
    # literal Eq. 6 sums (y*t - mu)^2 over all four positions: 0.25 + 0.25 + 2.25 + 2.25 = 5 -> var = 5 / 2 = 2.5
    # (the textbook weighted variance would be 0.25)
    y = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64).view(1, 1, 2, 2)
    t = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64).view(1, 1, 2, 2)
    eps = 1e-5
    mu = 3.0 / (2.0 + eps)
    var = ((1 - mu) ** 2 + (2 - mu) ** 2 + 2 * mu**2) / (2.0 + eps)
    assert weighted_mean(y, t, eps).item() == pytest.approx(mu, rel=1e-12)
    assert weighted_std(y, t, eps).item() == pytest.approx(math.sqrt(var + eps), rel=1e-12)
    assert weighted_std(y, t, eps).item() == pytest.approx(math.sqrt(2.5), rel=1e-4)


def test_hard_mask_full_beta_transfers_clean_mean() -> None:
    x, _, _ = _inputs(b=1, c=3)
    h = torch.zeros(1, 1, 8, 8)
    h[..., 2:6, 1:5] = 1.0
    out = pcn(x, h, 1.0)
    damaged = h.bool().expand_as(x)
    for c in range(3):
        clean_mean = x[0, c][~damaged[0, c]].mean()
        torch.testing.assert_close(out[0, c][damaged[0, c]].mean(), clean_mean, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(out[0, c][~damaged[0, c]], x[0, c][~damaged[0, c]])


def test_gradcheck_float64() -> None:
    x, h, beta = _inputs(b=2, c=2, s=4, dtype=torch.float64)
    for t in (x, h, beta):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(pcn, (x, h, beta), eps=1e-6, atol=1e-5)


def test_mask_is_resized_nearest() -> None:
    x, _, beta = _inputs(s=4)
    h_full = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(pcn(x, h_full, beta), pcn(x, h_full[..., ::2, ::2], beta))
    assert resize_mask(h_full, (8, 8)) is h_full


def test_function_equals_module() -> None:
    torch.manual_seed(0)
    x, h, _ = _inputs(c=16)
    module = PCN(16)
    beta = module.beta(x)
    assert beta.shape == (2, 16, 1, 1) and ((beta > 0) & (beta < 1)).all()
    torch.testing.assert_close(module(x, h), pcn(x, h, beta))
    torch.testing.assert_close(module(x, h, beta_override=0.3), pcn(x, h, 0.3))


def test_fixed_beta_module_has_no_parameters() -> None:
    x, h, _ = _inputs()
    module = PCN(4, fixed_beta=0.5)
    assert sum(p.numel() for p in module.parameters()) == 0
    torch.testing.assert_close(module(x, h), pcn(x, h, 0.5))


def test_se_reduction_8_parameter_count() -> None:
    # FC 128 -> 16 (+bias) and 16 -> 128 (+bias)
    assert sum(p.numel() for p in PCN(128).parameters()) == 128 * 16 + 16 + 16 * 128 + 128
