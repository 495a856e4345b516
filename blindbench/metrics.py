"""Evaluation metrics with pinned conventions (SPEC §7): PSNR and SSIM on uint8-rounded images, mask quality.

Everything here is a pure function on batched torch tensors. Inputs may live on any device and have any
floating dtype; the arithmetic runs in float64 on the input's device, and results come back as a (B,) tensor
in the input's dtype on the input's device (one value per image, ready for per-sample CSV rows).

Image conventions (``convention=``):

- ``"rgb"`` (the headline numbers): prediction and target are each rounded to uint8 levels
  (:func:`to_uint8_levels`), the three RGB channels are compared with data range 255. SSIM is Wang et al.:
  11x11 Gaussian window (sigma 1.5, scipy's radius ``int(3.5 * 1.5 + 0.5) = 5``, weights normalised to sum 1),
  K1 = 0.01, K2 = 0.03, population (co)variances, evaluated only where the window lies inside the image (a
  5-pixel border is dropped), averaged over that region and then over the three channels. This equals
  ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=255, channel_axis=-1)`` on the uint8 arrays: scikit-image filters with ``mode='reflect'`` and then
  crops 5 pixels per side, and the kept pixels never see the reflected border, so it is the same "valid"
  computation.
- ``"y"`` (pyiqa's ``ssim``/``psnry`` style): after rounding to RGB levels, luma Y of YIQ is formed and rounded
  again, ``Y = round((299 R + 587 G + 114 B) / 1000)`` (0.299/0.587/0.114, no 16-235 offset, round half to even,
  computed exactly); SSIM/PSNR are then taken on that single channel with data range 255. pyiqa computes the
  same luma from the float input in float32 before rounding, so the two can differ only where the luma lies
  within float32 noise of a half level.

PSNR is ``min(PSNR_CAP_DB, 10 log10(255^2 / MSE))`` with the MSE over all compared pixels and channels;
identical images (MSE = 0) give exactly ``PSNR_CAP_DB`` = 100 dB rather than inf.

Mask conventions: predictions are (B, 1, H, W) probabilities (or logits where the name says so), targets the
hard mask M as (B, 1, H, W) with values in {0, 1} (any dtype, bool included).

- :func:`mask_bce_from_logits` is the official test metric (TF ``sigmoid_cross_entropy_with_logits``, unweighted,
  mean over pixels); :func:`mask_bce` is the same on probabilities, clamped to ``[BCE_EPS, 1 - BCE_EPS]`` so a
  confidently wrong pixel costs at most ``-log(1e-7) ≈ 16.1`` instead of inf.
- :func:`mask_iou` and :func:`mask_f1` binarise with ``prob > threshold`` (0.5 by default, as torchmetrics);
  when prediction and target are both empty they return 1.0 (perfect agreement), never NaN.
- :func:`mask_average_precision` is scikit-learn's step-wise ``average_precision_score`` per image (ties in the
  scores form one threshold); an image whose target has no positive pixel gets 0.0, as scikit-learn returns.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "BCE_EPS",
    "CONVENTIONS",
    "DATA_RANGE",
    "PSNR_CAP_DB",
    "SSIM_K1",
    "SSIM_K2",
    "SSIM_SIGMA",
    "SSIM_WINDOW",
    "mask_average_precision",
    "mask_bce",
    "mask_bce_from_logits",
    "mask_f1",
    "mask_iou",
    "psnr",
    "rgb_levels_to_y",
    "ssim",
    "to_uint8_levels",
]

CONVENTIONS = ("rgb", "y")
DATA_RANGE = 255.0
PSNR_CAP_DB = 100.0
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
_SSIM_TRUNCATE = 3.5  # scikit-image's value: radius int(3.5 * 1.5 + 0.5) = 5, an 11-tap window
_SSIM_RADIUS = int(_SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
SSIM_WINDOW = 2 * _SSIM_RADIUS + 1
BCE_EPS = 1e-7

# MSE below this floor maps to more than PSNR_CAP_DB; clamping to it keeps log10 finite.
_PSNR_MSE_FLOOR = DATA_RANGE**2 * 10.0 ** (-PSNR_CAP_DB / 10.0)
# Elements per filtered map per step. On CPU a step's buffers (about 12 maps of this size in float64) stay in
# the L2 caches, which makes the shift-and-add filter about twice as fast as whole-batch tensors.
_CPU_TILE_ELEMENTS = 1 << 15
_DEVICE_TILE_ELEMENTS = 1 << 22


def _gaussian_weights() -> list[float]:
    """The 11 normalised Gaussian taps, computed as scipy.ndimage's ``_gaussian_kernel1d``."""
    taps = [math.exp(-0.5 / (SSIM_SIGMA * SSIM_SIGMA) * float(k * k)) for k in range(-_SSIM_RADIUS, _SSIM_RADIUS + 1)]
    total = math.fsum(taps)
    return [t / total for t in taps]


