"""How the ``blindbench`` command starts: under tcmalloc when the library is installed.

Why: glibc malloc serves every allocation above 32 MiB with a fresh ``mmap`` and unmaps it on free, so each
activation of a CPU forward pass is faulted in again, page by page, on every pass. ``perf stat`` on three VCN
passes (paper preset, 256², batch 8, 2 cores) counted 12.3 million page faults and as much kernel as user time.
Under tcmalloc a pass takes 3.3 s instead of 6.7 s, with the same peak memory (``benchmarks/RESULTS.md``).
Telling glibc not to unmap (``mallopt``) was as fast but let the heap grow without bound: torch allocates with
``posix_memalign``, whose requests no longer fit the holes that earlier frees leave.

The allocator must be chosen before the process starts, so the console command re-executes itself once, with the
same command line (interpreter flags, script, arguments) and tcmalloc added to ``LD_PRELOAD`` (Linux, when the
dynamic linker finds ``libtcmalloc_minimal``; ``make`` installs it). The PID stays the same, so signals, exit codes
and launchers such as torchrun are unaffected. This module imports nothing heavy: the extra start costs a few
milliseconds (the probe is :mod:`blindbench.allocator`). ``BLINDBENCH_ALLOCATOR=system`` keeps glibc
malloc; from Python, start the interpreter with ``LD_PRELOAD=libtcmalloc_minimal.so.4`` yourself.
"""

from __future__ import annotations

import contextlib
import os
import sys

from blindbench.allocator import ALLOCATOR_ENV, active_allocator, find_tcmalloc

__all__ = ["ALLOCATOR_ENV", "active_allocator", "find_tcmalloc", "main"]

_REEXEC_ENV = "_BLINDBENCH_REEXECUTED"  # set on the re-executed process: never re-execute twice


def _allocator_wanted() -> str:
    value = os.environ.get(ALLOCATOR_ENV, "tcmalloc").strip().lower() or "tcmalloc"
    if value not in ("tcmalloc", "system"):
        sys.stderr.write(f"blindbench: error: {ALLOCATOR_ENV} must be 'tcmalloc' or 'system'; got {value!r}\n")
        sys.exit(2)
    return value


def _command_line() -> tuple[str, list[str]]:
    """The executable and argv that start this very command again: the script itself when it was started as
    one (so the process keeps its name), else the interpreter with its original flags and arguments."""
    script = sys.argv[0]
    if sys.orig_argv[1:2] == [script] and os.path.isfile(script) and os.access(script, os.X_OK):
        return script, [script, *sys.argv[1:]]
    return sys.executable, list(sys.orig_argv)


def main() -> None:
    """Console entry point: re-execute once under tcmalloc when possible, then run :func:`blindbench.cli.main`."""
    reexecuted = os.environ.pop(_REEXEC_ENV, None) is not None  # popped: commands this one starts may re-execute
    if _allocator_wanted() == "tcmalloc" and not reexecuted and active_allocator() != "tcmalloc":
        library = find_tcmalloc()
        if library is not None:
            env = dict(os.environ)
            env["LD_PRELOAD"] = ":".join(filter(None, (env.get("LD_PRELOAD", ""), library)))
            env[_REEXEC_ENV] = "1"
            executable, argv = _command_line()
            with contextlib.suppress(OSError):  # cannot re-execute: run as is, on the system allocator
                os.execve(executable, argv, env)
    from blindbench.cli import main as cli_main

    sys.exit(cli_main())
