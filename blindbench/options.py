"""What every command's config shares: a field with its CLI help, TOML text of resolved values, the device."""

from __future__ import annotations

import json
from dataclasses import field
from typing import Any

DEVICES = ("auto", "cpu", "cuda")


def option(default: Any, help: str, **extra: Any) -> Any:  # noqa: A002 - mirrors argparse
    """A dataclass field whose metadata the CLI turns into a flag.

    Args:
        default: the field's default (immutable: configs are frozen).
        help: the flag's help text.
        **extra: ``choices``, ``positional=True`` (a positional argument), ``short="-o"`` (an alias).
    """
    return field(default=default, metadata={"help": help, **extra})


def toml_value(value: Any) -> str:
    """A TOML literal for a resolved config value (bools, numbers, strings, lists of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def select_device(name: str):
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is a one-line error.

    Only the CLI layer picks a device; library code follows its inputs.
    """
    import torch

    from blindbench.errors import BlindbenchError, ConfigError

    if name not in DEVICES:
        raise ConfigError(f"device {name!r} is not one of {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise BlindbenchError("--device cuda: no CUDA device is available")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def comma_list(text: str) -> list[str]:
    """``"a, b,,c"`` → ``["a", "b", "c"]``: the items of a comma-separated option, blanks dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]
