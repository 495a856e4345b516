"""Helpers shared by several test files (import as ``from helpers import ...``; tests/ is on the path)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def matplotlib_icons() -> str:
    """A folder of RGBA icons that ships offline inside the matplotlib wheel (contaminant images with alpha)."""
    return str(Path(importlib.util.find_spec("matplotlib").submodule_search_locations[0]) / "mpl-data" / "images")
