"""CLI fuzz: every numeric option of every command with zero, negative, huge, inf, NaN and non-numbers.

Each call must end with exit code 0 or 2 and, on 2, exactly one line on stderr, never a traceback. The calls name
data that does not exist (a set, inputs, run folders), so that whatever the options allow ends at once.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from blindbench.cli import COMMANDS, main

SKIP = {("demo",), ("study", "serve")}  # the demo runs for minutes, serve listens until stopped
VALUES = ("0", "-1", "1000000000000", "inf", "nan", "x")
MISSING = {
    "set": "nosuchset", "run": "/nonexistent/run", "runs": "/nonexistent/runs", "study": "/nonexistent/s",
    "checkpoint": "/nonexistent/ckpt.pt", "clean": "/nonexistent/clean", "fill": "/nonexistent/fill",
    "inputs": "/nonexistent/in.png", "out": "OUT",
}  # fmt: skip


def _cases() -> list[tuple[tuple[str, ...], str, str]]:
    cases = []
    for words, (config, _) in COMMANDS.items():
        if words in SKIP:
            continue
        hints = typing.get_type_hints(config)
        for f in dataclasses.fields(config):
            if hints[f.name] in (int, float):
                cases += [(words, f.name, v) for v in VALUES]
    from blindbench.train import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if hints[f.name] in (int, float):
            cases += [(("train",), f.name, v) for v in VALUES]
    return cases


def _argv(words: tuple[str, ...], option: str, value: str, out: Path) -> list[str]:
    from blindbench.train import TrainConfig

    config = TrainConfig if words == ("train",) else COMMANDS[words][0]
    names = {f.name: f for f in dataclasses.fields(config)}
    argv = list(words)
    for name, missing in MISSING.items():
        if name in names and name != option:
            missing = str(out) if missing == "OUT" else missing
            argv += [missing] if names[name].metadata.get("positional") else [f"--{name.replace('_', '-')}", missing]
    if words == ("train",):
        argv += ["--no-perceptual"]
    return [*argv, f"--{option.replace('_', '-')}", value]


@pytest.mark.parametrize(("words", "option", "value"), _cases(), ids=lambda v: str(v))
def test_bad_numbers_are_one_line_errors(words, option, value, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("BLINDBENCH_DATA", str(tmp_path / "data"))
    try:
        code = main(_argv(words, option, value, tmp_path / "out"))
    except SystemExit as exc:  # argparse: a value of the wrong type
        code = exc.code
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in err, err
