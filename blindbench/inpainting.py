"""Inpainting with a trained model: any image size, tiles for large inputs, blind or with a user's mask.

Python API::

    restored, mask = inpaint(image, model)                 # blind: the model's MPN predicts the mask
    restored, mask = inpaint(image, model, mask=known)     # non-blind: ``known`` guides the inpainting net
    restored, mask = inpaint(image, model, beta=0.2)       # PCN's β fixed at inference (VCN)

One value convention in :func:`inpaint`, for arrays and tensors alike: pixel values are integer levels (uint8,
uint16) or floats in [0, 1], and masks are in [0, 1] with 1 = damaged; restored images come back in the
input's convention. A float outside [0, 1] (e.g. a tensor in the models' [-1, 1]) is a one-line error.
The models' own [-1, 1] convention is kept inside: :func:`inpaint_tensor` is the low-level core on it.

Command (``blindbench inpaint``): :class:`InpaintConfig` and :func:`run_inpaint`.

Choices:

- **Any size.** Each piece the network sees is reflect-padded (split evenly between the two sides) to the
  model's size multiple and cropped back. Every registered model declares it as its ``size_multiple``
  attribute: 4 (VCN and its ablations, GMC), 8 (CA, GC: contextual attention at 1/8) and 2**depth for the PC
  U-Net (16 tiny, 128 paper); an outside module that declares none gets 32.
- **Large images: native-resolution tiles, not a working resolution.** Images whose sides exceed ``tile``
  (default 512, rounded up to the size multiple) are cut into tiles of that side, evenly spread so that
  neighbours overlap by at least ``overlap`` pixels (default 64). Each tile's outputs are weighted by a
  separable raised-cosine window that ramps across exactly the pixels it shares with each neighbour (flat
  1 at the image border); the two ramps of a shared band sum to 1, so a model that returned its input would
  give back the input exactly, and seams fade over the whole overlap. Nothing is resampled, so fine damage
  (text, thin strokes) keeps its size relative to the network's receptive field, as in training (256²).
  The price: PCN's statistics (the clean-context mean and spread that the damaged region is normalised to)
  are computed per tile, i.e. from the surrounding 512² rather than the whole photo. ``tile=0`` runs the
  whole image at once (memory grows with the area).
- **Masks.** The returned mask is M̂ = sigmoid(logits) blended across tiles as probabilities; with a user
  mask (non-blind mode) it is that mask, the one that guided the inpainting. Models without an MPN
  (``vcn-ed``, ``vcn-no-mpn``) return ``None`` unless a mask is given.
- **Files** (the command). Inputs are read with :func:`blindbench.imageio.read_image_rgba`: EXIF orientation
  applied (outputs are stored upright, without EXIF), palette/greyscale/16-bit converted to 8-bit RGB
  (16-bit by rounding x / 257, so outputs are always 8-bit PNG). An input whose three channels are equal
  everywhere (a greyscale file) gives a greyscale restored PNG (BT.601 luma of the output); an alpha
  channel is re-attached unchanged. Per input ``OUT/<name>.png`` (restored), ``OUT/<name>.mask.png``
  (8-bit, 255 = damaged) and ``OUT/<name>.overlay.png`` (mask in red over the input) are written atomically;
  ``<name>`` is the file's stem, or its path relative to a folder given as input (sub-folders mirrored).
  Files named ``*.mask.*`` or ``*.overlay.*`` in an input folder are left out (they are this command's own
  outputs, or masks kept beside their photos), and so are LaMa-style masks ``<stem>_mask*.*`` that lie beside
  an image ``<stem>.*`` (``blindbench export --masks`` writes ``KEY_mask.png``); name such a file explicitly
  to inpaint it. With ``mask`` a folder, the mask of ``<name>`` is ``<name>.mask.*`` there, else the one
  ``<name>_mask*.*`` (LaMa's ``<name>_mask000.png``; several are an error), else ``<name>.*`` (never the input
  file itself).
- **Models.** A registered model with ``checkpoint`` or ``pretrained``, or any outside PyTorch model: a
  callable ``pkg.module:build`` (``checkpoint`` optional: its weights) or a TorchScript (``.pt``/``.ts``) or
  ``torch.export`` (``.pt2``) file, on the contract of :mod:`blindbench.plugins`.
- **torchrun.** Under ``torchrun --nproc_per_node N`` each rank restores a disjoint share of the inputs
  (round-robin) and rank 0 writes ``inpaint.toml``; every image is restored exactly once.
  After the run, ``OUT/inpaint.toml`` (written atomically) holds the resolved config and, as comments, each
  input restored or skipped; a run that restores nothing leaves an earlier run's record untouched.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import sys
import typing
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from blindbench.checkpoint import load_model_from_checkpoint, unwrap
from blindbench.commands.inpaint import InpaintConfig
from blindbench.distributed import Ranks, joined_ranks
from blindbench.errors import BlindbenchError, ConfigError, ImageReadError
from blindbench.imageio import IMAGE_SUFFIXES, atomic_write_bytes, list_images, read_image_rgba
from blindbench.locking import exclusive_folder
from blindbench.options import resolved_toml, select_device, toml_value
from blindbench.plugins import is_external, load_external

OVERLAY_COLOUR = (255, 0, 0)
OVERLAY_OPACITY = 0.5
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as PIL's "L" conversion
FALLBACK_MULTIPLE = 32  # for a module that declares no size_multiple: enough for five stride-2 stages


# --------------------------------------------------------------------------------------------- size multiple

def size_multiple(model: nn.Module) -> int:
    """The number image height and width must be divisible by for ``model`` (see the module docstring).

    Every registered model declares it (its ``size_multiple`` attribute); a module that declares none (an
    outside model) gets `FALLBACK_MULTIPLE`.
    """
    own = getattr(unwrap(model), "size_multiple", None)
    return own if isinstance(own, int) and not isinstance(own, bool) and own >= 1 else FALLBACK_MULTIPLE


# ----------------------------------------------------------------------------------------- tiles and padding


def _spans(length: int, tile: int, overlap: int, multiple: int = 1) -> list[tuple[int, int]]:
    """Tiles covering ``[0, length)``: as few as sides <= ``tile`` allow, evenly spread, overlapping >= ``overlap``.

    The side actually used is the smallest multiple of ``multiple`` (<= ``tile``) that covers ``length`` with
    that many tiles, so no more pixels are computed twice than the overlaps need.
    """
    if tile <= 0 or length <= tile:
        return [(0, length)]
    count = math.ceil((length - overlap) / (tile - overlap))
    side = min(tile, -(-math.ceil((length + (count - 1) * overlap) / count) // multiple) * multiple)
    starts = [round(i * (length - side) / (count - 1)) for i in range(count)]
    return [(s, s + side) for s in starts]


def _window(spans: list[tuple[int, int]], index: int) -> Tensor:
    """1-D blending weights of tile ``index``: raised-cosine ramps over the bands shared with its neighbours.

    The down ramp of tile i and the up ramp of tile i + 1 cover the same band and sum to 1 at every pixel.
    """
    start, end = spans[index]
    weight = torch.ones(end - start, dtype=torch.float64)
    up = spans[index - 1][1] - start if index > 0 else 0
    down = end - spans[index + 1][0] if index + 1 < len(spans) else 0
    if up > 0:
        weight[:up] *= 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(up, dtype=torch.float64) + 0.5) / up)
    if down > 0:
        weight[end - start - down :] *= 0.5 + 0.5 * torch.cos(
            math.pi * (torch.arange(down, dtype=torch.float64) + 0.5) / down
        )
    return weight.float()


def _reflect_index(size: int, before: int, after: int, device: torch.device) -> Tensor:
    """Indices that reflect-pad an axis of ``size`` by ``before``/``after`` (any amount: the reflection repeats)."""
    positions = torch.arange(-before, size + after, device=device)
    if size == 1:
        return torch.zeros_like(positions)
    period = 2 * (size - 1)
    folded = positions.remainder(period)
    return torch.where(folded < size, folded, period - folded)


def _pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Reflect-pad the last two dims of ``x`` to multiples of ``multiple``, split evenly -> (padded, (top, left))."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if not (pad_h or pad_w):
        return x, (0, 0)
    top, left = pad_h // 2, pad_w // 2
    x = x.index_select(-2, _reflect_index(h, top, pad_h - top, x.device))
    x = x.index_select(-1, _reflect_index(w, left, pad_w - left, x.device))
    return x, (top, left)


def _model_placement(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32


def inpaint_tensor(
    image: Tensor,
    model: nn.Module,
    mask: Tensor | None = None,
    beta: float | None = None,
    tile: int = 512,
    overlap: int = 64,
) -> tuple[Tensor, Tensor | None]:
    """The core of :func:`inpaint` on model-convention tensors of any size.

    Args:
        image: (B, 3, H, W) in [-1, 1], any H, W and device.
        model: a registered model (``model(image, mask=None, beta=None) -> InpaintOutput``), run on its own
            device and dtype; put in eval mode for the call.
        mask: optional (B, 1, H, W) in [0, 1], 1 = damaged: non-blind mode.
        beta: fixed PCN β in [0, 1], or None for the model's own.
        tile: tile side (rounded up to the model's size multiple); 0 = the whole image in one pass.
        overlap: minimum overlap of neighbouring tiles.

    Returns:
        (restored (B, 3, H, W) float32 in [-1, 1], mask (B, 1, H, W) float32 in [0, 1] or None), on
        ``image``'s device; the mask is ``mask`` itself when one was given.
    """
    b, _, h, w = image.shape
    multiple = size_multiple(model)
    side = -(-tile // multiple) * multiple if tile > 0 else 0
    if side and overlap >= side:
        raise BlindbenchError(f"tile overlap ({overlap}) must be smaller than the tile side ({side})")
    device, dtype = _model_placement(model)
    rows, cols = _spans(h, side, overlap, multiple), _spans(w, side, overlap, multiple)
    out_image = torch.zeros(b, 3, h, w, device=image.device)  # (B, 3, H, W) weighted sums
    out_mask: Tensor | None = None
    total = torch.zeros(1, 1, h, w, device=image.device)  # (1, 1, H, W) sum of weights
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for i, (y0, y1) in enumerate(rows):
                for j, (x0, x1) in enumerate(cols):
                    piece, (top, left) = _pad_to_multiple(image[..., y0:y1, x0:x1].to(device, dtype), multiple)
                    guide = None
                    if mask is not None:
                        guide, _ = _pad_to_multiple(mask[..., y0:y1, x0:x1].to(device, dtype), multiple)
                    out = model(piece, mask=guide, beta=beta)
                    crop = (..., slice(top, top + y1 - y0), slice(left, left + x1 - x0))
                    weight = (_window(rows, i)[:, None] * _window(cols, j)[None, :]).to(image.device)  # (h, w)
                    out_image[..., y0:y1, x0:x1] += out.image[crop].float().to(image.device) * weight
                    total[..., y0:y1, x0:x1] += weight
                    if mask is None and out.mask_logits is not None:
                        if out_mask is None:
                            out_mask = torch.zeros(b, 1, h, w, device=image.device)
                        prob = torch.sigmoid(out.mask_logits[crop].float()).to(image.device)
                        out_mask[..., y0:y1, x0:x1] += prob * weight
    except ValueError as exc:  # a shape the model refuses despite the padding
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BlindbenchError(f"model {type(model).__name__} failed on a {h}x{w} input: {reason}") from None
    finally:
        model.train(was_training)
    restored = (out_image / total).clamp(-1.0, 1.0)
    if mask is not None:
        return restored, mask.float()
    return restored, None if out_mask is None else (out_mask / total).clamp(0.0, 1.0)


# ---------------------------------------------------------------------------------------------- Python API


def _check_beta(beta: float | None) -> float | None:
    if beta is None:
        return None
    if not isinstance(beta, int | float) or isinstance(beta, bool) or not 0.0 <= beta <= 1.0:
        raise BlindbenchError(f"beta must be a number in [0, 1], got {beta!r}")
    return float(beta)


def _array_to_unit(array: np.ndarray, what: str) -> np.ndarray:
    """uint8 / uint16 / bool / float in [0, 1] -> float32 in [0, 1]."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if array.dtype.kind == "f":
        if array.size and not (np.isfinite(array).all() and array.min() >= 0.0 and array.max() <= 1.0):
            raise BlindbenchError(f"float {what} must lie in [0, 1], got {_value_range(array.min(), array.max())}")
        return array.astype(np.float32)
    raise BlindbenchError(f"{what} dtype {array.dtype} is not supported: use uint8, uint16 or float in [0, 1]")


def _value_range(low: float, high: float) -> str:
    return f"values in [{float(low):.3g}, {float(high):.3g}]"


def _unit_to_dtype(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype == np.uint8:
        return np.rint(array * 255.0).clip(0, 255).astype(np.uint8)
    if dtype == np.uint16:
        return np.rint(array * 65535.0).clip(0, 65535).astype(np.uint16)
    return array.astype(dtype)


def _luma(rgb: Tensor, dim: int) -> Tensor:
    weights = torch.tensor(_LUMA, dtype=rgb.dtype, device=rgb.device)
    shape = [1] * rgb.ndim
    shape[dim] = 3
    return (rgb * weights.view(shape)).sum(dim=dim, keepdim=True)


def _mask_tensor(mask: np.ndarray | Tensor, batch: int, size: tuple[int, int], device: torch.device) -> Tensor:
    """A user mask as (B, 1, H, W) float32 in [0, 1] on ``device``; a wrong size is a one-line error."""
    if isinstance(mask, Tensor):
        m = mask.detach()
        if m.dtype == torch.bool:
            m = m.float()
        if not m.is_floating_point():
            raise BlindbenchError(f"mask tensor dtype {m.dtype} is not supported: use bool or float in [0, 1]")
        m = m.float()
        if m.numel() and not bool(((m >= 0.0) & (m <= 1.0)).all()):  # NaN fails too
            raise BlindbenchError("mask tensor values must lie in [0, 1]")
    else:
        array = np.asarray(mask)
        if array.ndim == 3 and array.shape[2] in (1, 3):
            array = array.max(axis=2)  # a mask saved as RGB: any channel marks damage
        m = torch.from_numpy(np.ascontiguousarray(_array_to_unit(array, "mask")))
    while m.ndim < 4:
        m = m.unsqueeze(0)
    if m.ndim != 4 or m.shape[1] != 1 or m.shape[0] not in (1, batch):
        raise BlindbenchError(f"mask must be (H, W), (1, H, W) or (B, 1, H, W), got {tuple(mask.shape)}")
    if tuple(m.shape[-2:]) != tuple(size):
        mh, mw = m.shape[-2:]
        raise BlindbenchError(f"mask is {mh}x{mw} (HxW) but the image is {size[0]}x{size[1]}")
    return m.expand(batch, -1, -1, -1).to(device)


ArrayOrTensor = typing.TypeVar("ArrayOrTensor", np.ndarray, Tensor)


def inpaint(
    image: ArrayOrTensor,
    model: nn.Module,
    mask: np.ndarray | Tensor | None = None,
    *,
    beta: float | None = None,
    tile: int = 512,
    overlap: int = 64,
    composite: bool = True,
) -> tuple[ArrayOrTensor, ArrayOrTensor | None]:
    """Restore ``image`` with ``model``: blind (the model predicts the damage) or guided by a known ``mask``.

    Any size works (see the module docstring for padding and tiles). The model runs on its own device.

    Args:
        image: a NumPy array (H, W) grey, (H, W, 1|2|3|4) grey / grey+alpha / RGB / RGBA, uint8, uint16 or
            float in [0, 1]; or a float tensor (3, H, W) or (B, 3, H, W) in [0, 1], on any device. Floats
            outside [0, 1] are refused: for a tensor ``x`` in the models' [-1, 1], pass ``(x + 1) / 2``.
        model: a registered model, e.g. from :func:`blindbench.checkpoint.load_model_from_checkpoint`.
        mask: optional known damage mask, 1 (or 255) = damaged, same height and width as ``image``: arrays
            (H, W) / (H, W, 1|3) uint8, uint16, bool or float in [0, 1]; tensors (H, W), (1, H, W) or
            (B, 1, H, W). It replaces M̂ as the inpainting net's guide (the paper's non-blind mode).
        beta: fix PCN's β in [0, 1] for every layer (VCN; larger leans more on the context); None = the
            model's own. Models without PCN ignore it.
        tile: tile side for large images (rounded up to the model's size multiple); 0 = one pass.
        overlap: minimum overlap of neighbouring tiles in pixels.
        composite: return ``Ô ⊙ M + I ⊙ (1 − M)`` (M = M̂, or ``mask`` when given), which keeps the pixels the
            mask calls clean, as the official code's composite; False returns the network's raw output Ô.

    Returns:
        ``(restored, mask)``. Arrays: restored has ``image``'s shape and dtype (alpha copied, grey from the
        BT.601 luma of the output), mask is float32 (H, W) in [0, 1]. Tensors: restored has ``image``'s shape,
        dtype and device, in [0, 1]; mask is (B, 1, H, W) (or (1, H, W)) of the same dtype. The mask is M̂, or ``mask``
        when one was given; None for a model without MPN run blind.

    Raises:
        BlindbenchError: an unsupported shape or dtype, a value outside [0, 1], a mask of another size, a β
            outside [0, 1].
    """
    beta = _check_beta(beta)
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 0 or not isinstance(overlap, int) or overlap < 0:
        raise BlindbenchError(f"tile and overlap must be integers >= 0, got {tile!r} and {overlap!r}")
    if isinstance(image, Tensor):
        return _inpaint_tensor_api(image, model, mask, beta, tile, overlap, composite)
    if not isinstance(image, np.ndarray):
        raise BlindbenchError(f"image must be a NumPy array or a torch tensor, got {type(image).__name__}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)) or 0 in image.shape:
        raise BlindbenchError(f"image array must be (H, W) or (H, W, 1|2|3|4), got {image.shape}")
    if image.dtype == np.bool_:
        raise BlindbenchError("image dtype bool is not supported: use uint8, uint16 or float in [0, 1]")
    unit = _array_to_unit(image, "image")
    planes = unit[..., None] if unit.ndim == 2 else unit  # (H, W, C)
    colour, alpha = (planes[..., :3], planes[..., 3:]) if planes.shape[2] >= 3 else (planes[..., :1], planes[..., 1:])
    rgb = np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour  # (H, W, 3)
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None] * 2.0 - 1.0  # (1, 3, H, W)
    guide = None if mask is None else _mask_tensor(mask, 1, image.shape[:2], x.device)
    restored, out_mask = inpaint_tensor(x, model, guide, beta, tile, overlap)
    if composite:
        restored = _composite(x, restored, out_mask)
    out = (restored[0] + 1.0) / 2.0  # (3, H, W) in [0, 1]
    if colour.shape[2] == 1:
        out = _luma(out, 0)  # (1, H, W)
    result = np.concatenate([out.permute(1, 2, 0).cpu().numpy(), alpha], axis=2)  # alpha copied as given
    result = _unit_to_dtype(result[..., 0] if image.ndim == 2 else result, image.dtype)
    return result, None if out_mask is None else out_mask[0, 0].cpu().numpy()


def _composite(image: Tensor, restored: Tensor, mask: Tensor | None) -> Tensor:
    """``Ô ⊙ M + I ⊙ (1 − M)``; the raw output where there is no mask (a model without MPN run blind)."""
    return restored if mask is None else restored * mask + image * (1.0 - mask)


def _inpaint_tensor_api(
    image: Tensor, model: nn.Module, mask: np.ndarray | Tensor | None, beta: float | None, tile: int, overlap: int,
    composite: bool = True,
) -> tuple[Tensor, Tensor | None]:
    if image.ndim not in (3, 4) or image.shape[-3] != 3 or not image.is_floating_point() or 0 in image.shape:
        raise BlindbenchError(
            f"image tensor must be float (3, H, W) or (B, 3, H, W) in [0, 1], got {tuple(image.shape)} {image.dtype}"
        )
    unit = image.detach()
    if not bool(((unit >= 0.0) & (unit <= 1.0)).all()):  # NaN fails too
        raise BlindbenchError(f"image tensor values must lie in [0, 1], got {_value_range(unit.min(), unit.max())} "
                              f"(for x in the models' [-1, 1] pass (x + 1) / 2)")  # fmt: skip
    batched = unit.ndim == 4
    unit = unit if batched else unit[None]
    x = unit * 2.0 - 1.0  # (B, 3, H, W) in the models' [-1, 1]
    guide = None if mask is None else _mask_tensor(mask, x.shape[0], tuple(x.shape[-2:]), x.device)
    restored, out_mask = inpaint_tensor(x, model, guide, beta, tile, overlap)
    restored = (restored + 1.0) / 2.0  # back to [0, 1]
    if composite:
        restored = _composite(unit, restored, out_mask)
    restored = restored.to(image.dtype)
    out_mask = None if out_mask is None else out_mask.to(image.dtype)
    if not batched:
        return restored[0], None if out_mask is None else out_mask[0]
    return restored, out_mask


# ------------------------------------------------------------------------------------------------- command


@dataclass(frozen=True)
class _Item:
    path: Path  # the input file
    name: str  # output name relative to OUT, without suffix ("photo" or "sub/photo")
    from_folder: bool  # found in a folder (unreadable ones are skipped) or named (unreadable is an error)


def _is_own_output(path: Path) -> bool:
    """Whether a file is named like a mask or overlay this command writes (``photo.mask.png``, ``x.overlay.jpg``)."""
    return Path(path.stem).suffix.lower() in (".mask", ".overlay")


def _is_lama_mask(path: Path, siblings: set[Path]) -> bool:
    """Whether ``path`` is a LaMa-style mask ``<stem>_mask*.*`` of an image ``<stem>.*`` in ``siblings``.

    The image must be there: a photo that merely has ``_mask`` in its name (``face_masked.jpg``) stays an input.
    """
    stem, found, _ = path.stem.rpartition("_mask")
    return bool(found and stem) and any(path.with_name(stem + suffix) in siblings for suffix in IMAGE_SUFFIXES)


def collect_inputs(inputs: Sequence[str]) -> list[_Item]:
    """Image files named or found (recursively) in the given folders, with their output names.

    Files in a folder named ``*.mask.*`` or ``*.overlay.*`` are left out: they are masks or this command's own
    outputs, not photos to restore; so are LaMa-style masks ``<stem>_mask*.*`` lying beside their image
    ``<stem>.*``. A file named explicitly is always taken.
    """
    if not inputs:
        raise BlindbenchError("no input images: give image files or folders")
    items: list[_Item] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            listed = list_images(path)
            siblings = {p.with_suffix(p.suffix.lower()) for p in listed}
            found = [p for p in listed if not _is_own_output(p) and not _is_lama_mask(p, siblings)]
            if not found:
                kinds = ", ".join(sorted(IMAGE_SUFFIXES))
                raise BlindbenchError(f"no images ({kinds}; *.mask.*, *.overlay.* and <stem>_mask*.* left out) found "
                                      f"in {path}")  # fmt: skip
            items += [_Item(p, p.relative_to(path).with_suffix("").as_posix(), True) for p in found]
        elif path.is_file():
            items.append(_Item(path, path.stem, False))
        else:
            raise BlindbenchError(f"input not found: {path}")
    seen: dict[str, Path] = {}
    for item in items:
        if item.name in seen:
            raise BlindbenchError(f"{seen[item.name]} and {item.path} would both be written as {item.name}.png")
        seen[item.name] = item.path
    return items


def output_paths(out: Path, name: str) -> tuple[Path, Path, Path]:
    """(restored, mask, overlay) paths of the input with output name ``name``."""
    return out / f"{name}.png", out / f"{name}.mask.png", out / f"{name}.overlay.png"


def _check_out(out: Path, inputs: Sequence[str], items: list[_Item]) -> None:
    resolved = out.resolve()
    for raw in inputs:
        folder = Path(raw).resolve()
        if Path(raw).is_dir() and (resolved == folder or folder in resolved.parents):
            raise BlindbenchError(f"output folder {out} is inside the input folder {raw}: a rerun would read it")
    sources = {item.path.resolve() for item in items}
    for item in items:
        for target in output_paths(out, item.name):
            if target.resolve() in sources:
                raise BlindbenchError(f"output {target} would overwrite an input image: choose another --out")


def _find_mask(mask: Path, item: _Item) -> Path:
    """The mask of ``item``: ``mask`` itself when a file, else in that folder ``<name>.mask.*``, then the one
    LaMa-style ``<name>_mask*.*`` (``photo_mask.png``, ``photo_mask000.png``), then ``<name>.*``.

    The input file itself is never its own mask (``--mask`` may be the input folder, masks beside the photos).
    """
    own = item.path.resolve()
    if mask.is_file():
        if mask.resolve() == own:
            raise BlindbenchError(f"mask {mask} is the input image itself: give a separate mask file")
        return mask

    def named(stem: str) -> Path | None:
        for suffix in sorted(IMAGE_SUFFIXES):
            candidate = mask / f"{stem}{suffix}"
            if candidate.is_file() and candidate.resolve() != own:
                return candidate
        return None

    found = named(f"{item.name}.mask")
    if found is not None:
        return found
    base = mask / item.name
    lama = sorted(p for p in base.parent.glob(glob.escape(base.name) + "_mask*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and p.resolve() != own)  # fmt: skip
    if len(lama) > 1:
        raise BlindbenchError(f"several masks for {item.path} in {mask}: {lama[0].name}, {lama[1].name}"
                              f"{f' and {len(lama) - 2} more' if len(lama) > 2 else ''}; keep one, or name it with "
                              f"--mask FILE")  # fmt: skip
    found = lama[0] if lama else named(item.name)
    if found is not None:
        return found
    raise BlindbenchError(f"no mask for {item.path} in {mask} (looked for {item.name}.mask.png, {item.name}_mask*.png, "
                          f"{item.name}.png, ...)")


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """A mask image as float32 (H, W) in [0, 1] (255 = damaged; the brightest channel; EXIF applied)."""
    try:
        rgb, _ = read_image_rgba(path)
    except ImageReadError as exc:
        raise ImageReadError(f"mask: {str(exc).splitlines()[0]}") from None
    return rgb.max(axis=2).astype(np.float32) / 255.0


def _encode_png(array: np.ndarray) -> bytes:
    """uint8 (H, W), (H, W, 2), (H, W, 3) or (H, W, 4) -> PNG bytes (L, LA, RGB, RGBA)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    return buffer.getvalue()


def overlay(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mask (H, W) in [0, 1] drawn in red at 50 % over uint8 RGB (H, W, 3) -> uint8 RGB."""
    alpha = OVERLAY_OPACITY * mask[..., None]
    colour = np.asarray(OVERLAY_COLOUR, dtype=np.float32)
    return np.rint(rgb.astype(np.float32) * (1.0 - alpha) + colour * alpha).clip(0, 255).astype(np.uint8)


def save_config(cfg: InpaintConfig, path: Path, extra: dict[str, Any] | None = None, done: Sequence[str] = ()) -> None:
    """The resolved config as a flat TOML file, written atomically.

    ``extra`` facts (``key: value``) and the ``done`` lines (what the run did, one per input) go in as comments,
    so the file still loads as a config.
    """
    notes = [*(f"{k}: {v}" for k, v in (extra or {}).items()), *done]
    atomic_write_bytes(path, resolved_toml(cfg, "inpaint", notes).encode())


def inpaint_file(
    rgb: np.ndarray,
    alpha: np.ndarray | None,
    name: str,
    out: Path,
    model: nn.Module,
    cfg: InpaintConfig,
    known: np.ndarray | None = None,
) -> list[Path]:
    """Inpaint one decoded image and write its outputs atomically; returns the paths written (restored first).

    Args:
        rgb: (H, W, 3) uint8 input; equal channels everywhere make a greyscale restored PNG.
        alpha: (H, W) uint8 alpha re-attached to the restored image, or None.
        name: output name relative to ``out``, without suffix.
        out: output folder.
        model: the model to run.
        cfg: gives β, tile and overlap.
        known: (H, W) float mask in [0, 1] for the non-blind mode, or None.
    """
    grey = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
    source = rgb[..., 0] if grey else rgb  # (H, W) grey in -> (H, W) grey out
    restored, mask = inpaint(source, model, known, beta=cfg.beta_override, tile=cfg.tile, overlap=cfg.overlap,
                             composite=cfg.composite)
    planes = restored if alpha is None else np.dstack([restored, alpha])
    restored_path, mask_path, overlay_path = output_paths(out, name)
    atomic_write_bytes(restored_path, _encode_png(planes))
    written = [restored_path]
    if mask is not None:
        atomic_write_bytes(mask_path, _encode_png(_unit_to_dtype(mask, np.uint8)))
        atomic_write_bytes(overlay_path, _encode_png(overlay(rgb, mask)))
        written += [mask_path, overlay_path]
    return written


def run_inpaint(cfg: InpaintConfig) -> list[Path]:
    """``blindbench inpaint``: restore every input image; returns the restored images' paths, in input order.

    Beside each ``OUT/<name>.png`` lie ``<name>.mask.png`` and ``<name>.overlay.png`` (not for a model without
    MPN run blind). An unreadable file found in a folder is reported on stderr and skipped; a named one, a
    missing checkpoint, a checkpoint of another model or a mask of the wrong size is a one-line error.
    ``OUT/inpaint.toml`` is written once the run ends (also when an error stops it), and only when it
    restored at least one image: the resolved config plus, as comments, each input restored or skipped.
    Under ``torchrun`` each rank restores a disjoint share of the inputs and every rank returns all paths.
    """
    with joined_ranks() as ranks:
        items, masks, out = ranks.agree(lambda: _plan(cfg))
        device = ranks.agree(lambda: ranks.device(select_device(cfg.device)))
        model, meta = ranks.agree(lambda: _load_model(cfg, device))
        model = _maybe_compiled(cfg, model, device, len(items))
        with ExitStack() as claimed:

            def claim() -> None:
                if ranks.main:
                    claimed.enter_context(exclusive_folder(out, "inpaint"))

            ranks.agree(claim)
            return _inpaint_items(cfg, items, masks, model, meta, device, out, ranks)


def _maybe_compiled(cfg: InpaintConfig, model: nn.Module, device: torch.device, count: int) -> nn.Module:
    """The model, or on CPU its compiled fast path (`blindbench.fastpath`) when ``count`` reaches ``compile_min``."""
    if cfg.compile_min < 0:
        raise BlindbenchError(f"--compile-min must be >= 0, got {cfg.compile_min}")
    if device.type != "cpu" or cfg.eager or count < cfg.compile_min or is_external(cfg.model):
        return model
    from blindbench.fastpath import compiler_available, prepare_for_inference

    if not compiler_available():
        return model
    print(f"inpaint: {count} images: compiling the model for CPU once per image size (--eager skips it)",
          file=sys.stderr)
    return prepare_for_inference(model)


def _plan(cfg: InpaintConfig) -> tuple[list[_Item], list[Path | None], Path]:
    """The inputs, their masks and the output folder, checked before any model is loaded."""
    from blindbench.models import get_entry

    if is_external(cfg.model):
        if cfg.pretrained:
            raise ConfigError("--pretrained names zoo weights of registered models only")
        if cfg.checkpoint and ":" not in cfg.model:
            raise ConfigError(f"--checkpoint loads weights into a pkg.module:build model; {cfg.model} holds its own")
    elif bool(cfg.checkpoint) == bool(cfg.pretrained):
        raise BlindbenchError("give the trained model with --checkpoint PATH or --pretrained NAME (one of them)")
    if not cfg.out:
        raise BlindbenchError("give an output folder with --out")
    if not is_external(cfg.model):
        get_entry(cfg.model)  # an unknown name: one line with a "did you mean"
    items = collect_inputs(cfg.inputs)
    out = Path(cfg.out)
    _check_out(out, cfg.inputs, items)
    mask_root = Path(cfg.mask) if cfg.mask else None
    if mask_root is not None and not mask_root.exists():
        raise BlindbenchError(f"mask not found: {mask_root}")
    masks = [None if mask_root is None else _find_mask(mask_root, item) for item in items]
    mask_files = {m.resolve() for m in masks if m is not None}
    for item in items:  # no output may replace a mask the run reads (e.g. --mask DIR -o DIR with DIR/<name>.png)
        for target in output_paths(out, item.name):
            if target.resolve() in mask_files:
                raise BlindbenchError(f"output {target} would overwrite a mask file: choose another --out")
    return items, masks, out


def _load_model(cfg: InpaintConfig, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """The model on ``device`` and what the record says about it (checkpoint step, preset)."""
    if is_external(cfg.model):
        return load_external(cfg.model, cfg.checkpoint, map_location=device), {"preset": f"outside model {cfg.model}"}
    if cfg.pretrained:
        from blindbench.zoo import load_pretrained, read_card

        card = read_card(cfg.pretrained, cfg.model)
        return load_pretrained(cfg.model, cfg.pretrained, device), {"step": card["steps_done"],
                                                                    "preset": card["preset"]}  # fmt: skip
    return load_model_from_checkpoint(cfg.checkpoint, cfg.model, map_location=device)


def _restore_one(cfg: InpaintConfig, item: _Item, mask_path: Path | None, model: nn.Module,
                 out: Path) -> tuple[Path | None, str]:
    """Restore one input: (the restored image's path, or None when skipped, and its record line)."""
    from tqdm.auto import tqdm

    try:
        rgb, alpha = read_image_rgba(item.path)
    except ImageReadError as exc:
        message = str(exc).splitlines()[0]
        if not item.from_folder:
            raise ImageReadError(message) from None
        tqdm.write(f"blindbench: skipped {message}", file=sys.stderr)
        return None, f"skipped {toml_value(str(item.path))}: {message}"
    known = None
    if mask_path is not None:
        known = read_mask(mask_path)
        if known.shape != rgb.shape[:2]:
            raise BlindbenchError(
                f"mask {mask_path} is {known.shape[0]}x{known.shape[1]} (HxW) but image {item.path} is "
                f"{rgb.shape[0]}x{rgb.shape[1]}"
            )
    written = inpaint_file(rgb, alpha, item.name, out, model, cfg, known)[0]
    source = toml_value(str(item.path)) + ("" if mask_path is None else f" (mask {toml_value(str(mask_path))})")
    return written, f"restored {source} -> {toml_value(written.relative_to(out).as_posix())}"


def _inpaint_items(cfg: InpaintConfig, items: list, masks: list, model: nn.Module, meta: dict, device,
                   out: Path, ranks: Ranks | None = None) -> list[Path]:
    """Restore this rank's share of ``items``; rank 0 writes the record of every rank's work."""
    from tqdm.auto import tqdm

    ranks = ranks or Ranks()
    mine = [i for i in range(len(items)) if ranks.mine(i)]
    bar = tqdm(mine, desc="inpaint", unit="image", disable=not cfg.progress or not ranks.main or len(items) < 2,
               dynamic_ncols=True)  # fmt: skip
    results: dict[int, tuple[Path | None, str]] = {}  # input index -> (restored or None when skipped, record line)
    error: BaseException | None = None
    try:
        for index in bar:
            results[index] = _restore_one(cfg, items[index], masks[index], model, out)
    except BaseException as exc:  # noqa: BLE001 - also Ctrl-C: the record of what was written first, then raised
        error = exc
    finally:
        bar.close()
    merged = {k: v for share in ranks.gather(results) for k, v in share.items()} if ranks.world > 1 else results
    written = [merged[i][0] for i in sorted(merged) if merged[i][0] is not None]
    skipped = [str(items[i].path) for i in sorted(merged) if merged[i][0] is None]

    def record() -> None:
        if ranks.main and written:  # also when an error stopped the run: the record lists the outputs written
            extra = {
                "checkpoint step": meta.get("step"),
                "preset": meta.get("preset"),
                "inputs": f"{len(items)}, restored {len(written)}, skipped {len(skipped)}",
            }
            done = [merged[i][1] for i in sorted(merged)]
            save_config(dataclasses.replace(cfg, device=device.type), out / "inpaint.toml", extra, done)

    try:
        record()
    except Exception as exc:  # noqa: BLE001 - raised on every rank by the check below
        error = error or exc
    ranks.check(error)
    if skipped and not written:
        raise BlindbenchError(f"none of the {len(skipped)} images could be read (first: {skipped[0]})")
    return written
