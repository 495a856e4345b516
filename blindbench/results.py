"""What ``blindbench eval`` writes, in one place: the metric table, the per-sample CSV's columns, the eval folder
layout, and the one reader of run folders (``tables``, ``compare`` and ``study make`` all read through it).

Adding a metric means adding one row to ``METRICS`` (and computing it in ``evaluate.score_batch``, or in pyiqa for
``kind="learned"``): eval then writes its column, the reader reads it, and ``tables`` formats it with the row's
decimals and label. Every function here reads ``METRICS`` when called, so a table extended at run time (a test's
monkeypatch) flows through eval and tables alike.

An eval folder (``EvalFolder``) holds::

    samples.csv        one row per sample: COLUMNS (+ the learned per-sample metrics asked for with --iqa)
    eval.toml          the resolved config and the identity of what was scored
    set_metrics.toml   per-set metrics (FID), when any were asked for
    images/KEY.png  masks/KEY.png  inputs/KEY.png  targets/KEY.png   with --save-images

Torch-free, and pandas is imported only inside the reader, so the CLI can describe metrics without either.
"""

from __future__ import annotations

import csv
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from blindbench.errors import BlindbenchError, did_you_mean

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "AREA_COLUMN",
    "COLUMNS",
    "EVAL_TOML",
    "EvalFolder",
    "IMAGE_FOLDERS",
    "METRICS",
    "Metric",
    "REQUIRED_COLUMNS",
    "SAMPLES_CSV",
    "SET_METRICS_TOML",
    "TEXT_COLUMNS",
    "check_metrics",
    "default_metrics",
    "find_runs",
    "get_metric",
    "load_runs",
    "metric_names",
    "metrics",
    "read_samples",
    "required_columns",
    "run_name",
    "sample_columns",
]

Kind = Literal["image", "composite", "mask", "learned"]
Per = Literal["sample", "set"]


@dataclass(frozen=True)
class Metric:
    """One row of the metric table.

    Attributes:
        name: the column in samples.csv (``per="sample"``) or the key in set_metrics.toml (``per="set"``).
        kind: ``image`` (restored Ô against the target O), ``composite`` (Ô ⊙ M̂ + I ⊙ (1 − M̂) against O), ``mask``
            (predicted M̂ against the true mask; empty for methods without one), ``learned`` (a pyiqa network;
            written only when asked for with ``--iqa``).
        lower_is_better: the direction of the arrow in table headings.
        decimals: decimals in tables (the paper's), before ``--extra-decimals``.
        label: the short name in table headings.
        per: ``sample`` (one value per CSV row) or ``set`` (one value per eval folder).
        default: tabulated when ``tables --metrics`` is not given (when not ``required``: only if the runs have it).
        required: every samples.csv has the column; a later or optional one reads as missing where it is absent.
    """

    name: str
    kind: Kind
    lower_is_better: bool
    decimals: int
    label: str
    per: Per = "sample"
    default: bool = False
    required: bool = True

    @property
    def heading(self) -> str:
        """The table heading: label and arrow, e.g. ``BCE ↓``."""
        return f"{self.label} {'↓' if self.lower_is_better else '↑'}"


# The metric table. The paper reports BCE 3, PSNR 2, SSIM 4 decimals; the composite columns came later, so older
# samples.csv files lack them; learned metrics (pyiqa) appear only with --iqa.
METRICS: tuple[Metric, ...] = (
    Metric("bce", "mask", True, 3, "BCE", default=True),
    Metric("psnr", "image", False, 2, "PSNR", default=True),
    Metric("ssim", "image", False, 4, "SSIM", default=True),
    Metric("psnr_y", "image", False, 2, "PSNR-Y"),
    Metric("ssim_y", "image", False, 4, "SSIM-Y"),
    Metric("iou", "mask", False, 4, "IoU"),
    Metric("f1", "mask", False, 4, "F1"),
    Metric("ap", "mask", False, 4, "AP"),
    Metric("psnr_composite", "composite", False, 2, "PSNR-C", default=True, required=False),
    Metric("ssim_composite", "composite", False, 4, "SSIM-C", default=True, required=False),
    Metric("lpips", "learned", True, 4, "LPIPS", default=True, required=False),
    Metric("fid", "learned", True, 2, "FID", per="set", required=False),
)

