"""How the ``blindbench`` command starts: under tcmalloc when the library is installed.

Why: glibc malloc serves every allocation above 32 MiB with a fresh ``mmap`` and unmaps it on free, so each
activation of a CPU forward pass is faulted in again, page by page, on every pass. ``perf stat`` on three VCN
passes (paper preset, 256², batch 8, 2 cores) counted 12.3 million page faults and as much kernel as user time.
Under tcmalloc a pass takes 3.3 s instead of 6.7 s, with the same peak memory (``benchmarks/RESULTS.md``).
Telling glibc not to unmap (``mallopt``) was as fast but let the heap grow without bound: torch allocates with
``posix_memalign``, whose requests no longer fit the holes that earlier frees leave.

The allocator must be chosen before the process starts, so the console command re-executes itself once with
tcmalloc in ``LD_PRELOAD`` (Linux, when the dynamic linker finds ``libtcmalloc_minimal``; ``make`` installs it).
This module imports nothing heavy, so the extra start costs a few milliseconds. ``BLINDBENCH_ALLOCATOR=system``
keeps glibc malloc; from Python, start the interpreter with ``LD_PRELOAD=libtcmalloc_minimal.so.4`` yourself.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import os
import sys

__all__ = ["ALLOCATOR_ENV", "active_allocator", "find_tcmalloc", "main"]

ALLOCATOR_ENV = "BLINDBENCH_ALLOCATOR"  # "system" keeps glibc malloc
_REEXEC_ENV = "_BLINDBENCH_REEXECUTED"  # set on the re-executed process: never re-execute twice
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
    """``"tcmalloc"`` when tcmalloc is mapped into this process, else ``"system"``."""
    try:
        with open("/proc/self/maps") as maps:
            return "tcmalloc" if "tcmalloc" in maps.read() else "system"
    except OSError:
        return "system"


def main() -> None:
    """Console entry point: re-execute once under tcmalloc when possible, then run :func:`blindbench.cli.main`."""
    wanted = os.environ.get(ALLOCATOR_ENV, "tcmalloc") != "system"
    if wanted and _REEXEC_ENV not in os.environ and active_allocator() != "tcmalloc":
        library = find_tcmalloc()
        if library is not None:
            env = dict(os.environ)
            env["LD_PRELOAD"] = ":".join(filter(None, (env.get("LD_PRELOAD", ""), library)))
            env[_REEXEC_ENV] = "1"
            # -P: the working directory must not shadow installed modules, as it cannot for a console script
            args = [sys.executable, "-P", "-c", "from blindbench.runtime import main; main()", *sys.argv[1:]]
            with contextlib.suppress(OSError):  # cannot re-execute: run as is, on the system allocator
                os.execve(sys.executable, args, env)
    from blindbench.cli import main as cli_main

    sys.exit(cli_main())
