"""What every command's config shares: a field with its CLI help, the ``--config`` TOML reader, the one writer of
resolved configs, the device.

Light on purpose (standard library only at import): the CLI builds every command's flags from the config
dataclasses, so ``blindbench CMD --help`` never loads torch, pandas or OpenCV.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import typing
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path
from typing import Any

from blindbench.errors import BlindbenchError, ConfigError, did_you_mean

DEVICES = ("auto", "cpu", "cuda")


def option(default: Any, help: str, **extra: Any) -> Any:  # noqa: A002 - mirrors argparse
    """A dataclass field whose metadata the CLI turns into a flag.

    Args:
        default: the field's default (immutable: configs are frozen).
        help: the flag's help text.
        **extra: ``choices``, ``positional=True`` (a positional argument), ``short="-o"`` (an alias).
    """
    return field(default=default, metadata={"help": help, **extra})


# The options several commands share: one default (and choices) per option, the help text the commands' own where
# it says more about what the option does there.


def set_option(help: str = "set name or manifest path") -> Any:  # noqa: A002
    """``--set``: a benchmark set (``photos-demo`` unless given), as ``blindbench.sets.load_set`` takes it."""
    return option("photos-demo", help)


def device_option(help: str = "auto, cpu or cuda") -> Any:  # noqa: A002
    """``--device``: ``auto`` unless given, resolved by :func:`select_device`."""
    return option("auto", help, choices=DEVICES)


def preset_option() -> Any:
    """``--preset``: the model preset, ``paper`` (the paper's sizes) or ``tiny`` (CPU tests)."""
    return option("paper", "paper or tiny", choices=("paper", "tiny"))


def workers_option(help: str = "parallel workers (-1: all cores)") -> Any:  # noqa: A002
    """``--workers`` of the joblib stages; the config checks it with :func:`check_workers` (not train's DataLoader
    workers, where 0 loads in the main process)."""
    return option(-1, help)


def progress_option(help: str = "show a progress bar") -> Any:  # noqa: A002
    """``--progress``/``--no-progress``: on unless turned off."""
    return option(True, help)


def eager_option() -> Any:
    """``--eager``: the CPU switch that keeps a model's forward uncompiled, beside a command's ``compile_min``."""
    return option(False, "CPU: never compile the model (see --compile-min)")


def check_workers(workers: int) -> None:
    """``--workers``: -1 (all cores) or 1 to 1024; else a one-line error."""
    if workers == 0 or workers < -1 or workers > 1024:
        raise BlindbenchError(f"--workers must be -1 (all cores) or in [1, 1024], got {workers}")


def toml_value(value: Any) -> str:
    """A TOML literal for a resolved config value (bools, numbers, strings, lists of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def resolved_toml(
    cfg: Any,
    command: str,
    notes: Sequence[str] = (),
    table: str | None = None,
    records: dict[str, dict[str, Any]] | None = None,
) -> str:
    """The text of a resolved config: every field of the frozen dataclass ``cfg`` as TOML, which ``--config``
    reads back. The one writer of ``config.toml`` (train), ``eval.toml`` and ``inpaint.toml``.

    Args:
        cfg: a command's config dataclass, as the run used it.
        command: the command's name, for the header comment.
        notes: lines written as comments after the header (facts about the run, not options).
        table: put the options under ``[table]`` instead of at the top level.
        records: further tables of facts (e.g. ``identity``), written after the options.
    """
    lines = [f"# resolved blindbench {command} config", *(f"# {note}" for note in notes)]
    lines += [f"[{table}]"] if table else []
    lines += [f"{k} = {toml_value(v)}" for k, v in dataclasses.asdict(cfg).items()]
    for name, values in (records or {}).items():
        lines += ["", f"[{name}]", *(f"{k} = {toml_value(v)}" for k, v in values.items())]
    return "\n".join(lines) + "\n"


def _typed(value: Any, kind: Any) -> tuple[bool, Any]:
    """(fits, value as the field holds it) for a TOML value and a config field's type."""
    if kind is bool:
        return isinstance(value, bool), value
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind is float:
        fits = isinstance(value, int | float) and not isinstance(value, bool)
        return fits, float(value) if fits else value
    if kind is str:
        return isinstance(value, str), value
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        items = [_typed(v, item) for v in value] if isinstance(value, list) else [(False, None)]
        return all(ok for ok, _ in items), tuple(v for _, v in items)
    return True, value


def _type_name(kind: Any) -> str:
    return f"a list of {typing.get_args(kind)[0].__name__}" if typing.get_origin(kind) is tuple else kind.__name__


def read_config_file(path: str | os.PathLike[str], config: type, command: str) -> dict[str, Any]:
    """The options a TOML file sets for a command, checked against its config dataclass (``--config FILE``).

    The file holds flat keys named as the fields (``per_pattern = 2``). A resolved file whose options sit under
    ``[config]`` (``eval.toml``) is read from that table; its other tables (``[identity]``) are records and are
    skipped. A missing or malformed file, an unknown key (with a "did you mean"), a value of the wrong type and a
    value outside the field's choices are one-line :class:`~blindbench.errors.ConfigError`.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{command} config not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"bad {command} config {path}: {' '.join(str(exc).split())}") from None
    fields = {f.name: f for f in dataclasses.fields(config)}
    if isinstance(data.get("config"), dict) and "config" not in fields:
        data = data["config"]
    hints = typing.get_type_hints(config)
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"unknown {command} option {key!r} in {path}{did_you_mean(key, fields, list_all=False)}")
        fits, values[key] = _typed(value, hints[key])
        if not fits:
            raise ConfigError(f"{command} option {key} in {path}: expected {_type_name(hints[key])}, got {value!r}")
        choices = fields[key].metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{command} option {key} in {path}: {value!r} is not one of {', '.join(choices)}")
    return values


def select_device(name: str):
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is a one-line error.

    Only the CLI layer picks a device; library code follows its inputs.
    """
    import torch

    if name not in DEVICES:
        raise ConfigError(f"device {name!r} is not one of {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise BlindbenchError("--device cuda: no CUDA device is available")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def comma_list(text: str) -> list[str]:
    """``"a, b,,c"`` → ``["a", "b", "c"]``: the items of a comma-separated option, blanks dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]
