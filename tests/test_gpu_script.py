"""benchmarks/gpu_train.sh must not break unseen: its --dry-run runs the whole chain on the CPU (slow-marked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_train_dry_run(photos_corpus: dict, demo_dir: Path, data_root: Path, tmp_path: Path) -> None:
    env = {**os.environ, "BLINDBENCH_GPU_PACK": str(tmp_path / "pack"), "OUT": str(tmp_path / "out"),
           "BLINDBENCH_GPU_WHEELS": str(tmp_path / "wheels"), "PYTHON": sys.executable}  # fmt: skip
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_pack.py")], env=env, check=True, cwd=REPO)
    env["BLINDBENCH_DATA"] = str(tmp_path / "gpu-data")
    subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_train.sh"), "--dry-run"], env=env, check=True,
                   cwd=REPO, timeout=900)  # fmt: skip
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"]["separate"] >= 1 and summary["steps"]["joint"] >= 1
    assert len((out / "eval-photos-demo.csv").read_text().splitlines()) == 9  # header + 8 images
    assert (out / "vcn-paper-gpu.pt").stat().st_size < 16 * 2**20
    assert len((out / "metrics-separate.csv").read_text().splitlines()) > 1
