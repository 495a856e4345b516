"""Result tables from the per-sample CSVs that ``blindbench eval`` writes; no model is ever run here.

``load_runs`` (:mod:`blindbench.results`, the one reader of eval folders) reads every ``samples.csv`` below a runs
folder (one row per method, set and sample) and checks it; every table is then a group-by over those rows:

- ``table1``: method × test set (the paper's Table 1), all methods except the VCN ablations;
- ``table3``: the VCN ablations beside full VCN (the paper's Table 3), per test set. Whether a run is an ablation
  is decided by its ``model`` column (the registered model, ``ABLATIONS``), never by its method label, so a full
  VCN labelled ``vcn-ffhqtrained`` stays in Table 1 (and sits beside the ablations in Table 3 as full VCN);
- ``robustness``: method × corruption pattern per set (the paper's Fig. 7 made quantitative);
- ``area_bins``: method × damaged-area bin per set (10% bins by default, as LaMa reports);
- ``table2.csv``: the user study, rows from ``blindbench.study.table2_rows`` when ``--study`` is given.

Each cell is a mean with a 95% interval for it: ``mean ± t(0.975, n − 1) · s / √n`` with ``s`` the sample
standard deviation (ddof 1) and ``t`` Student's t quantile (``scipy.stats.t.ppf``). It treats the test images
as a sample from the distribution of images like them; it says nothing about training noise (one checkpoint
per method). With n = 1 the interval is empty. Missing metric values (``input`` and ``oracle-telea`` have no
predicted mask, so no BCE/IoU/F1/AP) are left out of that metric's mean and its own count ``<metric>_n``; a
group with none gets an empty cell. Sums are exact (``math.fsum``), so the numbers do not depend on row order.

Means of one set are only comparable over the same images: under each table, a warning line names every set
whose methods were scored on different samples (another count, or other keys, e.g. one run made with
``--limit``); ``common_keys`` keeps, per set, only the samples every method of that set has. One method label
stands for one model and one checkpoint per set: rows of two checkpoints under one label are refused.

Numbers are written with the decimals of each metric's row in ``results.METRICS`` (the paper's: BCE 3, PSNR 2,
SSIM 4), plus ``extra_decimals``; headings are the rows' labels. Without ``--metrics`` the table's default rows
are shown (the optional ones, e.g. the composite columns or LPIPS, when the runs have them). A column of a
samples.csv that no row of the metric table knows is named in a note under the tables, never dropped silently.
The CSVs are tidy (one row per group); the same tables are printed as markdown.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from blindbench import results
from blindbench.commands.tables import TablesConfig
from blindbench.errors import BlindbenchError
from blindbench.imageio import atomic_write_bytes
from blindbench.models import model_names
from blindbench.options import comma_list
from blindbench.results import check_metrics, load_runs

__all__ = [
    "ABLATIONS",
    "ALL_METHOD_ORDER",
    "PAPER_TABLE1",
    "PAPER_TABLE3",
    "TablesConfig",
    "add_paper",
    "area_bins",
    "coverage_notes",
    "format_table",
    "interval95",
    "is_ablation",
    "keep_common_keys",
    "load_runs",
    "rank_key",
    "robustness",
    "run_tables",
    "summarize",
    "table1",
    "table1_rows",
    "table3",
    "table3_rows",
    "to_markdown",
]

# the summaries' default when called from Python; the command picks its own from the metric table
DEFAULT_METRICS = ("bce", "psnr", "ssim")

# "*" marks where names not in the list go (alphabetically).
METHOD_ORDER = ("input", "oracle-telea", "ca", "gmc", "pc", "gc", "vcn", "*")
# The VCN ablations' registered model names (blindbench.models), in the paper's Table 3 order; also the labels of
# its rows. "w/o SC" (λ_s = 0) trains the full vcn model, so a run labelled vcn-no-sc is an ablation whatever model.
# The registered ones come from the registry (read without importing torch); "w/o SC" goes before "RM" as in the paper.
_ABLATION_MODELS = tuple(model_names(table=3))
ABLATION_LABELS = ("vcn-no-sc",)
ABLATIONS = (*(m for m in _ABLATION_MODELS if m != "vcn-rm"), *ABLATION_LABELS,
             *(m for m in _ABLATION_MODELS if m == "vcn-rm"))  # fmt: skip
FULL_VCN = "vcn"  # the registered model name of full VCN
ALL_METHOD_ORDER = (*METHOD_ORDER[:-1], *ABLATIONS, "*")
SET_ORDER = ("ffhq-2k", "places2-4k", "imagenet-4k", "*")
PATTERN_ORDER = ("real", "colour", "noise", "text", "paste", "graffiti", "*")

# Paper numbers (SPEC §7), (BCE, PSNR, SSIM); None where the paper has none.
PAPER_TABLE1: dict[tuple[str, str], tuple[float | None, float | None, float | None]] = {
    ("ca", "ffhq-2k"): (1.297, 16.56, 0.5509),
    ("ca", "places2-4k"): (0.574, 18.12, 0.6018),
    ("ca", "imagenet-4k"): (0.450, 17.68, 0.5285),
    ("gmc", "ffhq-2k"): (0.766, 20.06, 0.6675),
    ("gmc", "places2-4k"): (0.312, 20.38, 0.6956),
    ("gmc", "imagenet-4k"): (0.312, 19.56, 0.6467),
    ("pc", "ffhq-2k"): (0.400, 20.19, 0.6795),
    ("pc", "places2-4k"): (0.273, 19.73, 0.6682),
    ("pc", "imagenet-4k"): (0.229, 19.53, 0.6277),
    ("gc", "ffhq-2k"): (0.660, 17.16, 0.5915),
    ("gc", "places2-4k"): (0.504, 18.42, 0.6423),
    ("gc", "imagenet-4k"): (0.410, 18.35, 0.6416),
    ("vcn", "ffhq-2k"): (0.400, 20.94, 0.6999),
    ("vcn", "places2-4k"): (0.253, 20.54, 0.6988),
    ("vcn", "imagenet-4k"): (0.226, 19.58, 0.6339),
}
# Table 3 is FFHQ only; "w/o SC" (λ_s = 0) is labelled vcn-no-sc.
PAPER_TABLE3: dict[tuple[str, str], tuple[float | None, float | None, float | None]] = {
    ("vcn-ed", "ffhq-2k"): (None, 19.43, 0.6135),
    ("vcn-no-mpn", "ffhq-2k"): (None, 18.88, 0.6222),
    ("vcn-no-fusion", "ffhq-2k"): (0.560, 20.06, 0.6605),
    ("vcn-no-sc", "ffhq-2k"): (0.653, 20.56, 0.6836),
    ("vcn-rm", "ffhq-2k"): (0.462, 20.87, 0.7045),
    ("vcn", "ffhq-2k"): (0.400, 20.94, 0.6999),
}
PAPER_METRICS = ("bce", "psnr", "ssim")

TABLE_FILES = {
    "table1": "table1.csv",
    "table2": "table2.csv",
    "table3": "table3.csv",
    "robustness": "robustness.csv",
    "area_bins": "area_bins.csv",
}


# ---------------------------------------------------------------------------------------------------------------
# Statistics and tables


def interval95(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, 95% interval half-width and count of the non-missing values.

    The half-width is ``t(0.975, n − 1) · s / √n`` (Student's t, ``s`` with ddof 1); NaN when n < 2. The mean is
    NaN when n = 0. Sums are exact (``math.fsum``), so the result does not depend on the values' order.
    """
    from scipy.stats import t

    kept = [float(v) for v in values if not math.isnan(float(v))]
    n = len(kept)
    if n == 0:
        return math.nan, math.nan, 0
    mean = math.fsum(kept) / n
    if n == 1:
        return mean, math.nan, 1
    s = math.sqrt(math.fsum((v - mean) ** 2 for v in kept) / (n - 1))
    return mean, float(t.ppf(0.975, n - 1)) * s / math.sqrt(n), n


