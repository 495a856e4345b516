"""benchmarks/gpu_train.sh must not break unseen: its --dry-run runs the whole chain on the CPU (slow-marked)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import gpu_dry_run


@pytest.mark.slow
def test_gpu_train_dry_run(photos_corpus: dict, demo_dir: Path, data_root: Path, tmp_path: Path) -> None:
    out = gpu_dry_run("gpu_train.sh", tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"]["separate"] >= 1 and summary["steps"]["joint"] >= 1
    assert len((out / "eval-photos-demo.csv").read_text().splitlines()) == 9  # header + 8 images
    assert (out / "vcn-paper-gpu.pt").stat().st_size < 16 * 2**20
    assert len((out / "metrics-separate.csv").read_text().splitlines()) > 1
