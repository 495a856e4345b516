"""A faster CPU forward for inference: ``torch.compile`` (inductor, frozen weights) behind the model's own call.

``prepare_for_inference(model)`` returns a :class:`FastModel`: an ``nn.Module`` called exactly like the model
(``fast(image, mask=None, beta=None) -> InpaintOutput``) that runs an inductor-compiled copy of the forward on
CPU and the model itself everywhere else. Measured in ``benchmarks/inference.py`` (``benchmarks/RESULTS.md``):
of eager, channels-last, ``torch.jit.trace`` + ``freeze`` (oneDNN conv+ELU fusions) and inductor, only
inductor with ``freezing`` (weights as constants, prepacked for oneDNN, PCN's elementwise passes fused into a
few loops) clears 1.5x over eager; channels-last and the frozen TorchScript graph stay within noise of eager.

When it runs the compiled forward: on CPU, in eval mode, without autograd (``torch.no_grad`` or
``torch.inference_mode``), with a C++ compiler on the machine. ``mask=`` and ``beta=`` are supported: each
combination (mask given or not, the β value) is its own compiled variant. Everything else runs the model
eagerly: training, gradients, other devices, ``eager=True``, a variant whose compilation failed (one warning,
then eager for that variant), and new shapes once ``max_variants`` are compiled.

Costs: the first call of each shape compiles it (tens of seconds to minutes on a loaded 2-core machine; the
figures are in RESULTS.md), reported in :attr:`FastModel.compile_seconds` and logged. Inductor keeps the
generated C++ kernels in its on-disk cache (``TORCHINDUCTOR_CACHE_DIR``, by default ``/tmp/torchinductor_$USER``),
so a later process compiling the same model and shape skips the C++ build; frozen graphs themselves are not
cached by torch. A batch smaller than an already compiled one of the same image size (the last batch of an
eval) is padded up to it by repeating its last image, instead of paying for another compilation: every model
here treats batch items independently, and the padded rows are dropped.

The compiled copy holds the weights as they were at the first call of each variant: after changing them,
prepare again.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from vcn.types import InpaintOutput

__all__ = ["FastModel", "compiler_available", "prepare_for_inference"]

log = logging.getLogger(__name__)

MAX_VARIANTS = 4  # compiled (shape, mask given, β) variants per model before new ones run eagerly
_COMPILERS = ("c++", "g++", "clang++")


def compiler_available() -> bool:
    """Whether inductor can build CPU kernels here: ``$CXX`` or a ``c++``/``g++``/``clang++`` on the PATH."""
    cxx = os.environ.get("CXX")
    return bool(cxx and shutil.which(cxx)) or any(shutil.which(name) for name in _COMPILERS)


def _variant(image: Tensor, mask: Tensor | None, beta: float | None) -> tuple[Any, ...]:
    """Everything but the batch size that picks a compiled graph."""
    return (tuple(image.shape[1:]), image.dtype, mask is not None, beta)


class FastModel(nn.Module):
    """``model`` with a compiled CPU inference forward; see the module docstring for when each path runs.

    Attributes:
        eager_reason: why every call runs eagerly (``eager=True``, no C++ compiler, ...), or ``""``.
        compile_seconds: wall time of the first (compiling) call of each compiled variant, keyed by
            ``(batch, channels, height, width, mask given, beta)``.
        failures: the variants whose compilation failed, with the one-line reason.

    Shape:
        as the wrapped model: image (B, 3, H, W) in [-1, 1], mask (B, 1, H, W) ->
        InpaintOutput(mask_logits (B, 1, H, W) or None, image (B, 3, H, W)), contiguous
    """

    def __init__(self, model: nn.Module, eager: bool = False, max_variants: int = MAX_VARIANTS) -> None:
        super().__init__()
        self._orig_mod = model  # the name blindbench.checkpoint.unwrap (and torch.compile's wrapper) uses
        self.max_variants = max_variants
        self.eager_reason = "eager requested" if eager else ("" if compiler_available() else "no C++ compiler")
        self.compile_seconds: dict[tuple[Any, ...], float] = {}
        self.failures: dict[tuple[Any, ...], str] = {}
        self._batches: dict[tuple[Any, ...], set[int]] = {}  # variant -> compiled batch sizes
        self._compiled: Any = None

    @property
    def model(self) -> nn.Module:
        """The wrapped model (what the eager path runs)."""
        return self._orig_mod

    def _compiled_forward(self) -> Any:
        if self._compiled is None:
            # freezing: parameters become constants that inductor prepacks for oneDNN (inference only)
            self._compiled = torch.compile(self._orig_mod, dynamic=False, options={"freezing": True})
        return self._compiled

    def uses_fast_path(self, image: Tensor) -> bool:
        """Whether a call with ``image`` now would run the compiled forward (or compile it)."""
        return (not self.eager_reason and not self.training and not torch.is_grad_enabled()
                and image.device.type == "cpu")  # fmt: skip

    def forward(self, image: Tensor, mask: Tensor | None = None, beta: float | None = None) -> InpaintOutput:
        """Restore ``image`` as the wrapped model does (same arguments, same output type)."""
        if not self.uses_fast_path(image):
            return self._orig_mod(image, mask=mask, beta=beta)
        variant = _variant(image, mask, beta)
        if variant in self.failures:
            return self._orig_mod(image, mask=mask, beta=beta)
        batch = image.shape[0]
        compiled = self._batches.get(variant, set())
        larger = sorted(b for b in compiled if b > batch)
        if batch not in compiled and larger:
            return self._padded(image, mask, beta, larger[0])
        if batch not in compiled and sum(len(v) for v in self._batches.values()) >= self.max_variants:
            return self._orig_mod(image, mask=mask, beta=beta)
        key = (batch, *image.shape[1:], mask is not None, beta)
        start = time.perf_counter()
        try:
            out = self._compiled_forward()(image, mask=mask, beta=beta)
        except ValueError:
            raise  # the model's own check of its arguments (a bad shape or β), raised while tracing
        except Exception as exc:  # noqa: BLE001 - any compiler failure: this variant runs eagerly from now on
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.failures[variant] = reason
            warnings.warn(f"fast path: compiling {type(self._orig_mod).__name__} for {key} failed ({reason}); "
                          "running it eagerly", RuntimeWarning, stacklevel=2)  # fmt: skip
            return self._orig_mod(image, mask=mask, beta=beta)
        if batch not in compiled:
            self.compile_seconds[key] = time.perf_counter() - start
            self._batches.setdefault(variant, set()).add(batch)
            log.info("fast path: compiled %s for %s in %.1f s", type(self._orig_mod).__name__, key,
                     self.compile_seconds[key])  # fmt: skip
        return InpaintOutput(None if out.mask_logits is None else out.mask_logits.contiguous(),
                             out.image.contiguous())  # fmt: skip

    def _padded(self, image: Tensor, mask: Tensor | None, beta: float | None, batch: int) -> InpaintOutput:
        """Run a short batch as a compiled ``batch``-sized one, repeating its last item, and drop the extra rows."""
        n = image.shape[0]

        def pad(t: Tensor) -> Tensor:
            return torch.cat([t, t[-1:].expand(batch - n, *t.shape[1:])])

        out = self(pad(image), mask=None if mask is None else pad(mask), beta=beta)
        return InpaintOutput(None if out.mask_logits is None else out.mask_logits[:n], out.image[:n])

    def describe(self) -> str:
        """One line for logs: which path runs and what compiling cost so far."""
        if self.eager_reason:
            return f"eager forward ({self.eager_reason})"
        spent = ", ".join(f"batch {k[0]} {k[2]}x{k[3]}: {s:.1f} s" for k, s in self.compile_seconds.items())
        return f"compiled CPU forward (inductor, frozen weights){'; compiled ' + spent if spent else ''}"


def prepare_for_inference(model: nn.Module, eager: bool = False, max_variants: int = MAX_VARIANTS) -> FastModel:
    """Wrap ``model`` for fast CPU inference; the model is put in eval mode and left otherwise unchanged.

    Args:
        model: a registered model (``model(image, mask=None, beta=None) -> InpaintOutput``).
        eager: always run the model itself (the ``--eager`` escape).
        max_variants: how many (batch, image size, mask given, β) variants to compile; later ones run eagerly.

    Returns:
        A :class:`FastModel` whose calls return what ``model`` returns, within float rounding (RESULTS.md:
        PSNR equal to eager's within 1e-4 dB).
    """
    if max_variants < 1:
        raise ValueError(f"max_variants must be >= 1, got {max_variants}")
    return FastModel(model.eval(), eager=eager, max_variants=max_variants).eval()
