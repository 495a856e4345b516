"""The comparison figure (paper Fig. 5) on tiny synthetic eval-run folders."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from blindbench.compare import HEADER, PAD, CompareConfig, comparison_layout, compose_comparison, run_compare
from blindbench.errors import BlindbenchError
from blindbench.imageio import read_image, write_image
from blindbench.results import REQUIRED_COLUMNS

H, W = 40, 56
KEYS = ("k0", "k1", "k2")


def _image(seed: int, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def _mask(seed: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[seed % 7 : H // 2 + seed % 7, 5:30] = 255
    return mask


def _run(root: Path, method: str, keys=KEYS, set_name: str = "photos-demo", images=True, masks=True) -> Path:
    """One eval run folder: samples.csv plus images/masks/inputs/targets for ``keys``."""
    folder = root / f"{method}-{set_name}"
    folder.mkdir(parents=True)
    lines = [",".join(REQUIRED_COLUMNS)]
    for i, key in enumerate(keys):
        lines.append(f"{method},{method},,{set_name},{key},real,0.2,,20,0.7,,,,,")
        write_image(folder / "inputs" / f"{key}.png", _image(100 + i))
        write_image(folder / "targets" / f"{key}.png", _image(200 + i))
        if images:
            write_image(folder / "images" / f"{key}.png", _image(sum(map(ord, method)) + i))
        if masks:
            write_image(folder / "masks" / f"{key}.png", _mask(i))
    (folder / "samples.csv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    _run(root, "vcn")
    _run(root, "gc", masks=False)
    _run(root, "input", images=True, masks=False)  # a reference row: left out by default
    _run(root, "pc", images=False, masks=False)  # scored, but no images saved: left out by default
    return root


def test_figure_layout_and_pixels(runs: Path, capsys) -> None:
    png = run_compare(CompareConfig(runs=str(runs), keys="k2,k0", inset=0.5))
    assert png == runs / "compare-photos-demo.png"
    assert capsys.readouterr().out == ""  # the CLI prints the path, not the library
    figure = read_image(png)
    titles = ["input", "gc", "vcn", "target"]  # baselines before vcn, as in the tables
    layout = comparison_layout((H, W), titles, ["k2", "k0"])
    assert figure.shape[:2] == layout.size
    assert figure.shape[0] == HEADER + 2 * (H + PAD) + PAD
    assert figure.shape[1] >= layout.label_width + 4 * (W + PAD) + PAD
    for r, key in enumerate(["k2", "k0"]):
        i = KEYS.index(key)

        def tile(c: int, row: int = r) -> np.ndarray:
            y, x = layout.tile_origin(row, c)
            return figure[y : y + H, x : x + W]

        vcn = runs / "vcn-photos-demo"
        np.testing.assert_array_equal(tile(0), read_image(vcn / "inputs" / f"{key}.png"))
        np.testing.assert_array_equal(tile(1), read_image(runs / "gc-photos-demo" / "images" / f"{key}.png"))
        np.testing.assert_array_equal(tile(3), read_image(vcn / "targets" / f"{key}.png"))
        # vcn: its output with the predicted mask (shrunk to half size) in the bottom-right corner
        output, got = read_image(vcn / "images" / f"{key}.png"), tile(2)
        ih, iw = H // 2, W // 2
        np.testing.assert_array_equal(got[: H - ih], output[: H - ih])
        np.testing.assert_array_equal(got[:, : W - iw], output[:, : W - iw])
        small = cv2.resize(_mask(i), (iw, ih), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(got[H - ih + 1 :, W - iw + 1 :, 0], small[1:, 1:])
        assert (got[H - ih, W - iw :] == 255).all()  # white frame on the inset's top edge
    # the title band and the gaps stay background
    assert (figure[HEADER : HEADER + PAD] == 255).all()


def test_default_keys_are_the_first_common_ones_with_images(runs: Path, tmp_path: Path) -> None:
    (runs / "gc-photos-demo" / "images" / "k1.png").unlink()
    png = run_compare(CompareConfig(runs=str(runs), count=5, png=str(tmp_path / "out" / "fig.png")))
    assert png == tmp_path / "out" / "fig.png"
    layout = comparison_layout((H, W), ["input", "gc", "vcn", "target"], ["k0", "k2"])
    assert read_image(png).shape[:2] == layout.size  # two rows: k1 lacks gc's image
    one = run_compare(CompareConfig(runs=str(runs), count=1, methods="vcn", inset=0, png=str(tmp_path / "a.png")))
    figure = read_image(one)
    layout = comparison_layout((H, W), ["input", "vcn", "target"], ["k0"])
    assert figure.shape[:2] == layout.size
    y, x = layout.tile_origin(0, 1)
    output = read_image(runs / "vcn-photos-demo" / "images" / "k0.png")
    np.testing.assert_array_equal(figure[y : y + H, x : x + W], output)  # inset 0: no mask drawn


def test_small_images_get_columns_as_wide_as_their_titles() -> None:
    tiles = [[_image(i, (8, 8)) for i in range(3)]]
    figure = compose_comparison(tiles, [[None] * 3], ["input", "oracle-telea", "target"], ["k0"])
    layout = comparison_layout((8, 8), ["input", "oracle-telea", "target"], ["k0"])
    assert layout.column_width > 8 and figure.shape[:2] == layout.size
    y, x = layout.tile_origin(0, 1)
    np.testing.assert_array_equal(figure[y : y + 8, x : x + 8], tiles[0][1])


def test_bad_requests_are_one_line_errors(runs: Path) -> None:
    def error(pattern: str, **options) -> None:
        with pytest.raises(BlindbenchError, match=pattern) as info:
            run_compare(CompareConfig(**{"runs": str(runs), **options}))
        assert "\n" not in str(info.value)

    (runs / "vcn-photos-demo" / "images" / "k1.png").unlink()
    error(r"image not found: .*vcn-photos-demo/images/k1\.png", keys="k1")
    error("unknown method 'vnc' in set photos-demo; did you mean 'vcn'", methods="vnc")
    error("unknown key 'k22' for method gc in set photos-demo; did you mean 'k2'", keys="k0,k22")
    error("unknown key 'x' for method gc in set photos-demo; it has 3, e.g. 'k0'", keys="x")
    error("unknown set 'ffhq' in .*runs; known: photos-demo", set="ffhq")
    error("unknown set 'photo-demo' in .*; did you mean 'photos-demo'", set="photo-demo")
    error("no key of set photos-demo has saved images for every method", methods="vcn,pc")
    write_image(runs / "gc-photos-demo" / "images" / "k0.png", _image(1, (H, W + 2)))
    error(r"gc-photos-demo/images/k0\.png is 58x40, expected 56x40", keys="k0")
    error("give --runs DIR", runs="")
    # --png must name a file whose folder can be made
    folder = rf"comparison PNG {runs} is a folder; give a file name \(--png\), e.g. {runs}/compare\.png"
    error(folder, keys="k2", png=str(runs))
    (runs / "note.txt").write_text("x")
    below_a_file = runs / "note.txt" / "sub" / "fig.png"
    not_a_folder = rf"cannot write comparison PNG {below_a_file}: {runs}/note\.txt is not a folder"
    error(not_a_folder, keys="k2", png=str(below_a_file))
    assert not list(runs.glob("*.png")) and not list(runs.glob(".*.tmp"))
    _run(runs, "vcn", keys=("z0",), set_name="places2-4k")
    error(r"several sets \(photos-demo, places2-4k\): choose one with --set")


def test_no_images_saved_is_an_error(tmp_path: Path) -> None:
    _run(tmp_path / "runs", "vcn", images=False, masks=False)
    with pytest.raises(BlindbenchError, match="no run below .* saved images for set photos-demo"):
        run_compare(CompareConfig(runs=str(tmp_path / "runs")))