TEXT_COLUMNS = ("method", "model", "checkpoint", "set", "key", "pattern")
AREA_COLUMN = "mask_area"  # the damaged fraction of the sample, in [0, 1]: not a metric, but per sample

SAMPLES_CSV = "samples.csv"
EVAL_TOML = "eval.toml"
SET_METRICS_TOML = "set_metrics.toml"
IMAGE_FOLDERS = ("images", "masks", "inputs", "targets")  # restored Ô, predicted M̂ (8-bit), I, O


def metrics(per: Per | None = None) -> tuple[Metric, ...]:
    """The rows of ``METRICS`` (read now), optionally only those computed per sample or per set."""
    return tuple(m for m in METRICS if per is None or m.per == per)


def metric_names(per: Per | None = None) -> tuple[str, ...]:
    return tuple(m.name for m in metrics(per))


def get_metric(name: str) -> Metric:
    """The row of ``name``; an unknown name is a one-line error with a suggestion."""
    for row in metrics():
        if row.name == name:
            return row
    raise _unknown_metric(name, metric_names())


def _unknown_metric(name: str, known: Sequence[str]) -> BlindbenchError:
    hint = did_you_mean(name, known, list_all=False) or f"; known: {', '.join(known)}"  # in the registry's order
    return BlindbenchError(f"unknown metric {name!r}{hint}")


