"""The one model registry: a name → a constructor, with the paper's parameter counts beside ours.

Every model is called as ``model(image, mask=None, beta=None)`` and returns
``InpaintOutput(mask_logits, image)``, so nothing downstream special-cases a name. Each declares the number its
input sides must be divisible by (``model.size_multiple``).

The registry is lazy: entries name their constructor as ``module:function``, imported on first use, so reading
names and metadata (``blindbench tables``, ``blindbench --help``) does not import torch or the model packages.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from blindbench.errors import ConfigError, unknown

if TYPE_CHECKING:
    import torch
    from torch import nn

PRESETS = ("paper", "tiny")


@dataclass(frozen=True)
class PresetTraining:
    """Training defaults of a preset; `blindbench.train.TrainConfig` takes them where its options are left at 0.

    ``paper`` keeps the paper's learning rates and trains on whole 256² images. ``tiny`` models (a few channels)
    learn about 3x faster at 1e-3 with no skipped steps (benchmarks/RESULTS.md, "learning rate per preset"), and
    train on random 128² crops: a quarter of the pixels per step at the strokes' scale, the zoo's recipe.

    Attributes:
        lr_separate: stage-1 Adam learning rate.
        lr_joint: stage-2 Adam learning rate.
        crop: random square crop side for training where the images are larger (0: whole images).
    """

    lr_separate: float
    lr_joint: float
    crop: int


PRESET_TRAINING = {"paper": PresetTraining(1e-4, 1e-5, 0), "tiny": PresetTraining(1e-3, 1e-4, 128)}
# Models whose preset defaults differ, each measured (benchmarks/RESULTS.md, "GMC's dead output layer"): at 1e-3
# the tiny GMC's last ELU layer (4 channels) saturates at -1 within ten steps on 128² crops, and its generator
# outputs one colour for good; at 3e-4 it learns.
MODEL_PRESET_TRAINING = {("gmc", "tiny"): PresetTraining(3e-4, 1e-4, 128)}


def preset_training(model: str, preset: str) -> PresetTraining | None:
    """The training defaults of ``model`` at ``preset`` (None for an unknown preset)."""
    return MODEL_PRESET_TRAINING.get((model, preset), PRESET_TRAINING.get(preset))


@dataclass(frozen=True)
class ModelEntry:
    """A registered model.

    Attributes:
        name: registry name.
        builder: ``module:function`` of the constructor ``f(preset, **overrides) -> nn.Module``.
        paper_params: total parameters the paper reports (MPN included), or None where it gives none.
        description: one line for ``blindbench models``.
        table: the paper table the model appears in (1: comparison, 3: ablation).
    """

    name: str
    builder: str
    paper_params: float | None
    description: str
    table: int

    @property
    def constructor(self) -> Callable[..., nn.Module]:
        module, _, function = self.builder.partition(":")
        return getattr(importlib.import_module(module), function)


REGISTRY: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        ModelEntry("vcn", "vcn.model:vcn", 3.79e6, "VCN: MPN + RIN with probabilistic context normalization", 1),
        ModelEntry("ca", "baselines.blind:ca", 4.86e6, "MPN + DeepFill v1 with contextual attention", 1),
        ModelEntry("gmc", "baselines.blind:gmc", 13.7e6, "MPN + generative multi-column CNN", 1),
        ModelEntry("pc", "baselines.blind:pc", 4.69e6, "MPN + partial-convolution U-Net (validity 1 - M̂)", 1),
        ModelEntry("gc", "baselines.blind:gc", 6.06e6, "MPN + DeepFill v2 gated convolutions", 1),
        ModelEntry("vcn-ed", "vcn.model:vcn_ed", None, "ablation: plain encoder-decoder (no MPN, no PCN)", 3),
        ModelEntry("vcn-no-mpn", "vcn.model:vcn_no_mpn", None, "ablation: RIN with PCN but no mask prediction", 3),
        ModelEntry("vcn-no-fusion", "vcn.model:vcn_no_fusion", None, "ablation: no MPN-to-RIN feature fusion", 3),
        ModelEntry("vcn-rm", "vcn.model:vcn_rm", None, "ablation: RIN fed I ⊙ (1 - M̂)", 3),
    )
}


def model_names(table: int | None = None) -> list[str]:
    """Registered names in registry order; ``table=1`` the compared methods, ``table=3`` the VCN ablations."""
    return [name for name, entry in REGISTRY.items() if table is None or entry.table == table]


def get_entry(name: str) -> ModelEntry:
    if name not in REGISTRY:
        raise unknown("model", name, REGISTRY)
    return REGISTRY[name]


def create_model(name: str, preset: str | None = None, pretrained: str | None = None,
                 checkpoint_path: str | None = None, **overrides) -> nn.Module:
    """Build a registered model, optionally with trained weights (timm's ``pretrained=`` / ``checkpoint_path=``).

    Args:
        name: a registry name (``vcn``, ``ca``, ``gmc``, ``pc``, ``gc``, ``vcn-ed``, ...).
        preset: ``paper`` (the paper's sizes; the default) or ``tiny`` (a few channels: trains on CPU in seconds).
        pretrained: a zoo name (``photos``): weights trained by blindbench, shipped in ``zoo/``; eval mode.
        checkpoint_path: a training checkpoint or run folder of this model; eval mode.
        **overrides: constructor options (widths, ...); not with trained weights.
    """
    entry = get_entry(name)
    if pretrained or checkpoint_path:
        if pretrained and checkpoint_path:
            raise ConfigError("give pretrained or checkpoint_path, not both")
        if overrides:
            raise ConfigError(f"trained weights fix the architecture: options {sorted(overrides)} cannot apply")
        if pretrained:
            from blindbench.zoo import load_pretrained, read_card

            stored = read_card(pretrained, name)["preset"]
            model = load_pretrained(name, pretrained)
        else:
            from blindbench.checkpoint import load_model_from_checkpoint

            model, meta = load_model_from_checkpoint(checkpoint_path, name)
            stored = meta.get("preset")
        if preset is not None and preset != stored:
            raise ConfigError(f"the {name} weights are preset {stored!r}, not {preset!r}")
        return model
    preset = preset or "paper"
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    try:
        return entry.constructor(preset=preset, **overrides)
    except ValueError as exc:  # the model packages raise ValueError for bad options
        raise ConfigError(f"model {name}: {exc}") from None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, size: int = 256, device: str | torch.device = "meta") -> int:
    """Multiply-accumulates of one forward pass on a (1, 3, size, size) input.

    Counts convolutions (incl. transposed) and linear layers, the layers that hold nearly all the work;
    attention matmuls, normalisation and activations are not counted. On the meta device nothing is
    computed, only shapes, so a paper-size model costs milliseconds.
    """
    import torch
    from torch import nn

    total = 0

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kernel = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * kernel
        elif isinstance(module, nn.ConvTranspose2d):
            kernel = module.out_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += inputs[0].numel() * kernel
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear |
                                                                                      nn.ConvTranspose2d)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return total


@dataclass(frozen=True)
class ModelSummary:
    name: str
    params: int
    paper_params: float | None
    gmacs: float | None
    description: str

    @property
    def deviation(self) -> float | None:
        return None if self.paper_params is None else self.params / self.paper_params - 1.0


def summarize(name: str, preset: str = "paper", size: int = 256) -> ModelSummary:
    """Parameter count (on the meta device) and GMACs at ``size``² of a registered model."""
    import torch

    entry = get_entry(name)
    with torch.device("meta"):
        model = create_model(name, preset)
    try:
        gmacs = count_macs(model.eval(), size) / 1e9
    except (NotImplementedError, RuntimeError):  # an op without a meta kernel: count on the CPU instead
        with torch.device("cpu"):
            gmacs = count_macs(create_model(name, preset).eval(), size, device="cpu") / 1e9
    return ModelSummary(name, count_parameters(model), entry.paper_params, gmacs, entry.description)
