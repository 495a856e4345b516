"""``eval`` and ``inpaint`` under ``torchrun --nproc_per_node 2`` (gloo, CPU): disjoint shares, rank 0 merges.

Each run is a real ``torchrun --standalone`` subprocess with a timeout (a hang fails the test). The runs go through
this file's ``__main__`` block, which calls ``blindbench.cli.main`` unchanged after wrapping two functions to
record what each rank did: the sample keys of every eval batch it scored and the name of every image it
restored, written to ``$BLINDBENCH_DDP_PROBE/rank<R>.json``. The models are the plug-ins of
``tests/plugins/outside_model.py``, exact and fast, so a single-process run must give the very same rows.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import launch_env, run_or_fail

PLUGINS = Path(__file__).resolve().parent / "plugins"
TIMEOUT_S = 180
# --no-verify: the shards are the session's photos-demo; checking them against the lock is test_eval's business
EVAL = ["eval", "--model", "outside_model:build_tuple", "--set", "photos-demo", "--batch", "5", "--no-progress",
        "--no-verify"]  # fmt: skip


def _env(data_root: Path, probe: Path | None) -> dict[str, str]:
    return launch_env(data_root, PLUGINS, **({"BLINDBENCH_DDP_PROBE": str(probe)} if probe is not None else {}))


def torchrun(args: list[str], data_root: Path, probe: Path) -> list[list[str]]:
    """Run this file's probe on 2 ranks; returns what each rank scored or restored, in order."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__, *args]
    run_or_fail(cmd, _env(data_root, probe), TIMEOUT_S)
    return [json.loads((probe / f"rank{r}.json").read_text()) for r in range(2)]


def one_process(args: list[str], data_root: Path) -> None:
    run_or_fail([sys.executable, "-m", "blindbench.cli", *args], _env(data_root, None), TIMEOUT_S)


def _rows(folder: Path) -> list[tuple[str, ...]]:
    with open(folder / "samples.csv", newline="") as handle:
        return [tuple(row) for row in csv.reader(handle)]


def _disjoint_and_complete(ranks: list[list[str]], expected: set[str]) -> None:
    assert ranks[0] and ranks[1], ranks  # both ranks did a share
    assert not set(ranks[0]) & set(ranks[1])
    assert sorted(ranks[0] + ranks[1]) == sorted(expected)  # each exactly once


# -------------------------------------------------------------------------------------------------- eval


def test_eval_ranks_score_disjoint_shares_and_rank_zero_writes_every_row(demo_dir: Path, data_root: Path,
                                                                          tmp_path: Path) -> None:
    one_process([*EVAL, "--out", str(tmp_path / "single")], data_root)
    single = _rows(tmp_path / "single")
    ranks = torchrun([*EVAL, "--save-images", "--out", str(tmp_path / "ddp")], data_root, tmp_path / "p1")
    rows = _rows(tmp_path / "ddp")
    assert rows[0] == single[0] and rows.count(rows[0]) == 1  # one header: one writer
    assert len(rows) == 49 and set(rows) == set(single)  # 48 rows, identical as a set
    keys = {r[single[0].index("key")] for r in single[1:]}
    _disjoint_and_complete(ranks, keys)
    assert {p.stem for p in (tmp_path / "ddp" / "images").glob("*.png")} == keys  # both ranks saved theirs
    assert (tmp_path / "ddp" / "eval.toml").is_file()


def test_eval_under_torchrun_resumes(demo_dir: Path, data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    first = torchrun([*EVAL, "--limit", "17", "--out", str(out)], data_root, tmp_path / "p1")
    _disjoint_and_complete(first, {r[4] for r in _rows(out)[1:]})
    assert len(_rows(out)) == 18
    with open(out / "samples.csv", "a") as handle:  # a run killed mid-write leaves a torn last line
        handle.write("outside_model.build_tuple,outside_model:build_tuple,,photos-demo,photos-demo_00")
    second = torchrun([*EVAL, "--out", str(out)], data_root, tmp_path / "p2")
    assert len(second[0]) + len(second[1]) == 48 - 17  # only the rest, shared between the ranks
    one_process([*EVAL, "--out", str(tmp_path / "single")], data_root)
    rows, single = _rows(out), _rows(tmp_path / "single")
    assert len(rows) == 49 and set(rows) == set(single)


def test_world_size_without_a_launcher_is_one_line(demo_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from blindbench.errors import BlindbenchError
    from blindbench.evaluate import EvalConfig, run_eval

    for name in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    pattern = r"WORLD_SIZE=2 but the process group cannot be joined .*torchrun"
    with pytest.raises(BlindbenchError, match=pattern) as info:
        run_eval(EvalConfig(model="input", out=str(tmp_path / "e"), progress=False))
    assert "\n" not in str(info.value)
    assert not torch.distributed.is_initialized()


# ----------------------------------------------------------------------------------------------- inpaint


def test_inpaint_ranks_restore_each_image_once(data_root: Path, tmp_path: Path) -> None:
    from PIL import Image

    photos = tmp_path / "in"
    (photos / "sub").mkdir(parents=True)
    names = ["a", "b", "c", "d", "sub/e"]
    for i, name in enumerate(names):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(
            photos / f"{name}.png")  # fmt: skip
    (photos / "broken.png").write_bytes(b"not a png")  # skipped by whichever rank it falls to
    weights = tmp_path / "scale1.pt"
    torch.save({"scale": torch.tensor(1.0)}, weights)
    out = tmp_path / "out"
    ranks = torchrun(["inpaint", str(photos), "--model", "outside_model:build_image_only", "--checkpoint",
                      str(weights), "-o", str(out), "--no-progress"], data_root, tmp_path / "p")  # fmt: skip
    _disjoint_and_complete(ranks, set(names))
    for name in names:  # scale 1: the restored image is the input
        restored, given = Image.open(out / f"{name}.png"), Image.open(photos / f"{name}.png")
        assert np.array_equal(np.asarray(restored), np.asarray(given))
    record = (out / "inpaint.toml").read_text()
    assert "# inputs: 6, restored 5, skipped 1" in record
    assert sum(line.startswith("# restored ") for line in record.splitlines()) == 5
    skipped = [line for line in record.splitlines() if line.startswith("# skipped ")]
    assert len(skipped) == 1 and "broken.png" in skipped[0]


# ------------------------------------------------------------------------------------------------- probe


def _probe_main() -> int:
    """Run ``blindbench.cli.main`` on this rank, recording what it scored or restored (see the module docstring)."""
    from blindbench import cli, evaluate, inpainting

    rank = int(os.environ["RANK"])
    seen: list[str] = []
    batches = evaluate._batches

    def recorded_batches(*args, **kwargs):
        for batch in batches(*args, **kwargs):
            seen.extend(batch["key"])
            yield batch

    inpaint_file = inpainting.inpaint_file

    def recorded_file(rgb, alpha, name, *args, **kwargs):
        seen.append(name)
        return inpaint_file(rgb, alpha, name, *args, **kwargs)

    evaluate._batches = recorded_batches
    inpainting.inpaint_file = recorded_file
    code = cli.main(sys.argv[1:])
    out = Path(os.environ["BLINDBENCH_DDP_PROBE"])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{rank}.json").write_text(json.dumps(seen))
    return code


if __name__ == "__main__":
    sys.exit(_probe_main())
