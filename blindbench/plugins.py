"""Models from outside the registry: a Python callable ``pkg.module:build``, a TorchScript file or a
``torch.export`` program, scored and run exactly like registered models.

The contract, in one place: the module takes ``image`` (B, 3, H, W) in [-1, 1] and returns one of

- an ``InpaintOutput(mask_logits, image)`` (what registered models return),
- a tuple ``(mask_logits, image)`` (mask_logits (B, 1, H, W) or None),
- the restored image alone, (B, 3, H, W) in [-1, 1] (then it has no mask columns).

If its forward also takes a ``mask`` argument, non-blind runs (``--mask-source true``, ``inpaint --mask``) pass
the mask (B, 1, H, W) in [0, 1], 1 = damaged. ``build`` is called with no arguments; ``--checkpoint`` then
loads a state dict into what it returns (a file holding ``{"model": state_dict}`` or a bare state dict).

``inpaint`` reflect-pads each piece to a size multiple: the module's int attribute ``size_multiple`` when it has
one, else 32 (also for modules whose attributes cannot be read, such as
most exported programs). An exported program keeps the train/eval mode it was exported in.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import torch
from torch import Tensor, nn

from blindbench.errors import BlindbenchError
from vcn.types import InpaintOutput

FILE_SUFFIXES = (".pt", ".ts", ".pt2")


def is_external(name: str) -> bool:
    """A ``module:callable`` name or a path to a TorchScript / exported program."""
    return ":" in name or name.endswith(FILE_SUFFIXES)


class ExternalModel(nn.Module):
    """Wraps an outside module so it answers like a registered one."""

    def __init__(self, inner: nn.Module | torch.jit.ScriptModule, takes_mask: bool, fixed_mode: bool = False) -> None:
        super().__init__()
        self.inner, self.takes_mask, self.fixed_mode = inner, takes_mask, fixed_mode
        own = getattr(inner, "size_multiple", None)
        if isinstance(own, int) and not isinstance(own, bool) and own >= 1:
            self.size_multiple = own  # what `inpaint` pads to; else 32

    def train(self, mode: bool = True) -> ExternalModel:
        """Sets the mode; an exported program keeps the one it was exported in (its ``eval()`` raises)."""
        self.training = mode
        if not self.fixed_mode:
            self.inner.train(mode)
        return self

    def forward(self, image: Tensor, mask: Tensor | None = None, beta: float | None = None) -> InpaintOutput:
        if mask is not None and not self.takes_mask:
            raise BlindbenchError("this model takes no mask: it cannot run non-blind")
        try:
            out = self.inner(image, mask) if mask is not None else self.inner(image)
        except AssertionError as exc:  # an exported program's shape guard (exported for other sizes)
            reason = str(exc).splitlines()[0] if str(exc) else "an assertion failed"
            h, w = image.shape[-2:]
            raise BlindbenchError(f"the model refused a {h}x{w} input: {reason}") from None
        if isinstance(out, InpaintOutput):
            return out
        if isinstance(out, tuple | list) and len(out) == 2:
            return InpaintOutput(out[0], out[1])
        if isinstance(out, Tensor):
            return InpaintOutput(None, out)
        raise BlindbenchError(f"the model returned {type(out).__name__}: return an image tensor, a (mask_logits, "
                              f"image) tuple or an InpaintOutput")  # fmt: skip


def _takes_mask(forward) -> bool:
    try:
        return "mask" in inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False


def load_external(name: str, checkpoint: str = "", map_location: str | torch.device = "cpu") -> ExternalModel:
    """Build the outside model ``name`` (see the module docstring); one-line errors for every failure."""
    if name.endswith(FILE_SUFFIXES) and ":" not in name:
        path = Path(name)
        if not path.is_file():
            raise BlindbenchError(f"model file not found: {path}")
        try:
            if path.suffix == ".pt2":
                program = torch.export.load(str(path))
                inner = program.module()
                takes_mask = len(program.graph_signature.user_inputs) > 1
                return ExternalModel(inner, takes_mask, fixed_mode=True).to(map_location).eval()
            inner = torch.jit.load(str(path), map_location=map_location)
        except Exception as exc:  # noqa: BLE001 - any load failure is a bad file
            raise BlindbenchError(f"cannot load {path} as a TorchScript or exported model "
                                  f"({type(exc).__name__})") from None  # fmt: skip
        return ExternalModel(inner, _takes_mask(getattr(inner, "forward", inner))).eval()
    module_name, _, attribute = name.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise BlindbenchError(f"cannot import model {name!r}: {exc}") from None
    inner = factory()
    if not isinstance(inner, nn.Module):
        raise BlindbenchError(f"{name} returned {type(inner).__name__}, not a torch.nn.Module")
    if checkpoint:
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise BlindbenchError(f"cannot read weights {checkpoint} ({type(exc).__name__})") from None
        state = state.get("model", state) if isinstance(state, dict) else state
        try:
            inner.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise BlindbenchError(f"weights {checkpoint} do not fit {name}: {str(exc).splitlines()[0]}") from None
    return ExternalModel(inner, _takes_mask(inner.forward)).to(map_location).eval()