def rank_key(order: Sequence[str]) -> Callable[[str], tuple]:
    """Sort key: names in ``order`` first, in that order; others alphabetically where ``order`` has "*"."""
    position = {name: i for i, name in enumerate(order)}
    star = position.get("*", len(order))
    return lambda name: (position[name], "") if name in position else (star, name)


def is_ablation(method: str, model: str) -> bool:
    """Whether a run (method label, registered model) is a VCN ablation, for Table 3 rather than Table 1.

    Decided by the model (``ABLATIONS``), plus the label ``vcn-no-sc`` (w/o SC trains the full ``vcn`` model);
    never by a label's prefix: ``vcn-ffhqtrained`` with model ``vcn`` is full VCN.
    """
    return model in ABLATIONS or method in ABLATION_LABELS


def _ablation(df: pd.DataFrame) -> pd.Series:
    return pd.Series(
        [is_ablation(m, model) for m, model in zip(df["method"], df["model"], strict=True)], index=df.index, dtype=bool
    )


def _keys_by_method(rows: pd.DataFrame, order: Sequence[str] = ALL_METHOD_ORDER) -> dict[str, frozenset[str]]:
    """Method → its sample keys, methods in ``order`` (see ``rank_key``)."""
    keys = {method: frozenset(group) for method, group in rows.groupby("method", sort=False)["key"]}
    return {m: keys[m] for m in sorted(keys, key=rank_key(order))}


