from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from blindbench.cli import COMMANDS, build_parser, config_from_args, main
from blindbench.commands.eval import EvalConfig
from blindbench.commands.inpaint import InpaintConfig
from blindbench.options import resolved_toml

HEAVY = {"torch", "cv2", "pandas"}


@pytest.mark.parametrize("words", [*sorted(COMMANDS), ("train",)])
def test_every_subcommand_has_help(words: tuple[str, ...], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*words, "--help"])
    assert exit_info.value.code == 0
    assert "usage: blindbench" in capsys.readouterr().out


def _imported_at_help(words: tuple[str, ...]) -> set[str]:
    """Top-level packages that ``python -X importtime -m blindbench WORDS --help`` imported (the real entry point,
    through blindbench.runtime and its re-execution under tcmalloc)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "blindbench", *words, "--help"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0 and "usage: blindbench" in result.stdout, result.stderr[-2000:]
    names = [line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert "blindbench.cli" in names, "-X importtime reported nothing"  # the check below must be able to fail
    return {name.split(".")[0] for name in names}


@pytest.mark.parametrize("words", [(), *sorted(COMMANDS), ("train",)], ids=lambda w: " ".join(w) or "top")
def test_help_imports_no_torch_pandas_or_opencv(words: tuple[str, ...]) -> None:
    assert not _imported_at_help(words) & HEAVY


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


# ------------------------------------------------------------------------------------------ --config TOML


def _resolve(argv: list[str]):
    args = build_parser().parse_args(argv)
    config, _ = COMMANDS[args._words]
    return config_from_args(config, args, " ".join(args._words))


def test_config_file_sets_options_and_given_flags_override_it(tmp_path: Path) -> None:
    config = tmp_path / "cmd.toml"
    config.write_text('set = "photos-val"\nper_pattern = 3\npng = "from-file.png"\n')
    cfg = _resolve(["sheet", "--config", str(config), "--png", "flag.png"])
    assert (cfg.set, cfg.per_pattern, cfg.png, cfg.out) == ("photos-val", 3, "flag.png", "")  # out: the default
    config.write_text('model = "gc"\ncheckpoint = "c.pt"\nbatch = 4\nprogress = false\nmask_source = "true"\n')
    cfg = _resolve(["eval", "--config", str(config), "--batch", "2", "--progress"])
    assert (cfg.model, cfg.checkpoint, cfg.batch, cfg.progress, cfg.mask_source) == ("gc", "c.pt", 2, True, "true")
    config.write_text('inputs = ["a.png", "b"]\nbeta = 1\nout = "o"\n')  # a positional, and an int for a float
    cfg = _resolve(["inpaint", "--config", str(config)])
    assert (cfg.inputs, cfg.beta, cfg.out) == (("a.png", "b"), 1.0, "o") and isinstance(cfg.beta, float)
    assert _resolve(["inpaint", "--config", str(config), "c.png", "-o", "p"]).inputs == ("c.png",)
    config.write_text("paper = true\narea_bin = 5\n")
    cfg = _resolve(["tables", "--config", str(config), "--runs", "r"])
    assert (cfg.paper, cfg.area_bin, cfg.runs) == (True, 5, "r")
    config.write_text('name = "vcn-test"\nunfinished = true\n')
    assert _resolve(["zoo", "publish", "--config", str(config)]).unfinished is True
    assert _resolve(["sheet"]).per_pattern == 1  # no file, no flag: the dataclass default


def test_resolved_configs_load_back_as_config_files(tmp_path: Path) -> None:
    """The one writer (options.resolved_toml) and --config read the same format, eval's [config] table included."""
    cfg = EvalConfig(model="gc", checkpoint="run", batch=3, verify=False, iqa="lpips")
    path = tmp_path / "eval.toml"
    path.write_text(resolved_toml(cfg, "eval", table="config", records={"identity": {"set": "photos-demo"}}))
    assert _resolve(["eval", "--config", str(path)]) == cfg
    cfg = InpaintConfig(inputs=("a b.png", 'q"uote.png'), out="o", beta=0.25, composite=False)
    path.write_text(resolved_toml(cfg, "inpaint", ["restored 'a b.png' -> a b.png", "device: cpu"]))
    assert _resolve(["inpaint", "--config", str(path)]) == cfg


@pytest.mark.parametrize(
    ("argv", "text", "pattern"),
    [
        (["sheet"], "per_patern = 2\n", r"unknown sheet option 'per_patern' in \S+; did you mean 'per_pattern'"),
        (["eval"], "batch = 2.5\n", r"eval option batch in \S+: expected int, got 2.5"),
        (["eval"], "verify = 1\n", r"eval option verify in \S+: expected bool, got 1"),
        (["inpaint"], 'inputs = "a.png"\n', r"inpaint option inputs in \S+: expected a list of str"),
        (["models"], 'preset = "huge"\n', r"models option preset in \S+: 'huge' is not one of paper, tiny"),
        (["study", "score"], "study = [\n", r"bad study score config \S+cmd.toml: "),
        (["corpus", "build"], "workers = 0\n", r"--workers must be -1 \(all cores\) or in \[1, 1024\], got 0"),
        (["corpus", "pairs"], "workers = 0\n", r"--workers must be -1 \(all cores\) or in \[1, 1024\], got 0"),
    ],
)
def test_bad_config_files_are_one_line_errors(argv, text, pattern, tmp_path: Path, capsys) -> None:
    config = tmp_path / "cmd.toml"
    config.write_text(text)
    _one_line_error(capsys, [*argv, "--config", str(config)], pattern)


def test_missing_config_file_is_one_line(tmp_path: Path, capsys) -> None:
    _one_line_error(capsys, ["generate", "--config", str(tmp_path / "nope.toml")], r"generate config not found: ")


def test_only_rank_zero_prints_the_closing_line(monkeypatch, capsys, tmp_path: Path) -> None:
    """Under torchrun every rank returns the same report; the summary is printed once, by rank 0."""
    from blindbench import evaluate
    from blindbench.commands.eval import EvalConfig, run_eval

    monkeypatch.setattr(evaluate, "run_eval", lambda cfg: "report")
    monkeypatch.setattr(evaluate, "summary_line", lambda cfg, report: f"summary of {report}")
    for rank, expected in (("1", ""), ("0", "summary of report\n")):
        monkeypatch.setenv("RANK", rank)
        run_eval(EvalConfig())
        assert capsys.readouterr().out == expected


@pytest.mark.parametrize("flag, bar", [("--no-progress", False), ("--progress", True)])
def test_generate_draws_its_progress_bar_unless_told_not_to(flag: str, bar: bool, photos_corpus: dict,
                                                            tmp_path: Path, capsys) -> None:
    assert main(["generate", "--set", "photos-demo", "--out", str(tmp_path / "set"), "--workers", "1", flag]) == 0
    captured = capsys.readouterr()
    assert ("generate photos-demo:" in captured.err) is bar
    assert "48 samples in 3 shards" in captured.out
