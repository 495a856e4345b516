"""User-facing errors: one line, naming the file or value at fault."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BlindbenchError(Exception):
    """An error caused by user input (a path, a value, a file's contents).

    The CLI prints it as a single line and exits non-zero; library callers can catch it.
    """


class ImageReadError(BlindbenchError):
    """An image file is missing, unreadable or unusable."""


class ConfigError(BlindbenchError, ValueError):
    """A manifest, config file or option holds an unknown key or a bad value (also a ValueError, for library
    callers that catch bad arguments as such)."""


class ShardError(BlindbenchError):
    """A shard is missing, truncated, altered or does not match its lock."""


class TrainingStopped(BlindbenchError):
    """A training run stopped on SIGINT or SIGTERM after saving a checkpoint it can be resumed from.

    Attributes:
        exit_code: the shell's code for that signal (130 for SIGINT, 143 for SIGTERM), which the CLI returns.
    """

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def did_you_mean(value: object, known: Iterable[str], list_all: bool = True) -> str:
    """The hint that ends an "unknown X" message: ``; did you mean 'y'?``, else ``; known: a, b`` (or nothing).

    The one place such hints are built, so every unknown name reads alike.
    """
    known = sorted(map(str, known))
    close = difflib.get_close_matches(str(value), known, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known: {', '.join(known)}" if list_all and known else ""


def unknown(kind: str, value: object, known: Iterable[str]) -> ConfigError:
    """``ConfigError("unknown <kind> 'value'; did you mean ...")``."""
    return ConfigError(f"unknown {kind} {value!r}{did_you_mean(value, known)}")
