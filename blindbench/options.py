"""The one helper behind every command's config dataclass: a field with its CLI help (and flag hints)."""

from __future__ import annotations

from dataclasses import field
from typing import Any


def option(default: Any, help: str, **extra: Any) -> Any:  # noqa: A002 - mirrors argparse
    """A dataclass field whose metadata the CLI turns into a flag.

    Args:
        default: the field's default (immutable: configs are frozen).
        help: the flag's help text.
        **extra: ``choices``, ``positional=True`` (a positional argument), ``short="-o"`` (an alias).
    """
    return field(default=default, metadata={"help": help, **extra})
