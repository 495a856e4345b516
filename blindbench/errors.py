"""User-facing errors: one line, naming the file or value at fault."""

from __future__ import annotations


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
