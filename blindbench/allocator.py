"""Which memory allocator this process runs on, and where tcmalloc is: the probe behind ``--version`` and the
console command's re-execution (:mod:`blindbench.runtime`). Standard library only."""

from __future__ import annotations

import ctypes.util
import sys

__all__ = ["ALLOCATOR_ENV", "active_allocator", "find_tcmalloc"]

ALLOCATOR_ENV = "BLINDBENCH_ALLOCATOR"  # "system" keeps glibc malloc
_LIBRARIES = ("tcmalloc_minimal", "tcmalloc")


def find_tcmalloc() -> str | None:
    """The tcmalloc library the dynamic linker would load (a name such as ``libtcmalloc_minimal.so.4``), or None."""
    if not sys.platform.startswith("linux"):
        return None
    for name in _LIBRARIES:
        found = ctypes.util.find_library(name)
        if found:
            return found
    return None


def active_allocator() -> str:
    """``"tcmalloc"`` when a tcmalloc library is mapped into this process, else ``"system"``."""
    try:
        with open("/proc/self/maps") as maps:
            names = {line.rsplit("/", 1)[1].strip() for line in maps if "/" in line}  # the mapped files' names
    except OSError:
        return "system"
    return "tcmalloc" if any(name.startswith("libtcmalloc") for name in names) else "system"
