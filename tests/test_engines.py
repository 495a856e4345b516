"""`blindbench generate` on every joblib backend: the same bytes as the committed lock, with the progress bar."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from blindbench.cli import main
from blindbench.errors import BlindbenchError
from blindbench.imageio import sha256_file
from blindbench.shards import committed_lock_path, generate_set, verify_set


def _matches_committed_lock(spec, folder: Path) -> None:
    report = verify_set(spec, folder)
    assert report.lock_path == committed_lock_path(spec.name)
    assert report.ok, report.problems


def test_dask_cluster_from_the_cli_gives_the_committed_bytes(photos_corpus, demo_spec, tmp_path: Path, capsys) -> None:
    """A real two-process dask.distributed cluster named by --scheduler; its workers are told another data
    folder, so they can only find the corpus through the paths the job carries (as on another machine)."""
    distributed = pytest.importorskip("dask.distributed", reason="dask.distributed is not installed (blindbench[dask])")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                       env={"BLINDBENCH_DATA": str(tmp_path / "elsewhere")})  # fmt: skip
    with cluster:
        out = tmp_path / "dask"
        assert main(["generate", "--backend", "dask", "--scheduler", cluster.scheduler_address, "--out", str(out)]) == 0
    _matches_committed_lock(demo_spec, out)
    assert f"{demo_spec.count}/{demo_spec.count}" in capsys.readouterr().err  # the progress bar ran to the end


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (blindbench[ray])")
def test_ray_from_the_cli_gives_the_committed_bytes(photos_corpus, demo_spec, data_root: Path, tmp_path: Path) -> None:
    # its own process: ray's joblib backend rebases joblib's process pool class for the rest of the process
    out = tmp_path / "ray"
    result = subprocess.run(
        [sys.executable, "-m", "blindbench", "generate", "--backend", "ray", "--workers", "2", "--out", str(out)],
        capture_output=True, text=True, env={**os.environ, "BLINDBENCH_DATA": str(data_root)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    _matches_committed_lock(demo_spec, out)
    assert f"{demo_spec.count}/{demo_spec.count}" in result.stderr


def test_multiprocessing_backend_runs_in_waves(demo_dir: Path, demo_spec, tmp_path: Path) -> None:
    """joblib's multiprocessing backend (like ray's) refuses return_as="generator"."""
    generate_set(demo_spec, tmp_path / "mp", workers=2, backend="multiprocessing", progress=False)
    for shard in range(demo_spec.shard_count):
        name = demo_spec.shard_name(shard)
        assert sha256_file(tmp_path / "mp" / name) == sha256_file(demo_dir / name)


def _one_line(capsys, argv: list[str], expected: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("blindbench: error: ") and expected in err, err


def test_bad_backends_and_addresses_are_one_line_errors(demo_spec, tmp_path: Path, capsys) -> None:
    out = ["--out", str(tmp_path / "never")]
    _one_line(capsys, ["generate", "--backend", "bogus", *out], "unknown backend 'bogus'; known: dask, loky,")
    _one_line(capsys, ["generate", "--backend", "rya", *out], "unknown backend 'rya'; did you mean 'ray'?")
    _one_line(capsys, ["generate", "--scheduler", "tcp://127.0.0.1:8786", *out], "use it with --backend dask")
    _one_line(capsys, ["generate", "--backend", "dask", "--address", "auto", *out], "use it with --backend ray")
    with pytest.raises(BlindbenchError, match="unknown backend 'bogus'"):
        generate_set(demo_spec, tmp_path / "never", backend="bogus", progress=False)
    assert not (tmp_path / "never").exists()


@pytest.mark.slow
def test_dask_without_a_scheduler_starts_a_local_cluster(photos_corpus, demo_spec, tmp_path: Path) -> None:
    pytest.importorskip("dask.distributed", reason="dask.distributed is not installed (blindbench[dask])")
    assert main(["generate", "--backend", "dask", "--workers", "2", "--out", str(tmp_path / "local")]) == 0
    _matches_committed_lock(demo_spec, tmp_path / "local")
