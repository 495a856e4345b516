"""Tests for blindbench.metrics: PSNR/SSIM against scikit-image on real photos, mask metrics by hand and sklearn."""

from __future__ import annotations

import functools
import io
import math
import os

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from sklearn.metrics import average_precision_score

import blindbench.metrics as metrics
from blindbench import metrics_cpu
from blindbench.metrics import (
    PSNR_CAP_DB,
    mask_average_precision,
    mask_bce,
    mask_bce_from_logits,
    mask_f1,
    mask_iou,
    psnr,
    rgb_levels_to_y,
    ssim,
    to_uint8_levels,
)

H, W = 96, 128  # non-square on purpose


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format="JPEG", quality=quality)
    return np.array(Image.open(buffer).convert("RGB"))


def _degrade(img: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "jpeg":
        return _jpeg(img, 20)
    if kind == "blur":
        return cv2.GaussianBlur(img, (7, 7), 2.0)
    if kind == "noise":
        return np.clip(img + rng.normal(0.0, 12.0, img.shape), 0, 255).round().astype(np.uint8)
    out = img.copy()  # "hole": a flat grey box plus a pasted patch of saturated white
    out[20:60, 30:90] = 127
    out[70:90, 100:125] = 255
    return out


@pytest.fixture(scope="module")
def pairs() -> tuple[np.ndarray, np.ndarray]:
    """12 real (uint8 HxWx3) pairs: astronaut, chelsea, coffee crops vs JPEG q20, blur, noise and a pasted hole."""
    rng = np.random.default_rng(0)
    crops = [data.astronaut()[40 : 40 + H, 180 : 180 + W], data.chelsea()[60 : 60 + H, 120 : 120 + W],
             data.coffee()[100 : 100 + H, 200 : 200 + W]]  # fmt: skip
    clean, degraded = [], []
    for crop in crops:
        for kind in ("jpeg", "blur", "noise", "hole"):
            clean.append(crop)
            degraded.append(_degrade(crop, kind, rng))
    return np.stack(clean), np.stack(degraded)


def _tensor(images: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(N, H, W, 3) uint8 → (N, 3, H, W) in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).to(dtype) / 255


def _sk_ssim(a: np.ndarray, b: np.ndarray) -> float:
    channel_axis = -1 if a.ndim == 3 else None
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=255, channel_axis=channel_axis)  # fmt: skip


def _luma(images: np.ndarray) -> np.ndarray:
    """Reference rounded YIQ luma in numpy: round((299 R + 587 G + 114 B) / 1000), half to even."""
    rgb = images.astype(np.int64)
    n = 299 * rgb[..., 0] + 587 * rgb[..., 1] + 114 * rgb[..., 2]
    return np.round(n / 1000).astype(np.uint8)


@pytest.fixture(params=["compiled", "torch"])
def backend(request, monkeypatch) -> str:
    """Run a test on the compiled CPU kernels (the default on CPU) and on the torch ops (the path for GPUs)."""
    if request.param == "torch":
        monkeypatch.setattr(metrics, "_cpu_kernels", lambda: None)
    else:
        assert metrics._cpu_kernels() is not None, "numba is a dependency: the compiled kernels must import"
    return request.param


# ---------------------------------------------------------------------------------------------- images


def test_levels_round_trip_uint8(pairs):
    clean, degraded = pairs
    for images in (clean, degraded):
        levels = to_uint8_levels(_tensor(images))
        assert levels.dtype == torch.float64
        assert torch.equal(levels, _tensor(images, torch.float64).mul(255).round())
        assert np.array_equal(levels.permute(0, 2, 3, 1).numpy().astype(np.uint8), images)


