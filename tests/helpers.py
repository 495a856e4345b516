"""Helpers shared by several test files (import as ``from helpers import ...``; tests/ is on the path)."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# set by a launcher for each rank; a test that starts torchrun itself must not hand them down
LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def matplotlib_icons() -> str:
    """A folder of RGBA icons that ships offline inside the matplotlib wheel (contaminant images with alpha)."""
    return str(Path(importlib.util.find_spec("matplotlib").submodule_search_locations[0]) / "mpl-data" / "images")


def launch_env(data_root: Path, *pythonpath: Path, **extra: str) -> dict[str, str]:
    """This process's environment for a child run: no launcher variables, one thread, ``BLINDBENCH_DATA=data_root``.

    ``PYTHONPATH`` is the repository root followed by ``pythonpath``; ``extra`` are set last.
    """
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env.update(BLINDBENCH_DATA=str(data_root), OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(str(p) for p in (REPO, *pythonpath)), **extra)
    return env


def run_or_fail(cmd: list[str], env: dict[str, str], timeout_s: float) -> str:
    """Run ``cmd`` in the repository root; returns its stdout and stderr together.

    The run gets its own process group, so a hang (ranks out of step in a collective) is killed with every rank
    and fails the test after ``timeout_s`` instead of blocking the suite; a non-zero exit fails it too.
    """
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"{' '.join(cmd[1:6])} did not finish within {timeout_s} s (ranks out of step?):\n{output[-4000:]}")
    assert proc.returncode == 0, output[-4000:]
    return output


def gpu_dry_run(script: str, tmp_path: Path) -> Path:
    """Pack with ``benchmarks/gpu_pack.py``, then ``bash benchmarks/<script> --dry-run`` (up to 900 s) as the device
    would run it, all under ``tmp_path``; returns the script's ``$OUT`` folder."""
    out = tmp_path / "out"
    env = {**os.environ, "BLINDBENCH_GPU_PACK": str(tmp_path / "pack"), "OUT": str(out),
           "BLINDBENCH_GPU_WHEELS": str(tmp_path / "wheels"), "PYTHON": sys.executable}  # fmt: skip
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_pack.py")], env=env, check=True, cwd=REPO)
    env["BLINDBENCH_DATA"] = str(tmp_path / "gpu-data")
    subprocess.run(["bash", str(REPO / "benchmarks" / script), "--dry-run"], env=env, check=True, cwd=REPO,
                   timeout=900)  # fmt: skip
    return out
