"""``blindbench tables``: its config, and the run (pandas imported inside, by :mod:`blindbench.tables`)."""

from __future__ import annotations

from dataclasses import dataclass

from blindbench import results
from blindbench.options import option as _option


@dataclass(frozen=True)
class TablesConfig:
    """Build the result tables (Table 1/2/3, per pattern, per mask area) from eval's per-sample CSVs."""

    runs: str = _option("", "folder of eval runs: every samples.csv below it is read")
    out: str = _option("", "output folder for the table CSVs (default: --runs)")
    study: str = _option("", "user-study folder; when given, table2.csv is built from its answers")
    answers: str = _option("", "user-study answers CSV (default: the one in --study)")
    paper: bool = _option(False, "print the paper's numbers (SPEC §7) beside ours and add paper_* CSV columns")
    metrics: str = _option("", f"comma-separated metrics to tabulate, of {', '.join(results.metric_names('sample'))} "
                           f"(default: {', '.join(results.default_metrics(results.metric_names('sample')))}; the "
                           "optional ones when the runs have them)")
    area_bin: int = _option(10, "width of the mask-area bins in percent")
    extra_decimals: int = _option(0, "decimals beyond the paper's (BCE 3, PSNR 2, SSIM 4)")
    common_keys: bool = _option(False, "use only the samples every method of a set has")


def run_tables(cfg: TablesConfig) -> None:
    from blindbench.tables import run_tables

    for name, path in run_tables(cfg).items():
        print(f"{name}: {path}")
