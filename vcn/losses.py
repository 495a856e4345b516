"""Training losses of VCN (paper Eqs. 2, 7–9) as pure functions on tensors."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from vcn.vgg import VGG19Features


def _reduce(per_sample: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "none":
        return per_sample
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def mask_bce(logits: Tensor, mask: Tensor, reduction: str = "mean") -> Tensor:
    """Self-adaptive binary cross-entropy of the MPN (paper Eq. 2), per sample.

    ``L_m = −[τ Σ_{M=1} log M̂ + (1 − τ) Σ_{M=0} log(1 − M̂)] / (H·W)`` with M̂ = sigmoid(logits) and
    τ = |{M = 0}| / (H·W), the *clean* fraction, weighting the damaged term (damage is the minority class).
    log-sigmoid is used for numerical stability. A soft mask M acts as weights M and 1 − M.

    Args:
        logits: (B, 1, H, W) MPN logits.
        mask: (B, 1, H, W) ground-truth mask, 1 = damaged.
        reduction: ``"mean"`` over the batch (scalar) or ``"none"`` for the (B,) per-sample losses.
    """
    m = mask.to(logits.dtype)
    hw = m.shape[-2] * m.shape[-1]
    tau = 1.0 - m.mean(dim=(1, 2, 3))  # (B,) clean fraction
    damaged = (m * F.logsigmoid(logits)).sum(dim=(1, 2, 3))
    clean = ((1.0 - m) * F.logsigmoid(-logits)).sum(dim=(1, 2, 3))
    return _reduce(-(tau * damaged + (1.0 - tau) * clean) / hw, reduction)


def l1(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error over all elements (the reconstruction term, weight 1.4 in the paper)."""
    return (pred - target).abs().mean()


def _ssim_taps(dtype: torch.dtype, device: torch.device, sigma: float = 1.5, radius: int = 5) -> Tensor:
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float64) / sigma) ** 2)
    return (taps / taps.sum()).to(dtype=dtype, device=device)