_WEIGHTS = _gaussian_weights()


def _tile_elements(device: torch.device) -> int:
    return _CPU_TILE_ELEMENTS if device.type == "cpu" else _DEVICE_TILE_ELEMENTS


# ---------------------------------------------------------------------------------------------- validation


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _check_tensor(value: object, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor; got {type(value).__name__}")
    return value


def _check_images(pred: object, target: object, convention: str, min_size: int) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; expected one of {', '.join(map(repr, CONVENTIONS))}")
    for name, value in (("pred", pred), ("target", target)):
        t = _check_tensor(value, name)
        if t.ndim != 4 or t.shape[1] != 3:
            raise ValueError(f"{name} must have shape (B, 3, H, W); got {_shape(t)}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point image in [0, 1]; got dtype {t.dtype}")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {_shape(pred)} vs {_shape(target)}")
    if pred.device != target.device:
        raise ValueError(f"pred and target are on different devices: {pred.device} vs {target.device}")
    h, w = pred.shape[-2:]
    if h < min_size or w < min_size:
        raise ValueError(f"images must be at least {min_size}x{min_size} pixels; got {h}x{w}")


def _check_masks(pred: object, target: object, pred_name: str) -> torch.Tensor:
    """Validate a (B, 1, H, W) prediction and hard target; return the target as float64 on pred's device."""
    p = _check_tensor(pred, pred_name)
    t = _check_tensor(target, "target")
    if p.ndim != 4 or p.shape[1] != 1:
        raise ValueError(f"{pred_name} must have shape (B, 1, H, W); got {_shape(p)}")
    if not p.is_floating_point():
        raise ValueError(f"{pred_name} must be a floating-point tensor; got dtype {p.dtype}")
    if t.shape != p.shape:
        raise ValueError(f"{pred_name} and target shapes differ: {_shape(p)} vs {_shape(t)}")
    if t.device != p.device:
        raise ValueError(f"{pred_name} and target are on different devices: {p.device} vs {t.device}")
    t64 = t.to(torch.float64)
    bad = (t64 != 0) & (t64 != 1)
    if bool(bad.any()):
        raise ValueError(f"target must be a hard mask with values in {{0, 1}}; found {t64[bad][0].item():g}")
    return t64


def _check_probabilities(prob: torch.Tensor) -> torch.Tensor:
    p = prob.to(torch.float64)
    if p.numel() and not bool(((p >= 0) & (p <= 1)).all()):
        finite = p[torch.isfinite(p)]
        if finite.numel() < p.numel():
            raise ValueError("prob contains NaN or inf; expected probabilities in [0, 1]")
        raise ValueError(f"prob must lie in [0, 1]; got min {finite.min().item():.6g}, max {finite.max().item():.6g}")
    return p


def _check_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    x64 = x.to(torch.float64)
    if not bool(torch.isfinite(x64).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return x64


def _raise_on_nan(values: torch.Tensor) -> None:
    if bool(torch.isnan(values).any()):
        raise ValueError("pred or target contains NaN")


# ---------------------------------------------------------------------------------------------- images


def to_uint8_levels(x: torch.Tensor) -> torch.Tensor:
    """Round a [0, 1] image to its uint8 levels, the pinned "rounded to uint8" step of SPEC §7.

    ``round(clamp(x, 0, 1) * 255)`` in float64 with round half to even (``torch.round``), so values slightly
    outside [0, 1] are clamped and truncation bias (``astype(uint8)`` on ``x * 255``) is avoided.

    Args:
        x: Floating-point tensor of any shape with values in [0, 1].

    Returns:
        float64 tensor of the same shape and device holding integers 0..255.

    Raises:
        ValueError: x is not a floating-point tensor (uint8 images are already levels: use ``x.double()``).
    """
    t = _check_tensor(x, "x")
    if not t.is_floating_point():
        raise ValueError(f"x must be a floating-point image in [0, 1]; got dtype {t.dtype}")
    return t.to(torch.float64).clamp(0.0, 1.0).mul_(DATA_RANGE).round_()


def rgb_levels_to_y(levels: torch.Tensor) -> torch.Tensor:
    """Luma Y of YIQ from RGB uint8 levels, rounded to levels: ``round((299 R + 587 G + 114 B) / 1000)``.

    The numerator is an exact integer in float64 and the division is correctly rounded, so exact half levels
    stay exact and round half to even, independent of device.

    Args:
        levels: (B, 3, H, W) RGB levels 0..255 (as from :func:`to_uint8_levels`).

    Returns:
        (B, 1, H, W) float64 Y levels 0..255.
    """
    t = _check_tensor(levels, "levels")
    if t.ndim != 4 or t.shape[1] != 3:
        raise ValueError(f"levels must have shape (B, 3, H, W); got {_shape(t)}")
    lv = t.to(torch.float64)
    y = lv[:, 0:1] * 299.0
    y.add_(lv[:, 1:2], alpha=587.0).add_(lv[:, 2:3], alpha=114.0)
    return y.div_(1000.0).round_()


def _levels(x: torch.Tensor, convention: str) -> torch.Tensor:
    """(b, 3, H, W) [0, 1] image → (b, C, H, W) float64 levels compared under ``convention``."""
    lv = to_uint8_levels(x)
    return rgb_levels_to_y(lv) if convention == "y" else lv


def _image_chunk(x: torch.Tensor) -> int:
    """Images per step so that one step's levels stay cache-sized on CPU (and the whole batch elsewhere)."""
    per_image = max(1, math.prod(x.shape[1:]))
    return max(1, _tile_elements(x.device) * 4 // per_image)


def psnr(pred: torch.Tensor, target: torch.Tensor, convention: str = "rgb") -> torch.Tensor:
    """Peak signal-to-noise ratio per image on uint8-rounded levels, data range 255.

    ``min(100, 10 log10(255^2 / MSE))`` where the MSE is over all pixels (and the three channels for "rgb", the
    rounded Y channel for "y"); identical images give exactly :data:`PSNR_CAP_DB` (100 dB), never inf. For
    "rgb" this equals ``skimage.metrics.peak_signal_noise_ratio(a, b, data_range=255)`` on the uint8 arrays
    whenever that is at most 100 dB.

    Args:
        pred: (B, 3, H, W) prediction in [0, 1] (clamped before rounding).
        target: (B, 3, H, W) reference in [0, 1].
        convention: "rgb" or "y" (see the module docstring).

    Returns:
        (B,) PSNR in dB, in pred's dtype and on its device.

    Raises:
        ValueError: wrong shapes, dtypes, devices or convention, or NaN in the inputs.
    """
    _check_images(pred, target, convention, min_size=1)
    out = torch.empty(pred.shape[0], dtype=torch.float64, device=pred.device)
    step = _image_chunk(pred)
    for i in range(0, pred.shape[0], step):
        diff = _levels(pred[i : i + step], convention).sub_(_levels(target[i : i + step], convention))
        out[i : i + step] = diff.mul_(diff).mean(dim=(1, 2, 3))
    _raise_on_nan(out)
    db = torch.log10(DATA_RANGE**2 / out.clamp_min(_PSNR_MSE_FLOOR)).mul_(10.0).clamp_max_(PSNR_CAP_DB)
    return db.to(pred.dtype)


def _ssim_planes(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM map over the valid region of each plane.

    Args:
        x: (P, H, W) float64 levels.
        y: (P, H, W) float64 levels.

    Returns:
        (P,) float64.

    The four Gaussian-filtered maps (x, y, x²+y², xy) are built in one stacked buffer and filtered separably by
    shift-and-add (11 taps horizontally, then 11 vertically, no padding: "valid"). On CPU the work is split into
    row tiles of about ``_CPU_TILE_ELEMENTS`` per map so the buffers stay in cache; buffers are reused. The
    arithmetic order keeps SSIM exactly 1 for identical inputs (all doublings are exact in floating point).
    """
    r = _SSIM_RADIUS
    p, h, w = x.shape
    hv, wv = h - 2 * r, w - 2 * r
    budget = _tile_elements(x.device)
    planes = max(1, min(p, budget // (h * w)))
    rows = hv if planes > 1 else max(1, min(hv, budget // w))
    opts = {"dtype": torch.float64, "device": x.device}
    stack = torch.empty((4, planes, rows + 2 * r, w), **opts)  # x, y, x²+y², xy
    hbuf = torch.empty((4, planes, rows + 2 * r, wv), **opts)
    vbuf = torch.empty((4, planes, rows, wv), **opts)  # ux, uy, E[x²+y²], E[xy]
    work = torch.empty((3, planes, rows, wv), **opts)
    c1 = (SSIM_K1 * DATA_RANGE) ** 2
    c2 = (SSIM_K2 * DATA_RANGE) ** 2
    sums = torch.zeros(p, **opts)
    for i in range(0, p, planes):
        m = min(planes, p - i)
        for r0 in range(0, hv, rows):
            t = min(rows, hv - r0)
            xs, ys = x[i : i + m, r0 : r0 + t + 2 * r], y[i : i + m, r0 : r0 + t + 2 * r]
            st, hb, vb = stack[:, :m, : t + 2 * r], hbuf[:, :m, : t + 2 * r], vbuf[:, :m, :t]
            st[0].copy_(xs)
            st[1].copy_(ys)
            torch.mul(xs, xs, out=st[2])
            st[2].addcmul_(ys, ys)  # integers below 2^17: exact
            torch.mul(xs, ys, out=st[3])
            torch.mul(st[..., 0:wv], _WEIGHTS[0], out=hb)
            for k in range(1, SSIM_WINDOW):
                hb.add_(st[..., k : k + wv], alpha=_WEIGHTS[k])
            torch.mul(hb[..., 0:t, :], _WEIGHTS[0], out=vb)
            for k in range(1, SSIM_WINDOW):
                vb.add_(hb[..., k : k + t, :], alpha=_WEIGHTS[k])
            ux, uy, uxxyy, uxy = vb.unbind(0)
            num, den, tmp = (buf[:m, :t] for buf in work.unbind(0))
            torch.mul(ux, uy, out=num)  # ux·uy
            torch.mul(ux, ux, out=den)
            torch.mul(uy, uy, out=tmp)
            den.add_(tmp)  # ux² + uy²
            torch.sub(uxy, num, out=tmp).mul_(2.0).add_(c2)  # A2 = 2 cov + C2
            num.mul_(2.0).add_(c1).mul_(tmp)  # A1·A2, A1 = 2 ux uy + C1
            torch.sub(uxxyy, den, out=tmp).add_(c2)  # B2 = var x + var y + C2
            den.add_(c1).mul_(tmp)  # B1·B2, B1 = ux² + uy² + C1
            sums[i : i + m] += num.div_(den).sum(dim=(-2, -1))
    return sums / (hv * wv)


def ssim(pred: torch.Tensor, target: torch.Tensor, convention: str = "rgb") -> torch.Tensor:
    """Structural similarity per image (Wang et al., Gaussian 11x11, valid region) on uint8-rounded levels.

    For "rgb" this equals ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=255, channel_axis=-1)`` on the uint8 (H, W, 3) arrays; for "y" the
    same without ``channel_axis`` on the rounded YIQ luma (see the module docstring). Identical images give
    exactly 1.0.

    Args:
        pred: (B, 3, H, W) prediction in [0, 1] (clamped before rounding), H and W at least 11.
        target: (B, 3, H, W) reference in [0, 1].
        convention: "rgb" or "y".

    Returns:
        (B,) SSIM, mean over the valid region and then over channels, in pred's dtype and on its device.

    Raises:
        ValueError: wrong shapes, dtypes, devices or convention, images under 11x11, or NaN in the inputs.
    """
    _check_images(pred, target, convention, min_size=SSIM_WINDOW)
    b = pred.shape[0]
    out = torch.empty(b, dtype=torch.float64, device=pred.device)
    step = _image_chunk(pred)
    for i in range(0, b, step):
        x = _levels(pred[i : i + step], convention)  # (b, C, H, W)
        y = _levels(target[i : i + step], convention)
        n, c, h, w = x.shape
        out[i : i + n] = _ssim_planes(x.reshape(n * c, h, w), y.reshape(n * c, h, w)).view(n, c).mean(dim=1)
    _raise_on_nan(out)
    return out.to(pred.dtype)


# ---------------------------------------------------------------------------------------------- masks


def mask_bce_from_logits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Unweighted binary cross-entropy per image from mask logits: the official VCN test metric.

    ``mean over pixels of max(x, 0) - x z + log(1 + exp(-|x|))`` (TF ``sigmoid_cross_entropy_with_logits``),
    stable for any finite logit x and hard target z. Average the (B,) values over images for the table entry.

    Args:
        logits: (B, 1, H, W) mask logits.
        target: (B, 1, H, W) hard mask, values in {0, 1}.

    Returns:
        (B,) mean BCE in nats, in logits' dtype and on its device.

    Raises:
        ValueError: wrong shapes or devices, non-finite logits, or a target value other than 0 or 1.
    """
    t = _check_masks(logits, target, "logits")
    x = _check_finite(logits, "logits")
    loss = x.clamp_min(0.0) - x * t + torch.log1p(torch.exp(-x.abs()))
    return loss.mean(dim=(1, 2, 3)).to(logits.dtype)


def mask_bce(prob: torch.Tensor, target: torch.Tensor, eps: float = BCE_EPS) -> torch.Tensor:
    """Unweighted binary cross-entropy per image from mask probabilities.

    ``-mean(z log p + (1 - z) log(1 - p))`` with p clamped to ``[eps, 1 - eps]`` (so a saturated wrong pixel
    costs ``-log(eps)`` ≈ 16.1 nats, not inf). Prefer :func:`mask_bce_from_logits` when logits exist: it needs no
    clamp and is what the official test code computes.

    Args:
        prob: (B, 1, H, W) probabilities in [0, 1].
        target: (B, 1, H, W) hard mask, values in {0, 1}.
        eps: Clamp margin, in (0, 0.5).

    Returns:
        (B,) mean BCE in nats, in prob's dtype and on its device.

    Raises:
        ValueError: wrong shapes or devices, prob outside [0, 1], a target value other than 0 or 1, or a bad eps.
    """
    t = _check_masks(prob, target, "prob")
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must lie in (0, 0.5); got {eps}")
    p = _check_probabilities(prob).clamp(eps, 1.0 - eps)
    loss = -(t * torch.log(p) + (1.0 - t) * torch.log1p(-p))
    return loss.mean(dim=(1, 2, 3)).to(prob.dtype)


def _confusion(prob: torch.Tensor, target: torch.Tensor, threshold: float) -> tuple[torch.Tensor, ...]:
    t = _check_masks(prob, target, "prob")
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must lie in [0, 1); got {threshold}")
    pred = (_check_probabilities(prob) > threshold).to(torch.float64)
    tp = (pred * t).sum(dim=(1, 2, 3))
    fp = (pred * (1.0 - t)).sum(dim=(1, 2, 3))
    fn = ((1.0 - pred) * t).sum(dim=(1, 2, 3))
    return tp, fp, fn


def mask_iou(prob: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Intersection over union per image of ``prob > threshold`` and the hard target.

    ``TP / (TP + FP + FN)``; 1.0 when both masks are empty.

    Args:
        prob: (B, 1, H, W) probabilities in [0, 1].
        target: (B, 1, H, W) hard mask, values in {0, 1}.
        threshold: A pixel is predicted damaged when its probability is strictly above this.

    Returns:
        (B,) IoU in [0, 1], in prob's dtype and on its device.
    """
    tp, fp, fn = _confusion(prob, target, threshold)
    union = tp + fp + fn
    iou = torch.where(union > 0, tp / union.clamp_min(1.0), torch.ones_like(union))
    return iou.to(prob.dtype)


def mask_f1(prob: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """F1 score (Dice) per image of ``prob > threshold`` against the hard target.

    ``2 TP / (2 TP + FP + FN)``; 1.0 when both masks are empty.

    Args:
        prob: (B, 1, H, W) probabilities in [0, 1].
        target: (B, 1, H, W) hard mask, values in {0, 1}.
        threshold: A pixel is predicted damaged when its probability is strictly above this.

    Returns:
        (B,) F1 in [0, 1], in prob's dtype and on its device.
    """
    tp, fp, fn = _confusion(prob, target, threshold)
    denom = 2.0 * tp + fp + fn
    f1 = torch.where(denom > 0, 2.0 * tp / denom.clamp_min(1.0), torch.ones_like(denom))
    return f1.to(prob.dtype)


def mask_average_precision(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Average precision per image, as scikit-learn's ``average_precision_score(target, scores)``.

    ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct score values taken as thresholds in decreasing order
    (tied pixels enter together), with ``R_0 = 0``. It depends only on the ranking, so probabilities and logits
    give the same value (up to ties created by a saturating sigmoid). An image whose target has no positive
    pixel gets 0.0, as scikit-learn returns (with a warning there); callers that prefer to skip such images
    can test ``target.flatten(1).any(1)``.

    Args:
        scores: (B, 1, H, W) probabilities or logits (finite).
        target: (B, 1, H, W) hard mask, values in {0, 1}.

    Returns:
        (B,) AP in [0, 1], in scores' dtype and on its device.
    """
    t = _check_masks(scores, target, "scores")
    s = _check_finite(scores, "scores").flatten(1)  # (B, N)
    t = t.flatten(1)
    b, n = s.shape
    if n == 0:
        return torch.zeros(b, dtype=scores.dtype, device=scores.device)
    s_sorted, order = torch.sort(s, dim=1, descending=True, stable=True)
    tps = torch.gather(t, 1, order).cumsum(dim=1)  # true positives at each cut, (B, N)
    last = torch.ones((b, 1), dtype=torch.bool, device=s.device)
    distinct = torch.cat([s_sorted[:, 1:] != s_sorted[:, :-1], last], dim=1)  # end of a tie group
    at_cut = torch.where(distinct, tps, torch.zeros_like(tps))
    # tps at the previous cut: at_cut is non-decreasing where non-zero, so a running max of the shifted values
    previous = torch.cat([torch.zeros((b, 1), dtype=tps.dtype, device=s.device), at_cut[:, :-1]], dim=1)
    previous = torch.cummax(previous, dim=1).values
    precision = tps / torch.arange(1, n + 1, dtype=tps.dtype, device=s.device)
    gain = torch.where(distinct, (tps - previous) * precision, torch.zeros_like(tps)).sum(dim=1)
    positives = tps[:, -1]
    ap = torch.where(positives > 0, gain / positives.clamp_min(1.0), torch.zeros_like(gain))
    return ap.to(scores.dtype)
