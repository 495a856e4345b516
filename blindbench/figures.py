"""Pictures people would rather look at than read: contact sheets of benchmark samples."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from blindbench.imageio import atomic_write_bytes

SHEET_COLUMNS = ("input", "mask", "soft_mask", "fill", "target")
COLUMN_TITLES = {
    "input": "input I",
    "mask": "mask M",
    "soft_mask": "soft mask M̃",
    "fill": "fill N",
    "target": "target O",
}


def contact_sheet(rows: Sequence[dict], path: str | os.PathLike[str], title: str = "") -> Path:
    """Save a grid PNG: one row per sample (labelled with its pattern), columns input, M, M̃, N, target.

    Args:
        rows: dicts with uint8 arrays ``input``/``fill``/``target`` (H, W, 3), ``mask``/``soft_mask`` (H, W),
            and a ``pattern`` label.
        path: output PNG (written atomically).
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(rows), len(SHEET_COLUMNS), figsize=(2.0 * len(SHEET_COLUMNS), 2.0 * len(rows) + 0.4), squeeze=False
    )
    for r, row in enumerate(rows):
        for c, column in enumerate(SHEET_COLUMNS):
            ax = axes[r][c]
            image = np.asarray(row[column])
            ax.imshow(
                image,
                cmap="gray" if image.ndim == 2 else None,
                vmin=0,
                vmax=255 if image.max() > 1 else 1,
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(COLUMN_TITLES[column], fontsize=9)
            if c == 0:
                ax.set_ylabel(row["pattern"], fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
