"""``blindbench plot RUN...``: overlay the loss and validation curves of several training runs in one PNG.

A RUN is a training run folder (the one holding ``metrics.csv``, as ``blindbench train`` writes it), a run's
name under ``<data>/runs``, or a ``metrics.csv`` file itself. Each logged scalar named in ``--losses`` or
``--validation`` gets a panel, with one colour per run (see :func:`blindbench.figures.overlay_loss_curves`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from blindbench.errors import BlindbenchError, ConfigError, did_you_mean
from blindbench.options import comma_list
from blindbench.options import option as _option

METRICS_NAME = "metrics.csv"


@dataclass(frozen=True)
class PlotConfig:
    """Overlay the loss curves (and validation curves) of training runs in one PNG."""

    runs: tuple[str, ...] = _option(
        (), "training run folders, run names under <data>/runs, or metrics.csv files", positional=True
    )
    out: str = _option("loss-curves.png", "output PNG", short="-o")
    losses: str = _option("loss", "comma-separated training scalars, one panel each (e.g. loss,bce,l1)")
    validation: str = _option("val_psnr,val_bce", "comma-separated validation scalars, one panel each where logged")
    labels: str = _option("", "comma-separated legend labels, one per run (default: the run folder names)")
    smooth: int = _option(0, "moving-average window in logged steps for training scalars (0: auto, 1: none)")
    title: str = _option("", "figure title")

    def __post_init__(self) -> None:
        if self.smooth < 0:
            raise ConfigError(f"--smooth must be 0 (auto) or a window of at least 1 logged step, got {self.smooth}")


def metrics_path(run: str) -> Path:
    """The ``metrics.csv`` of ``run``: a metrics file, a run folder, or a run name under ``<data>/runs``.

    Raises:
        BlindbenchError: no such file, folder or run name, or a run folder without a ``metrics.csv``.
    """
    from blindbench.paths import data_root

    path = Path(run)
    if path.is_file():
        return path
    runs = data_root() / "runs"
    if not path.is_dir() and len(path.parts) == 1 and (runs / run).is_dir():
        path = runs / run
    if path.is_dir():
        if not (path / METRICS_NAME).is_file():
            raise BlindbenchError(f"no {METRICS_NAME} in {path}: not a training run, or it has not logged a step yet")
        return path / METRICS_NAME
    known = sorted(p.name for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []
    hint = did_you_mean(run, known, list_all=False) or (f"; runs under {runs}: {', '.join(known)}" if known else "")
    raise BlindbenchError(f"training run not found: {run} (no such folder or file, nor a run under {runs}){hint}")


def _labels(cfg: PlotConfig, files: list[Path]) -> list[str]:
    if cfg.labels:
        labels = comma_list(cfg.labels)
        if len(labels) != len(files):
            raise BlindbenchError(f"--labels gives {len(labels)} label(s) for {len(files)} run(s)")
        return labels
    names = [(f.parent if f.name == METRICS_NAME else f).resolve().name for f in files]
    repeated = {n for n in names if names.count(n) > 1}
    return [run if name in repeated else name for run, name in zip(cfg.runs, names, strict=True)]


def run_plot(cfg: PlotConfig) -> Path:
    """``blindbench plot``: draw the runs' curves into ``cfg.out``, print where, return the path."""
    from blindbench.figures import overlay_loss_curves

    if not cfg.runs:
        raise BlindbenchError("give at least one training run to plot")
    files = [metrics_path(run) for run in cfg.runs]
    losses, validation = comma_list(cfg.losses), comma_list(cfg.validation)
    if not losses:
        raise BlindbenchError("give at least one training scalar with --losses (e.g. loss)")
    png = overlay_loss_curves(list(zip(_labels(cfg, files), files, strict=True)), cfg.out, losses, validation,
                              smooth=cfg.smooth, title=cfg.title)  # fmt: skip
    print(f"loss curves of {len(files)} run(s): {png}")
    return png
