from __future__ import annotations

import math

import pytest
import torch

from vcn.losses import (
    critic_loss,
    generator_adv_loss,
    id_mrf_loss,
    l1,
    mask_bce,
    mrf_loss,
    semantic_loss,
    wgan_gp_penalty,
)
from vcn.vgg import VGG19Features


def test_mask_bce_hand_computed() -> None:
    # mask [[1, 0], [0, 0]] -> tau (clean fraction) = 3/4
    # logits [[0, ln 3], [-ln 3, 0]] -> p = [[0.5, 0.75], [0.25, 0.5]]
    # L = -[0.75 * log(0.5) + 0.25 * (log(1 - 0.75) + log(1 - 0.25) + log(1 - 0.5))] / 4
    #   = -[0.75 * -0.693147 + 0.25 * (-1.386294 - 0.287682 - 0.693147)] / 4 = 1.111641 / 4 = 0.277910
    logits = torch.tensor([[0.0, math.log(3.0)], [-math.log(3.0), 0.0]]).view(1, 1, 2, 2)
    mask = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    assert mask_bce(logits, mask).item() == pytest.approx(0.277910, abs=1e-6)


def test_mask_bce_per_sample() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1, 8, 8, generator=g)
    mask = (torch.rand(3, 1, 8, 8, generator=g) > 0.6).float()
    per = mask_bce(logits, mask, reduction="none")
    assert per.shape == (3,)
    for i in range(3):
        torch.testing.assert_close(per[i], mask_bce(logits[i : i + 1], mask[i : i + 1]))
    torch.testing.assert_close(mask_bce(logits, mask), per.mean())
    with pytest.raises(ValueError, match="reduction"):
        mask_bce(logits, mask, reduction="sum")


def test_mask_bce_large_logits_finite() -> None:
    logits = torch.full((1, 1, 4, 4), 200.0)
    assert torch.isfinite(mask_bce(logits, torch.zeros_like(logits)))


def test_l1_and_wgan_terms() -> None:
    assert l1(torch.ones(2, 3), torch.zeros(2, 3)).item() == 1.0
    d_real, d_fake = torch.tensor([1.0, 3.0]), torch.tensor([0.0, -2.0])
    assert critic_loss(d_real, d_fake).item() == pytest.approx(-1.0 - 2.0)
    assert generator_adv_loss(d_fake).item() == pytest.approx(1.0)


def test_gp_linear_critic_known_norm() -> None:
    # D(x) = sum(w * x) has gradient w everywhere, so the penalty is lam * (||w|| - 1)^2 for any interpolate
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 4, 4, generator=g)

    def critic(x: torch.Tensor) -> torch.Tensor:
        return (x * w).sum(dim=(1, 2, 3))

    real, fake = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    expected = 10.0 * (w.norm() - 1.0) ** 2
    torch.testing.assert_close(wgan_gp_penalty(critic, real, fake, lam=10.0, generator=g), expected)
    mask = torch.zeros(2, 1, 4, 4)
    mask[..., :2, :] = 1.0
    expected_masked = 10.0 * ((w * mask[0]).norm() - 1.0) ** 2
    torch.testing.assert_close(wgan_gp_penalty(critic, real, fake, mask=mask, generator=g), expected_masked)


def test_gp_is_differentiable_wrt_critic() -> None:
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 1))
    real, fake = torch.randn(2, 3, 2, 2), torch.randn(2, 3, 2, 2, requires_grad=True)
    wgan_gp_penalty(critic, real, fake).backward()
    assert critic[1].weight.grad is not None and fake.grad is None


def test_mrf_loss_identical_features_is_zero_and_batched() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 16, 6, 6, generator=g), torch.randn(3, 16, 6, 6, generator=g)
    same = mrf_loss(a, a)
    assert same.shape == (3,) and same.abs().max() < 1e-4
    diff = mrf_loss(b, a)
    assert (diff > 0.1).all()
    for i in range(3):
        torch.testing.assert_close(diff[i], mrf_loss(b[i : i + 1], a[i : i + 1])[0])


@pytest.fixture(scope="module")
def vgg() -> VGG19Features:
    torch.manual_seed(0)
    return VGG19Features().eval().requires_grad_(False)


def test_id_mrf_loss(vgg: VGG19Features) -> None:
    g = torch.Generator().manual_seed(1)
    target = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    other = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    same = id_mrf_loss(vgg, target, target)
    diff = id_mrf_loss(vgg, other, target)
    assert same.item() < 0.05 and diff.item() > same.item() + 0.1
    pred = other.clone().requires_grad_(True)
    id_mrf_loss(vgg, pred, target).backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_semantic_loss(vgg: VGG19Features) -> None:
    g = torch.Generator().manual_seed(2)
    target = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    assert semantic_loss(vgg, target, target).item() == 0.0
    pred = torch.zeros(1, 3, 32, 32, requires_grad=True)
    loss = semantic_loss(vgg, pred, target)
    loss.backward()
    assert loss.item() > 0 and torch.isfinite(pred.grad).all()


def test_critic_view_is_the_smoothed_composite() -> None:
    from vcn.critics import critic_view, smooth_mask

    image, restored = torch.zeros(1, 3, 96, 96), torch.ones(1, 3, 96, 96)
    hole = torch.zeros(1, 1, 96, 96)
    hole[..., 44:52, 44:52] = 1.0
    logits = (hole * 2 - 1) * 50  # M̂ ≈ the hole
    view = critic_view(image, restored, logits)
    assert torch.allclose(view[..., 44:52, 44:52], torch.ones(1, 3, 8, 8))  # the output inside the hole
    assert float(view[..., :10, :10].max()) < 1e-12  # the input beyond the 4 × 7 px halo
    soft = smooth_mask(hole)
    assert 0 < float(soft[0, 0, 48, 54]) < 1 and float(soft[0, 0, 48, 48]) == 1.0  # a halo just outside
    assert torch.equal(critic_view(image, restored, None), restored)  # no MPN: the raw output


def test_masked_gp_ignores_gradients_outside_the_mask() -> None:
    """The official penalty: the gradient norm is taken over the damaged region only."""
    weight = torch.zeros(1, 3, 8, 8)
    weight[..., :4, :] = 1.0  # a linear critic that looks at the top half only
    critic = lambda x: (x * weight).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    bottom = torch.zeros(2, 1, 8, 8)
    bottom[..., 4:, :] = 1.0
    assert float(wgan_gp_penalty(critic, real, fake, 10.0, mask=bottom)) == pytest.approx(10.0, abs=1e-4)  # norm 0
    top = 1.0 - bottom
    norm = float(weight.square().sum().sqrt())
    assert float(wgan_gp_penalty(critic, real, fake, 10.0, mask=top)) == pytest.approx(10 * (norm - 1) ** 2)