def _counts(keys: dict[str, frozenset[str]]) -> str:
    return ", ".join(f"{method} {len(k)}" for method, k in keys.items()) + " keys"


def _sets_of(df: pd.DataFrame) -> list[str]:
    return sorted(set(df["set"]), key=rank_key(SET_ORDER))


def coverage_notes(rows: pd.DataFrame, order: Sequence[str] = ALL_METHOD_ORDER) -> list[str]:
    """One warning line per set whose methods in ``rows`` were scored on different samples (another count or
    other keys): their means are then not over the same images. Methods are named in ``order``."""
    notes = []
    for set_name in _sets_of(rows):
        keys = _keys_by_method(rows[rows["set"] == set_name], order)
        if len(set(keys.values())) > 1:
            common = len(frozenset.intersection(*keys.values()))
            notes.append(
                f"warning: {set_name}: the methods were scored on different samples ({_counts(keys)}; {common} in "
                "common), so their means are not over the same images; --common-keys keeps only the common ones"
            )
    return notes


def keep_common_keys(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Keep, per set, only the samples (keys) every method of that set has.

    Returns:
        The kept rows, and a line saying per set how many keys were kept of how many.

    Raises:
        BlindbenchError: a set whose methods have no key in common.
    """
    keep = pd.Series(False, index=df.index)
    kept = []
    for set_name in _sets_of(df):
        in_set = df["set"] == set_name
        keys = _keys_by_method(df[in_set])
        common = frozenset.intersection(*keys.values())
        if not common:
            raise BlindbenchError(
                f"--common-keys: no sample of set {set_name} is scored by every method ({_counts(keys)})"
            )
        keep |= in_set & df["key"].isin(common)
        kept.append(f"{set_name} {len(common)} of {len(frozenset.union(*keys.values()))} keys")
    note = "--common-keys: means over the samples every method of a set has: " + ", ".join(kept)
    return df[keep], note


def summarize(
    df: pd.DataFrame,
    by: Sequence[str],
    metrics: Sequence[str] = DEFAULT_METRICS,
    orders: dict[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """Group ``df`` by ``by`` and give, per group, ``n`` and per metric the mean, 95% half-width and count.

    Args:
        df: rows of ``load_runs``.
        by: grouping columns; they lead the result, which is sorted by them.
        metrics: metric columns to summarise.
        orders: per grouping column, a preferred order (see ``rank_key``); others sort alphabetically.

    Returns:
        Columns ``*by, n, <m>, <m>_ci95, <m>_n`` for each metric ``m``; floats, NaN where there is no value.
    """
    metrics = check_metrics(metrics)
    columns = [*by, "n"] + [f"{m}{suffix}" for m in metrics for suffix in ("", "_ci95", "_n")]
    records = []
    for group, rows in df.groupby(list(by), sort=False):
        record = dict(zip(by, group, strict=True))
        record["n"] = len(rows)
        for m in metrics:
            mean, half, count = interval95(rows[m].to_numpy(dtype=float))
            record.update({m: mean, f"{m}_ci95": half, f"{m}_n": count})
        records.append(record)
    table = pd.DataFrame.from_records(records, columns=columns)
    orders = orders or {}
    keys = {c: rank_key(orders.get(c, ("*",))) for c in by}
    ordered = sorted(range(len(table)), key=lambda i: tuple(keys[c](table.at[i, c]) for c in by))
    table = table.iloc[ordered].reset_index(drop=True)
    for count in ["n"] + [f"{m}_n" for m in metrics]:
        table[count] = table[count].astype(int)
    return table


def table1_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows Table 1 summarises: every run that is not an ablation (see ``is_ablation``)."""
    return df[~_ablation(df)]


def table3_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows Table 3 summarises: ablations and full VCN (model ``vcn``), in the sets that have an ablation."""
    ablation = _ablation(df)
    full = (df["model"] == FULL_VCN) & ~ablation
    return df[(ablation | full) & df["set"].isin(set(df.loc[ablation, "set"]))]


def table1(df: pd.DataFrame, metrics: Sequence[str] = DEFAULT_METRICS) -> pd.DataFrame:
    """Method × test set, every method but the ablations (paper Table 1). Columns: set, method, n, metrics."""
    return summarize(table1_rows(df), ["set", "method"], metrics, {"set": SET_ORDER, "method": METHOD_ORDER})


def table3(df: pd.DataFrame, metrics: Sequence[str] = DEFAULT_METRICS) -> pd.DataFrame:
    """The ablations and full VCN, per test set that has an ablation (paper Table 3). Columns as ``table1``.

    Rows are method labels: the paper's ablations in its order, other ablations alphabetically, then full VCN
    (``vcn`` first, other labels of the ``vcn`` model alphabetically).
    """
    rows = table3_rows(df)
    ablation = _ablation(rows)
    others = sorted(set(rows.loc[ablation, "method"]) - set(ABLATIONS))
    full = sorted(set(rows.loc[~ablation, "method"]) - {FULL_VCN})
    order = tuple(dict.fromkeys((*ABLATIONS, *others, FULL_VCN, *full)))
    return summarize(rows, ["set", "method"], metrics, {"set": SET_ORDER, "method": order})


def robustness(df: pd.DataFrame, metrics: Sequence[str] = DEFAULT_METRICS) -> pd.DataFrame:
    """Method × corruption pattern per set (paper Fig. 7 as numbers). Columns: set, pattern, method, n, metrics.

    Rows without a pattern are left out.
    """
    rows = df[df["pattern"] != ""]
    orders = {"set": SET_ORDER, "pattern": PATTERN_ORDER, "method": ALL_METHOD_ORDER}
    return summarize(rows, ["set", "pattern", "method"], metrics, orders)


def _bin_labels(width: int) -> list[str]:
    return [f"{lo}-{min(lo + width, 100)}%" for lo in range(0, 100, width)]


def area_bins(df: pd.DataFrame, metrics: Sequence[str] = DEFAULT_METRICS, width: int = 10) -> pd.DataFrame:
    """Method × damaged-area bin per set. Columns: set, area_bin, method, n, metrics.

    Bins are ``[lo, lo + width)`` percent of damaged pixels (the last one closed at 100%); only bins with
    samples appear. Rows without ``mask_area`` are left out.
    """
    if not 1 <= width <= 100:
        raise BlindbenchError(f"area bin width must be 1..100 percent, got {width}")
    labels = _bin_labels(width)
    rows = df[df["mask_area"].notna()].copy()
    # round first so 0.3 (= 30%) stored as 0.30000000000000004 or 0.29999999999999999 lands in the 30-40% bin
    index = np.floor(np.round(rows["mask_area"].to_numpy(dtype=float) * 100, 9) / width).astype(int)
    rows["area_bin"] = [labels[i] for i in np.clip(index, 0, len(labels) - 1)]
    orders = {"set": SET_ORDER, "area_bin": labels, "method": ALL_METHOD_ORDER}
    return summarize(rows, ["set", "area_bin", "method"], metrics, orders)


def add_paper(table: pd.DataFrame, paper: dict[tuple[str, str], tuple]) -> pd.DataFrame:
    """Add ``paper_bce``, ``paper_psnr``, ``paper_ssim`` columns (NaN where the paper has no number)."""
    table = table.copy()
    for i, name in enumerate(PAPER_METRICS):
        values = []
        for method, set_name in zip(table["method"], table["set"], strict=True):
            value = paper.get((method, set_name), (None,) * len(PAPER_METRICS))[i]
            values.append(math.nan if value is None else float(value))
        table[f"paper_{name}"] = pd.Series(values, index=table.index, dtype=float)
    return table


# ---------------------------------------------------------------------------------------------------------------
# Formatting


def _rows() -> dict[str, results.Metric]:
    """The metric table's rows by name, read now (a row added at run time counts)."""
    return {m.name: m for m in results.metrics("sample")}


def _decimals_of(column: str, extra: int) -> int | None:
    """Decimals for a table column, None for counts and labels."""
    base = column.removeprefix("paper_").removesuffix("_ci95")
    row = _rows().get(base)
    return row.decimals + extra if row is not None else None


def _fmt(value: float, decimals: int) -> str:
    if value is None or math.isnan(value):
        return ""
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def format_table(table: pd.DataFrame, extra_decimals: int = 0) -> pd.DataFrame:
    """Every cell as text: metric means and intervals with fixed decimals, missing values empty."""
    out = pd.DataFrame(index=table.index)
    for column in table.columns:
        decimals = _decimals_of(column, extra_decimals)
        if decimals is None:
            out[column] = table[column].astype(str)
        else:
            out[column] = [_fmt(v, decimals) for v in table[column].astype(float)]
    return out


def _table_metrics(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c in _rows()]


def to_markdown(table: pd.DataFrame, extra_decimals: int = 0) -> str:
    """A summary table as markdown: cells ``mean ± half-width``, ``–`` when missing, ``(n=k)`` when a metric has
    fewer values than the group; ``paper_*`` columns become one ``paper`` column (``a / b / c``).
    """
    metrics = _table_metrics(table)
    spec = _rows()
    labels = list(table.columns[: list(table.columns).index("n")])  # the grouping columns lead
    paper = [f"paper_{m}" for m in PAPER_METRICS if f"paper_{m}" in table.columns and m in metrics]
    header = [*labels, "n", *(spec[m].heading for m in metrics)]
    align = ["---"] * len(labels) + ["---:"] * (1 + len(metrics))
    if paper:
        header.append("paper " + " / ".join(spec[c.removeprefix("paper_")].label for c in paper))
        align.append("---:")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for _, row in table.iterrows():
        cells = [str(row[c]) for c in labels] + [str(int(row["n"]))]
        for m in metrics:
            decimals = spec[m].decimals + extra_decimals
            mean, half, count = row[m], row[f"{m}_ci95"], int(row[f"{m}_n"])
            if count == 0:
                cells.append("–")
                continue
            cell = _fmt(mean, decimals)
            if count > 1:
                cell += f" ± {_fmt(half, decimals)}"
            if count != int(row["n"]):
                cell += f" (n={count})"
            cells.append(cell)
        if paper:
            values = [_fmt(row[c], spec[c.removeprefix("paper_")].decimals) or "–" for c in paper]
            cells.append("–" if all(v == "–" for v in values) else " / ".join(values))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plain_cell(value, float_format: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return format(value, float_format) if isinstance(value, float) else str(value)


def _plain_markdown(rows: list[dict]) -> str:
    """Markdown for free-form rows (Table 2): floats with 4 significant digits, numbers right-aligned."""
    columns = list(dict.fromkeys(c for row in rows for c in row))
    numeric = [all(isinstance(r.get(c), int | float) for r in rows if r.get(c) is not None) for c in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---:" if k else "---" for k in numeric) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_plain_cell(row.get(c), ".4g") or "–" for c in columns) + " |")
    return "\n".join(lines)


def _plain_csv(rows: list[dict]) -> bytes:
    """CSV for free-form rows: floats with 6 decimals (as ``blindbench study score``), None as empty."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(c for r in rows for c in r)), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _plain_cell(v, ".6f") for k, v in row.items()} for row in rows)
    return buffer.getvalue().encode("utf-8")


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue().encode("utf-8")


# ---------------------------------------------------------------------------------------------------------------
# Command


TITLES = {
    "table1": "Table 1: methods × test sets",
    "table3": "Table 3: ablations",
    "robustness": "Robustness: methods × corruption patterns",
    "area_bins": "Methods × damaged area",
    "table2": "Table 2: user study",
}
FOOTNOTE = "mean ± 95% interval half-width t(0.975, n−1)·s/√n over the test images; – = no value."



def _study_table(cfg: TablesConfig) -> tuple[list[dict], str]:
    """Table 2 rows from the user study, and their markdown (the study's own layout when it offers one)."""
    from blindbench import study  # another command's package; imported only when asked for

    rows = list(study.table2_rows(cfg.study, cfg.answers or None))
    markdown = getattr(study, "table2_markdown", _plain_markdown)
    return rows, markdown(rows) if rows else ""


def run_tables(cfg: TablesConfig) -> dict[str, Path]:
    """Write table1/table3/robustness/area_bins CSVs (table2 with ``--study``), ``tables.md`` and the resolved
    config to ``cfg.out`` (default ``cfg.runs``), atomically, and print the markdown.

    Returns:
        Table name → written path, plus ``markdown`` (tables.md) and ``config`` (tables.config.json).
    """
    if not cfg.runs:
        raise BlindbenchError("give --runs DIR, the folder of eval runs")
    if cfg.extra_decimals < 0:
        raise BlindbenchError(f"--extra-decimals must be ≥ 0, got {cfg.extra_decimals}")
    metrics = check_metrics(comma_list(cfg.metrics)) if cfg.metrics else None
    df = load_runs(cfg.runs)
    if metrics is None:
        metrics = results.default_metrics([m for m in results.metric_names("sample") if df[m].notna().any()])
    footer = [FOOTNOTE]
    ignored = df.attrs.get("ignored", {})
    if ignored:
        footer.insert(0, f"note: column(s) {', '.join(ignored)} (e.g. in {next(iter(ignored.values()))}) are not in "
                      "the metric table (blindbench.results.METRICS) and are not tabulated")  # fmt: skip
    if cfg.common_keys:
        df, note = keep_common_keys(df)
        footer.insert(0, note)
    out = Path(cfg.out or cfg.runs)
    tables = {
        "table1": table1(df, metrics),
        "table3": table3(df, metrics),
        "robustness": robustness(df, metrics),
        "area_bins": area_bins(df, metrics, cfg.area_bin),
    }
    # the rows behind each table, to flag sets whose methods were scored on different samples
    behind = {
        "table1": table1_rows(df),
        "table3": table3_rows(df),
        "robustness": df[df["pattern"] != ""],
        "area_bins": df[df["mask_area"].notna()],
    }
    if cfg.paper:
        tables["table1"] = add_paper(tables["table1"], PAPER_TABLE1)
        tables["table3"] = add_paper(tables["table3"], PAPER_TABLE3)
    study_rows, study_markdown = _study_table(cfg) if cfg.study else ([], "")  # read (and fail) before any write
    written: dict[str, Path] = {}
    sections = []
    for name, table in tables.items():
        path = out / TABLE_FILES[name]
        atomic_write_bytes(path, _csv_bytes(format_table(table, cfg.extra_decimals)))
        written[name] = path
        body = to_markdown(table, cfg.extra_decimals) if len(table) else "(no rows)"
        body = "\n\n".join([body, *coverage_notes(behind[name], (*dict.fromkeys(table["method"]), "*"))])
        sections.append(f"## {TITLES[name]} ({TABLE_FILES[name]})\n\n{body}")
    if cfg.study:
        if study_rows:
            path = out / TABLE_FILES["table2"]
            atomic_write_bytes(path, _plain_csv(study_rows))
            written["table2"] = path
            sections.insert(1, f"## {TITLES['table2']} ({TABLE_FILES['table2']})\n\n{study_markdown}")
        else:
            sections.insert(1, f"## {TITLES['table2']}\n\n(no answers in {cfg.study})")
    text = "\n\n".join([*sections, *footer]) + "\n"
    written["markdown"] = out / "tables.md"
    atomic_write_bytes(written["markdown"], text.encode("utf-8"))
    written["config"] = out / "tables.config.json"
    atomic_write_bytes(written["config"], (json.dumps(asdict(cfg), indent=2) + "\n").encode("utf-8"))
    print(text, end="")
    return written
