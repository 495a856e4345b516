"""Probabilistic context normalization (PCN), paper Eqs. 3–6.

``pcn`` is the pure function; ``PCN`` holds the squeeze-and-excitation module that predicts β and calls it.
Mask convention: H = 1 marks (probably) damaged positions, H̄ = 1 − H the clean context.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def resize_mask(mask: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Nearest-neighbour resize of a (B, 1, H, W) mask to ``size`` (the PCN's H); no-op when sizes match."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return F.interpolate(mask, size=tuple(size), mode="nearest")


def weighted_mean(y: Tensor, t: Tensor, eps: float = 1e-5) -> Tensor:
    """Eq. 6, μ(Y, T) = Σ(Y ⊙ T) / (ε + ΣT), summed over H, W per sample and channel -> (B, C, 1, 1)."""
    return (y * t).sum(dim=(-2, -1), keepdim=True) / (eps + t.sum(dim=(-2, -1), keepdim=True))


def weighted_std(y: Tensor, t: Tensor, eps: float = 1e-5) -> Tensor:
    """Eq. 6, σ(Y, T) = sqrt(Σ(Y ⊙ T − μ(Y, T))² / (ε + ΣT) + ε), per sample and channel -> (B, C, 1, 1).

    The sum of squares runs over *all* positions of ``Y ⊙ T − μ``, so positions outside T contribute μ²
    each; this is the paper's formula as printed, and what the official TensorFlow code and both PyTorch
    reproductions compute. It is not the textbook weighted variance Σ T(Y − μ)² / ΣT.
    """
    return weighted_stats(y, t, eps)[1]


def weighted_stats(y: Tensor, t: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """``(weighted_mean(y, t), weighted_std(y, t))`` with ΣT and μ computed once (the PCN hot path)."""
    denominator = eps + t.sum(dim=(-2, -1), keepdim=True)
    mu = (y * t).sum(dim=(-2, -1), keepdim=True) / denominator
    var = (y * t - mu).square().sum(dim=(-2, -1), keepdim=True) / denominator
    return mu, torch.sqrt(var + eps)


def _as_beta(beta: Tensor | float) -> Tensor | float:
    if isinstance(beta, Tensor) and beta.ndim == 1:
        return beta.view(1, -1, 1, 1)  # (C,) -> (1, C, 1, 1)
    return beta


def pcn(x: Tensor, h: Tensor, beta: Tensor | float, eps: float = 1e-5) -> Tensor:
    """Probabilistic context normalization, implemented literally as paper Eqs. 3–6.

    ``PCN(X, H) = [β·T(X, H) + (1 − β)·X] ⊙ H + X ⊙ H̄`` with
    ``T(X, H) = (X_P − μ(X_P, H)) / σ(X_P, H) · σ(X_Q, H̄) + μ(X_Q, H̄)``, ``X_P = X ⊙ H``,
    ``X_Q = X ⊙ H̄`` and μ, σ from :func:`weighted_mean` / :func:`weighted_std`: the statistics of the
    (probably) damaged part are replaced by those of the clean context, per sample and channel, with the
    soft weights H and 1 − H.

    This literal form (the weighting is applied to X_P = X ⊙ H *and* inside μ/σ, and the variance sums
    ``(Y ⊙ T − μ)²`` over all positions) is what the paper writes and what all three public implementations
    compute (the official TensorFlow one takes μ of X rather than of X_P, which is the same for a hard
    mask). Identities: H ≡ 0 or β = 0 gives X (up to rounding).

    Args:
        x: (B, C, h, w) features.
        h: (B, 1, h', w') soft mask in [0, 1], 1 = damaged; resized nearest to (h, w) when it differs.
        beta: blending weight in [0, 1]: a float, a (C,) vector, or a (B, C, 1, 1) tensor.
        eps: the ε of Eq. 6.

    Returns:
        (B, C, h, w) tensor.
    """
    h = resize_mask(h, x.shape[-2:]).to(x.dtype)
    h_bar = 1.0 - h
    x_p = x * h
    x_q = x * h_bar
    mu_p, sigma_p = weighted_stats(x_p, h, eps)
    mu_q, sigma_q = weighted_stats(x_q, h_bar, eps)
    t = (x_p - mu_p) / sigma_p * sigma_q + mu_q
    beta = _as_beta(beta)
    return (beta * t + (1.0 - beta) * x) * h + x * h_bar


class SqueezeExcitation(nn.Module):
    """β = sigmoid(FC(ReLU(FC(avgpool(X))))) ∈ (0, 1)^C (paper Eq. 5); hidden width max(C // reduction, 4).

    The floor of 4 hidden units only matters below 32 channels (tiny presets), where a single ReLU unit is
    often dead from the start. Biases start at zero, so β starts near the official fixed value 0.5.

    Shape:
        (B, C, H, W) -> (B, C, 1, 1)
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        nn.init.zeros_(self.fc1.bias)  # zero biases (TF fully_connected default): β starts near 0.5
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean(dim=(-2, -1))  # (B, C)
        return torch.sigmoid(self.fc2(F.relu(self.fc1(s))))[..., None, None]


class PCN(nn.Module):
    """PCN layer: predicts β by squeeze-and-excitation (or uses a fixed β) and calls :func:`pcn`.

    Args:
        channels: feature channels C.
        reduction: SE reduction ratio (8, as the official ``context_normalization_se``).
        fixed_beta: if given, no SE module is built and β is this constant (the official release's build
            with ``rho`` = 0.5).
        eps: the ε of Eq. 6.

    Shape:
        x (B, C, h, w), mask (B, 1, H, W) with 1 = damaged -> (B, C, h, w)
    """

    def __init__(self, channels: int, reduction: int = 8, fixed_beta: float | None = None, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.fixed_beta = fixed_beta
        self.se = SqueezeExcitation(channels, reduction) if fixed_beta is None else None

    def beta(self, x: Tensor) -> Tensor | float:
        """The β this layer would use for ``x`` (without an override)."""
        if self.se is None:
            return float(self.fixed_beta)  # type: ignore[arg-type]
        return self.se(x)

    def forward(self, x: Tensor, mask: Tensor, beta_override: float | None = None) -> Tensor:
        """Normalize ``x``; ``beta_override`` fixes β for every channel (the paper's test-time β study)."""
        beta = self.beta(x) if beta_override is None else beta_override
        return pcn(x, mask, beta, self.eps)
