from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from blindbench.cli import COMMANDS, main


@pytest.mark.parametrize("words", [*sorted(COMMANDS), ("train",)])
def test_every_subcommand_has_help(words: tuple[str, ...], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*words, "--help"])
    assert exit_info.value.code == 0
    assert "usage: blindbench" in capsys.readouterr().out


def test_console_script_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "blindbench.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "generate" in result.stdout


def _one_line_error(capsys, argv: list[str], pattern: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("blindbench: error: "), err
    assert pytest.importorskip("re").search(pattern, err), err


def test_bad_inputs_are_one_line_errors(capsys, tmp_path: Path, demo_dir: Path) -> None:
    _one_line_error(
        capsys, ["generate", "--set", "photos-dmeo"], "unknown set 'photos-dmeo'; did you mean 'photos-demo'"
    )
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'name = "x"\nseed = 1\ncount = 2\ncolour = 3\n[corpus]\nname = "photos"\n[[recipes]]\npattern="real"\n'
    )
    _one_line_error(capsys, ["generate", "--set", str(bad)], "unknown key in set manifest 'colour'")
    bad.write_text('name = "x"\nseed = 1\ncount = -2\n[corpus]\nname = "photos"\n[[recipes]]\npattern="real"\n')
    _one_line_error(capsys, ["generate", "--set", str(bad)], r"count must be an integer in \[1, 10000000\], got -2")
    bad.write_text('name = "x"\nseed = 1\ncount = 2\n[corpus]\nname = "photos"\n[[recipes]]\npattern="rael"\n')
    _one_line_error(capsys, ["generate", "--set", str(bad)], "did you mean 'real'")
    bad.write_text("name = [unclosed")
    _one_line_error(capsys, ["verify", "--set", str(bad)], "bad set manifest")
    _one_line_error(capsys, ["corpus", "build", "--clean", str(tmp_path)], "give both --clean and --fill")
    _one_line_error(capsys, ["verify", "--set", "photos-demo", "--out", str(tmp_path)], "missing shard")


def test_train_flags_override_only_what_is_given(capsys, tmp_path: Path) -> None:
    _one_line_error(capsys, ["train", "--model", "vnc"], "unknown model 'vnc'; did you mean 'vcn'")
    config = tmp_path / "run.toml"
    config.write_text('model = "gc"\nlamda_mask = 1.0\n')
    _one_line_error(capsys, ["train", "--config", str(config)], "did you mean 'lambda_mask'")


def test_running_out_of_memory_is_one_line(capsys, monkeypatch) -> None:
    """torch's CPU allocator fails with a RuntimeError, not a MemoryError; both are one line."""
    import torch

    from blindbench import cli

    def allocate_too_much(cfg) -> None:
        torch.empty(10**13)  # 40 TB: the allocator refuses it for real

    config_type, _ = COMMANDS[("verify",)]
    monkeypatch.setitem(cli.COMMANDS, ("verify",), (config_type, allocate_too_much))
    _one_line_error(capsys, ["verify", "--set", "photos-demo"], r"out of memory \(a smaller --batch")

    def a_bug(cfg) -> None:
        raise RuntimeError("shape mismatch")

    monkeypatch.setitem(cli.COMMANDS, ("verify",), (config_type, a_bug))
    with pytest.raises(RuntimeError, match="shape mismatch"):  # other RuntimeErrors are bugs and keep a traceback
        main(["verify", "--set", "photos-demo"])


def test_inpainting_a_huge_image_under_a_memory_limit_is_one_line(tiny_vcn_run: Path, tmp_path: Path) -> None:
    import resource

    import cv2
    import numpy as np

    image = tmp_path / "huge.png"
    cv2.imwrite(str(image), np.full((10000, 10000, 3), 90, np.uint8))  # 300 MB decoded, far more inside the net

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (5 * 2**30, 5 * 2**30))

    result = subprocess.run(
        [sys.executable, "-m", "blindbench", "inpaint", "--checkpoint", str(tiny_vcn_run), str(image),
         "-o", str(tmp_path / "out"), "--no-progress"],
        capture_output=True, text=True, preexec_fn=limit_memory, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "blindbench: error: out of memory (a smaller --batch, --tile or input image needs less)"
    ]
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir())  # nothing half-written left behind