def test_levels_clamp_and_round_half_even():
    # 0.5 is the only float in [0, 1] whose x * 255 is an exact tie (127.5 → 128); 0.7 * 255 = 178.49999999999997
    x = torch.tensor([-0.2, 0.0, 1 / 255, 0.25, 0.5, 0.7, 1.0, 1.3], dtype=torch.float64)
    expected = torch.tensor([0.0, 0.0, 1.0, 64.0, 128.0, 178.0, 255.0, 255.0], dtype=torch.float64)
    assert torch.equal(to_uint8_levels(x), expected)
    assert torch.equal(to_uint8_levels(x.float()), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_psnr_rgb_matches_skimage(pairs, dtype, backend):
    clean, degraded = pairs
    got = psnr(_tensor(degraded, dtype), _tensor(clean, dtype))
    want = np.array([peak_signal_noise_ratio(c, d, data_range=255) for c, d in zip(clean, degraded)])
    assert got.shape == (len(clean),)
    np.testing.assert_allclose(got.double().numpy(), want, rtol=0, atol=1e-5 if dtype == torch.float32 else 1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ssim_rgb_matches_skimage(pairs, dtype, backend):
    clean, degraded = pairs
    got = ssim(_tensor(degraded, dtype), _tensor(clean, dtype))
    want = np.array([_sk_ssim(d, c) for c, d in zip(clean, degraded)])
    assert got.shape == (len(clean),)
    assert want.min() < 0.6 and want.max() > 0.8  # the degradations span a useful range
    np.testing.assert_allclose(got.double().numpy(), want, rtol=0, atol=1e-5 if dtype == torch.float32 else 1e-10)


def test_ssim_argument_order_is_symmetric(pairs):
    clean, degraded = pairs
    a, b = _tensor(degraded, torch.float64), _tensor(clean, torch.float64)
    torch.testing.assert_close(ssim(a, b), ssim(b, a), rtol=0, atol=1e-12)


@pytest.mark.parametrize("size", [(11, 11), (11, 13), (200, 260)])
def test_ssim_matches_skimage_on_odd_sizes(size, backend):
    """11x11 is the smallest valid image (a single window); 200x260 is split into row tiles on CPU."""
    h, w = size
    img = data.astronaut()[100 : 100 + h, 150 : 150 + w]
    other = _jpeg(img, 15)
    got = ssim(_tensor(other[None], torch.float64), _tensor(img[None], torch.float64))
    np.testing.assert_allclose(got.numpy(), [_sk_ssim(other, img)], rtol=0, atol=1e-10)


def test_y_convention_matches_skimage_on_rounded_luma(pairs, backend):
    clean, degraded = pairs
    a, b = _tensor(degraded), _tensor(clean)
    y_deg, y_clean = _luma(degraded), _luma(clean)
    torch.testing.assert_close(rgb_levels_to_y(to_uint8_levels(a))[:, 0], torch.from_numpy(y_deg).double())
    want_ssim = [_sk_ssim(d, c) for c, d in zip(y_clean, y_deg)]
    want_psnr = [peak_signal_noise_ratio(c, d, data_range=255) for c, d in zip(y_clean, y_deg)]
    np.testing.assert_allclose(ssim(a, b, convention="y").double().numpy(), want_ssim, rtol=0, atol=1e-5)
    np.testing.assert_allclose(psnr(a, b, convention="y").double().numpy(), want_psnr, rtol=0, atol=1e-5)
    assert not np.allclose(want_ssim, [_sk_ssim(d, c) for c, d in zip(clean, degraded)], atol=1e-3)


def test_luma_ties_round_half_to_even_exactly():
    # 587*80 + 114*110 = 59500 → 59.5 → 60 (0.587*80 + 0.114*110 in floats is 59.4999... → 59);
    # 114*250 = 28500 → 28.5 → 28; 299*1 + 587*1 + 114*1 = 1000 → 1.
    rgb = torch.tensor([[0.0, 80, 110], [0, 0, 250], [1, 1, 1]]).T.reshape(1, 3, 1, 3)
    assert rgb_levels_to_y(rgb).flatten().tolist() == [60.0, 28.0, 1.0]


def test_reference_pair_values(backend):
    """offline_data.md "Metric libraries": astronaut 512² vs its PIL JPEG q20.

    PSNR RGB 29.3111, SSIM RGB-Gaussian 0.869075, SSIM Y(YIQ) 0.909138 (pyiqa ssim). pyiqa's psnry (31.5077)
    does not round the luma; our "y" PSNR does, which gives 31.5029 on this pair.
    """
    img = data.astronaut()
    a, b = _tensor(_jpeg(img, 20)[None], torch.float64), _tensor(img[None], torch.float64)
    assert psnr(a, b).item() == pytest.approx(29.3111, abs=1e-4)
    assert ssim(a, b).item() == pytest.approx(0.869075, abs=1e-6)
    assert ssim(a, b, convention="y").item() == pytest.approx(0.909138, abs=2e-6)
    assert psnr(a, b, convention="y").item() == pytest.approx(31.5029, abs=1e-4)


@pytest.mark.parametrize("convention", ["rgb", "y"])
def test_identical_images_give_exact_caps(pairs, convention, backend):
    clean, _ = pairs
    flat = torch.stack([torch.zeros(3, H, W), torch.ones(3, H, W), torch.full((3, H, W), 0.5)])
    for x in (_tensor(clean), flat, _tensor(clean, torch.float64)):
        s, p = ssim(x, x.clone(), convention), psnr(x, x.clone(), convention)
        assert torch.all(s == 1.0), s
        assert torch.all(p == PSNR_CAP_DB), p
        assert torch.isfinite(s).all() and torch.isfinite(p).all()
    assert PSNR_CAP_DB == 100.0


def test_fused_rounding_is_half_to_even(backend):
    """psnr/ssim round inside their loops (not via to_uint8_levels): 0.5 * 255 = 127.5 must become 128, not 127."""
    x = torch.full((1, 3, 16, 16), 0.5)
    assert psnr(x, torch.full_like(x, 128 / 255)).item() == PSNR_CAP_DB
    assert ssim(x, torch.full_like(x, 128 / 255)).item() == 1.0
    assert psnr(x, torch.full_like(x, 127 / 255)).item() == pytest.approx(20 * math.log10(255), abs=1e-5)


def _adversarial_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """Pairs where float32 filtering (even after centering each plane) is off by 1e-5 to 3e-4 SSIM: flat and
    bimodal flat images (E[x^2] - mu^2 cancels at every pixel, the same way), plus checkerboards and noise."""
    rng = np.random.default_rng(7)
    n = 40
    flat = lambda v: np.full((n, n, 3), v, np.uint8)  # noqa: E731
    halves = np.zeros((n, n, 3), np.uint8)
    halves[:, n // 2 :] = 255
    off = halves.astype(int)
    off[:, : n // 2] += 3
    off[:, n // 2 :] -= 3
    checker = ((np.indices((n, n)).sum(0) % 2) * 255).astype(np.uint8)[..., None].repeat(3, -1)
    blocks = np.where(rng.random((3, 3, 3)) < 0.5, 0, 255).repeat(14, 0).repeat(14, 1)[:n, :n].astype(np.uint8)
    noise = rng.integers(0, 256, (n, n, 3), dtype=np.uint8)
    return [
        (flat(255), flat(254)), (flat(250), flat(240)), (flat(0), flat(10)), (halves, off.astype(np.uint8)),
        (checker, np.clip(checker.astype(int) - 1, 0, 255).astype(np.uint8)),
        (blocks, np.where(blocks == 0, 1, 254).astype(np.uint8)),
        (noise, rng.integers(0, 256, (n, n, 3), dtype=np.uint8)),
    ]  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ssim_psnr_exact_on_adversarial_pairs(dtype, backend):
    pairs = _adversarial_pairs()
    a = torch.stack([_tensor(x[None], dtype)[0] for x, _ in pairs])
    b = torch.stack([_tensor(y[None], dtype)[0] for _, y in pairs])
    want_ssim = [_sk_ssim(x, y) for x, y in pairs]
    want_psnr = [peak_signal_noise_ratio(y, x, data_range=255) for x, y in pairs]
    float32 = dtype == torch.float32  # float32 output: only the final cast differs
    np.testing.assert_allclose(ssim(a, b).double().numpy(), want_ssim, rtol=0, atol=1e-7 if float32 else 1e-10)
    np.testing.assert_allclose(psnr(a, b).double().numpy(), want_psnr, rtol=0, atol=1e-5 if float32 else 1e-10)


def test_psnr_cap_and_smallest_error():
    x = torch.zeros(1, 3, 16, 16)
    y = x.clone()
    y[0, 0, 0, 0] = 1 / 255  # one level on one pixel: MSE = 1/768
    assert psnr(y, x).item() == pytest.approx(10 * math.log10(255**2 * 768), abs=1e-4)
    y[0, 0, 0, 0] = 0.4 / 255  # rounds back to 0: identical after uint8 rounding
    assert psnr(y, x).item() == PSNR_CAP_DB


def test_values_outside_unit_range_are_clamped(backend):
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    over = x.clone()
    over[:, :, :4] = over[:, :, :4] * 3 - 1  # values below 0 and above 1
    over[0, 1, 5, :3] = torch.tensor([float("inf"), -float("inf"), 1e30])
    torch.testing.assert_close(ssim(over, x), ssim(over.clamp(0, 1), x))
    torch.testing.assert_close(psnr(over, x), psnr(over.clamp(0, 1), x))


def test_empty_batch():
    x = torch.zeros(0, 3, 16, 16)
    assert ssim(x, x).shape == (0,) and psnr(x, x).shape == (0,)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_results_follow_input_dtype_and_device(dtype):
    x = torch.rand(2, 3, 24, 20, generator=torch.Generator().manual_seed(1)).to(dtype)
    y = (x.float() * 0.9).to(dtype)
    masks = (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    probs = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(3)).to(dtype)
    for value in (ssim(x, y), psnr(x, y), ssim(x, y, "y"), mask_bce(probs, masks), mask_bce_from_logits(probs, masks),
                  mask_iou(probs, masks), mask_f1(probs, masks), mask_average_precision(probs, masks)):  # fmt: skip
        assert value.shape == (2,)
        assert value.dtype == dtype
        assert value.device == x.device
        assert torch.isfinite(value).all()


# ---------------------------------------------------------------------------------------------- masks

# A hand-worked 2x2 case, batch of one: probabilities and the hard target.
PROB = torch.tensor([[[[0.9, 0.2], [0.6, 0.1]]]], dtype=torch.float64)
TARGET = torch.tensor([[[[1, 0], [0, 0]]]])


def test_bce_hand_worked():
    # target 1 at 0.9 → -log .9; target 0 at 0.2, 0.6, 0.1 → -log .8, -log .4, -log .9
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.4) + math.log(0.9)) / 4
    assert mask_bce(PROB, TARGET).item() == pytest.approx(expected, rel=1e-12)
    assert mask_bce(PROB, TARGET.bool()).item() == pytest.approx(expected, rel=1e-12)


def test_bce_from_logits_hand_worked_and_equal_to_probabilities():
    logits = torch.tensor([[[[2.0, -1.0], [0.0, 3.0]]]], dtype=torch.float64)
    target = torch.tensor([[[[1, 0], [1, 0]]]])
    # z=1: log(1 + e^-x); z=0: log(1 + e^x)
    expected = (math.log1p(math.exp(-2)) + math.log1p(math.exp(-1)) + math.log(2) + math.log1p(math.exp(3))) / 4
    assert mask_bce_from_logits(logits, target).item() == pytest.approx(expected, rel=1e-12)
    assert mask_bce(torch.sigmoid(logits), target).item() == pytest.approx(expected, rel=1e-12)
    logit_prob = torch.log(PROB / (1 - PROB))
    assert mask_bce_from_logits(logit_prob, TARGET).item() == pytest.approx(mask_bce(PROB, TARGET).item(), rel=1e-12)


def test_bce_extremes_are_finite():
    logits = torch.tensor([[[[1000.0, -1000.0]]]])
    target = torch.tensor([[[[0, 1]]]])
    assert mask_bce_from_logits(logits, target).item() == pytest.approx(1000.0)
    assert mask_bce_from_logits(-logits, target).item() == 0.0
    prob = torch.tensor([[[[1.0, 0.0]]]], dtype=torch.float64)
    assert mask_bce(prob, target).item() == pytest.approx(-math.log(1e-7), rel=1e-9)  # the eps clamp
    assert mask_bce(1 - prob, target).item() == pytest.approx(-math.log1p(-1e-7), rel=1e-9)


def test_iou_f1_hand_worked():
    # prediction at 0.5: [[1, 0], [1, 0]] vs target [[1, 0], [0, 0]] → TP 1, FP 1, FN 0
    assert mask_iou(PROB, TARGET).item() == pytest.approx(1 / 2)
    assert mask_f1(PROB, TARGET).item() == pytest.approx(2 / 3)
    # threshold 0.7: only 0.9 → perfect
    assert mask_iou(PROB, TARGET, threshold=0.7).item() == 1.0
    assert mask_f1(PROB, TARGET, threshold=0.7).item() == 1.0
    # exactly at the threshold counts as clean (strictly above is damaged)
    assert mask_iou(PROB, TARGET, threshold=0.9).item() == 0.0


def test_iou_f1_empty_masks():
    empty = torch.zeros(1, 1, 3, 3)
    full = torch.ones(1, 1, 3, 3)
    assert mask_iou(empty, empty).item() == 1.0 and mask_f1(empty, empty).item() == 1.0
    assert mask_iou(empty, full).item() == 0.0 and mask_f1(empty, full).item() == 0.0
    assert mask_iou(full, empty).item() == 0.0 and mask_f1(full, empty).item() == 0.0
    batch = torch.cat([empty, full])
    assert mask_iou(batch, batch).tolist() == [1.0, 1.0]


def test_average_precision_hand_worked():
    # 3x3, scores 0.9 .. 0.1; positives ranked 1st, 3rd and 6th → (1 + 2/3 + 3/6) / 3 = 13/18
    scores = torch.linspace(0.9, 0.1, 9, dtype=torch.float64).reshape(1, 1, 3, 3)
    target = torch.tensor([1, 0, 1, 0, 0, 1, 0, 0, 0]).reshape(1, 1, 3, 3)
    assert mask_average_precision(scores, target).item() == pytest.approx(13 / 18, rel=1e-12)
    # ties form one threshold: scores [.5 .5 .5 .1], target [0 1 1 0] → recall 1 at precision 2/3
    tied = torch.tensor([0.5, 0.5, 0.5, 0.1]).reshape(1, 1, 2, 2)
    assert mask_average_precision(tied, torch.tensor([0, 1, 1, 0]).reshape(1, 1, 2, 2)).item() == pytest.approx(2 / 3)
    # logits rank the same way
    assert mask_average_precision(torch.logit(scores), target).item() == pytest.approx(13 / 18, rel=1e-12)


def test_average_precision_no_positives_is_zero_like_sklearn():
    scores = torch.rand(1, 1, 3, 3)
    assert mask_average_precision(scores, torch.zeros(1, 1, 3, 3)).item() == 0.0


def test_average_precision_matches_sklearn():
    rng = np.random.default_rng(3)
    target = rng.random((6, 1, 12, 10)) < np.linspace(0.05, 0.8, 6)[:, None, None, None]
    scores = np.clip(target * 0.3 + rng.random(target.shape) * 0.7, 0, 1)
    scores[3:] = np.round(scores[3:] * 8) / 8  # many ties
    got = mask_average_precision(torch.from_numpy(scores), torch.from_numpy(target))
    want = [average_precision_score(t.ravel(), s.ravel()) for t, s in zip(target, scores)]
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("fn", [psnr, ssim])
def test_image_errors(fn, backend):
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match=r"pred must have shape \(B, 3, H, W\); got \(3, 16, 16\)"):
        fn(x[0], x[0])
    with pytest.raises(ValueError, match=r"target must have shape \(B, 3, H, W\); got \(2, 1, 16, 16\)"):
        fn(x, x[:, :1])
    with pytest.raises(ValueError, match=r"shapes differ: \(2, 3, 16, 16\) vs \(2, 3, 16, 12\)"):
        fn(x, x[..., :12])
    with pytest.raises(ValueError, match="floating-point image in \\[0, 1\\]; got dtype torch.uint8"):
        fn((x * 255).to(torch.uint8), x)
    with pytest.raises(ValueError, match="unknown convention 'ycbcr'"):
        fn(x, x, convention="ycbcr")
    with pytest.raises(ValueError, match="pred must be a torch.Tensor; got ndarray"):
        fn(x.numpy(), x)
    bad = x.clone()
    bad[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="contains NaN"):
        fn(bad, x)


def test_ssim_rejects_small_images():
    x = torch.rand(1, 3, 10, 40)
    with pytest.raises(ValueError, match="at least 11x11 pixels; got 10x40"):
        ssim(x, x)
    assert psnr(x, x).item() == PSNR_CAP_DB


def test_mask_errors():
    prob = torch.rand(2, 1, 4, 4)
    target = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"prob must have shape \(B, 1, H, W\); got \(2, 4, 4\)"):
        mask_bce(prob[:, 0], target[:, 0])
    with pytest.raises(ValueError, match=r"prob and target shapes differ"):
        mask_iou(prob, target[:, :, :3])
    with pytest.raises(ValueError, match=r"values in \{0, 1\}; found 0.5"):
        mask_f1(prob, target + 0.5)
    with pytest.raises(ValueError, match=r"prob must lie in \[0, 1\]; got min -1, max 1"):
        mask_bce(torch.tensor([[[[-1.0, 1.0]]]]), torch.tensor([[[[0, 1]]]]))
    with pytest.raises(ValueError, match="prob contains NaN or inf"):
        mask_iou(torch.full((1, 1, 2, 2), float("nan")), torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="logits contains NaN or inf"):
        mask_bce_from_logits(torch.full((1, 1, 2, 2), float("inf")), torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="threshold must lie in \\[0, 1\\); got 1.5"):
        mask_iou(prob, target, threshold=1.5)
    with pytest.raises(ValueError, match="eps must lie in \\(0, 0.5\\); got 0"):
        mask_bce(prob, target, eps=0)
    with pytest.raises(ValueError, match="scores must be a floating-point tensor; got dtype torch.int64"):
        mask_average_precision(target.long(), target)


def test_inputs_untouched_and_grad_inputs_accepted():
    x = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 1.2 - 0.1
    y = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x_copy, y_copy = x.clone(), y.clone()
    for convention in ("rgb", "y"):
        ssim(x, y, convention), psnr(x, y, convention)
    to_uint8_levels(x)
    assert torch.equal(x, x_copy) and torch.equal(y, y_copy)
    leaf = y.clone().requires_grad_(True)
    value = ssim(leaf, x.clamp(0, 1))
    assert not value.requires_grad and leaf.grad is None
    prob = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    prob_copy = prob.clone()
    mask_bce(prob, prob > 0.5), mask_average_precision(prob, prob > 0.3)
    assert torch.equal(prob, prob_copy)


@pytest.mark.parametrize("op_elements", [600, 5000, 1 << 30])
def test_chunking_does_not_change_values(pairs, monkeypatch, op_elements):
    """Torch path: tiny ops (one row per chunk and tile, many partial chunks) and whole-plane ops (the GPU layout)
    agree."""
    monkeypatch.setattr(metrics, "_cpu_kernels", lambda: None)
    clean, degraded = pairs
    a, b = _tensor(degraded[:3], torch.float64), _tensor(clean[:3], torch.float64)
    want = [ssim(a, b), psnr(a, b), ssim(a, b, "y"), psnr(a, b, "y")]
    monkeypatch.setattr(metrics, "_CPU_OP_ELEMENTS", op_elements)
    got = [ssim(a, b), psnr(a, b), ssim(a, b, "y"), psnr(a, b, "y")]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-10)