def ssim_loss(pred: Tensor, target: Tensor) -> Tensor:
    """``1 − SSIM`` of images in [-1, 1], differentiable: the eval SSIM's conventions without the uint8 rounding.

    Wang et al. with an 11×11 Gaussian window (σ 1.5), K1 = 0.01, K2 = 0.03 on the [0, 1] range, population
    (co)variances, over the region where the window lies inside the image, averaged over pixels, channels and the
    batch: on images already on uint8 levels it equals ``1 − blindbench.metrics.ssim`` (up to float rounding).
    Not in the paper; a training term for the structure the eval scores, in place of the VGG terms when no VGG19
    weights are at hand.

    Args:
        pred: (B, C, H, W) prediction in [-1, 1]; H and W at least 11.
        target: (B, C, H, W) reference in [-1, 1].
    """
    x, y = (pred + 1.0) / 2.0, (target + 1.0) / 2.0
    channels = x.shape[1]
    taps = _ssim_taps(x.dtype, x.device)
    rows = taps.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    cols = taps.view(1, 1, -1, 1).expand(channels, 1, -1, 1)

    def blur(t: Tensor) -> Tensor:  # separable, "valid": no padding, as the eval metric's cropped region
        return F.conv2d(F.conv2d(t, rows, groups=channels), cols, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
    return 1.0 - ssim_map.mean()


def semantic_loss(vgg: VGG19Features, pred: Tensor, target: Tensor) -> Tensor:
    """L1 distance of VGG19 relu3_2 features (paper's semantic consistency term, weight 1e-4).

    The official code uses the mean squared error here; the paper and both PyTorch reproductions use L1.
    """
    return perceptual_losses(vgg, pred, target, mrf=False)["semantic"]


def mrf_loss(gen: Tensor, tar: Tensor, h: float = 0.5, eps: float = 1e-5) -> Tensor:
    """Implicit-diversity MRF term of one feature layer (GMCNN), 1×1 patches, batched -> (B,).

    Features are centred by the target's per-sample, per-channel spatial mean and L2-normalised over
    channels; d = (1 − cos)/2 between every generated position v and target position s; relative distance
    d̃ = d / (min_s d + eps); similarity exp((1 − d̃)/h) normalised over s (a softmax); for every target s the
    best generated match is kept (max over v), averaged over s, and −log of that is the loss.

    Args:
        gen: (B, C, H, W) features of the generated image.
        tar: (B, C, H, W) features of the target image.
        h: bandwidth (0.5).
        eps: the 1e-5 of the relative distance.
    """
    mean_t = tar.mean(dim=(2, 3), keepdim=True)
    g = F.normalize((gen - mean_t).flatten(2), dim=1)  # (B, C, Ng)
    t = F.normalize((tar - mean_t).flatten(2), dim=1)  # (B, C, Nt)
    dist = (1.0 - torch.einsum("bcs,bcv->bsv", t, g)) / 2.0  # (B, Nt, Ng) cosine distance in [0, 1]
    rel = dist / (dist.amin(dim=1, keepdim=True) + eps)
    sim = torch.softmax((1.0 - rel) / h, dim=1)  # exp((1 − d̃)/h) / Σ_s exp((1 − d̃)/h)
    return -torch.log(sim.amax(dim=2).mean(dim=1))  # (B,)


def id_mrf_loss(
    vgg: VGG19Features,
    pred: Tensor,
    target: Tensor,
    h: float = 0.5,
    weights: tuple[float, float] = (1.0, 2.0),
) -> Tensor:
    """ID-MRF loss (GMCNN) on VGG19 relu3_2 and relu4_2, mean over the batch (paper weight 1e-3).

    GMCNN sums a "style" term on relu3_2 and relu4_2 and a "content" term on relu4_2, each with weight 1,
    hence the default ``weights`` = (relu3_2: 1, relu4_2: 2). GMCNN and the reproductions sum over the batch;
    here it is the batch mean, so the weight does not depend on the batch size.
    """
    return perceptual_losses(vgg, pred, target, mrf=True, h=h, weights=weights)["mrf"]


def perceptual_losses(
    vgg: VGG19Features,
    pred: Tensor,
    target: Tensor,
    mrf: bool,
    h: float = 0.5,
    weights: tuple[float, float] = (1.0, 2.0),
) -> dict[str, Tensor]:
    """``{"semantic"}`` (:func:`semantic_loss`), plus ``"mrf"`` (:func:`id_mrf_loss`) when ``mrf``, from one VGG19
    pass over each of pred and target: the training step needs both terms in the joint stage."""
    with torch.no_grad():
        tar = vgg(target)
    gen = vgg(pred)
    terms = {"semantic": l1(gen.relu3_2, tar.relu3_2)}
    if mrf:
        loss = weights[0] * mrf_loss(gen.relu3_2, tar.relu3_2, h) + weights[1] * mrf_loss(gen.relu4_2, tar.relu4_2, h)
        terms["mrf"] = loss.mean()
    return terms


def wgan_gp_penalty(
    critic: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    lam: float = 10.0,
    mask: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """WGAN-GP gradient penalty ``λ · E[(‖∇D(x̃)‖₂ − 1)²]``, x̃ = t·real + (1 − t)·fake, one t ~ U(0, 1) per sample.

    Args:
        critic: maps a (B, C, H, W) batch to (B,) or (B, 1) scores (wrap a patch critic with its mask).
        real: (B, C, H, W) real images.
        fake: (B, C, H, W) generated images (detached here).
        lam: λ (10).
        mask: optional (B, 1, H, W) mask restricting the gradient norm to the masked region (official code).
        generator: random generator for t.
    """
    t = torch.rand((real.shape[0], 1, 1, 1), generator=generator, device=real.device, dtype=real.dtype)
    x = (t * real.detach() + (1.0 - t) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    sq = grad.square()
    if mask is not None:
        sq = sq * mask.to(sq.dtype)
    norm = torch.sqrt(sq.flatten(1).sum(dim=1) + 1e-12)  # (B,)
    return lam * (norm - 1.0).square().mean()


def critic_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """WGAN critic loss ``E[D(fake)] − E[D(real)]`` (add :func:`wgan_gp_penalty`)."""
    return d_fake.mean() - d_real.mean()


def generator_adv_loss(d_fake: Tensor) -> Tensor:
    """WGAN generator loss ``−E[D(fake)]``."""
    return -d_fake.mean()


def critic_objective(
    global_critic: Callable[[Tensor], Tensor],
    patch_critic: Callable[[Tensor, Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    mask: Tensor,
    lam: float = 10.0,
    generator: torch.Generator | None = None,
    batched: bool = True,
) -> tuple[Tensor, Tensor]:
    """The critic loss of the official pair of critics and its penalty part: ``(L_D, GP)``, both float32 scalars.

    ``L_D = E[D(fake)] − E[D(real)] + GP`` with D = global + patch (the patch critic averaged over ``mask``) and GP
    the two mask-restricted penalties of :func:`wgan_gp_penalty`, global first (the order of the draws from
    ``generator``). ``batched``: real and fake go through each critic as one batch of 2B, not as two batches of B
    (the critics have no batch statistics, so both give the same values, up to float rounding).

    Args:
        global_critic: (B, C, H, W) -> (B,).
        patch_critic: (B, C, H, W), (B, 1, H, W) mask -> (B,).
        real: (B, C, H, W) real images.
        fake: (B, C, H, W) generated (or composited) images, detached here.
        mask: (B, 1, H, W) damage mask, 1 = damaged.
        lam: λ of both penalties.
        generator: random generator for the penalties' interpolation weights.
        batched: one critic pass over [fake; real] instead of two.
    """
    fake = fake.detach()
    if batched:
        both = torch.cat([fake, real.to(fake.dtype)])  # (2B, C, H, W)
        scores = (global_critic(both) + patch_critic(both, torch.cat([mask, mask]))).float()
        d_fake, d_real = scores.chunk(2)
    else:
        d_fake = (global_critic(fake) + patch_critic(fake, mask)).float()
        d_real = (global_critic(real) + patch_critic(real, mask)).float()
    gp = wgan_gp_penalty(global_critic, real, fake, lam, mask=mask, generator=generator)
    gp = gp + wgan_gp_penalty(lambda x: patch_critic(x, mask), real, fake, lam, mask=mask, generator=generator)
    gp = gp.float()
    return critic_loss(d_real, d_fake) + gp, gp
