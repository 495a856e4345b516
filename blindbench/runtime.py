"""Process-wide tuning for CPU work, applied once by the CLI before a command runs."""

from __future__ import annotations

import ctypes
import os
import platform
import sys

__all__ = ["MALLOC_TUNING_ENV", "keep_freed_memory"]

MALLOC_TUNING_ENV = "BLINDBENCH_MALLOC_TUNING"  # "0" leaves glibc malloc as it is
_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the OS (Linux/glibc only).

    glibc serves every allocation above 32 MiB with a fresh mmap and unmaps it on free, so each activation of a
    CPU forward pass is faulted in page by page again. Measured for the VCN paper preset at 256², batch 8, on 2
    cores: 12 million page faults for three passes and half the CPU time in the kernel; with mmap off and trimming
    off a pass takes 3.5 s instead of 6.7 s, for a peak RSS of 2.0 GB instead of 1.3 GB (freed memory stays
    with the process until it exits). ``BLINDBENCH_MALLOC_TUNING=0`` turns this off.

    Returns:
        Whether the setting was applied.
    """
    if os.environ.get(MALLOC_TUNING_ENV, "1") == "0":
        return False
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the libc this process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
