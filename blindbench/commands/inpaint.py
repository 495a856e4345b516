"""``blindbench inpaint``: its config, and the run (torch imported inside, by :mod:`blindbench.inpainting`)."""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass
from typing import Any

from blindbench.errors import ConfigError
from blindbench.options import device_option, eager_option, progress_option
from blindbench.options import option as _option


def _type_ok(value: Any, kind: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind in (int, float):
        return isinstance(value, int if kind is int else int | float) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    return True


@dataclass(frozen=True)
class InpaintConfig:
    """Inpaint images with a trained model: restored image, predicted mask and overlay per input."""

    inputs: tuple[str, ...] = _option(
        (), "image files and/or folders (searched recursively; *.mask.*, *.overlay.* and LaMa-style <stem>_mask*.* "
        "masks beside <stem>.* skipped)", positional=True
    )
    model: str = _option("vcn", "registered model name (the checkpoint must hold it), a plug-in pkg.module:build, or "
                         "a TorchScript (.pt, .ts) or torch.export (.pt2) file")
    checkpoint: str = _option("", "checkpoint file, or a training run folder (its checkpoints/last.pt); for "
                              "pkg.module:build, optional weights (a state dict)")
    pretrained: str = _option("", "zoo weights trained by blindbench instead of --checkpoint, e.g. photos")
    out: str = _option("", "output folder", short="-o")
    mask: str = _option(
        "",
        "non-blind mode: a mask image for every input, or a folder of masks named <name>.mask.png, "
        "<name>_mask*.png (LaMa) or <name>.png (255 = damaged)",
    )
    beta: float = _option(-1.0, "fix PCN's beta in [0, 1] (larger leans more on context); negative: the model's own")
    device: str = device_option("auto (cuda when available), cpu or cuda")
    tile: int = _option(512, "tile side for large images (rounded up to the model's size multiple); 0: whole image")
    overlap: int = _option(64, "minimum overlap of neighbouring tiles in pixels, blended with a raised cosine")
    composite: bool = _option(True, "keep the input where the mask calls it clean (Ô ⊙ M̂ + I ⊙ (1 − M̂)); "
                              "--no-composite writes the raw network output")
    progress: bool = progress_option("show a tqdm progress bar over the images")
    eager: bool = eager_option()
    compile_min: int = _option(500, "CPU: run a torch.compile'd forward when at least this many images are given "
                               "(its one-time cost, 20 s to minutes per image size, pays only on many images of one "
                               "size); 0: always")

    def __post_init__(self) -> None:
        inputs = self.inputs
        if isinstance(inputs, str | os.PathLike):
            inputs = (inputs,)
        object.__setattr__(self, "inputs", tuple(str(p) for p in inputs))
        hints = typing.get_type_hints(InpaintConfig)
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), hints[f.name]
            if not _type_ok(value, kind):
                raise ConfigError(f"inpaint option {f.name}: expected {kind.__name__}, got {value!r}")
            if kind is float:
                object.__setattr__(self, f.name, float(value))
            choices = f.metadata.get("choices")
            if choices and value not in choices:
                raise ConfigError(f"inpaint option {f.name}: {value!r} is not one of {', '.join(choices)}")
        if math.isnan(self.beta) or self.beta > 1.0:
            raise ConfigError(f"inpaint option beta must be in [0, 1] (negative: the model's own), got {self.beta!r}")
        if self.tile < 0 or self.overlap < 0:
            raise ConfigError(f"inpaint options tile and overlap must be >= 0, got {self.tile} and {self.overlap}")
        if self.tile and self.overlap >= self.tile:
            raise ConfigError(f"inpaint option overlap ({self.overlap}) must be smaller than tile ({self.tile})")

    @property
    def beta_override(self) -> float | None:
        """``beta`` as the model takes it: None when unset (negative)."""
        return None if self.beta < 0 else self.beta


def run_inpaint(cfg: InpaintConfig) -> None:
    from blindbench.inpainting import run_inpaint

    written = run_inpaint(cfg)
    if os.environ.get("RANK", "0") == "0":  # under torchrun every rank returns every path: say it once
        print(f"inpainted {len(written)} image(s) into {cfg.out} (restored, .mask.png, .overlay.png)")