# ---------------------------------------------------------------------------------------------- CPU kernels


def _random_pairs(n: int, h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 3, h, w, generator=g, dtype=torch.float64)
    b = (a + 0.2 * torch.randn(n, 3, h, w, generator=g, dtype=torch.float64)).clamp(0, 1)
    b[0] = 0.5  # a flat image, where E[x²] - mu² cancels everywhere
    return a, b


def test_compiled_and_torch_paths_agree(pairs, monkeypatch):
    clean, degraded = pairs
    cases = [(_tensor(degraded), _tensor(clean)), _random_pairs(3, 37, 53, 0), _random_pairs(2, 11, 300, 1)]
    fns = [lambda a, b, f=f, c=c: f(a, b, c) for f in (ssim, psnr) for c in ("rgb", "y")]
    compiled = [[fn(a, b) for fn in fns] for a, b in cases]
    monkeypatch.setattr(metrics, "_cpu_kernels", lambda: None)
    for (a, b), want in zip(cases, compiled):
        for fn, value in zip(fns, want):
            torch.testing.assert_close(value.double(), fn(a, b).double(), rtol=0, atol=1e-12)


def test_compiled_kernels_give_the_same_bits_on_any_number_of_threads(pairs):
    clean, degraded = pairs
    x = _tensor(degraded).reshape(-1, H, W).numpy()
    y = _tensor(clean).reshape(-1, H, W).numpy()
    taps, c1, c2 = metrics._TAPS, metrics._SSIM_C1, metrics._SSIM_C2
    one = metrics_cpu.ssim_planes(x, y, True, taps, c1, c2, threads=1)
    sums = metrics_cpu.squared_error_sums(x.reshape(len(x), -1), y.reshape(len(y), -1), True, threads=1)
    for threads in (2, 5, 64):
        assert np.array_equal(metrics_cpu.ssim_planes(x, y, True, taps, c1, c2, threads), one)
        assert np.array_equal(metrics_cpu.squared_error_sums(x.reshape(len(x), -1), y.reshape(len(y), -1), True,
                                                             threads), sums)  # fmt: skip
    with pytest.raises(ValueError, match="needs 11 symmetric taps"):
        metrics_cpu.ssim_planes(x, y, True, taps[:9], c1, c2, 1)
    with pytest.raises(ValueError, match="at least 11x11; got 10x128"):
        metrics_cpu.ssim_planes(x[:, :10].copy(), y[:, :10].copy(), True, taps, c1, c2, 1)
    with pytest.raises(ValueError, match="x and y differ"):
        metrics_cpu.ssim_planes(x, y[:2], True, taps, c1, c2, 1)
    with pytest.raises(ValueError, match="y must be C-contiguous"):
        metrics_cpu.squared_error_sums(x.reshape(len(x), -1), y.reshape(len(y), -1)[:, ::2], True, 1)
    with pytest.raises(ValueError, match="x must be a 2-d float32 or float64"):
        metrics_cpu.squared_error_sums(x, y, True, 1)


