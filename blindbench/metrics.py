"""Evaluation metrics with pinned conventions (SPEC §7): PSNR and SSIM on uint8-rounded images, mask quality.

Everything here is a pure function on batched torch tensors. Inputs may live on any device and have any
floating dtype; the arithmetic runs in float64 (float32 filtering misses scikit-image by up to 1.3e-4 SSIM on flat
and bimodal flat images, where E[x²] - mu² cancels at every pixel the same way, and still by up to 3e-5 after
centering each plane on its mean), and results come back as a (B,) tensor in the input's dtype on the input's
device, one value per image, ready for per-sample CSV rows. Inputs are never modified; nothing is differentiable
(everything runs under ``torch.no_grad``).

Where it runs: PSNR and SSIM of CPU tensors go through fused kernels compiled with numba
(:mod:`blindbench.metrics_cpu`, ~15x scikit-image on 2 cores, see ``benchmarks/RESULTS.md``) on
``torch.get_num_threads()`` threads; tensors on other devices go through torch ops on that device. The two paths
agree to ~1e-15 and are both tested against scikit-image.

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
  computed exactly); SSIM/PSNR are then taken on that single channel with data range 255. pyiqa's ``ssim``
  computes the same luma from the float input in float32 before rounding, so the two differ only where the
  luma lies within float32 noise of a half level; pyiqa's ``psnry`` does not round the luma at all (astronaut
  512² vs its JPEG q20: 31.5077 dB there, 31.5029 dB here).

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

import functools
import math
import warnings

import numpy as np
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
# On CPU every SSIM/PSNR op touches fewer elements than torch's intra-op parallel grain (32768), so it runs on
# the calling thread, in cache, with no OpenMP barrier. Measured on 2 cores (64 images of 256², SSIM): serial
# cache-sized ops 0.38 s, 1M-element ops 0.40 s (memory-bound), cache-sized ops above the grain (2 threads)
# 0.25 s on an idle machine but 30-100x slower once other processes compete for the cores: every one of
# their ~20k parallel regions then waits for a descheduled OpenMP thread. Serial is the robust choice.
_CPU_OP_ELEMENTS = 32767
# Elements per op on other devices (GPU: few large kernels) and for the luma of the "y" convention.
_BULK_ELEMENTS = 1 << 22
# Adding and subtracting 1.5 * 2^52 rounds a float64 in [0, 2^51] to an integer, half to even (the IEEE default),
# exactly. The hot loops use it instead of torch.round_: round_/floor_/trunc_ go through a kernel whose parallel
# grain is 2048 elements, not 32768, so with 2 threads and one competing process each call stalled up to 11 ms
# (64 images of 256², SSIM 0.38 s idle, 4.8 s under load; with the two adds 0.38 s either way).
_ROUND_MAGIC = 1.5 * 2.0**52


def _gaussian_weights() -> list[float]:
    """The 11 normalised Gaussian taps, computed as scipy.ndimage's ``_gaussian_kernel1d``."""
    taps = [math.exp(-0.5 / (SSIM_SIGMA * SSIM_SIGMA) * float(k * k)) for k in range(-_SSIM_RADIUS, _SSIM_RADIUS + 1)]
    total = math.fsum(taps)
    return [t / total for t in taps]


_WEIGHTS = _gaussian_weights()
_TAPS = np.array(_WEIGHTS)
_SSIM_C1 = (SSIM_K1 * DATA_RANGE) ** 2
_SSIM_C2 = (SSIM_K2 * DATA_RANGE) ** 2


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


@torch.no_grad()
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


@torch.no_grad()
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


def _mean_squared_difference(x: torch.Tensor, y: torch.Tensor, unit: bool) -> torch.Tensor:
    """Per-row mean of (levels(x) - levels(y))², float64: the compiled kernel on CPU, else torch ops."""
    kernels = _cpu_kernels() if x.device.type == "cpu" else None
    if kernels is None:
        return _mean_squared_difference_torch(x, y, unit)
    a, b = _arrays(x, y)
    return torch.from_numpy(kernels.squared_error_sums(a, b, unit, torch.get_num_threads())) / max(1, x.shape[1])


