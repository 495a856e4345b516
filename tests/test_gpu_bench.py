"""benchmarks/gpu.sh must not break unseen: its --dry-run runs every section on the CPU (slow-marked)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import gpu_dry_run


@pytest.mark.slow
def test_gpu_bench_dry_run(photos_corpus: dict, demo_dir: Path, data_root: Path, tmp_path: Path) -> None:
    out = gpu_dry_run("gpu.sh", tmp_path)
    forward = (out / "forward.md").read_text().splitlines()
    for name in ("vcn", "ca", "gmc", "pc", "gc"):  # fp32, bf16, bf16+cl measured, compile skipped in a dry run
        rows = [line for line in forward if line.startswith(f"| {name} |")]
        assert len(rows) == 4 and sum("skipped" in row for row in rows) == 1
        assert all(float(row.split("|")[3]) > 0 for row in rows if "skipped" not in row)
    train = (out / "train.md").read_text()
    assert "| separate |" in train and "| joint |" in train
    metrics = [line for line in (out / "metrics.md").read_text().splitlines() if line.startswith("| psnr")
               or line.startswith("| ssim")]  # fmt: skip
    assert len(metrics) == 4 and all(line.endswith("| yes |") for line in metrics)
    evals = (out / "eval.md").read_text()
    assert "| vcn | 8 |" in evals and "| input | 8 |" in evals
    assert "no GPU (dry run)" in (out / "machine.txt").read_text()