def test_mixed_dtypes_and_strided_inputs_give_the_same_values(pairs):
    clean, degraded = pairs
    a, b = _tensor(degraded, torch.float64), _tensor(clean, torch.float64)
    want = [ssim(a, b), psnr(a, b), ssim(a, b, "y")]
    a_last = a.float().contiguous(memory_format=torch.channels_last)  # a model's layout
    b_view = torch.cat([b, b], dim=3)[..., :W]  # a strided view
    for pred, target in ((a_last, b_view), (a_last, b), (a, b_view.float())):
        got = [ssim(pred, target), psnr(pred, target), ssim(pred, target, "y")]
        for g, w in zip(got, want):
            torch.testing.assert_close(g.double(), w, rtol=0, atol=1e-6 if g.dtype == torch.float32 else 0)


def _planes_in_child(args, conn) -> None:
    conn.send(metrics_cpu.ssim_planes(*args).tolist())


def test_compiled_kernels_work_in_a_forked_child(pairs):
    """The parent's thread pool has no threads in a fork()ed child (say a DataLoader worker): the child makes its
    own instead of queueing work that never runs. (Only the kernels run in the child: torch's own OpenMP pool is
    not fork-safe, which is why DataLoader workers run torch on one thread.)"""
    import multiprocessing

    clean, degraded = pairs
    x = _tensor(degraded[:4]).reshape(-1, H, W).numpy()
    y = _tensor(clean[:4]).reshape(-1, H, W).numpy()
    args = (x, y, True, metrics._TAPS, metrics._SSIM_C1, metrics._SSIM_C2, 2)
    want = metrics_cpu.ssim_planes(*args).tolist()  # starts the parent's pool
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_planes_in_child, args=(args, child), daemon=True)
    proc.start()
    try:
        assert parent.poll(60), "the forked child did not answer within 60 s"
        assert parent.recv() == want
    finally:
        proc.kill()
        proc.join(10)


