"""Tests of the baseline building blocks: contextual attention, partial convolution, gated convolution."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from baselines.ca import ContextualAttention, contextual_attention
from baselines.gc import GatedConv2d, gated_activation
from baselines.pc import PartialConv2d, partial_conv2d, partial_conv_mask_update

# --------------------------------------------------------------------------------------------------------------
# contextual attention


def _reference_contextual_attention(f, b, mask, ksize=3, rate=2, fuse_k=3, scale=10.0):
    """Per-image loop written like the official TF graph: conv2d scores, identity-kernel fuse, conv_transpose paste."""
    outs = []
    for i in range(f.shape[0]):
        fi, bi, mi = f[i : i + 1], b[i : i + 1], mask[i : i + 1]
        _, c, h, w = fi.shape
        hs, ws, k = h // rate, w // rate, 2 * rate
        bp = F.pad(bi, (rate // 2, rate - rate // 2, rate // 2, rate - rate // 2))
        raw = torch.stack(
            [bp[0, :, y * rate : y * rate + k, x * rate : x * rate + k] for y in range(hs) for x in range(ws)]
        )
        fs, bs, ms = fi[..., ::rate, ::rate], bi[..., ::rate, ::rate], mi[..., ::rate, ::rate]
        bsp = F.pad(bs, (ksize // 2,) * 4)
        wts = torch.stack([bsp[0, :, y : y + ksize, x : x + ksize] for y in range(hs) for x in range(ws)])  # (L,C,k,k)
        wts = wts / wts.flatten(1).norm(dim=1).clamp_min(1e-4).view(-1, 1, 1, 1)
        msp = F.pad(ms, (ksize // 2,) * 4)
        mm = torch.stack([msp[0, 0, y : y + ksize, x : x + ksize].mean() == 0 for y in range(hs) for x in range(ws)])
        mm = mm.to(f.dtype)
        s = F.conv2d(fs, wts, padding=ksize // 2)[0].reshape(hs * ws, hs * ws).t()  # (Lf, L)
        eye = torch.eye(fuse_k, dtype=f.dtype)[None, None]
        s = F.conv2d(s[None, None], eye, padding=fuse_k // 2)[0, 0]
        s = s.reshape(hs, ws, hs, ws).permute(1, 0, 3, 2).reshape(hs * ws, hs * ws)
        s = F.conv2d(s[None, None], eye, padding=fuse_k // 2)[0, 0]
        s = s.reshape(ws, hs, ws, hs).permute(1, 0, 3, 2).reshape(hs * ws, hs * ws)
        a = torch.softmax(s * mm * scale, dim=1) * mm  # (Lf, L)
        a = a.t().reshape(1, hs * ws, hs, ws)
        outs.append(F.conv_transpose2d(a, raw, stride=rate, padding=rate // 2) / 4.0)
    return torch.cat(outs)


def _features(seed: int, shape=(2, 4, 16, 16)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _box_masks() -> torch.Tensor:
    mask = torch.zeros(2, 1, 16, 16, dtype=torch.float64)
    mask[0, :, 4:10, 2:8] = 1.0
    mask[1, :, 8:16, 6:14] = 1.0
    return mask


def test_contextual_attention_matches_per_image_reference():
    f = _features(0).relu()
    mask = _box_masks()
    out = contextual_attention(f, f, mask)
    torch.testing.assert_close(out, _reference_contextual_attention(f, f, mask))


def test_contextual_attention_retrieves_copied_patch():
    # The hole's neighbourhood (rows/cols 4..15) has an exact copy at rows/cols 16..27; the hole holds zeros.
    x = torch.randn(1, 8, 32, 32, generator=torch.Generator().manual_seed(0))
    x[:, :, 16:28, 16:28] = x[:, :, 4:16, 4:16]
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:12, 8:12] = 1.0
    holed = x * (1 - mask)
    out = contextual_attention(holed, holed, mask)
    assert holed[..., 8:12, 8:12].abs().max() == 0
    torch.testing.assert_close(out[..., 8:12, 8:12], x[..., 8:12, 8:12], atol=1e-4, rtol=1e-4)


def test_contextual_attention_masks_do_not_mix_across_the_batch():
    f = _features(1).relu()
    mask = _box_masks()
    batched = contextual_attention(f, f, mask)
    singles = torch.cat([contextual_attention(f[i : i + 1], f[i : i + 1], mask[i : i + 1]) for i in range(2)])
    torch.testing.assert_close(batched, singles)
    # the test is not vacuous: image 1 under image 0's mask (the official code's bug) gives something else
    wrong = contextual_attention(f[1:], f[1:], mask[:1])
    assert not torch.allclose(wrong, batched[1:])


def test_contextual_attention_soft_mask_weights_patches():
    f = _features(2).relu()
    mask = _box_masks()
    out = contextual_attention(f, f, mask)
    # usability 1 - max(window): a soft mask with exactly the binary values changes nothing ...
    torch.testing.assert_close(contextual_attention(f, f, mask.clone().requires_grad_()), out)
    # ... a uniformly uncertain mask (M̂ = 0.6 > 0.5 everywhere) still attends (no threshold) ...
    flat = contextual_attention(f, f, torch.full_like(mask, 0.6))
    torch.testing.assert_close(flat, 0.4 * contextual_attention(f, f, None, softmax_scale=4.0))
    # ... and the mask receives a gradient (M̂ is not detached)
    soft = (mask * 0.9 + 0.05).requires_grad_()
    contextual_attention(f, f, soft).square().sum().backward()
    assert soft.grad is not None and soft.grad.abs().sum() > 0


def test_contextual_attention_all_hole_gives_zeros_and_module_matches():
    f = _features(3)
    out = contextual_attention(f, f, torch.ones(2, 1, 16, 16, dtype=torch.float64))
    assert torch.equal(out, torch.zeros_like(out))
    mask = _box_masks()
    torch.testing.assert_close(ContextualAttention()(f, f, mask), contextual_attention(f, f, mask))


def test_contextual_attention_gradcheck():
    f = _features(4, shape=(2, 2, 8, 8)).requires_grad_()
    b = _features(5, shape=(2, 2, 8, 8)).requires_grad_()
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.float64)
    mask[0, :, 2:4, 2:6] = 1.0
    mask[1, :, 4:8, 0:4] = 1.0
    assert torch.autograd.gradcheck(
        lambda a, c: contextual_attention(a, c, mask, softmax_scale=1.0), (f, b), fast_mode=True
    )


def test_contextual_attention_bad_input():
    f = torch.zeros(1, 4, 10, 10)
    with pytest.raises(ValueError, match="divisible by rate"):
        contextual_attention(f[..., :9, :9], f[..., :9, :9])
    with pytest.raises(ValueError, match="equal shape"):
        contextual_attention(f, f[:, :2])
    with pytest.raises(ValueError, match="mask of shape"):
        contextual_attention(f, f, torch.zeros(1, 1, 8, 8))


# --------------------------------------------------------------------------------------------------------------
# partial convolution


def test_partial_conv_hand_worked():
    # 2x2 kernel [[1, 2], [3, 4]], bias 1, stride 1, no padding, k² = 4; four windows along the row.
    x = torch.tensor([[[[1.0, 2.0, 5.0, 7.0, 9.0], [3.0, 4.0, 6.0, 8.0, 9.0]]]])
    m = torch.tensor([[[[1.0, 0.0, 0.25, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0, 0.0]]]])
    weight = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    bias = torch.tensor([1.0])
    # window 1: conv(x·m) = 1·1 + 3·(3·0.5) = 5.5, Σm = 1.5, scale 4/1.5  -> (5.5·8/3 + 1)·max m (1)    = 47/3
    # window 2: conv(x·m) = 2·(5·0.25) = 2.5,      Σm = 0.25, scale 16    -> (40 + 1)·max m (0.25)        = 10.25
    # window 3: conv(x·m) = 1·(5·0.25) = 1.25,     Σm = 0.25, scale 16    -> (20 + 1)·0.25                = 5.25
    # window 4: no valid pixel                                            -> 0, new mask 0
    out, new_mask = partial_conv2d(x, m, weight, bias)
    torch.testing.assert_close(out, torch.tensor([[[[47 / 3, 10.25, 5.25, 0.0]]]]))
    torch.testing.assert_close(new_mask, torch.tensor([[[[1.0, 0.25, 0.25, 0.0]]]]))
    gain, _ = partial_conv_mask_update(m, 2)  # k²/Σm · new mask
    torch.testing.assert_close(gain, torch.tensor([[[[4 / 1.5, 16 * 0.25, 16 * 0.25, 0.0]]]]))


def test_partial_conv_renormalisation_recovers_full_window_response():
    # On a constant image, a binary hole pattern does not change the response wherever a valid pixel is seen.
    x = torch.ones(1, 1, 6, 6)
    m = torch.ones(1, 1, 6, 6)
    m[..., 1:5, 1:4] = 0.0
    out, new_mask = partial_conv2d(x, m, torch.ones(1, 1, 3, 3), torch.tensor([0.5]), padding=1)
    expected_mask = torch.ones(1, 1, 6, 6)
    expected_mask[..., 2:4, 2] = 0.0  # the only pixels whose 3x3 window is entirely hole
    torch.testing.assert_close(new_mask, expected_mask)
    torch.testing.assert_close(out, 9.5 * expected_mask)


def test_partial_conv_multichannel_mask_counts_channels():
    # channel 0 fully valid, channel 1 fully invalid: NVIDIA's multi-channel ratio C·k²/Σm = 2
    x = torch.randn(1, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    m = torch.stack([torch.ones(5, 5), torch.zeros(5, 5)])[None]
    weight = torch.randn(3, 2, 3, 3, generator=torch.Generator().manual_seed(1))
    out, new_mask = partial_conv2d(x, m, weight)
    torch.testing.assert_close(out, 2 * F.conv2d(x[:, :1], weight[:, :1]))
    assert torch.equal(new_mask, torch.ones(1, 1, 3, 3))


@pytest.mark.parametrize(
    ("k", "stride", "padding", "dilation"), [(3, 1, 1, 1), (5, 2, 2, 1), (3, 1, 2, 2), (3, 2, 2, 2)]
)
def test_partial_conv_mask_update_matches_convolution_of_ones(k, stride, padding, dilation):
    m = torch.rand(2, 1, 9, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    m[..., :5, :5] = 0.0
    gain, new_mask = partial_conv_mask_update(m, k, stride, padding, dilation)
    window = {"stride": stride, "padding": padding, "dilation": dilation}
    window_sum = F.conv2d(m, torch.ones(1, 1, k, k, dtype=torch.float64), **window)
    peak = F.unfold(m, k, **window).amax(dim=1).view_as(window_sum)
    torch.testing.assert_close(new_mask, peak)
    torch.testing.assert_close(gain, k * k / (window_sum + 1e-8) * peak)


def test_partial_conv_half_precision_stays_finite():
    x = torch.randn(1, 2, 9, 9).half()
    m = torch.zeros(1, 1, 9, 9)
    m[..., 5:, 5:] = 1e-4  # tiny soft validities next to fully invalid windows
    m[..., 7:, 7:] = 1.0
    w, b = torch.randn(3, 2, 7, 7).half(), torch.randn(3).half()
    out, new_mask = partial_conv2d(x, m.half(), w, b, padding=3)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    assert new_mask[..., :2, :2].abs().sum() == 0 and out[..., :2, :2].abs().sum() == 0


def test_partial_conv_module_matches_function():
    layer = PartialConv2d(3, 5, 5, stride=2)
    x = torch.randn(2, 3, 12, 12)
    m = torch.rand(2, 1, 12, 12)
    out, new_mask = layer(x, m)
    ref_out, ref_mask = partial_conv2d(x, m, layer.conv.weight, layer.conv.bias, stride=2, padding=2)
    assert out.shape == (2, 5, 6, 6)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(new_mask, ref_mask)
    plain = PartialConv2d(3, 5, 3, dilation=2, bias=False)  # "same" padding 2, no bias
    assert plain.conv.bias is None and plain.conv.padding == (2, 2)
    out, new_mask = plain(x, m)
    ref_out, ref_mask = partial_conv2d(x, m, plain.conv.weight, None, padding=2, dilation=2)
    assert out.shape == (2, 5, 12, 12)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(new_mask, ref_mask)


def test_partial_conv_gradcheck_and_bad_mask():
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    m = torch.rand(1, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b, c: partial_conv2d(a, b + 0.1, c, padding=1)[0], (x, m, w), fast_mode=True
    )
    with pytest.raises(ValueError, match="does not fit"):
        PartialConv2d(2, 2)(torch.zeros(1, 2, 5, 5), torch.zeros(1, 3, 5, 5))


# --------------------------------------------------------------------------------------------------------------
# gated convolution


def test_gated_activation_splits_features_and_gates():
    x = torch.randn(2, 6, 4, 4)
    torch.testing.assert_close(gated_activation(x), F.elu(x[:, :3]) * torch.sigmoid(x[:, 3:]))
    layer = GatedConv2d(4, 3, 3, stride=2)
    y = torch.randn(1, 4, 8, 8)
    assert layer.conv.out_channels == 6
    torch.testing.assert_close(layer(y), gated_activation(layer.conv(y)))
    assert layer(y).shape == (1, 3, 4, 4)
    with pytest.raises(ValueError, match="even channel count"):
        gated_activation(torch.zeros(1, 3, 2, 2))
