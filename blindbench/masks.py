"""Damage masks M (1 = damaged) and the soft blending mask M̃ of SPEC §2.

Every generator is split in two so that corruption can be replayed from JSON:

* ``sample_<kind>(rng, height, width, **options) -> dict`` draws every random number from ``rng`` and
  returns plain-Python parameters (ints, floats, lists, str), small enough to store beside each sample.
* ``draw_<kind>(params, height, width) -> np.ndarray`` renders the hard mask, ``(H, W)`` uint8 in {0, 1},
  deterministically from the parameters.

``MASK_GENERATORS`` maps a name to a :class:`MaskGenerator` holding both halves; :func:`get_mask_generator`
looks one up. The stroke generators copied from other papers keep their pixel units at every image size
(``vcn`` and ``lama-*`` entirely, ``deepfill`` its brush widths; its segment length follows the diagonal), so
a 512×512 ``vcn`` mask has the same strokes as a 256×256 one on four times the area; pass options to rescale.
``rectangles``, ``text`` and ``graffiti`` scale with the image.

This module imports only numpy, OpenCV and the standard library, so data-generation workers can use it
without torch.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from blindbench.errors import ConfigError, did_you_mean, unknown

Params = dict[str, Any]

__all__ = [
    "DEFAULT_MASK_GENERATOR",
    "LAMA_PRESETS",
    "MASK_GENERATORS",
    "TEXT_WORDS",
    "MaskGenerator",
    "blend",
    "draw_deepfill",
    "draw_folder",
    "draw_image",
    "draw_graffiti",
    "draw_lama",
    "draw_rectangles",
    "draw_text",
    "draw_vcn",
    "get_mask_generator",
    "place_contaminant",
    "sample_deepfill",
    "sample_folder",
    "sample_image",
    "sample_graffiti",
    "sample_lama",
    "sample_lama_medium",
    "sample_lama_thick",
    "sample_lama_thin",
    "sample_rectangles",
    "sample_text",
    "sample_vcn",
    "soft_mask",
]


# ----------------------------------------------------------------------------------------------------------------
# small helpers


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _check_size(height: int, width: int) -> None:
    """Raise ValueError unless height and width are positive integers."""
    for name, value in (("height", height), ("width", width)):
        if not _is_int(value) or value < 1:
            raise ValueError(f"mask {name} must be a positive integer, got {value!r}")


def _check_range(name: str, value: Any, low: float, *, integer: bool) -> tuple[Any, Any]:
    """Return ``(lo, hi)`` from a 2-sequence, raising ValueError unless ``low <= lo <= hi``."""
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair, got {value!r}") from None
    cast = int if integer else float
    if integer and (int(lo) != lo or int(hi) != hi):
        raise ValueError(f"{name} must hold integers, got {value!r}")
    lo, hi = cast(lo), cast(hi)
    if not low <= lo <= hi:
        raise ValueError(f"{name} must satisfy {low} <= low <= high, got {value!r}")
    return lo, hi


def _check_min(name: str, value: Any, low: float) -> None:
    """Raise ValueError unless ``value >= low``."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating) or value < low:
        raise ValueError(f"{name} must be a number >= {low}, got {value!r}")


def _check_int(name: str, value: Any, low: int) -> None:
    """Raise ValueError unless ``value`` is an integer ``>= low``."""
    if not _is_int(value) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _empty(height: int, width: int) -> np.ndarray:
    _check_size(height, width)
    return np.zeros((height, width), np.uint8)


def _draw_polyline(mask: np.ndarray, points: list[list[int]], widths: list[int]) -> None:
    """Draw consecutive segments ``points[i] → points[i+1]`` of thickness ``widths[i]`` (value 1)."""
    for (x0, y0), (x1, y1), w in zip(points[:-1], points[1:], widths):
        cv2.line(mask, (x0, y0), (x1, y1), 1, w)


def _draw_boxes(mask: np.ndarray, boxes: list[list[int]]) -> None:
    """Fill ``[x, y, w, h]`` boxes with 1 (numpy slicing clips them to the image)."""
    for x, y, w, h in boxes:
        mask[max(y, 0) : max(y + h, 0), max(x, 0) : max(x + w, 0)] = 1


# ----------------------------------------------------------------------------------------------------------------
# vcn: the official VCNet stroke mask (np_free_form_mask, 8 parts OR-ed)