def _mean_squared_difference_torch(x: torch.Tensor, y: torch.Tensor, unit: bool) -> torch.Tensor:
    """Per-row mean of (levels(x) - levels(y))², float64, in torch ops (any device).

    Args:
        x: (B, N) values: [0, 1] floats when ``unit`` (rounded to levels here), else float64 levels.
        y: (B, N), same kind as x.
        unit: Whether the values still need :func:`to_uint8_levels`.

    Returns:
        (B,) float64. On CPU the work goes in blocks small enough to run serially in cache (see
        ``_CPU_OP_ELEMENTS``); elsewhere in bulk.
    """
    b, n = x.shape
    per_op = _CPU_OP_ELEMENTS // 2 if x.device.type == "cpu" else _BULK_ELEMENTS
    rows = max(1, min(b, per_op // max(1, n)))
    cols = max(1, min(n, per_op // rows))
    buf = torch.empty((2, rows, cols), dtype=torch.float64, device=x.device)
    total = torch.zeros(b, dtype=torch.float64, device=x.device)
    for i in range(0, b, rows):
        r = min(rows, b - i)
        for j in range(0, n, cols):
            c = min(cols, n - j)
            pair = buf[:, :r, :c]
            pair[0].copy_(x[i : i + r, j : j + c])
            pair[1].copy_(y[i : i + r, j : j + c])
            if unit:
                pair.clamp_(0.0, 1.0).mul_(DATA_RANGE).add_(_ROUND_MAGIC).sub_(_ROUND_MAGIC)
            diff = pair[0].sub_(pair[1])
            total[i : i + r] += diff.mul_(diff).sum(dim=1)
    return total / max(1, n)


@torch.no_grad()
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
    if convention == "rgb":  # rounded to levels inside the loop, a block at a time
        x, y, unit = pred.flatten(1), target.flatten(1), True
    else:
        x, y, unit = _levels(pred, convention).flatten(1), _levels(target, convention).flatten(1), False
    out = _mean_squared_difference(x, y, unit)
    _raise_on_nan(out)
    db = torch.log10(DATA_RANGE**2 / out.clamp_min(_PSNR_MSE_FLOOR)).mul_(10.0).clamp_max_(PSNR_CAP_DB)
    return db.to(pred.dtype)


@functools.cache
def _cpu_kernels():
    """The compiled CPU kernels (:mod:`blindbench.metrics_cpu`), or None when numba cannot be imported.

    Imported on first CPU use, so ``import blindbench.metrics`` does not load numba.
    """
    try:
        from blindbench import metrics_cpu
    except ImportError as exc:  # numba is a dependency; a broken install falls back to the torch ops
        warnings.warn(f"numba unavailable ({exc}); PSNR/SSIM use the slower torch path on CPU", stacklevel=3)
        return None
    return metrics_cpu


def _arrays(x: torch.Tensor, y: torch.Tensor) -> tuple:
    """Two CPU tensors as C-contiguous numpy arrays of one dtype, float32 or float64 (conversions are exact)."""
    if x.dtype == y.dtype and x.dtype in (torch.float32, torch.float64):
        dtype = x.dtype
    else:  # mixed, half or bfloat16: the wider of the two
        dtype = torch.float64 if torch.float64 in (x.dtype, y.dtype) else torch.float32
    return tuple(t.detach().to(dtype).contiguous().numpy() for t in (x, y))


def _ssim_planes(x: torch.Tensor, y: torch.Tensor, unit: bool) -> torch.Tensor:
    """Mean SSIM map over the valid region of each plane: (P, H, W) planes → (P,) float64.

    On CPU the fused compiled kernel of :mod:`blindbench.metrics_cpu`; elsewhere (or without numba) torch ops,
    :func:`_ssim_planes_torch`. See there for ``unit``.
    """
    kernels = _cpu_kernels() if x.device.type == "cpu" else None
    if kernels is None:
        return _ssim_planes_torch(x, y, unit)
    a, b = _arrays(x, y)
    return torch.from_numpy(kernels.ssim_planes(a, b, unit, _TAPS, _SSIM_C1, _SSIM_C2, torch.get_num_threads()))


def _ssim_planes_torch(x: torch.Tensor, y: torch.Tensor, unit: bool) -> torch.Tensor:
    """Mean SSIM map over the valid region of each plane, in torch ops (any device).

    Args:
        x: (P, H, W) planes: [0, 1] floats when ``unit`` (rounded to levels here), else float64 levels.
        y: (P, H, W) planes, same kind as x.
        unit: Whether the planes still need :func:`to_uint8_levels`.

    Returns:
        (P,) float64.

    The four maps x, y, x²+y², xy of a chunk of rows share one flat buffer and are Gaussian-filtered
    separably by shift-and-add: 11 taps along W as 11 *contiguous* shifted views of the flat buffer (the last
    10 columns of each row then hold don't-care values that never reach the valid region), then 11 taps along
    H over a tile of output rows, no padding ("valid"). On CPU chunks and tiles are sized to
    ``_CPU_OP_ELEMENTS`` per op (see there); elsewhere whole planes go together. All views are built once per
    call and buffers are reused. The arithmetic order keeps SSIM exactly 1 for identical inputs: x and y go
    through identical ops, and every doubling is exact.
    """
    r = _SSIM_RADIUS
    p_total, h, w = x.shape
    hv, wv = h - 2 * r, w - 2 * r
    if x.device.type == "cpu":
        planes = max(1, min(p_total, _CPU_OP_ELEMENTS // (4 * h * w)))
        rows_h = max(1, min(h, _CPU_OP_ELEMENTS // (4 * planes * w)))
        rows_v = max(1, min(hv, _CPU_OP_ELEMENTS // (4 * planes * w)))
    else:
        planes, rows_h, rows_v = max(1, min(p_total, _BULK_ELEMENTS // (h * w))), h, hv
    opts = {"dtype": torch.float64, "device": x.device}
    flat = torch.zeros(4 * planes * rows_h * w + 2 * r, **opts)  # x, y, x²+y², xy of a chunk; zero tail slack
    hbuf = torch.empty((4, planes, h, w), **opts)  # filtered along W (columns >= wv: don't care)
    vbuf = torch.empty((4, planes, rows_v, w), **opts)  # ux, uy, E[x²+y²], E[xy] for a tile of rows
    work = torch.empty((3, planes, rows_v, w), **opts)
    c1, c2 = _SSIM_C1, _SSIM_C2

    def chunks(m: int) -> list[tuple]:
        """Per chunk of rows: first row, rows, the four stacked maps, x and y together, the 11 shifted views,
        and the destination rows in hbuf."""
        plan = []
        for r0 in range(0, h, rows_h):
            n = min(rows_h, h - r0)
            shape, stride = (4, m, n, w), (m * n * w, n * w, w, 1)
            taps = [flat.as_strided(shape, stride, k) for k in range(SSIM_WINDOW)]
            plan.append((r0, n, *taps[0].unbind(0), taps[0][:2], taps, hbuf[:, :m, r0 : r0 + n]))
        return plan

    def tiles(m: int) -> list[tuple]:
        """Per tile of output rows: the 11 shifted views of hbuf, the filtered maps (stacked and one by one),
        three work maps, and the valid columns of the first."""
        plan = []
        for r0 in range(0, hv, rows_v):
            n = min(rows_v, hv - r0)
            taps = [hbuf[:, :m, r0 + k : r0 + k + n] for k in range(SSIM_WINDOW)]
            vb = vbuf[:, :m, :n]
            num, den, tmp = (buf[:m, :n] for buf in work.unbind(0))
            plan.append((taps, vb, *vb.unbind(0), num, den, tmp, num[..., :wv]))
        return plan

    plans: dict[int, tuple[list, list]] = {}
    out = torch.empty(p_total, **opts)
    for i in range(0, p_total, planes):
        m = min(planes, p_total - i)
        if m not in plans:
            plans[m] = (chunks(m), tiles(m))
        row_chunks, row_tiles = plans[m]
        for r0, n, sx, sy, sxx, sxy, sx_sy, taps, hb in row_chunks:
            sx.copy_(x[i : i + m, r0 : r0 + n])
            sy.copy_(y[i : i + m, r0 : r0 + n])
            if unit:
                sx_sy.clamp_(0.0, 1.0).mul_(DATA_RANGE).add_(_ROUND_MAGIC).sub_(_ROUND_MAGIC)  # round half to even
            torch.mul(sx, sx, out=sxx)
            sxx.addcmul_(sy, sy)  # x² + y²: integers below 2^17, exact
            torch.mul(sx, sy, out=sxy)
            torch.mul(taps[0], _WEIGHTS[0], out=hb)
            for k in range(1, SSIM_WINDOW):
                hb.add_(taps[k], alpha=_WEIGHTS[k])
        total = torch.zeros(m, **opts)
        for taps, vb, ux, uy, uxxyy, uxy, num, den, tmp, valid in row_tiles:
            torch.mul(taps[0], _WEIGHTS[0], out=vb)
            for k in range(1, SSIM_WINDOW):
                vb.add_(taps[k], alpha=_WEIGHTS[k])
            torch.mul(ux, uy, out=num)  # ux·uy
            torch.mul(ux, ux, out=den)
            torch.mul(uy, uy, out=tmp)
            den.add_(tmp)  # ux² + uy²
            torch.sub(uxy, num, out=tmp).mul_(2.0).add_(c2)  # A2 = 2 cov + C2
            num.mul_(2.0).add_(c1).mul_(tmp)  # A1·A2, A1 = 2 ux uy + C1
            torch.sub(uxxyy, den, out=tmp).add_(c2)  # B2 = var x + var y + C2
            den.add_(c1).mul_(tmp)  # B1·B2, B1 = ux² + uy² + C1
            num.div_(den)
            total += valid.sum(dim=(-2, -1))
        out[i : i + m] = total / (hv * wv)
    return out


@torch.no_grad()
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
    b, c, h, w = pred.shape
    if b == 0:
        return torch.empty(0, dtype=pred.dtype, device=pred.device)
    if convention == "rgb":  # rounded to levels inside the kernel, a few rows at a time
        x, y, unit = pred.reshape(b * c, h, w), target.reshape(b * c, h, w), True
    else:
        x, y, unit = _levels(pred, convention).flatten(0, 1), _levels(target, convention).flatten(0, 1), False
    out = _ssim_planes(x, y, unit).view(b, -1).mean(dim=1)
    _raise_on_nan(out)
    return out.to(pred.dtype)


# ---------------------------------------------------------------------------------------------- masks


@torch.no_grad()
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


@torch.no_grad()
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


def _overlap(prob: torch.Tensor, target: torch.Tensor, threshold: float, weight: float) -> torch.Tensor:
    """``w TP / (w TP + FP + FN)`` per image, 1.0 when both masks are empty, in prob's dtype: IoU for w = 1, F1
    for w = 2."""
    tp, fp, fn = _confusion(prob, target, threshold)
    denom = weight * tp + fp + fn
    score = torch.where(denom > 0, weight * tp / denom.clamp_min(1.0), torch.ones_like(denom))
    return score.to(prob.dtype)


@torch.no_grad()
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
    return _overlap(prob, target, threshold, 1.0)


@torch.no_grad()
def mask_f1(prob: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """F1 score (Dice) per image of ``prob > threshold`` against the hard target.

    ``2 TP / (2 TP + FP + FN)``; 1.0 when both masks are empty. Arguments as :func:`mask_iou`.

    Returns:
        (B,) F1 in [0, 1], in prob's dtype and on its device.
    """
    return _overlap(prob, target, threshold, 2.0)


@torch.no_grad()
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
