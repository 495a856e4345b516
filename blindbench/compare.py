"""A side-by-side comparison figure like the paper's Fig. 5, from the images ``blindbench eval`` saved.

One row per sample key; columns: the corrupted input, each method's restored output with its predicted mask
inset in the bottom-right corner (when the run saved one), and the target. The picture is composed with
numpy and OpenCV at the images' own resolution (no resampling of the tiles), so pixels can be compared.

Files read, per eval run folder (the folder holding its ``samples.csv``; layout and reader in
:mod:`blindbench.results`): ``images/<key>.png`` (output), ``masks/<key>.png`` (predicted mask, 8-bit),
``inputs/<key>.png`` and ``targets/<key>.png``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from blindbench.commands.compare import CompareConfig
from blindbench.errors import BlindbenchError, did_you_mean
from blindbench.imageio import atomic_write_bytes, encode_png, read_image
from blindbench.options import comma_list
from blindbench.results import EvalFolder, load_runs
from blindbench.tables import ALL_METHOD_ORDER, rank_key

__all__ = ["CompareConfig", "Layout", "compose_comparison", "comparison_layout", "run_compare"]

PAD = 4  # pixels between tiles and around the figure
HEADER = 22  # height of the column-title band
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.45
TEXT = (0, 0, 0)
BACKGROUND = 255
# "input" scores the corrupted input as the output; the input column already shows it.
NOT_BY_DEFAULT = ("input",)


@dataclass(frozen=True)
class Layout:
    """Where everything goes: figure size, the row-label band and each column's width."""

    tile: tuple[int, int]  # (H, W) of every image
    label_width: int
    column_width: int
    rows: int
    columns: int

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the figure."""
        height = HEADER + self.rows * (self.tile[0] + PAD) + PAD
        width = self.label_width + self.columns * (self.column_width + PAD) + PAD
        return height, width

    def column_x(self, c: int) -> int:
        """Left edge of column ``c``."""
        return self.label_width + PAD + c * (self.column_width + PAD)

    def tile_origin(self, r: int, c: int) -> tuple[int, int]:
        """(y, x) of the top-left pixel of the tile in row ``r``, column ``c`` (centred in its column)."""
        y = HEADER + PAD + r * (self.tile[0] + PAD)
        return y, self.column_x(c) + (self.column_width - self.tile[1]) // 2


def _text_width(text: str) -> int:
    (width, _), _ = cv2.getTextSize(text, FONT, FONT_SCALE, 1)
    return width


def comparison_layout(tile: tuple[int, int], column_titles: Sequence[str], row_titles: Sequence[str]) -> Layout:
    """The layout for ``len(row_titles)`` rows of ``tile``-sized images under ``column_titles``."""
    label_width = max((_text_width(t) for t in row_titles), default=0) + PAD
    column_width = max(tile[1], *(_text_width(t) for t in column_titles))
    return Layout(tuple(tile), label_width, column_width, len(row_titles), len(column_titles))


def _inset(tile: np.ndarray, mask: np.ndarray, fraction: float) -> np.ndarray:
    """``tile`` with ``mask`` shrunk to ``fraction`` of its side in the bottom-right corner, framed in white."""
    h, w = tile.shape[:2]
    ih, iw = max(2, round(fraction * h)), max(2, round(fraction * w))
    small = cv2.resize(mask, (iw, ih), interpolation=cv2.INTER_AREA)  # (ih, iw) uint8
    out = tile.copy()
    out[h - ih :, w - iw :] = small[..., None]
    out[h - ih, w - iw :] = 255  # frame: top edge
    out[h - ih :, w - iw] = 255  # frame: left edge
    return out


def compose_comparison(
    tiles: Sequence[Sequence[np.ndarray]],
    masks: Sequence[Sequence[np.ndarray | None]],
    column_titles: Sequence[str],
    row_titles: Sequence[str],
    inset: float = 0.3,
) -> np.ndarray:
    """Compose the figure.

    Args:
        tiles: per row, one uint8 RGB image (H, W, 3) per column, all the same size.
        masks: same nesting; a uint8 mask (h, w) to inset in that tile, or None.
        column_titles, row_titles: labels (ASCII; OpenCV's font has no other glyphs).
        inset: inset side as a fraction of the tile side; 0 leaves the masks out.

    Returns:
        uint8 RGB (height, width, 3), see ``comparison_layout``.
    """
    shape = tiles[0][0].shape[:2]
    layout = comparison_layout(shape, column_titles, row_titles)
    canvas = np.full((*layout.size, 3), BACKGROUND, dtype=np.uint8)  # (height, width, 3)
    baseline = HEADER - 7
    for c, title in enumerate(column_titles):
        x = layout.column_x(c) + (layout.column_width - _text_width(title)) // 2
        cv2.putText(canvas, title, (x, baseline), FONT, FONT_SCALE, TEXT, 1, cv2.LINE_AA)
    for r, row in enumerate(tiles):
        y, _ = layout.tile_origin(r, 0)
        cv2.putText(canvas, row_titles[r], (PAD // 2, y + shape[0] // 2 + 4), FONT, FONT_SCALE, TEXT, 1, cv2.LINE_AA)
        for c, image in enumerate(row):
            mask = masks[r][c]
            tile = _inset(image, mask, inset) if mask is not None and inset > 0 else image
            y, x = layout.tile_origin(r, c)
            canvas[y : y + shape[0], x : x + shape[1]] = tile
    return canvas



def _unknown(kind: str, name: str, known: Sequence[str], where: str) -> BlindbenchError:
    hint = did_you_mean(name, known, list_all=False) or f"; known: {', '.join(known) or 'none'}"
    return BlindbenchError(f"unknown {kind} {name!r} in {where}{hint}")


def _read_tile(path: Path, shape: tuple[int, int] | None) -> np.ndarray:
    image = read_image(path)  # one-line ImageReadError naming the file when missing or unreadable
    if shape is not None and image.shape[:2] != shape:
        raise BlindbenchError(f"{path} is {image.shape[1]}x{image.shape[0]}, expected {shape[1]}x{shape[0]}")
    return image


def _first_existing(folders: Sequence[EvalFolder], kind: str, key: str) -> Path | None:
    return next((f.image(kind, key) for f in folders if f.image(kind, key).is_file()), None)


def _check_output(png: Path) -> None:
    """Refuse, before any work, an output path that is a folder or lies below something that is not a folder."""
    if png.is_dir():
        raise BlindbenchError(f"comparison PNG {png} is a folder; give a file name (--png), e.g. {png / 'compare.png'}")
    folder = png.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise BlindbenchError(f"cannot write comparison PNG {png}: {folder} is not a folder")


def run_compare(cfg: CompareConfig) -> Path:
    """Read the runs' per-sample CSVs and saved images and write the comparison PNG (atomically).

    Returns:
        The PNG's path; nothing is printed (the CLI prints it).

    Raises:
        BlindbenchError: one line: unknown set, method or key, no images saved, a missing image file, images
            of different sizes, or an output path that cannot be a file.
    """
    if not cfg.runs:
        raise BlindbenchError("give --runs DIR, the folder of eval runs")
    if cfg.count < 1 and not cfg.keys:
        raise BlindbenchError(f"--count must be ≥ 1, got {cfg.count}")
    if not 0 <= cfg.inset < 1:
        raise BlindbenchError(f"--inset must be in [0, 1), got {cfg.inset}")
    runs = Path(cfg.runs)
    df = load_runs(runs)
    sets = sorted(set(df["set"]))
    if not cfg.set:
        if len(sets) > 1:
            raise BlindbenchError(f"{runs} holds several sets ({', '.join(sets)}): choose one with --set")
        set_name = sets[0]
    elif cfg.set not in sets:
        raise _unknown("set", cfg.set, sets, str(runs))
    else:
        set_name = cfg.set
    png = Path(cfg.png) if cfg.png else runs / f"compare-{set_name}.png"
    _check_output(png)
    rows = df[df["set"] == set_name]
    # method -> key -> run folder
    folders: dict[str, dict[str, EvalFolder]] = {}
    for method, key, source in zip(rows["method"], rows["key"], rows["source"], strict=True):
        folders.setdefault(method, {})[key] = EvalFolder(Path(source).parent)
    known = sorted(folders, key=rank_key(ALL_METHOD_ORDER))
    if cfg.methods:
        methods = comma_list(cfg.methods)
        for method in methods:
            if method not in folders:
                raise _unknown("method", method, known, f"set {set_name}")
    else:
        methods = [
            m
            for m in known
            if m not in NOT_BY_DEFAULT and any(f.has_images() for f in set(folders[m].values()))
        ]
        if not methods:
            raise BlindbenchError(f"no run below {runs} saved images for set {set_name} (eval with images saved)")

    def has_images(key: str) -> bool:
        return all(key in folders[m] and folders[m][key].image("images", key).is_file() for m in methods)

    if cfg.keys:
        keys = comma_list(cfg.keys)
        for key in keys:
            for method in methods:
                if key not in folders[method]:
                    have = sorted(folders[method])
                    hint = did_you_mean(key, have, list_all=False) or f"; it has {len(have)}, e.g. {have[0]!r}"
                    raise BlindbenchError(f"unknown key {key!r} for method {method} in set {set_name}{hint}")
    else:
        keys = [k for k in sorted(set.intersection(*(set(folders[m]) for m in methods))) if has_images(k)]
        keys = keys[: cfg.count]
        if not keys:
            raise BlindbenchError(f"no key of set {set_name} has saved images for every method: {', '.join(methods)}")

    tiles, masks = [], []
    for key in keys:
        candidates = sorted({folders[m][key] for m in known if key in folders[m]}, key=lambda f: f.path)
        target_path = _first_existing(candidates, "targets", key)
        input_path = _first_existing(candidates, "inputs", key)
        for kind, path in (("targets", target_path), ("inputs", input_path)):
            if path is None:
                raise BlindbenchError(f"no {kind}/{key}.png in any run folder of set {set_name} below {runs}")
        target = _read_tile(target_path, None)
        shape = target.shape[:2]
        row, row_masks = [_read_tile(input_path, shape)], [None]
        for method in methods:
            folder = folders[method][key]
            row.append(_read_tile(folder.image("images", key), shape))
            mask_path = folder.image("masks", key)
            row_masks.append(_read_mask(mask_path) if mask_path.is_file() else None)
        row.append(target)
        row_masks.append(None)
        tiles.append(row)
        masks.append(row_masks)
    sizes = {r[0].shape[:2] for r in tiles}
    if len(sizes) > 1:
        raise BlindbenchError(f"images of set {set_name} differ in size ({sorted(sizes)}): show one size per figure")
    figure = compose_comparison(tiles, masks, ["input", *methods, "target"], keys, cfg.inset)
    try:
        atomic_write_bytes(png, encode_png(figure))
    except OSError as exc:  # e.g. the path became a folder meanwhile, or no permission to write it
        raise BlindbenchError(f"cannot write comparison PNG {png}: {exc.strerror or type(exc).__name__}") from None
    return png


def _read_mask(path: Path) -> np.ndarray:
    """An 8-bit predicted mask as (H, W) uint8 (an RGB-saved mask is reduced to its first channel)."""
    return read_image(path)[..., 0]
