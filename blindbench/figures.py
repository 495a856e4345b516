"""Pictures people would rather look at than read: contact sheets of benchmark samples, loss curves, before/after."""

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


def _save_figure(fig, path: str | os.PathLike[str], dpi: int) -> Path:
    """Lay out, render to PNG in memory, close, and write atomically."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


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
    return _save_figure(fig, path, dpi=80)


def read_metrics_csv(path: str | os.PathLike[str]) -> tuple[dict[str, list[tuple[int, float]]], dict[str, int]]:
    """A training run's long-format ``metrics.csv`` (step, stage, name, value).

    Returns:
        ``({name: [(step, value)]}, {stage: first logged step})``.
    """
    import csv

    from blindbench.errors import BlindbenchError

    series: dict[str, list[tuple[int, float]]] = {}
    stages: dict[str, int] = {}
    try:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                step = int(row["step"])
                series.setdefault(row["name"], []).append((step, float(row["value"])))
                stages[row["stage"]] = min(stages.get(row["stage"], step), step)
    except FileNotFoundError:
        raise BlindbenchError(f"no training log at {path}") from None
    except (KeyError, TypeError, ValueError, csv.Error) as exc:
        raise BlindbenchError(f"{path} is not a blindbench metrics.csv ({type(exc).__name__}: {exc})") from None
    if not series:
        raise BlindbenchError(f"{path} holds no logged steps yet")
    return series, stages


def moving_average(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` values (shorter at the start), so the curve starts at step 1."""
    x = np.asarray(values, dtype=np.float64)
    if window <= 1 or x.size == 0:
        return x
    cumulative = np.concatenate([[0.0], np.cumsum(x)])
    ends = np.arange(1, x.size + 1)
    starts = np.maximum(ends - window, 0)
    return (cumulative[ends] - cumulative[starts]) / (ends - starts)


def loss_curve(metrics_csv: str | os.PathLike[str], path: str | os.PathLike[str], title: str = "") -> Path:
    """Training losses (smoothed) and, when the run validated, validation BCE / PSNR against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series, stages = read_metrics_csv(metrics_csv)
    losses = [n for n in ("loss", "bce", "l1") if n in series]  # the WGAN term is signed: no log axis
    validation = [n for n in ("val_bce", "val_psnr") if n in series]
    fig, axes = plt.subplots(1, 1 + bool(validation), figsize=(5.5 * (1 + bool(validation)), 3.4), squeeze=False)
    ax = axes[0][0]
    for name in losses:
        steps, values = zip(*series[name], strict=True)
        ax.plot(steps, moving_average(values, max(len(values) // 30, 1)), label=name, linewidth=1.2)
    if "joint" in stages and len(stages) > 1:
        for a in axes[0]:
            a.axvline(stages["joint"], color="grey", linestyle="--", linewidth=0.8)
        ax.text(stages["joint"], 1.0, " joint", transform=ax.get_xaxis_transform(), va="top", fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (moving average)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if validation:
        left = axes[0][1]
        colors = iter(("tab:red", "tab:green"))
        twin = None
        for name in validation:
            steps, values = zip(*series[name], strict=True)
            target = left if name == "val_bce" else (twin := left.twinx())
            color = next(colors)
            target.plot(steps, values, marker="o", markersize=3, color=color, label=name)
            target.set_ylabel(name.replace("val_", "validation "), color=color)
        left.set_xlabel("step")
        left.grid(alpha=0.3)
        if twin is None:
            left.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save_figure(fig, path, dpi=90)


def before_after(
    damaged: np.ndarray,
    mask: np.ndarray,
    restored: np.ndarray,
    clean: np.ndarray | None,
    path: str | os.PathLike[str],
    title: str = "",
) -> Path:
    """One row: damaged input | predicted mask | restored (| original, when known), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("input", damaged), ("predicted mask", mask), ("restored", restored)]
    if clean is not None:
        panels.append(("original", clean))
    height, width = damaged.shape[:2]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) * width / max(height, width) + 0.4,
                                                       3.2 * height / max(height, width) + 0.6), squeeze=False)
    for ax, (name, image) in zip(axes[0], panels, strict=True):
        image = np.asarray(image)
        grey = image.ndim == 2 or image.shape[-1] == 1
        ax.imshow(image.squeeze(), cmap="gray" if grey else None, vmin=0, vmax=255, interpolation="lanczos")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    return _save_figure(fig, path, dpi=110)


def overlay_loss_curves(
    runs: Sequence[tuple[str, str | os.PathLike[str]]],
    path: str | os.PathLike[str],
    losses: Sequence[str] = ("loss",),
    validation: Sequence[str] = ("val_psnr", "val_bce"),
    smooth: int = 0,
    title: str = "",
) -> Path:
    """Several training runs' curves in one PNG: one panel per scalar, one colour per run in every panel.

    Training scalars (``losses``) are drawn as trailing moving averages (``smooth`` logged steps; 0: a 30th
    of each run's log), on a log axis when every value drawn is positive; validation scalars as logged, with
    markers. A panel is drawn only when some run logged its scalar, and a run that did not is left out of it. A
    dashed line in the run's colour marks where its joint stage begins.

    Args:
        runs: (legend label, metrics.csv path) per run.
        path: output PNG (written atomically).

    Raises:
        BlindbenchError: a metrics.csv is missing, malformed or empty, or no run logged any of ``losses``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from blindbench.errors import BlindbenchError

    logs = [(label, *read_metrics_csv(csv_path)) for label, csv_path in runs]
    logged = sorted({name for _, series, _ in logs for name in series})
    train_panels = [n for n in losses if n in logged]
    if not train_panels:
        raise BlindbenchError(f"no run logged {', '.join(losses)}; the runs logged: {', '.join(logged)}")
    panels = train_panels + [n for n in validation if n in logged]
    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.0 * columns, 3.4 * rows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for p, name in enumerate(panels):
        ax = axes[p // columns][p % columns]
        positive, averaged = True, False
        for r, (label, series, stages) in enumerate(logs):
            colour = colours[r % len(colours)]
            if "joint" in stages and len(stages) > 1:
                ax.axvline(stages["joint"], color=colour, linestyle="--", linewidth=0.8, alpha=0.7)
            if name not in series:
                continue
            steps, values = zip(*series[name], strict=True)
            if name in train_panels:
                window = smooth if smooth > 0 else max(len(values) // 30, 1)
                averaged = averaged or window > 1
                drawn = moving_average(values, window)
                ax.plot(steps, drawn, color=colour, label=label, linewidth=1.2)
            else:
                drawn = np.asarray(values, dtype=np.float64)
                ax.plot(steps, drawn, color=colour, label=label, marker="o", markersize=3, linewidth=1.0)
            positive = positive and bool(np.all(drawn > 0))
        if name in train_panels and positive:
            ax.set_yscale("log")
        ax.set_title(name + (" (moving average)" if averaged else ""), fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines and any(not line.get_label().startswith("_") for line in ax.lines):
            ax.legend(fontsize=8)
    for p in range(len(panels), rows * columns):
        axes[p // columns][p % columns].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save_figure(fig, path, dpi=90)
