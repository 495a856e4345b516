"""Corruption as pure functions with replayable parameters: ``sample_params(rng, recipe)`` then ``apply``.

A recipe pairs a *fill pattern* (what N is) with a *mask generator* (where M is). Eq. 1 of the paper:
``I = O ⊙ (1 − M̃) + N ⊙ M̃``, where M̃ is the softened mask (or M itself when the sample is not soft).

Patterns:

========== ======================================================= ==================
pattern    fill N                                                  default mask
========== ======================================================= ==================
real       a crop of a real photo from a *different* source,       ``vcn`` strokes
           flipped vertically at random (the paper's pattern)
colour     one constant colour                                     ``vcn`` strokes
noise      Gaussian noise around a random mean colour              ``vcn`` strokes
text       one constant colour                                     ``text``
paste      a rectangle of another photo (face-swap / inserted      ``rectangles``
           object), the photo translated so the box's content
           lands in the hole
graffiti   a two-colour spray-paint gradient                       ``graffiti``
image      a contaminant image (spray paint, sticker, logo) from   ``image`` (its alpha
           ``mask_options.folder``, placed at random               or non-black pixels)
========== ======================================================= ==================

The ``folder`` mask generator reads a user's binary masks (e.g. NVIDIA's irregular masks, binned by hole ratio)
and goes with any pattern but ``image``.

Every random draw comes from the ``rng`` handed to `sample_params`; `apply` is a pure function of its
arguments, so the JSON parameters stored with a sample replay it exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import cv2
import numpy as np

from blindbench.errors import ConfigError, unknown
from blindbench.masks import FILE_GENERATORS, blend, folder_digest, get_mask_generator, place_contaminant, soft_mask

PATTERN_DEFAULT_MASK = {
    "real": "vcn",
    "colour": "vcn",
    "noise": "vcn",
    "text": "text",
    "paste": "rectangles",
    "graffiti": "graffiti",
    "image": "image",
}
PATTERNS_WITH_IMAGE_FILL = frozenset({"real", "paste"})


# Every number in mask_options (counts, pixel sizes, angles, fractions) must lie in this range: a bound that
# keeps one mask's work and memory small whatever a manifest says (parts = 20000000 once took 19 GB).
OPTION_LIMIT = 1024
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _check_option(key: str, value: Any) -> None:
    values = value if isinstance(value, list | tuple) else [value]
    for v in values:
        if isinstance(v, (bool, str)):
            continue
        if isinstance(v, int | float) and (not math.isfinite(v) or abs(v) > OPTION_LIMIT):
            raise ConfigError(f"mask option {key} = {value!r} is outside [-{OPTION_LIMIT}, {OPTION_LIMIT}]")


@dataclass(frozen=True)
class Recipe:
    """One way of corrupting an image.

    Attributes:
        pattern: what fills the hole (see the module table).
        mask: mask generator name (default: the pattern's own).
        mask_options: keyword options for the mask generator's sampler.
        soft_probability: chance that the sample is blended with the smoothed mask M̃ rather than the hard M
            (1.0 for benchmark sets; 0.5 in training, as the official code).
        weight: relative frequency of this recipe within a set.
        name: label stored with each sample (default: the pattern, or ``pattern-mask`` with a non-default mask).
        files_sha256: for the ``folder`` and ``image`` generators, the digest of their folder's files (computed,
            not given), so that a changed folder changes the set's content digest.
    """

    pattern: str
    mask: str = ""
    mask_options: Mapping[str, Any] = field(default_factory=dict)
    soft_probability: float = 1.0
    weight: float = 1.0
    name: str = ""
    files_sha256: str = ""

    def __post_init__(self) -> None:
        if self.pattern not in PATTERN_DEFAULT_MASK:
            raise unknown("corruption pattern", self.pattern, PATTERN_DEFAULT_MASK)
        default_mask = PATTERN_DEFAULT_MASK[self.pattern]
        if not self.mask:
            object.__setattr__(self, "mask", default_mask)
        if (self.pattern == "image") != (self.mask == "image"):  # the placed image is both the fill and the mask
            raise ConfigError(f"pattern {self.pattern!r} with mask {self.mask!r}: the image pattern and the image "
                              "mask generator go together")
        generator = get_mask_generator(self.mask)  # unknown names fail here, at load time
        if not isinstance(self.mask_options, Mapping):
            raise ConfigError(f"mask_options must be a table of options, got {self.mask_options!r}")
        for key, value in self.mask_options.items():
            _check_option(key, value)
        for key in ("soft_probability", "weight"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"recipe {key} must be a number, got {value!r}")
        try:  # bad option names or values fail here too, not later in every generate worker
            generator.sample(np.random.default_rng(0), 256, 256, **self.mask_options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad mask_options for mask generator {self.mask!r}: {exc}") from None
        if not 0.0 <= self.soft_probability <= 1.0:
            raise ConfigError(f"soft_probability must be in [0, 1], got {self.soft_probability}")
        if not (self.weight > 0 and math.isfinite(self.weight)):
            raise ConfigError(f"recipe weight must be a positive finite number, got {self.weight}")
        if not self.name:
            name = self.pattern if self.mask == default_mask else f"{self.pattern}-{self.mask}"
            object.__setattr__(self, "name", name)
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ConfigError(f"recipe name must be letters, digits, '-' or '_' (at most 64), got {self.name!r}")
        object.__setattr__(self, "mask_options", dict(self.mask_options))
        if self.mask in FILE_GENERATORS:  # the set's bytes follow from the folder's files: part of its content
            object.__setattr__(self, "files_sha256", folder_digest(self.mask_options["folder"]))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        allowed = {"pattern", "mask", "mask_options", "soft_probability", "weight", "name"}
        extra = set(data) - allowed
        if extra:
            raise unknown("recipe key", sorted(extra)[0], allowed)
        if "pattern" not in data:
            raise ConfigError("recipe without a 'pattern'")
        return cls(**data)


class Corruption(NamedTuple):
    """One corrupted sample, all (H, W[, 3]) uint8: input I, hard mask M (0/1), soft mask M̃ (0..255), fill N."""

    input: np.ndarray
    mask: np.ndarray
    soft_mask: np.ndarray
    fill: np.ndarray


def _colour(rng: np.random.Generator) -> list[int]:
    return [int(v) for v in rng.integers(0, 256, size=3)]


def sample_params(rng: np.random.Generator, recipe: Recipe, size: int | tuple[int, int], fill_count: int = 0) -> dict:
    """Draw the JSON-serialisable parameters of one corruption.

    Args:
        rng: the sample's own generator (seeded from the set seed and the sample index).
        recipe: what to draw.
        size: image side, or (height, width).
        fill_count: number of fill crops available (patterns ``real`` and ``paste`` pick one).

    Returns:
        ``{"recipe", "pattern", "mask": {"generator", "params"}, "soft", "fill": {...}}``.
    """
    height, width = (size, size) if isinstance(size, int) else size
    if recipe.pattern in PATTERNS_WITH_IMAGE_FILL and fill_count <= 0:
        raise ConfigError(f"pattern {recipe.pattern!r} needs fill images, but the fill source is empty")
    generator = get_mask_generator(recipe.mask)
    mask_params = generator.sample(rng, height, width, **recipe.mask_options)
    soft = bool(rng.random() < recipe.soft_probability)
    pattern = recipe.pattern
    if pattern == "real":
        fill = {"index": int(rng.integers(fill_count)), "flip": bool(rng.random() < 0.5)}
    elif pattern in ("colour", "text"):
        fill = {"rgb": _colour(rng)}
    elif pattern == "noise":
        fill = {"mean": _colour(rng), "std": float(round(rng.uniform(20.0, 80.0), 3)), "seed": int(rng.integers(2**31))}
    elif pattern == "paste":
        fill = {
            "index": int(rng.integers(fill_count)),
            "dx": int(rng.integers(-width // 2, width // 2 + 1)),
            "dy": int(rng.integers(-height // 2, height // 2 + 1)),
        }
    elif pattern == "image":
        fill = {}  # the contaminant's pixels: its placement is the mask's parameters
    else:  # graffiti
        fill = {"rgb": [_colour(rng), _colour(rng)], "angle": float(round(rng.uniform(0.0, 180.0), 3))}
    return {
        "recipe": recipe.name,
        "pattern": pattern,
        "mask": {"generator": recipe.mask, "params": mask_params},
        "soft": soft,
        "fill": fill,
    }


def render_fill(params: Mapping[str, Any], fill_image: np.ndarray | None, height: int, width: int) -> np.ndarray:
    """The fill N (H, W, 3) uint8 described by ``params["fill"]``; ``fill_image`` is the chosen fill crop."""
    pattern, fill = params["pattern"], params["fill"]
    if pattern in PATTERNS_WITH_IMAGE_FILL:
        if fill_image is None or fill_image.shape[:2] != (height, width):
            got = None if fill_image is None else fill_image.shape
            raise ValueError(f"pattern {pattern!r} needs a {height}x{width} fill image, got {got}")
        if pattern == "real":
            return np.ascontiguousarray(fill_image[::-1] if fill["flip"] else fill_image)
        shift = np.float32([[1, 0, fill["dx"]], [0, 1, fill["dy"]]])  # translate; reflect keeps N continuous
        return cv2.warpAffine(
            np.ascontiguousarray(fill_image),
            shift,
            (width, height),
            flags=cv2.INTER_NEAREST,
            borderMode=cv2.BORDER_REFLECT_101,
        )
    if pattern in ("colour", "text"):
        return np.broadcast_to(np.asarray(fill["rgb"], np.uint8), (height, width, 3)).copy()
    if pattern == "noise":
        noise = np.random.default_rng(fill["seed"]).standard_normal((height, width, 3), dtype=np.float32)
        noise *= np.float32(fill["std"])  # mean + std · z, in place (the same float32 operations)
        noise += np.asarray(fill["mean"], np.float32)
        return cv2.convertScaleAbs(np.maximum(noise, 0, out=noise))  # rounds half to even, saturates at 255
    if pattern == "image":
        return place_contaminant(params["mask"]["params"], height, width)[0]
    if pattern == "graffiti":
        theta = np.deg2rad(fill["angle"])
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        t = (xs * np.cos(theta) + ys * np.sin(theta)).astype(np.float32)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
        start, end = (np.asarray(c, np.float32) for c in fill["rgb"])
        return np.rint(start + t[..., None] * (end - start)).clip(0, 255).astype(np.uint8)
    raise unknown("corruption pattern", pattern, PATTERN_DEFAULT_MASK)


def apply(clean: np.ndarray, fill_image: np.ndarray | None, params: Mapping[str, Any]) -> Corruption:
    """Corrupt ``clean`` (H, W, 3) uint8 as ``params`` say; a pure function.

    Returns:
        `Corruption` with I = round(O ⊙ (1 − α) + N ⊙ α), α = M̃ (soft samples) or M, both in [0, 1].
    """
    if clean.dtype != np.uint8 or clean.ndim != 3 or clean.shape[2] != 3:
        raise ValueError(f"clean image must be (H, W, 3) uint8, got {clean.shape} {clean.dtype}")
    height, width = clean.shape[:2]
    mask = get_mask_generator(params["mask"]["generator"]).draw(params["mask"]["params"], height, width)
    fill = render_fill(params, fill_image, height, width)
    alpha = soft_mask(mask) if params["soft"] else mask.astype(np.float32)
    corrupted = blend(clean, fill, alpha)
    soft8 = np.rint(alpha * 255.0).astype(np.uint8)
    return Corruption(corrupted, mask, soft8, fill)