def test_missing_numba_falls_back_to_torch_with_a_warning(pairs, monkeypatch):
    import sys

    import blindbench

    clean, degraded = pairs
    a, b = _tensor(degraded[:2], torch.float64), _tensor(clean[:2], torch.float64)
    want = ssim(a, b)
    monkeypatch.setattr(metrics, "_cpu_kernels", functools.cache(metrics._cpu_kernels.__wrapped__))  # a fresh cache
    monkeypatch.delattr(blindbench, "metrics_cpu")
    monkeypatch.setitem(sys.modules, "blindbench.metrics_cpu", None)  # the import now raises ImportError
    with pytest.warns(UserWarning, match="numba unavailable .*slower torch path"):
        got = ssim(a, b)
    assert metrics._cpu_kernels() is None
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_one_pool_whatever_the_thread_counts_and_concurrent_callers_agree(pairs):
    import threading

    clean, degraded = pairs
    a, b = _tensor(degraded), _tensor(clean)
    want = ssim(a, b)
    previous = torch.get_num_threads()
    try:
        for threads in range(1, 9):
            torch.set_num_threads(threads)
            torch.testing.assert_close(ssim(a, b), want, rtol=0, atol=0)
    finally:
        torch.set_num_threads(previous)
    names = [t.name for t in threading.enumerate() if t.name.startswith("blindbench-metrics")]
    assert len(names) <= (os.cpu_count() or 1)
    results: list[torch.Tensor] = []
    callers = [threading.Thread(target=lambda: results.extend(ssim(a, b) for _ in range(5))) for _ in range(4)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(60)
    assert len(results) == 20 and all(torch.equal(r, want) for r in results)


def test_kernels_compile_without_a_writable_cache():
    """A read-only install and no writable cache folder: numba refuses cache=True; compile per process instead."""
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_LOCATOR_CLASSES": "UserProvidedCacheLocator", "NUMBA_CACHE_DIR": "/dev/null/x"}
    code = ("import warnings, torch; warnings.simplefilter('error'); import blindbench.metrics as m; "
            "x = torch.rand(1, 3, 16, 16); print(m.ssim(x, x).item(), m._cpu_kernels() is not None)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1.0", "True"]
