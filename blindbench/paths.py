"""Where blindbench keeps generated data: ``$BLINDBENCH_DATA`` or ``./data``; manifests ship with the code."""

from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    """Root of generated data (corpora, benchmark sets, runs): ``$BLINDBENCH_DATA``, default ``./data``."""
    return Path(os.environ.get("BLINDBENCH_DATA", "data"))


def corpus_dir(name: str) -> Path:
    return data_root() / "corpora" / name


def set_dir(name: str) -> Path:
    return data_root() / "sets" / name


def manifests_dir() -> Path:
    """The folder of benchmark-set definitions and locks: ``$BLINDBENCH_MANIFESTS`` or the repository's."""
    override = os.environ.get("BLINDBENCH_MANIFESTS")
    return Path(override) if override else Path(__file__).resolve().parent.parent / "manifests"