def check_metrics(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` if each is a per-sample metric (what tables can average); else a one-line error."""
    known = metric_names("sample")
    for name in names:
        if name not in known:
            raise _unknown_metric(name, known)
    if not names:
        raise BlindbenchError("no metrics to tabulate")
    return tuple(names)


def sample_columns(learned: Sequence[str] = ()) -> tuple[str, ...]:
    """The header eval writes: text columns, ``mask_area``, every per-sample metric in table order; of the learned
    ones only those in ``learned`` (the ``--iqa`` names)."""
    chosen = [m.name for m in metrics("sample") if m.kind != "learned" or m.name in learned]
    return (*TEXT_COLUMNS, AREA_COLUMN, *chosen)


def required_columns() -> tuple[str, ...]:
    """The columns every samples.csv must have (older files lack the metrics that are not ``required``)."""
    return (*TEXT_COLUMNS, AREA_COLUMN, *(m.name for m in metrics("sample") if m.required))


def default_metrics(present: Sequence[str]) -> tuple[str, ...]:
    """What tables show without ``--metrics``: the default rows, the optional ones only if in ``present``."""
    return tuple(m.name for m in metrics("sample") if m.default and (m.required or m.name in present))


COLUMNS = sample_columns()  # eval's header without --iqa, for importers; code here calls sample_columns()
REQUIRED_COLUMNS = required_columns()


# ---------------------------------------------------------------------------------------------------------------
# The eval folder


@dataclass(frozen=True)
class EvalFolder:
    """The files of one eval run folder (nothing is read or checked when it is made)."""

    path: Path

    @property
    def samples(self) -> Path:
        return self.path / SAMPLES_CSV

    @property
    def config(self) -> Path:
        return self.path / EVAL_TOML

    @property
    def set_metrics_file(self) -> Path:
        return self.path / SET_METRICS_TOML

    def image(self, folder: str, key: str) -> Path:
        """``<path>/<folder>/<key>.png`` for ``folder`` in ``IMAGE_FOLDERS``."""
        if folder not in IMAGE_FOLDERS:
            raise ValueError(f"image folder must be one of {', '.join(IMAGE_FOLDERS)}, got {folder!r}")
        return self.path / folder / f"{key}.png"

    def has_images(self) -> bool:
        return (self.path / "images").is_dir()

    def set_metrics(self) -> dict[str, float]:
        """The per-set metrics (``{}`` when the run computed none); a malformed file is a one-line error."""
        path = self.set_metrics_file
        if not path.is_file():
            return {}
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
            raise BlindbenchError(f"cannot read {path}: {_one_line(exc)}") from None
        known = metric_names("set")
        out = {}
        for name, value in data.items():
            if name not in known or not isinstance(value, int | float):
                raise BlindbenchError(f"{path}: {name} is not a per-set metric with a number (known: "
                                      f"{', '.join(known)})")  # fmt: skip
            out[name] = float(value)
        return out


def run_name(root: Path, folder: Path) -> str:
    """A run's name below ``root``: its relative path (``demo/vcn``), or the folder's own name for ``root`` itself."""
    return folder.relative_to(root).as_posix() if folder != root else folder.name


# ---------------------------------------------------------------------------------------------------------------
# The reader


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def find_runs(root: str | Path) -> list[EvalFolder]:
    """Every eval folder below ``root`` (each folder holding a samples.csv, ``root`` itself included), sorted by
    relative path; a missing folder or one without runs is a one-line error."""
    root = Path(root)
    if not root.is_dir():
        raise BlindbenchError(f"runs folder not found: {root}")
    paths = sorted(root.rglob(SAMPLES_CSV), key=lambda p: p.relative_to(root).as_posix())
    if not paths:
        raise BlindbenchError(f"no eval runs under {root}: no {SAMPLES_CSV} below {root} (write them with blindbench "
                              f"eval)")  # fmt: skip
    return [EvalFolder(p.parent) for p in paths]


def _read_csv(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, rows and their line numbers; every row as wide as the header."""
    required = required_columns()
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise BlindbenchError(f"cannot read {path}: empty file (expected the header {','.join(required)})")
            header = [name.strip() for name in header]
            rows, lines = [], []
            for row in reader:
                if not row:  # a blank line
                    continue
                if len(row) != len(header):
                    raise BlindbenchError(
                        f"{path} line {reader.line_num}: {len(row)} fields, the header has {len(header)}"
                    )
                rows.append(row)
                lines.append(reader.line_num)
    except (csv.Error, UnicodeDecodeError, OSError) as exc:
        raise BlindbenchError(f"cannot read {path}: {_one_line(exc)}") from None
    return header, rows, lines


def read_samples(path: str | Path) -> pd.DataFrame:
    """One samples.csv, checked: every row as wide as the header, the required columns, non-empty method/set/key,
    numbers (or nothing) in the metric columns, ``mask_area`` in [0, 1].

    Returns:
        ``source`` (the path), ``line``, the text columns, ``mask_area`` and every per-sample metric of the table
        as float (NaN = missing; a metric the file lacks is all NaN). Columns the table does not know are listed
        in ``frame.attrs["ignored"]``.
    """
    import numpy as np
    import pandas as pd

    path = Path(path)
    header, rows, lines = _read_csv(path)
    frame = pd.DataFrame(rows, columns=header, dtype=object)
    required = required_columns()
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise BlindbenchError(f"{path}: missing column(s) {', '.join(missing)} (expected {','.join(required)})")
    names = metric_names("sample")
    ignored = [c for c in header if c not in (*TEXT_COLUMNS, AREA_COLUMN, *names)]
    for column in names:
        if column not in frame.columns:
            frame[column] = ""
    frame = frame[[*TEXT_COLUMNS, AREA_COLUMN, *names]].copy()
    frame.insert(0, "line", np.asarray(lines, dtype=int))
    for column in TEXT_COLUMNS:
        frame[column] = frame[column].astype(str).str.strip()
    for column in ("method", "set", "key"):
        empty = frame[column] == ""
        if empty.any():
            line = int(frame.loc[empty, "line"].iloc[0])
            raise BlindbenchError(f"{path} line {line}: empty {column}")
    for column in (AREA_COLUMN, *names):
        text = frame[column].astype(str).str.strip()
        values = pd.to_numeric(text.where(text != "", None), errors="coerce").astype(float)
        bad = values.isna() & (text != "") & (text.str.lower() != "nan")
        if bad.any():
            line = int(frame.loc[bad, "line"].iloc[0])
            raise BlindbenchError(f"{path} line {line}: {column} is not a number: {text[bad].iloc[0]!r}")
        infinite = np.isinf(values.to_numpy())
        if infinite.any():
            line = int(frame.loc[infinite, "line"].iloc[0])
            raise BlindbenchError(f"{path} line {line}: {column} is not finite")
        frame[column] = values
    area = frame[AREA_COLUMN]
    outside = (area < 0) | (area > 1)
    if outside.any():
        line = int(frame.loc[outside, "line"].iloc[0])
        raise BlindbenchError(f"{path} line {line}: mask_area {float(area[outside].iloc[0]):g} is outside [0, 1]")
    frame.insert(0, "source", str(path))
    frame.attrs["ignored"] = {c: str(path) for c in ignored}
    return frame


def load_runs(root: str | Path) -> pd.DataFrame:
    """Read and check every samples.csv below ``root`` (the folder itself included): the one reader of runs.

    Returns:
        One row per sample, columns as ``read_samples`` (``source`` is the CSV's path, so
        ``EvalFolder(Path(source).parent)`` finds the run's images); ``attrs["ignored"]`` maps each column no
        table row knows to the first file that has it.

    Raises:
        BlindbenchError: one line naming the file (and line) at fault: no CSV, an unreadable or malformed CSV, a
            missing column, a non-numeric metric, one (method, set) from two models or checkpoints (naming both
            files), or the same (method, set, key) twice.
    """
    import pandas as pd

    root = Path(root)
    parts = [read_samples(run.samples) for run in find_runs(root)]
    ignored: dict[str, str] = {}
    for part in parts:
        for column, path in part.attrs["ignored"].items():
            ignored.setdefault(column, path)
    frame = pd.concat(parts, ignore_index=True)
    if frame.empty:
        raise BlindbenchError(f"no sample rows in the {SAMPLES_CSV} files below {root}")
    for column in ("model", "checkpoint"):
        # the first row of each (method, set, value); two of them for one (method, set) mix two runs under one label
        firsts = frame.drop_duplicates(["method", "set", column])
        mixed = firsts[firsts.duplicated(["method", "set"], keep=False)]
        if not mixed.empty:
            a = mixed.iloc[0]
            b = mixed[(mixed["method"] == a["method"]) & (mixed["set"] == a["set"])].iloc[1]
            raise BlindbenchError(
                f"method {a['method']!r}, set {a['set']!r} mixes {column} {a[column]!r} ({a['source']} line "
                f"{a['line']}) and {b[column]!r} ({b['source']} line {b['line']}): give each its own method label"
            )
    identity = ["method", "set", "key"]
    duplicated = frame.duplicated(identity, keep=False)
    if duplicated.any():
        dupes = frame[duplicated]
        first = dupes.iloc[0]
        same = dupes[(dupes[identity] == first[identity]).all(axis=1)]
        where = " and ".join(f"{s} line {n}" for s, n in zip(same["source"], same["line"], strict=True))
        others = int(dupes.drop_duplicates(identity).shape[0]) - 1
        more = f" ({others} more duplicated samples)" if others else ""
        sample = f"method {first['method']!r}, set {first['set']!r}, key {first['key']!r}"
        raise BlindbenchError(f"duplicate sample: {sample} in {where}{more}")
    frame.attrs["ignored"] = ignored
    return frame


def format_value(value: object, digits: int = 6) -> str:
    """CSV text of a cell: floats with ``digits`` significant digits (enough that tables recomputed from the CSV
    match to the printed precision), missing as empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.{digits}g}"
    return str(value)
