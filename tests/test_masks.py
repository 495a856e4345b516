"""Tests for blindbench.masks: mask statistics, replayable parameters, soft mask and blending."""

from __future__ import annotations

import json
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import matplotlib_icons

from blindbench import masks
from blindbench.errors import ConfigError
from blindbench.masks import (
    DEFAULT_MASK_GENERATOR,
    MASK_GENERATORS,
    blend,
    draw_vcn,
    get_mask_generator,
    sample_lama,
    sample_rectangles,
    sample_vcn,
    soft_mask,
)

NAMES = sorted(MASK_GENERATORS)
H, W = 96, 128  # non-square on purpose


def write_mask_folder(folder: Path, ratios: dict[str, float], size: tuple[int, int] = (60, 80)) -> Path:
    """Binary mask files (white = hole): a top band covering ``ratio`` of the rows of each."""
    import cv2

    for name, ratio in ratios.items():
        mask = np.zeros(size, np.uint8)
        mask[: round(ratio * size[0])] = 255
        (folder / Path(name).parent).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / name), mask)
    return folder


@pytest.fixture(scope="module")
def file_options(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Options of the generators that read files: a mask folder made here, matplotlib's icons."""
    masks = write_mask_folder(tmp_path_factory.mktemp("masks"), {"a.png": 0.05, "b.png": 0.15, "sub/c.png": 0.35,
                                                                  "d.png": 0.5})  # fmt: skip
    return {"folder": {"folder": str(masks)}, "image": {"folder": matplotlib_icons()}}


def _fractions(name: str, n: int, seed: int, size: tuple[int, int] = (256, 256)) -> np.ndarray:
    gen = get_mask_generator(name)
    rng = np.random.default_rng(seed)
    return np.array([gen.generate(rng, *size)[0].mean() for _ in range(n)])


def _is_plain(value: object) -> bool:
    """True when value is built only from dict/list/str/int/float/bool/None (no numpy scalars or tuples)."""
    if isinstance(value, dict):
        return all(type(k) is str and _is_plain(v) for k, v in value.items())
    if type(value) is list:
        return all(_is_plain(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def _zero_padded_box(x: np.ndarray, k: int) -> np.ndarray:
    """Reference k×k mean with zero padding (TensorFlow SAME), float64, via 2-D cumulative sums."""
    r = k // 2
    c = np.pad(np.pad(x.astype(np.float64), r).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w = x.shape
    return (c[k : k + h, k : k + w] - c[:h, k : k + w] - c[k : k + h, :w] + c[:h, :w]) / (k * k)


def _reference_soft(m: np.ndarray, k: int = 15, iterations: int = 4) -> np.ndarray:
    m = m.astype(np.float64)
    init, p = m, np.zeros_like(m)
    for _ in range(iterations):
        p = _zero_padded_box(init, k) * (1 - m)
        init = p + m
    return np.minimum(m + p, 1)


# ---------------------------------------------------------------------------------------------- statistics


def test_vcn_reproduces_paper_ratio() -> None:
    frac = _fractions("vcn", 1200, seed=0)
    rho = frac / (1 - frac)  # |M=1| / |M=0|; paper 0.56 ± 0.17, official code 0.578 ± 0.175
    assert 0.50 <= rho.mean() <= 0.62
    assert 0.13 <= rho.std() <= 0.21
    assert 0.33 <= frac.mean() <= 0.39  # official: 0.358 ± 0.069


def test_deepfill_mean_area() -> None:
    frac = _fractions("deepfill", 600, seed=1)
    assert 0.12 <= frac.mean() <= 0.18  # DeepFill v2 brush: 14.9% at 256²


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [("lama-thin", 0.24, 0.34), ("lama-medium", 0.18, 0.29), ("lama-thick", 0.22, 0.32), ("rectangles", 0.12, 0.17),
     ("text", 0.05, 0.25), ("graffiti", 0.10, 0.30)],
)  # fmt: skip
def test_other_generators_mean_area(name: str, low: float, high: float) -> None:
    frac = _fractions(name, 300, seed=2)
    assert low <= frac.mean() <= high
    if name.startswith("lama"):
        assert frac.max() <= 0.5  # LaMa's max_tamper_area


def test_lama_medium_mixes_strokes_and_boxes() -> None:
    rng = np.random.default_rng(3)
    params = [sample_lama(rng, 256, 256, preset="medium") for _ in range(100)]
    n_box = sum(bool(p["boxes"]) for p in params)
    assert all(bool(p["boxes"]) != bool(p["strokes"]) for p in params)
    assert 10 <= n_box <= 40  # box probability 0.3 / 1.3 ≈ 0.23


def test_rectangle_sides_in_range() -> None:
    rng = np.random.default_rng(4)
    for _ in range(50):
        (box,) = sample_rectangles(rng, 200, 100)["boxes"]
        x, y, w, h = box
        assert 25 <= w <= 50 and 50 <= h <= 100
        assert 0 <= x <= 100 - w and 0 <= y <= 200 - h


# ---------------------------------------------------------------------------------------------- every generator


@pytest.mark.parametrize("name", NAMES)
def test_mask_shape_dtype_values(name: str, file_options: dict) -> None:
    gen, options = get_mask_generator(name), file_options.get(name, {})
    rng = np.random.default_rng(5)
    masks = [gen.generate(rng, H, W, **options)[0] for _ in range(20)]
    for mask in masks:
        assert mask.shape == (H, W)
        assert mask.dtype == np.uint8
        assert set(np.unique(mask).tolist()) <= {0, 1}
    assert np.mean(masks) > 0.01


@pytest.mark.parametrize("name", NAMES)
def test_params_json_round_trip(name: str, file_options: dict) -> None:
    gen, options = get_mask_generator(name), file_options.get(name, {})
    rng = np.random.default_rng(6)
    for _ in range(5):
        params = gen.sample(rng, H, W, **options)
        assert _is_plain(params)
        replayed = json.loads(json.dumps(params))
        np.testing.assert_array_equal(gen.draw(replayed, H, W), gen.draw(params, H, W))


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_params_and_different_seeds_differ(name: str, file_options: dict) -> None:
    gen, options = get_mask_generator(name), file_options.get(name, {})
    assert gen.sample(np.random.default_rng(7), H, W, **options) == gen.sample(np.random.default_rng(7), H, W,
                                                                                **options)
    a = gen.generate(np.random.default_rng(7), H, W, **options)[0]
    b = gen.generate(np.random.default_rng(8), H, W, **options)[0]
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_sampling_ignores_and_keeps_global_random_state(name: str, file_options: dict) -> None:
    gen, options = get_mask_generator(name), file_options.get(name, {})
    np.random.seed(0)
    random.seed(0)
    first = gen.sample(np.random.default_rng(9), H, W, **options)
    np_state, py_state = np.random.get_state(), random.getstate()
    np.random.seed(1)
    random.seed(1)
    np_state1, py_state1 = np.random.get_state(), random.getstate()
    assert gen.sample(np.random.default_rng(9), H, W, **options) == first
    gen.draw(first, H, W)
    assert np.array_equal(np.random.get_state()[1], np_state1[1]) and random.getstate() == py_state1
    assert not np.array_equal(np_state[1], np_state1[1]) and py_state != py_state1


@pytest.mark.parametrize("size", [(0, 10), (10, -1), (10.0, 10)])
def test_bad_size_is_value_error(size: tuple) -> None:
    with pytest.raises(ValueError, match="must be a positive integer"):
        sample_vcn(np.random.default_rng(0), *size)


def test_bad_options_are_value_errors() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="max_width"):
        sample_vcn(rng, 64, 64, max_width=8)
    with pytest.raises(ValueError, match="did you mean 'max_len'"):
        sample_lama(rng, 64, 64, preset="thin", max_lenght=3)
    with pytest.raises(ValueError, match="side_range"):
        sample_rectangles(rng, 64, 64, side_range=(0.5, 0.25))


def test_unknown_generator_suggests_names() -> None:
    with pytest.raises(ValueError, match="did you mean.*vcn"):
        get_mask_generator("vcm")
    with pytest.raises(ValueError, match="unknown mask generator 'zzz'; known: deepfill, folder"):
        get_mask_generator("zzz")  # nothing close: every name
    assert get_mask_generator(DEFAULT_MASK_GENERATOR).name == "vcn"


# ---------------------------------------------------------------------------------------------- vcn drawing


# Made by: params = sample_vcn(np.random.default_rng(2018), 256, 256); draw_vcn(params, 256, 256).sum()
GOLDEN_VCN_FIRST_POINTS = [[39, 137], [43, 144]]
GOLDEN_VCN_SUM = 24665


def test_vcn_golden() -> None:
    params = sample_vcn(np.random.default_rng(2018), 256, 256)
    assert len(params["strokes"]) == 8
    assert params["strokes"][0]["points"][:2] == GOLDEN_VCN_FIRST_POINTS
    assert int(draw_vcn(params, 256, 256).sum()) == GOLDEN_VCN_SUM


def test_vcn_draws_like_official_code() -> None:
    # one horizontal 20 px segment of width 10 + 1-px circle outlines of radius 5 at both ends
    params = {"strokes": [{"points": [[20, 30], [40, 30]], "widths": [10]}, {"points": [[5, 5]], "widths": []}]}
    mask = draw_vcn(params, 64, 64)
    assert mask[30, 30] == 1 and mask[30 - 5, 30] == 1 and mask[30 + 5, 30] == 1
    assert mask[30 - 7, 30] == 0 and mask[30 + 7, 30] == 0
    assert mask[5, 5] == 1 and mask[5:8, 5:8].sum() == 1  # a stroke with no segment leaves a dot


# ---------------------------------------------------------------------------------------------- soft mask


@pytest.fixture
def square_hole() -> np.ndarray:
    mask = np.zeros((128, 160), np.uint8)
    mask[50:70, 60:80] = 1
    return mask


def test_soft_mask_properties(square_hole: np.ndarray) -> None:
    soft = soft_mask(square_hole)
    assert soft.dtype == np.float32 and soft.shape == square_hole.shape
    assert soft.min() >= 0 and soft.max() <= 1
    assert np.all(soft >= square_hole)
    assert np.all(soft[square_hole == 1] == 1)
    ray = soft[60, 80:]  # to the right, starting next to the hole
    assert ray[0] > 0.5
    assert np.all(np.diff(ray) <= 0)
    ys, xs = np.mgrid[:128, :160]
    dist = np.maximum(np.maximum(50 - ys, ys - 69), np.maximum(60 - xs, xs - 79))  # chessboard distance
    assert np.all(soft[dist > 4 * 7 + 1] == 0)
    assert np.all(soft[(dist > 0) & (dist <= 20)] > 0)


def test_soft_mask_matches_zero_padded_reference() -> None:
    mask = get_mask_generator("vcn").generate(np.random.default_rng(10), 70, 90)[0]
    np.testing.assert_allclose(soft_mask(mask), _reference_soft(mask), atol=1e-5)
    # near the border the halo must not be boosted by replicate/reflect padding
    edge = np.zeros((40, 40), np.uint8)
    edge[:, :5] = 1
    np.testing.assert_allclose(soft_mask(edge), _reference_soft(edge), atol=1e-5)


def test_soft_mask_edge_cases(square_hole: np.ndarray) -> None:
    np.testing.assert_array_equal(soft_mask(square_hole, iterations=0), square_hole.astype(np.float32))
    np.testing.assert_array_equal(soft_mask(square_hole.astype(bool)), soft_mask(square_hole))
    with pytest.raises(ValueError, match="values in"):
        soft_mask(square_hole * 2)
    with pytest.raises(ValueError, match="kernel_size"):
        soft_mask(square_hole, kernel_size=14)
    with pytest.raises(ValueError, match="shape"):
        soft_mask(square_hole[None])


# ---------------------------------------------------------------------------------------------- blend


def test_blend_exact_on_hard_alpha() -> None:
    rng = np.random.default_rng(11)
    clean = rng.integers(0, 256, (8, 9, 3), dtype=np.uint8)
    fill = rng.integers(0, 256, (8, 9, 3), dtype=np.uint8)
    alpha = (rng.uniform(size=(8, 9)) < 0.5).astype(np.float32)
    out = blend(clean, fill, alpha)
    assert out.dtype == np.uint8 and out.shape == clean.shape
    np.testing.assert_array_equal(out, np.where(alpha[..., None] == 1, fill, clean))
    np.testing.assert_array_equal(blend(clean, fill, np.zeros((8, 9, 1), np.float32)), clean)
    np.testing.assert_array_equal(blend(clean, fill, np.ones((8, 9, 3), np.float32)), fill)


def test_blend_rounds_half_to_even() -> None:
    clean = np.array([[0, 10, 10, 0]], np.uint8)
    fill = np.array([[255, 20, 20, 1]], np.uint8)
    alpha = np.array([[0.5, 0.25, 0.75, 0.5]], np.float32)
    # 127.5 → 128 (truncation would give 127), 12.5 → 12, 17.5 → 18, 0.5 → 0
    np.testing.assert_array_equal(blend(clean, fill, alpha), [[128, 12, 18, 0]])


def test_blend_uint8_kernel_matches_the_float32_reference_bit_for_bit() -> None:
    # every set's bytes follow from blend: OpenCV's kernel must give what the numpy definition gives, on random
    # alphas, on alphas whose products land on exact halves, on soft masks, and on every (O, N) byte pair
    rng = np.random.default_rng(5)
    every_o = np.repeat(np.arange(256, dtype=np.uint8), 256).reshape(256, 256)
    every_n = np.tile(np.arange(256, dtype=np.uint8), 256).reshape(256, 256)
    alphas = [rng.random((256, 256), dtype=np.float32), (rng.integers(0, 257, (256, 256)) / 256).astype(np.float32),
              soft_mask((rng.random((256, 256)) < 0.02).astype(np.uint8))]
    alphas += [np.full((256, 256), v, np.float32) for v in (0.5, 0.25, 1 / 3, 0.49999997, 0.0, 1.0)]
    for alpha in alphas:
        for clean, fill in ((every_o, every_n), (np.dstack([every_o, every_n, every_o[::-1]]),
                                                  np.dstack([every_n, every_o, every_n.T]))):
            a = alpha if clean.ndim == 2 else cv2.merge([alpha] * 3)
            reference = masks._blend_reference(clean.astype(np.float32), fill.astype(np.float32), a, 1 - a)
            np.testing.assert_array_equal(blend(clean, fill, alpha), reference)
    # non-uint8 images take the reference path and agree with the kernel
    clean, fill = every_o[:16, :16, None].repeat(3, 2), every_n[:16, :16, None].repeat(3, 2)
    np.testing.assert_array_equal(blend(clean.astype(np.float64), fill, alphas[0][:16, :16]),
                                  blend(clean, fill, alphas[0][:16, :16]))


def test_blend_bad_input() -> None:
    img = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="alpha shape"):
        blend(img, img, np.zeros((4, 5)))
    with pytest.raises(ValueError, match="fill shape"):
        blend(img, img[:, :, :1], np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        blend(img, img, np.full((4, 4), 1.5))


# ---------------------------------------------------------------------------------------------- from files


def test_folder_masks_are_binned_by_hole_ratio_flipped_and_resized(tmp_path: Path) -> None:
    folder = str(write_mask_folder(tmp_path, {"a.png": 0.05, "b.png": 0.15, "sub/c.png": 0.35, "d.png": 0.5}))
    gen = get_mask_generator("folder")
    rng = np.random.default_rng(0)
    picked = {gen.sample(rng, H, W, folder=folder, ratio_range=(0.1, 0.2))["file"] for _ in range(20)}
    assert picked == {"b.png"}  # the PConv-style bin [0.1, 0.2) holds only b
    picked = {gen.sample(rng, H, W, folder=folder, ratio_range=(0.3, 0.6))["file"] for _ in range(40)}
    assert picked == {"sub/c.png", "d.png"}
    params = gen.sample(rng, H, W, folder=folder, ratio_range=(0.3, 0.4), flip=False)
    mask = gen.draw(params, H, W)
    assert mask.shape == (H, W) and abs(mask.mean() - 0.35) < 0.02 and mask[0].all() and not mask[-1].any()
    flipped = gen.draw({**params, "flip": [False, True]}, H, W)
    assert (flipped != mask[::-1]).mean() < 0.02  # flipped before the nearest resize: up to a row apart
    inverted = gen.draw({**params, "invert": True}, H, W)
    assert np.array_equal(inverted, 1 - mask)
    assert gen.sample(rng, H, W, folder=folder, ratio_range=(0.9, 1.0), invert=True)["file"] == "a.png"  # 95 % black
    with pytest.raises(ValueError, match=r"no mask in .* has a hole ratio in \[0.9, 1.0\)"):
        gen.sample(rng, H, W, folder=folder, ratio_range=(0.9, 1.0))
    # a file changed after its sample was drawn is an error, not a silently different set
    write_mask_folder(tmp_path, {"sub/c.png": 0.2})
    with pytest.raises(ConfigError, match="changed since its sample was drawn"):
        gen.draw(params, H, W)


def test_image_contaminants_take_their_alpha_as_mask_and_their_pixels_as_fill(tmp_path: Path) -> None:
    import cv2

    from blindbench.corruption import Recipe, apply, sample_params
    from blindbench.imageio import read_image_rgba
    from blindbench.masks import place_contaminant

    icons = matplotlib_icons()
    recipe = Recipe("image", mask_options={"folder": icons, "size_range": [0.5, 0.8]}, soft_probability=0.0)
    clean = np.full((H, W, 3), 7, np.uint8)
    covered = []
    for seed in range(6):
        params = sample_params(np.random.default_rng(seed), recipe, (H, W))
        assert params["pattern"] == "image" and params["mask"]["generator"] == "image"
        corruption = apply(clean, None, json.loads(json.dumps(params)))
        mask = corruption.mask.astype(bool)
        rgb, hole = place_contaminant(params["mask"]["params"], H, W)
        assert np.array_equal(hole, corruption.mask) and np.array_equal(rgb, corruption.fill)
        assert np.array_equal(corruption.input[mask], rgb[mask]) and (corruption.input[~mask] == 7).all()
        covered.append(mask.mean())
        # the mask is the icon's alpha, placed: compare with the file itself, resized to the box
        p = params["mask"]["params"]
        _, alpha = read_image_rgba(Path(icons) / p["file"])
        x, y, w, h = p["box"]
        alpha = (alpha > 127).astype(np.uint8)
        alpha = alpha[:, ::-1] if p["flip"][0] else alpha
        alpha = alpha[::-1] if p["flip"][1] else alpha
        alpha = cv2.resize(np.ascontiguousarray(alpha), (w, h), interpolation=cv2.INTER_NEAREST)
        inside = corruption.mask[max(y, 0) : y + h, max(x, 0) : x + w]
        top, left = max(-y, 0), max(-x, 0)
        expected = alpha[top : top + inside.shape[0], left : left + inside.shape[1]] > 0
        assert np.array_equal(inside.astype(bool), expected)
    assert 0.02 < np.mean(covered) < 0.6
    # an image without alpha: its non-black pixels (a real photo disc on black, as spray-paint scans are)
    photo = np.zeros((40, 40, 3), np.uint8)
    cv2.circle(photo, (20, 20), 12, (200, 90, 30), -1)
    cv2.imwrite(str(tmp_path / "disc.jpg"), photo)
    params = sample_params(np.random.default_rng(1), Recipe("image", mask_options={"folder": str(tmp_path)}), 64)
    mask = apply(np.zeros((64, 64, 3), np.uint8), None, params).mask
    disc = np.pi * (12 * params["mask"]["params"]["box"][2] / 40) ** 2
    assert abs(mask.sum() - disc) / disc < 0.25


def test_a_contaminant_image_is_decoded_once_per_sample(tmp_path: Path, monkeypatch) -> None:
    import cv2

    import blindbench.imageio
    from blindbench.corruption import Recipe, apply, sample_params
    from blindbench.masks import _decoded_contaminant

    photo = np.zeros((40, 40, 3), np.uint8)
    cv2.circle(photo, (20, 20), 12, (200, 90, 30), -1)
    cv2.imwrite(str(tmp_path / "disc.png"), photo)
    decoded = []
    read = blindbench.imageio.read_image_rgba
    monkeypatch.setattr(blindbench.imageio, "read_image_rgba", lambda path: decoded.append(path) or read(path))
    _decoded_contaminant.cache_clear()
    recipe = Recipe("image", mask_options={"folder": str(tmp_path)})
    params = sample_params(np.random.default_rng(3), recipe, 64)
    first = apply(np.zeros((64, 64, 3), np.uint8), None, params)  # placement, mask and fill: one decode
    assert len(decoded) == 1
    again = apply(np.zeros((64, 64, 3), np.uint8), None, params)
    assert len(decoded) == 1 and all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert first.mask.any() and first.fill.flags.writeable and first.mask.flags.writeable


def test_file_generators_bad_options_are_one_line(tmp_path: Path) -> None:
    from blindbench.corruption import Recipe

    with pytest.raises(ConfigError, match="mask folder not found"):
        Recipe("real", mask="folder", mask_options={"folder": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match="no images found under"):
        Recipe("real", mask="folder", mask_options={"folder": str(tmp_path)})
    with pytest.raises(ConfigError, match="needs mask_options.folder"):
        Recipe("image")
    with pytest.raises(ConfigError, match="the image pattern and the image mask generator go together"):
        Recipe("colour", mask="image", mask_options={"folder": matplotlib_icons()})
    with pytest.raises(ConfigError, match="set the environment variable"):
        Recipe("real", mask="folder", mask_options={"folder": "$BLINDBENCH_NO_SUCH_VAR/masks"})
