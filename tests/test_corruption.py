from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import matplotlib_icons

from blindbench.corruption import PATTERN_DEFAULT_MASK, Recipe, apply, sample_params
from blindbench.errors import ConfigError
from blindbench.imageio import decode_png
from blindbench.shards import iter_shard_samples


def _images(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return (
        rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
    )


@pytest.mark.parametrize("pattern", sorted(PATTERN_DEFAULT_MASK))
def test_every_pattern_replays_from_json_params(pattern: str) -> None:
    clean, fill = _images()
    recipe = Recipe(pattern, mask_options={"folder": matplotlib_icons()} if pattern == "image" else {})
    params = sample_params(np.random.default_rng(11), recipe, 64, fill_count=5)
    assert params == sample_params(np.random.default_rng(11), recipe, 64, fill_count=5)
    replayed = json.loads(json.dumps(params))
    first, second = apply(clean, fill, params), apply(clean, fill, replayed)
    for a, b in zip(first, second):
        assert np.array_equal(a, b)
    assert first.input.shape == (64, 64, 3) and first.fill.shape == (64, 64, 3)
    assert set(np.unique(first.mask)) <= {0, 1}
    assert (first.soft_mask[first.mask == 1] == 255).all()  # M̃ = 1 on M
    assert np.array_equal(first.input[first.soft_mask == 0], clean[first.soft_mask == 0])  # untouched outside M̃


def test_hard_samples_blend_with_m_itself() -> None:
    clean, fill = _images()
    params = sample_params(np.random.default_rng(0), Recipe("real", soft_probability=0.0), 64, fill_count=1)
    out = apply(clean, fill, params)
    assert params["soft"] is False and np.array_equal(out.soft_mask, out.mask * 255)
    damaged = out.mask == 1
    assert np.array_equal(out.input[damaged], out.fill[damaged]) and np.array_equal(
        out.input[~damaged], clean[~damaged]
    )


def test_real_pattern_flips_the_fill_vertically() -> None:
    clean, fill = _images()
    params = sample_params(np.random.default_rng(0), Recipe("real"), 64, fill_count=1)
    params["fill"]["flip"] = True
    assert np.array_equal(apply(clean, fill, params).fill, fill[::-1])


def test_eq1_holds_on_written_members(demo_dir: Path, demo_spec) -> None:
    patterns = set()
    for shard in range(demo_spec.shard_count):
        for raw in iter_shard_samples(demo_dir / demo_spec.shard_name(shard)):
            target = decode_png(raw["target.png"]).astype(np.float64)
            fill = decode_png(raw["fill.png"]).astype(np.float64)
            alpha = decode_png(raw["soft_mask.png"], grey=True).astype(np.float64)[..., None] / 255.0
            expected = target * (1 - alpha) + fill * alpha
            # α is stored in 8 bits (≤ 0.5/255 off, times |O − N| ≤ 255) and I is rounded: within one level.
            assert np.abs(decode_png(raw["input.png"]) - expected).max() <= 1.0 + 1e-9
            mask = decode_png(raw["mask.png"], grey=True)
            assert set(np.unique(mask)) <= {0, 255} and (alpha[..., 0][mask == 255] == 1).all()
            patterns.add(json.loads(raw["json"])["pattern"])
    assert patterns == set(PATTERN_DEFAULT_MASK) - {"image"}  # the image pattern needs a folder of contaminants


def test_bad_recipes_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="unknown corruption pattern 'rael'; did you mean 'real'"):
        Recipe("rael")
    with pytest.raises(ValueError, match="did you mean"):
        Recipe("real", mask="vnc")
    with pytest.raises(ConfigError, match="unknown mask generator 'vnc'"):  # a ConfigError too: one line in the CLI
        Recipe("real", mask="vnc")
    with pytest.raises(ConfigError, match="bad mask_options for mask generator 'vcn': .*unexpected keyword"):
        Recipe("real", mask_options={"strokes": 3})
    with pytest.raises(ConfigError, match="bad mask_options for mask generator 'vcn': parts must be"):
        Recipe("real", mask_options={"parts": -1})
    with pytest.raises(ConfigError, match="mask_options must be a table"):
        Recipe("real", mask_options=[1])
    with pytest.raises(ConfigError, match="recipe weight must be a number, got '2'"):
        Recipe("real", weight="2")
    with pytest.raises(ConfigError, match="unknown recipe key 'colour_space'"):
        Recipe.from_dict({"pattern": "real", "colour_space": "rgb"})
    with pytest.raises(ConfigError, match="soft_probability"):
        Recipe("real", soft_probability=2.0)
    with pytest.raises(ConfigError, match="needs fill images"):
        sample_params(np.random.default_rng(0), Recipe("paste"), 64, fill_count=0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"count": 10**12}, r"count must be an integer in \[1, 10000000\]"),
        ({"seed": 2**70}, r"seed must be an integer in \[0, "),
        ({"size": 10**6}, r"size must be an integer in \[16, 4096\]"),
        ({"name": "bad\x00name"}, "set name must be 1-64 letters"),
        ({"recipes": [{"pattern": "real", "mask_options": {"parts": 20_000_000}}]}, r"parts = 20000000 is outside"),
        ({"recipes": [{"pattern": "real", "weight": float("inf")}]}, "weight must be a positive finite number"),
        ({"recipes": [{"pattern": "real", "mask_options": {"max_width": float("nan")}}]}, "max_width = nan"),
        ({"recipes": [{"pattern": "real", "name": "a/b"}]}, "recipe name must be letters"),
        ({"recipes": [{"pattern": "real", "mask": "deepfill", "mask_options": {"width_range": [12, 40000]}}]},
         r"width_range = \[12, 40000\] is outside"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_manifest_values_are_bounded(change: dict, message: str) -> None:
    """Huge or non-finite manifest values fail at load in one line, not as a 19 GB process or a hang."""
    from blindbench.sets import parse_set

    base = {"name": "s", "seed": 1, "count": 4, "corpus": {"name": "photos"}, "recipes": [{"pattern": "real"}]}
    with pytest.raises(ConfigError, match=message) as info:
        parse_set({**base, **change})
    assert "\n" not in str(info.value)


def test_sets_with_file_patterns_are_byte_reproducible(photos_corpus: dict, tmp_path: Path) -> None:
    """A set mixing the image pattern and folder masks: the same bytes with 1 or 2 workers; a changed file fails."""
    import cv2

    from blindbench.sets import parse_set
    from blindbench.shards import generate_set

    masks = tmp_path / "masks"
    masks.mkdir()
    for i, rows in enumerate((60, 120)):
        mask = np.zeros((256, 256), np.uint8)
        mask[:rows] = 255
        cv2.imwrite(str(masks / f"m{i}.png"), mask)
    manifest = {"name": "files", "seed": 5, "count": 4, "samples_per_shard": 2, "recipe_order": "cycle",
                "corpus": {"name": "photos"},
                "recipes": [{"pattern": "image", "mask_options": {"folder": matplotlib_icons()}},
                            {"pattern": "real", "mask": "folder", "mask_options": {"folder": str(masks)}}]}  # fmt: skip
    spec = parse_set(manifest)
    locks = [generate_set(spec, tmp_path / f"w{n}", workers=n, progress=False).lock["shards"] for n in (1, 2)]
    assert [e["sha256"] for e in locks[0]] == [e["sha256"] for e in locks[1]]
    cv2.imwrite(str(masks / "m0.png"), np.zeros((256, 256), np.uint8))
    cv2.imwrite(str(masks / "m1.png"), np.zeros((256, 256), np.uint8))
    from blindbench.masks import _image_files
    from blindbench.sets import content_digest
    from blindbench.shards import StaleShardError

    changed = parse_set(manifest)
    assert content_digest(changed) != content_digest(spec)  # the folder's files are part of the set's content
    with pytest.raises(StaleShardError):
        generate_set(changed, tmp_path / "w1", workers=1, progress=False)
    # replaying a sample drawn before the change refuses the changed file
    _image_files.cache_clear()
    from blindbench.corruption import apply, sample_params

    params = sample_params(np.random.default_rng(0), spec.recipes[1], 64, fill_count=1)
    (masks / params["mask"]["params"]["file"]).write_bytes((masks / "m0.png").read_bytes() + b"x")
    with pytest.raises(ConfigError, match="changed since its sample was drawn"):
        apply(np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.uint8), params)