def sample_vcn(
    rng: np.random.Generator,
    height: int,
    width: int,
    *,
    parts: int = 8,
    max_vertex: int = 16,
    max_length: int = 80,
    min_width: int = 10,
    max_width: int = 20,
    max_angle: int = 360,
) -> Params:
    """Sample the official VCNet free-form stroke mask (SPEC §2; ``np_free_form_mask`` × ``parts``).

    Each part: ``randint(0..max_vertex)`` segments from a uniform start; segment ``i`` has an integer angle
    ``a`` uniform in 0..max_angle degrees (``360 − a`` for even ``i``), an integer length uniform in
    0..max_length, and an even brush width ``randint(min_width..max_width) // 2 * 2``; the next vertex is
    clipped to the image and floored. At 256×256 the defaults give |M=1| / |M=0| ≈ 0.56 ± 0.17.

    The official code names the column coordinate ``Y`` and draws with ``(Y, X)``; here ``x`` is the column
    and ``y`` the row throughout, which is the same mask for square images and the sensible one otherwise.

    Args:
        rng: Source of every random number.
        height: Image height in pixels.
        width: Image width in pixels.
        parts: Number of strokes OR-ed together.
        max_vertex: Most segments per stroke (inclusive).
        max_length: Longest segment in pixels (inclusive).
        min_width: Narrowest brush before rounding down to even (official: 10).
        max_width: Widest brush (inclusive, before rounding down to even).
        max_angle: Largest angle in degrees (inclusive).

    Returns:
        ``{"strokes": [{"points": [[x, y], ...], "widths": [w, ...]}, ...]}`` with ``len(points) ==
        len(widths) + 1``; ``widths[i]`` belongs to the segment ``points[i] → points[i+1]``.
    """
    _check_size(height, width)
    for name, value, low in (
        ("parts", parts, 0),
        ("max_vertex", max_vertex, 0),
        ("max_length", max_length, 0),
        ("min_width", min_width, 2),
        ("max_angle", max_angle, 0),
    ):
        _check_int(name, value, low)
    if not _is_int(max_width) or max_width < min_width:
        raise ValueError(f"max_width must be >= min_width={min_width}, got {max_width!r}")
    n_vertex = rng.integers(0, max_vertex + 1, size=parts)
    xs = rng.integers(0, width, size=parts).tolist()
    ys = rng.integers(0, height, size=parts).tolist()
    total = int(n_vertex.sum())
    angles = rng.integers(0, max_angle + 1, size=total) / 360.0 * 2.0 * np.pi
    lengths = rng.integers(0, max_length + 1, size=total)
    widths = (rng.integers(min_width, max_width + 1, size=total) // 2 * 2).tolist()
    index = np.arange(total) - np.repeat(np.cumsum(n_vertex) - n_vertex, n_vertex)  # segment index in its stroke
    angles = np.where(index % 2 == 0, 2.0 * np.pi - angles, angles)
    dx = (lengths * np.cos(angles)).tolist()
    dy = (lengths * np.sin(angles)).tolist()
    strokes = []
    k = 0
    for n, x, y in zip(n_vertex.tolist(), xs, ys):
        points = [[x, y]]
        for _ in range(n):
            x = int(min(max(x + dx[k], 0), width - 1))
            y = int(min(max(y + dy[k], 0), height - 1))
            points.append([x, y])
            k += 1
        strokes.append({"points": points, "widths": widths[k - n : k]})
    return {"strokes": strokes}


def draw_vcn(params: Params, height: int, width: int) -> np.ndarray:
    """Render :func:`sample_vcn` parameters as the official code does.

    Each segment is ``cv2.line`` of thickness ``w``; like the official code, a 1-px circle *outline* of radius
    ``w // 2`` is drawn around each segment's start and around the stroke's last vertex (radius 0, a dot, for
    a stroke with no segments), so the stroke ends are not filled.

    Returns:
        ``(H, W)`` uint8 mask, 1 = damaged.
    """
    mask = _empty(height, width)
    for stroke in params["strokes"]:
        points, widths = stroke["points"], stroke["widths"]
        _draw_polyline(mask, points, widths)
        for (x, y), w in zip(points, widths):
            cv2.circle(mask, (x, y), w // 2, 1, 1)
        last = widths[-1] // 2 if widths else 0
        cv2.circle(mask, tuple(points[-1]), last, 1, 1)
    return mask


# ----------------------------------------------------------------------------------------------------------------
# deepfill: DeepFill v2 brush_stroke_mask (free-form strokes only, no bbox union)


def sample_deepfill(
    rng: np.random.Generator,
    height: int,
    width: int,
    *,
    stroke_range: tuple[int, int] = (1, 3),
    vertex_range: tuple[int, int] = (4, 11),
    width_range: tuple[float, float] = (12, 40),
    mean_angle: float = 2 * math.pi / 5,
    angle_range: float = 2 * math.pi / 15,
    average_radius: float | None = None,
) -> Params:
    """Sample the DeepFill v2 free-form brush (``brush_stroke_mask``), mean damaged area ≈ 15% at 256².

    Per stroke: angle bounds ``mean_angle ∓ U(0, angle_range)``, segment angles uniform between them
    (``2π − a`` on even segments), segment length ``N(r, r // 2)`` clipped to ``[0, 2r]`` with
    ``r = average_radius`` (default: image diagonal / 8), vertices clipped to ``[0, W] × [0, H]`` and floored,
    one brush width ``int(U(*width_range))`` per stroke. DeepFill v2's own H/W swap (harmless for square
    images) is not reproduced.

    Args:
        rng: Source of every random number.
        height: Image height in pixels.
        width: Image width in pixels.
        stroke_range: Inclusive range of the number of strokes.
        vertex_range: Inclusive range of the number of segments per stroke.
        width_range: Brush width ``int(uniform(low, high))`` in pixels.
        mean_angle: Mean turning angle in radians.
        angle_range: Largest spread of the angle bounds in radians.
        average_radius: Mean segment length in pixels; ``None`` = ``sqrt(H² + W²) / 8``.

    Returns:
        ``{"strokes": [{"points": [[x, y], ...], "width": w}, ...]}``.
    """
    _check_size(height, width)
    s_lo, s_hi = _check_range("stroke_range", stroke_range, 0, integer=True)
    v_lo, v_hi = _check_range("vertex_range", vertex_range, 1, integer=True)
    w_lo, w_hi = _check_range("width_range", width_range, 1, integer=False)
    _check_min("angle_range", angle_range, 0)
    radius = math.sqrt(height * height + width * width) / 8 if average_radius is None else float(average_radius)
    _check_min("average_radius", radius, 0)
    strokes = []
    for _ in range(int(rng.integers(s_lo, s_hi + 1))):
        n = int(rng.integers(v_lo, v_hi + 1))
        angle_min = mean_angle - rng.uniform(0, angle_range)
        angle_max = mean_angle + rng.uniform(0, angle_range)
        angles = rng.uniform(angle_min, angle_max, size=n)
        angles[::2] = 2 * math.pi - angles[::2]
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = np.clip(rng.normal(radius, radius // 2, size=n), 0, 2 * radius)
        dx, dy = (r * np.cos(angles)).tolist(), (r * np.sin(angles)).tolist()
        points = [[x, y]]
        for i in range(n):
            x = int(min(max(x + dx[i], 0), width))
            y = int(min(max(y + dy[i], 0), height))
            points.append([x, y])
        strokes.append({"points": points, "width": int(rng.uniform(w_lo, w_hi))})
    return {"strokes": strokes}


def draw_deepfill(params: Params, height: int, width: int) -> np.ndarray:
    """Render :func:`sample_deepfill` parameters: thick polyline plus a filled disc of radius ``w // 2`` at
    every vertex (OpenCV rasterisation in place of DeepFill's PIL ``line``/``ellipse``).

    Returns:
        ``(H, W)`` uint8 mask, 1 = damaged.
    """
    mask = _empty(height, width)
    for stroke in params["strokes"]:
        points, w = stroke["points"], stroke["width"]
        _draw_polyline(mask, points, [w] * (len(points) - 1))
        for x, y in points:
            cv2.circle(mask, (x, y), w // 2, 1, -1)
    return mask


# ----------------------------------------------------------------------------------------------------------------
# LaMa: random irregular strokes, or (with probability box_proba / (1 + box_proba)) random boxes

#: LaMa's evaluation presets ``configs/data_gen/random_{thin,medium,thick}_256.yaml`` (pixel units at 256).
LAMA_PRESETS: dict[str, dict[str, Any]] = {
    "thin": {
        "max_angle": 4, "max_len": 40, "max_width": 10, "min_times": 4, "max_times": 50,
        "box_proba": 0.0, "box_margin": 0, "box_min_size": 10, "box_max_size": 50, "box_min_times": 1,
        "box_max_times": 5, "max_area": 0.5,
    },
    "medium": {
        "max_angle": 4, "max_len": 100, "max_width": 50, "min_times": 4, "max_times": 5,
        "box_proba": 0.3, "box_margin": 0, "box_min_size": 10, "box_max_size": 50, "box_min_times": 1,
        "box_max_times": 5, "max_area": 0.5,
    },
    "thick": {
        "max_angle": 4, "max_len": 200, "max_width": 100, "min_times": 1, "max_times": 5,
        "box_proba": 0.3, "box_margin": 10, "box_min_size": 30, "box_max_size": 150, "box_min_times": 1,
        "box_max_times": 3, "max_area": 0.5,
    },
}  # fmt: skip

_LAMA_MAX_TRIES = 50  # LaMa: 10 attempts × 5 variants before giving up on an image


def _sample_lama_strokes(rng: np.random.Generator, height: int, width: int, opt: dict[str, Any]) -> list[Params]:
    """LaMa ``make_random_irregular_mask`` as called by its generator with ramp coefficient 1."""
    # RandomIrregularMaskGenerator passes max_times + 1 (its ramp formula at coef 1), so up to max_times + 1.
    strokes = []
    for i in range(int(rng.integers(opt["min_times"], opt["max_times"] + 2))):
        x, y = int(rng.integers(width)), int(rng.integers(height))
        points, widths = [[x, y]], []
        for _ in range(1 + int(rng.integers(5))):
            angle = 0.01 + int(rng.integers(opt["max_angle"]))  # radians: 0.01, 1.01, 2.01, 3.01
            if i % 2 == 0:  # LaMa reverses by *stroke* index, with its 3.1415926
                angle = 2 * 3.1415926 - angle
            length = 10 + int(rng.integers(opt["max_len"]))
            widths.append(5 + int(rng.integers(opt["max_width"])))
            x = min(max(int(x + length * math.sin(angle)), 0), width)  # truncate, then clip to [0, W]
            y = min(max(int(y + length * math.cos(angle)), 0), height)
            points.append([x, y])
        strokes.append({"points": points, "widths": widths})
    return strokes


def _sample_lama_boxes(rng: np.random.Generator, height: int, width: int, opt: dict[str, Any]) -> list[list[int]]:
    """LaMa ``make_random_rectangle_mask`` as called with ramp coefficient 1 (sides up to max size inclusive)."""
    margin, low = opt["box_margin"], opt["box_min_size"]
    high = min(opt["box_max_size"] + 1, height - 2 * margin, width - 2 * margin)
    if high <= low:
        raise ValueError(f"LaMa boxes of at least {low} px with margin {margin} do not fit a {height}x{width} image")
    boxes = []
    for _ in range(int(rng.integers(opt["box_min_times"], opt["box_max_times"] + 1))):
        bw, bh = int(rng.integers(low, high)), int(rng.integers(low, high))
        x = int(rng.integers(margin, width - margin - bw + 1))
        y = int(rng.integers(margin, height - margin - bh + 1))
        boxes.append([x, y, bw, bh])
    return boxes


def sample_lama(rng: np.random.Generator, height: int, width: int, *, preset: str = "medium", **options: Any) -> Params:
    """Sample a LaMa evaluation mask (``MixedMaskGenerator`` + ``gen_mask_dataset.py``).

    LaMa picks *one* source per mask: irregular strokes with probability ``1 / (1 + box_proba)``, else 1..k
    random boxes (boxes are not OR-ed with strokes). Strokes: up to 5 segments each, angles ``0.01 + k``
    radians, length ``10 + randint(max_len)``, width ``5 + randint(max_width)``. Like LaMa's dataset script,
    masks with damaged fraction above ``max_area`` (0.5) are redrawn, keeping the 50th draw if all fail. LaMa's
    random square crop of a resized photo is not reproduced: masks are drawn directly at ``height × width``.
    Its generator wrapper (ramp coefficient 1) allows ``max_times + 1`` strokes and box sides up to
    ``box_max_size`` inclusive; both quirks are kept. Box probability and sizes are LaMa's; the 0.5 area cap
    is ``max_tamper_area`` of its dataset configs.

    Args:
        rng: Source of every random number.
        height: Image height in pixels.
        width: Image width in pixels.
        preset: ``"thin"``, ``"medium"`` or ``"thick"`` (LaMa's ``*_256`` configs, see ``LAMA_PRESETS``).
        **options: Overrides for any key of the preset.

    Returns:
        ``{"strokes": [{"points": [[x, y], ...], "widths": [w, ...]}, ...], "boxes": [[x, y, w, h], ...]}``;
        one of the two lists is empty.
    """
    _check_size(height, width)
    if preset not in LAMA_PRESETS:
        raise ValueError(f"unknown LaMa preset {preset!r}; choose from {', '.join(LAMA_PRESETS)}")
    opt = dict(LAMA_PRESETS[preset])
    for key, value in options.items():
        if key not in opt:
            raise ValueError(f"unknown LaMa option {key!r}{did_you_mean(key, opt, list_all=False)}")
        opt[key] = value
    for key in ("max_angle", "max_len", "max_width"):
        _check_int(key, opt[key], 1)
    for key in ("min_times", "max_times", "box_margin", "box_min_size", "box_max_size", "box_min_times"):
        _check_int(key, opt[key], 0)
    _check_min("box_proba", opt["box_proba"], 0)
    if opt["max_area"] is not None:
        _check_min("max_area", opt["max_area"], 0)
    for low, high in (("min_times", "max_times"), ("box_min_times", "box_max_times")):
        if opt[high] < opt[low]:
            raise ValueError(f"LaMa option {high} must be >= {low}={opt[low]}, got {opt[high]!r}")
    max_area = opt["max_area"]
    for _ in range(_LAMA_MAX_TRIES):
        if rng.uniform() < opt["box_proba"] / (1.0 + opt["box_proba"]):
            params = {"strokes": [], "boxes": _sample_lama_boxes(rng, height, width, opt)}
        else:
            params = {"strokes": _sample_lama_strokes(rng, height, width, opt), "boxes": []}
        if max_area is None or draw_lama(params, height, width).mean() <= max_area:
            break
    return params


def sample_lama_thin(rng: np.random.Generator, height: int, width: int, **options: Any) -> Params:
    """LaMa ``thin`` masks: 4–51 narrow polylines (width 5–14 px), no boxes. See :func:`sample_lama`."""
    return sample_lama(rng, height, width, preset="thin", **options)


def sample_lama_medium(rng: np.random.Generator, height: int, width: int, **options: Any) -> Params:
    """LaMa ``medium`` masks: 4–6 strokes of width 5–54 px, or 1–5 boxes of 10–50 px. See :func:`sample_lama`."""
    return sample_lama(rng, height, width, preset="medium", **options)


def sample_lama_thick(rng: np.random.Generator, height: int, width: int, **options: Any) -> Params:
    """LaMa ``thick`` masks: 1–6 strokes of width 5–104 px, or 1–3 boxes of 30–150 px. See :func:`sample_lama`."""
    return sample_lama(rng, height, width, preset="thick", **options)


def draw_lama(params: Params, height: int, width: int) -> np.ndarray:
    """Render :func:`sample_lama` parameters (``cv2.line`` strokes, filled boxes).

    Returns:
        ``(H, W)`` uint8 mask, 1 = damaged.
    """
    mask = _empty(height, width)
    for stroke in params["strokes"]:
        _draw_polyline(mask, stroke["points"], stroke["widths"])
    _draw_boxes(mask, params["boxes"])
    return mask


# ----------------------------------------------------------------------------------------------------------------
# rectangles


def sample_rectangles(
    rng: np.random.Generator,
    height: int,
    width: int,
    *,
    count_range: tuple[int, int] = (1, 1),
    side_range: tuple[float, float] = (0.25, 0.5),
) -> Params:
    """Sample axis-aligned boxes lying inside the image (GMCNN-style random box; a pasted-rectangle pattern).

    Args:
        rng: Source of every random number.
        height: Image height in pixels.
        width: Image width in pixels.
        count_range: Inclusive range of the number of boxes.
        side_range: Each side is an integer uniform in ``[round(lo·S), round(hi·S)]`` for its image side S
            (at least 1 px); the default (0.25, 0.5) gives one box of about 15% of the image.

    Returns:
        ``{"boxes": [[x, y, w, h], ...]}``.
    """
    _check_size(height, width)
    c_lo, c_hi = _check_range("count_range", count_range, 0, integer=True)
    f_lo, f_hi = _check_range("side_range", side_range, 0, integer=False)
    if f_hi > 1:
        raise ValueError(f"side_range must lie in [0, 1], got {side_range!r}")
    boxes = []
    for _ in range(int(rng.integers(c_lo, c_hi + 1))):
        sides = []
        for size in (width, height):
            lo = min(max(round(f_lo * size), 1), size)
            hi = min(max(round(f_hi * size), lo), size)
            sides.append(int(rng.integers(lo, hi + 1)))
        bw, bh = sides
        boxes.append([int(rng.integers(0, width - bw + 1)), int(rng.integers(0, height - bh + 1)), bw, bh])
    return {"boxes": boxes}


def draw_rectangles(params: Params, height: int, width: int) -> np.ndarray:
    """Render :func:`sample_rectangles` parameters.

    Returns:
        ``(H, W)`` uint8 mask, 1 = damaged.
    """
    mask = _empty(height, width)
    _draw_boxes(mask, params["boxes"])
    return mask


# ----------------------------------------------------------------------------------------------------------------
# text

#: Words the ``text`` generator writes (captions, watermarks, signs).
TEXT_WORDS: tuple[str, ...] = (
    "hello", "world", "sample", "preview", "draft", "copy", "photo", "image", "stock", "sale", "open", "closed",
    "summer", "winter", "love", "city", "night", "coffee", "street", "music", "party", "happy", "birthday",
    "welcome", "home", "exit", "stop", "free", "new", "best", "the", "and", "of", "for", "with", "your", "my",
    "day", "2020", "2024", "ECCV", "VCN", "No.7", "OK", "WOW", "LOL", "inpaint", "blind", "mask", "noise",
    "paint", "DEMO", "PROOF", "TODO", "beach", "sunset", "travel", "friends", "family", "forever",
)  # fmt: skip

_HERSHEY_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_COMPLEX_SMALL,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
    cv2.FONT_HERSHEY_SCRIPT_COMPLEX,
)


def sample_text(
    rng: np.random.Generator,
    height: int,
    width: int,
    *,
    line_range: tuple[int, int] = (1, 4),
    word_range: tuple[int, int] = (1, 3),
    width_fraction: tuple[float, float] = (0.6, 1.0),
    stroke_fraction: tuple[float, float] = (0.06, 0.14),
    italic_proba: float = 0.25,
    words: tuple[str, ...] = TEXT_WORDS,
) -> Params:
    """Sample text-shaped damage: lines of random words in random OpenCV Hershey fonts.

    Each line is scaled so its width is a uniform fraction of the image width (capped so the glyphs are at
    most a third of the image height) and stroked with a thickness that is a uniform fraction of the glyph
    height; it is placed uniformly, possibly running a little past the borders. Lines may overlap.

    Rendering depends on OpenCV's font engine: OpenCV 4 draws the Hershey ids as stroke fonts of the given
    thickness; OpenCV 5 draws them with its built-in outline fonts (any thickness > 1 means bold). Replaying
    ``text`` parameters is pixel-exact only under the same OpenCV major version, so store the mask itself.

    Args:
        rng: Source of every random number.
        height: Image height in pixels.
        width: Image width in pixels.
        line_range: Inclusive range of the number of text lines.
        word_range: Inclusive range of words per line.
        width_fraction: Range of the line width as a fraction of the image width.
        stroke_fraction: Range of the stroke thickness as a fraction of the text height.
        italic_proba: Probability that a line uses ``cv2.FONT_ITALIC``.
        words: Vocabulary.

    Returns:
        ``{"lines": [{"text": str, "font": int, "scale": float, "thickness": int, "origin": [x, y]}, ...]}``
        where ``font`` is an OpenCV Hershey font id (possibly ``| cv2.FONT_ITALIC``) and ``origin`` is the
        bottom-left corner of the text baseline, as ``cv2.putText`` takes it.
    """
    _check_size(height, width)
    l_lo, l_hi = _check_range("line_range", line_range, 0, integer=True)
    n_lo, n_hi = _check_range("word_range", word_range, 1, integer=True)
    f_lo, f_hi = _check_range("width_fraction", width_fraction, 0, integer=False)
    t_lo, t_hi = _check_range("stroke_fraction", stroke_fraction, 0, integer=False)
    if not words:
        raise ValueError("words must not be empty")
    lines = []
    for _ in range(int(rng.integers(l_lo, l_hi + 1))):
        text = " ".join(words[i] for i in rng.integers(0, len(words), size=int(rng.integers(n_lo, n_hi + 1))))
        font = _HERSHEY_FONTS[int(rng.integers(len(_HERSHEY_FONTS)))]
        if rng.uniform() < italic_proba:
            font |= cv2.FONT_ITALIC
        (tw, th), _ = cv2.getTextSize(text, font, 1.0, 1)
        scale = min(rng.uniform(f_lo, f_hi) * width / tw, height / (3.0 * th))
        scale = max(round(scale, 3), 0.1)
        thickness = max(1, round(rng.uniform(t_lo, t_hi) * th * scale))
        (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
        x = int(rng.integers(-tw // 8, max(width - tw * 7 // 8, -tw // 8) + 1))
        y = int(rng.integers(th * 7 // 8, max(height + base, th * 7 // 8) + 1))
        lines.append({"text": text, "font": int(font), "scale": float(scale), "thickness": int(thickness),
                      "origin": [x, y]})  # fmt: skip
    return {"lines": lines}


def draw_text(params: Params, height: int, width: int) -> np.ndarray:
    """Render :func:`sample_text` parameters with ``cv2.putText`` (8-connected, no anti-aliasing).

    Returns:
        ``(H, W)`` uint8 mask, 1 = damaged.
    """
    canvas = _empty(height, width)
    for line in params["lines"]:
        cv2.putText(canvas, line["text"], tuple(line["origin"]), line["font"], line["scale"], 255, line["thickness"])
    return (canvas >= 128).view(np.uint8)  # OpenCV 5 anti-aliases text whatever the line type


# ----------------------------------------------------------------------------------------------------------------
# graffiti


def sample_graffiti(
    rng: np.random.Generator,
    height: int,
    width: int,
    *,
    stroke_range: tuple[int, int] = (1, 3),
    control_range: tuple[int, int] = (4, 7),
    step_fraction: tuple[float, float] = (0.15, 0.35),
    width_fraction: tuple[float, float] = (0.05, 0.09),
    spray_fraction: tuple[float, float] = (0.6, 1.2),
    spray_density: tuple[float, float] = (1.0, 3.0),
) -> Params:
    """Sample graffiti-like spray strokes: smooth curves with a solid core and scattered paint dots.

    Each stroke is a random walk of control points (steps a fraction of min(H, W), heading turning by
    ``N(0, 0.9)`` radians), rendered as a Catmull-Rom curve; the spray dots are drawn in :func:`draw_graffiti`
    from ``np.random.default_rng(spray_seed)``, so the parameters stay small.

    Args:
        rng: Source of every random number.
        height: Image height in pixels.
        width: Image width in pixels.
        stroke_range: Inclusive range of the number of strokes.
        control_range: Inclusive range of control points per stroke.
        step_fraction: Range of the control-point step as a fraction of min(H, W).
        width_fraction: Range of the core width as a fraction of min(H, W) (at least 2 px).
        spray_fraction: Range of the spray spread (std of the dot offsets) as a multiple of the core width.
        spray_density: Range of the number of dots per pixel of control polygon length.

    Returns:
        ``{"strokes": [{"points": [[x, y], ...], "width": int, "spray_radius": float, "spray_dots": int,
        "spray_seed": int}, ...]}``.
    """
    _check_size(height, width)
    s_lo, s_hi = _check_range("stroke_range", stroke_range, 0, integer=True)
    c_lo, c_hi = _check_range("control_range", control_range, 2, integer=True)
    st_lo, st_hi = _check_range("step_fraction", step_fraction, 0, integer=False)
    w_lo, w_hi = _check_range("width_fraction", width_fraction, 0, integer=False)
    r_lo, r_hi = _check_range("spray_fraction", spray_fraction, 0, integer=False)
    d_lo, d_hi = _check_range("spray_density", spray_density, 0, integer=False)
    side = min(height, width)
    strokes = []
    for _ in range(int(rng.integers(s_lo, s_hi + 1))):
        n = int(rng.integers(c_lo, c_hi + 1))
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        heading = rng.uniform(0, 2 * math.pi)
        steps = rng.uniform(st_lo, st_hi, size=n - 1) * side
        turns = rng.normal(0.0, 0.9, size=n - 1)
        points = [[int(x), int(y)]]
        length = 0.0
        for step, turn in zip(steps.tolist(), turns.tolist()):
            heading += turn
            nx = min(max(x + step * math.cos(heading), 0.0), width - 1.0)
            ny = min(max(y + step * math.sin(heading), 0.0), height - 1.0)
            if nx in (0.0, width - 1.0) or ny in (0.0, height - 1.0):
                heading += math.pi / 2  # bounce off the border instead of crawling along it
            length += math.hypot(nx - x, ny - y)
            x, y = nx, ny
            points.append([int(x), int(y)])
        core = max(2, round(rng.uniform(w_lo, w_hi) * side))
        strokes.append({
            "points": points,
            "width": int(core),
            "spray_radius": round(float(rng.uniform(r_lo, r_hi) * core), 3),
            "spray_dots": int(rng.uniform(d_lo, d_hi) * length),
            "spray_seed": int(rng.integers(0, 2**31 - 1)),
        })  # fmt: skip
    return {"strokes": strokes}


def _catmull_rom(points: np.ndarray, step: float = 2.0) -> np.ndarray:
    """Uniform Catmull-Rom curve through ``points`` (N, 2), sampled about every ``step`` px; returns (K, 2)."""
    if len(points) < 2:
        return points.astype(np.float64)
    p = np.concatenate([points[:1], points, points[-1:]]).astype(np.float64)  # repeat the end points
    out = [p[1:2]]
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        n = max(2, int(math.ceil(math.hypot(*(p2 - p1)) / step)))
        t = np.linspace(0.0, 1.0, n + 1)[1:, None]  # (n, 1)
        t2, t3 = t * t, t * t * t
        seg = 0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2 + (3 * p1 - p0 - 3 * p2 + p3) * t3)
        out.append(seg)
    return np.concatenate(out)


def draw_graffiti(params: Params, height: int, width: int) -> np.ndarray:
    """Render :func:`sample_graffiti` parameters.

    The core is the Catmull-Rom curve drawn with ``cv2.polylines`` of thickness ``width``; then ``spray_dots``
    dots (1×1 or 2×2 px) are scattered around uniformly chosen curve points with a Gaussian offset of std
    ``spray_radius``, all from ``np.random.default_rng(spray_seed)``.

    Returns:
        ``(H, W)`` uint8 mask, 1 = damaged.
    """
    mask = _empty(height, width)
    for stroke in params["strokes"]:
        curve = _catmull_rom(np.asarray(stroke["points"], np.float64))  # (K, 2) as (x, y)
        cv2.polylines(mask, [np.rint(curve).astype(np.int32)], False, 1, int(stroke["width"]))
        dots = int(stroke["spray_dots"])
        if dots <= 0:
            continue
        spray = np.random.default_rng(int(stroke["spray_seed"]))
        centres = curve[spray.integers(0, len(curve), size=dots)]
        xy = np.rint(centres + spray.normal(0.0, float(stroke["spray_radius"]), size=(dots, 2))).astype(np.int64)
        big = spray.uniform(size=dots) < 0.5
        for ox, oy, keep in ((0, 0, None), (1, 0, big), (0, 1, big), (1, 1, big)):
            x, y = xy[:, 0] + ox, xy[:, 1] + oy
            inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
            if keep is not None:
                inside &= keep
            mask[y[inside], x[inside]] = 1
    return mask


# ----------------------------------------------------------------------------------------------------------------
# soft mask and blending (SPEC §2)


def soft_mask(mask: np.ndarray, kernel_size: int = 15, iterations: int = 4) -> np.ndarray:
    """Feather a hard mask outwards as VCNet does (``priority_loss_mask(1 − M, 15, 1/40, 4) + M``).

    ``init = M``; repeat ``iterations`` times ``p = box(init) ⊙ (1 − M)``, ``init = p + M``; return
    ``min(M + p, 1)``. The official ``gauss_kernel(15, sigma=1/40)`` is numerically a flat box, so ``box`` is a
    ``kernel_size × kernel_size`` mean that counts pixels outside the image as 0 (TensorFlow ``SAME`` zero
    padding, always divided by ``kernel_size²``). The halo reaches ``iterations · (kernel_size // 2)`` px
    beyond the hole (28 px by default) and is exactly 0 further out. float32 arithmetic.

    Args:
        mask: Hard mask ``(H, W)`` with values in {0, 1} (bool, integer or float).
        kernel_size: Odd box side in pixels.
        iterations: Number of smoothing passes (0 returns the hard mask as float32).

    Returns:
        ``(H, W)`` float32 soft mask M̃ in [0, 1], equal to 1 on the hole and ≥ M everywhere.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"soft_mask expects an (H, W) mask, got shape {m.shape}")
    m = m.astype(np.float32)
    if np.any((m != 0) & (m != 1)):
        raise ValueError("soft_mask expects a hard mask with values in {0, 1}")
    if not _is_int(kernel_size) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
    if not _is_int(iterations) or iterations < 0:
        raise ValueError(f"iterations must be a non-negative integer, got {iterations!r}")
    keep = 1.0 - m  # (H, W)
    init = m
    p = np.zeros_like(m)
    for _ in range(iterations):
        p = cv2.blur(init, (kernel_size, kernel_size), borderType=cv2.BORDER_CONSTANT) * keep
        init = p + m
    return np.minimum(m + p, np.float32(1.0))


def blend(clean: np.ndarray, fill: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Corrupt an image (SPEC Eq. 1): ``I = O ⊙ (1 − α) + N ⊙ α``, rounded half-to-even to uint8.

    Args:
        clean: Clean image O, ``(H, W)`` or ``(H, W, C)``, values in [0, 255].
        fill: Fill N with the same shape as ``clean``.
        alpha: Mask in [0, 1] (hard M or soft M̃): ``(H, W)``, ``(H, W, 1)`` or the shape of ``clean``.

    Returns:
        The corrupted image I as uint8 with the shape of ``clean``.
    """
    o, n = np.asarray(clean), np.asarray(fill)
    a = np.asarray(alpha, np.float32)
    if o.shape != n.shape:
        raise ValueError(f"blend: fill shape {n.shape} differs from clean shape {o.shape}")
    if o.ndim not in (2, 3):
        raise ValueError(f"blend expects (H, W) or (H, W, C) images, got shape {o.shape}")
    if a.ndim == 2 and o.ndim == 3:
        a = a[:, :, None]
    if a.shape[:2] != o.shape[:2] or a.ndim != o.ndim or a.shape[-1] not in (1, o.shape[-1]):
        raise ValueError(f"blend: alpha shape {np.shape(alpha)} does not match image shape {o.shape}")
    if a.size and (a.min() < 0 or a.max() > 1):
        raise ValueError(f"blend: alpha must lie in [0, 1], got range [{a.min()}, {a.max()}]")
    channels = o.shape[-1] if o.ndim == 3 else 1
    if a.shape != o.shape:  # (H, W, 1) → (H, W, C) up front: numpy broadcasting over a trailing 1 is slow
        a = cv2.merge([np.ascontiguousarray(a[:, :, 0])] * channels) if channels <= 4 else np.repeat(a, channels, 2)
    keep = np.float32(1.0) - a
    if o.dtype == n.dtype == np.uint8 and channels <= 4 and a.size:
        return _blend_uint8(o, n, a, keep)
    return _blend_reference(o.astype(np.float32), n.astype(np.float32), a, keep)


def _blend_reference(o: np.ndarray, n: np.ndarray, a: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Eq. 1 in float32 numpy: the definition that `_blend_uint8` reproduces bit for bit."""
    out = o * keep
    out += n * a
    np.rint(out, out=out)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def _blend_uint8(clean: np.ndarray, fill: np.ndarray, a: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """`_blend_reference` for uint8 images in OpenCV's SIMD kernels, with the same float32 products and sum
    (uint8 → float32 is exact), ~2x faster; the bytes of every set depend on the two agreeing, as tested.
    ``convertScaleAbs`` rounds half to even and saturates as ``rint`` + ``clip`` do, and its ``abs`` is a no-op on
    the non-negative sum."""
    out = cv2.multiply(clean, keep, dtype=cv2.CV_32F)
    cv2.add(out, cv2.multiply(fill, a, dtype=cv2.CV_32F), dst=out)
    return cv2.convertScaleAbs(out)


# ----------------------------------------------------------------------------------------------------------------
# from files: a user's mask folder (e.g. NVIDIA's irregular masks), and contaminant images (spray paint, stickers)


@functools.lru_cache(maxsize=16)
def _image_files(folder: str) -> tuple[tuple[str, str], ...]:
    """(name relative to ``folder``, path) of every image below it, sorted; cached per process."""
    from blindbench.imageio import list_images

    root = Path(os.path.expandvars(folder))
    if "$" in str(root):
        raise ConfigError(f"set the environment variable in {folder!r} to the mask folder")
    if not root.is_dir():
        raise ConfigError(f"mask folder not found: {root}")
    files = tuple((p.relative_to(root).as_posix(), str(p)) for p in list_images(root))
    if not files:
        raise ConfigError(f"no images found under {root}")
    return files


def _read_file_mask(path: str, alpha_or_bright: bool, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """(rgb (H, W, 3), mask (H, W) 0/1) of a file: its alpha channel if it has one, else its bright pixels."""
    from blindbench.imageio import read_image_rgba

    rgb, alpha = read_image_rgba(path)
    if alpha is not None and alpha_or_bright:
        return rgb, (alpha > 127).astype(np.uint8)
    return rgb, (rgb.max(axis=2) > threshold).astype(np.uint8)


def _contaminant(path: str, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """`_read_file_mask` of a contaminant image, decoded once per file version: a sample's placement, its mask
    and its fill all read the same file. The arrays are shared, hence read-only."""
    stat = os.stat(path)
    return _decoded_contaminant(path, stat.st_mtime_ns, stat.st_size, threshold)


@functools.lru_cache(maxsize=8)  # one sample needs one entry; a few more serve threads and small folders
def _decoded_contaminant(path: str, mtime_ns: int, size: int, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    rgb, hole = _read_file_mask(path, True, threshold)
    rgb.flags.writeable = False
    hole.flags.writeable = False
    return rgb, hole


@functools.lru_cache(maxsize=16)
def _hole_ratios(folder: str, invert: bool) -> np.ndarray:
    """Hole fraction of every mask file of ``folder`` at its own size (read once per process, for binning)."""
    ratios = []
    for _, path in _image_files(folder):
        hole = _read_file_mask(path, False, 127)[1]
        ratios.append(1.0 - hole.mean() if invert else hole.mean())
    return np.asarray(ratios, np.float64)


def folder_digest(folder: str) -> str:
    """sha256 over the names and bytes of every image in ``folder``: what a set drawing from it depends on."""
    import hashlib

    digest = hashlib.sha256()
    for name, path in _image_files(folder):
        digest.update(f"{name}\0{_file_digest(path)}\n".encode())
    return digest.hexdigest()


FILE_GENERATORS = frozenset({"folder", "image"})  # generators whose masks come from a folder of files


def _file_digest(path: str) -> str:
    """First 16 hex digits of the file's sha256; hashed once per file version (a sample's mask and fill both
    check it, and so does every sample drawing the same file)."""
    stat = os.stat(path)
    return _digest_of_version(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4096)
def _digest_of_version(path: str, mtime_ns: int, size: int) -> str:
    from blindbench.imageio import sha256_file

    return sha256_file(path)[:16]


def _checked(folder: str, name: str, digest: str) -> str:
    """Path of ``name`` in ``folder``; a changed or missing file is an error, so a set can't silently change."""
    path = dict(_image_files(folder)).get(name)
    if path is None:
        raise ConfigError(f"mask file {name!r} is no longer in {folder}")
    if _file_digest(path) != digest:
        raise ConfigError(f"mask file {path} changed since its sample was drawn (sha256 {digest}…)")
    return path


def sample_folder(
    rng: np.random.Generator,
    height: int,
    width: int,
    *,
    folder: str = "",
    ratio_range: tuple[float, float] = (0.0, 1.0),
    invert: bool = False,
    flip: bool = True,
) -> Params:
    """Pick a binary mask file from a folder (white = hole; ``invert`` for black holes), optionally binned.

    Args:
        folder: the mask folder (``$VAR`` expanded), searched recursively, e.g. NVIDIA's irregular mask set.
        ratio_range: keep only masks whose hole fraction (at their own size) lies in ``[lo, hi)``: the
            PConv / LaMa bins (0.1, 0.2), …, (0.5, 0.6).
        invert: the files mark holes black.
        flip: also draw random horizontal and vertical flips.

    Returns:
        ``{"folder", "file", "sha256", "invert", "flip": [h, v]}``; the mask is resized (nearest) to H×W.
    """
    _check_size(height, width)
    if not folder:
        raise ValueError("the folder mask generator needs mask_options.folder")
    lo, hi = _check_range("ratio_range", ratio_range, 0, integer=False)
    files = _image_files(folder)
    if (lo, hi) != (0.0, 1.0):
        ratios = _hole_ratios(folder, bool(invert))
        keep = np.flatnonzero((ratios >= lo) & (ratios < hi))
        if len(keep) == 0:
            raise ValueError(f"no mask in {folder} has a hole ratio in [{lo}, {hi})")
    else:
        keep = np.arange(len(files))
    name, path = files[int(keep[int(rng.integers(len(keep)))])]
    flips = [bool(rng.random() < 0.5), bool(rng.random() < 0.5)] if flip else [False, False]
    return {"folder": folder, "file": name, "sha256": _file_digest(path), "invert": bool(invert), "flip": flips}


def draw_folder(params: Params, height: int, width: int) -> np.ndarray:
    """Render :func:`sample_folder` parameters: the file's mask, flipped, resized to H×W (nearest)."""
    path = _checked(params["folder"], params["file"], params["sha256"])
    hole = _read_file_mask(path, False, 127)[1]
    if params["invert"]:
        hole = 1 - hole
    hole = _flip(hole, params["flip"])
    return np.ascontiguousarray(cv2.resize(hole, (width, height), interpolation=cv2.INTER_NEAREST))


def _flip(array: np.ndarray, flips: list[bool]) -> np.ndarray:
    if flips[0]:
        array = array[:, ::-1]
    if flips[1]:
        array = array[::-1]
    return array


def sample_image(
    rng: np.random.Generator,
    height: int,
    width: int,
    *,
    folder: str = "",
    size_range: tuple[float, float] = (0.4, 0.9),
    threshold: int = 30,
) -> Params:
    """Place a contaminant image (spray paint, a sticker, a logo) somewhere on the photo, as the official code's
    spray-paint pattern does. Its alpha channel is the mask; an image without one is masked where it is not black
    (brightest channel above ``threshold``). The same placement gives the fill (see `place_contaminant`).

    Args:
        folder: folder of contaminant images (``$VAR`` expanded), searched recursively.
        size_range: the image's longer side becomes this fraction of the photo's longer side.
        threshold: grey level above which a pixel of an image without alpha is contaminant.

    Returns:
        ``{"folder", "file", "sha256", "threshold", "box": [x, y, w, h], "flip": [h, v]}`` (the box may reach
        past the photo's edges).
    """
    _check_size(height, width)
    if not folder:
        raise ValueError("the image mask generator needs mask_options.folder")
    lo, hi = _check_range("size_range", size_range, 0, integer=False)
    if not 0 < lo <= hi <= 4:
        raise ValueError(f"size_range must lie in (0, 4], got {size_range!r}")
    _check_int("threshold", threshold, 0)
    files = _image_files(folder)
    name, path = files[int(rng.integers(len(files)))]
    h0, w0 = _contaminant(path, threshold)[0].shape[:2]
    factor = float(rng.uniform(lo, hi)) * max(height, width) / max(h0, w0)
    w, h = max(1, round(w0 * factor)), max(1, round(h0 * factor))
    # the top-left corner: up to a quarter of the image may hang over each edge
    x = int(rng.integers(-(w // 4), max(width - 3 * w // 4, -(w // 4)) + 1))
    y = int(rng.integers(-(h // 4), max(height - 3 * h // 4, -(h // 4)) + 1))
    flips = [bool(rng.random() < 0.5), bool(rng.random() < 0.5)]
    return {"folder": folder, "file": name, "sha256": _file_digest(path), "threshold": int(threshold),
            "box": [x, y, w, h], "flip": flips}  # fmt: skip


def place_contaminant(params: Params, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The placed contaminant of :func:`sample_image` parameters: (rgb (H, W, 3) uint8, mask (H, W) 0/1)."""
    path = _checked(params["folder"], params["file"], params["sha256"])
    rgb, hole = _contaminant(path, params["threshold"])
    x, y, w, h = params["box"]
    rgb = cv2.resize(_flip(rgb, params["flip"]), (w, h), interpolation=cv2.INTER_AREA)
    hole = cv2.resize(np.ascontiguousarray(_flip(hole, params["flip"])), (w, h), interpolation=cv2.INTER_NEAREST)
    canvas, mask = np.zeros((height, width, 3), np.uint8), _empty(height, width)
    # the part of the box inside the photo
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x0 < x1 and y0 < y1:
        canvas[y0:y1, x0:x1] = rgb[y0 - y : y1 - y, x0 - x : x1 - x]
        mask[y0:y1, x0:x1] = hole[y0 - y : y1 - y, x0 - x : x1 - x]
    return canvas, mask


def draw_image(params: Params, height: int, width: int) -> np.ndarray:
    """Render :func:`sample_image` parameters: where the placed contaminant covers the photo."""
    return place_contaminant(params, height, width)[1]


# ----------------------------------------------------------------------------------------------------------------
# registry


@dataclass(frozen=True)
class MaskGenerator:
    """A named mask generator: ``sample(rng, H, W, **options) -> params`` and ``draw(params, H, W) -> mask``."""

    name: str
    sample: Callable[..., Params]
    draw: Callable[[Params, int, int], np.ndarray]
    description: str

    def generate(self, rng: np.random.Generator, height: int, width: int, **options: Any) -> tuple[np.ndarray, Params]:
        """Sample parameters and draw them; returns ``(mask, params)``."""
        params = self.sample(rng, height, width, **options)
        return self.draw(params, height, width), params


DEFAULT_MASK_GENERATOR = "vcn"

MASK_GENERATORS: dict[str, MaskGenerator] = {
    g.name: g
    for g in (
        MaskGenerator("vcn", sample_vcn, draw_vcn, "official VCNet strokes (8 parts); rho = 0.56 +- 0.17 at 256^2"),
        MaskGenerator("deepfill", sample_deepfill, draw_deepfill, "DeepFill v2 free-form brush; ~15% area at 256^2"),
        MaskGenerator("lama-thin", sample_lama_thin, draw_lama, "LaMa random_thin_256: many narrow strokes"),
        MaskGenerator("lama-medium", sample_lama_medium, draw_lama, "LaMa random_medium_256: wide strokes or boxes"),
        MaskGenerator("lama-thick", sample_lama_thick, draw_lama, "LaMa random_thick_256: very wide strokes or boxes"),
        MaskGenerator("rectangles", sample_rectangles, draw_rectangles, "axis-aligned boxes, sides 25-50% of image"),
        MaskGenerator("text", sample_text, draw_text, "words in OpenCV Hershey fonts"),
        MaskGenerator("graffiti", sample_graffiti, draw_graffiti, "spray-painted smooth curves"),
        MaskGenerator("folder", sample_folder, draw_folder, "binary masks from a folder (options: folder, "
                      "ratio_range bins, invert), e.g. NVIDIA's irregular masks"),
        MaskGenerator("image", sample_image, draw_image, "a contaminant image's alpha or non-black pixels, placed "
                      "at random (options: folder, size_range, threshold)"),
    )
}


def get_mask_generator(name: str) -> MaskGenerator:
    """Look up a registered mask generator by name.

    Raises:
        ConfigError: (a ValueError) one line naming the unknown generator, with "did you mean" suggestions.
    """
    try:
        return MASK_GENERATORS[name]
    except (KeyError, TypeError):
        pass
    raise unknown("mask generator", name, MASK_GENERATORS)
