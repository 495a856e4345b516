"""Tests for blindbench.runtime: the malloc setting really stops large buffers being faulted in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

from blindbench.runtime import MALLOC_TUNING_ENV, keep_freed_memory

# Allocates, touches and frees a 64 MiB tensor, then does it again and prints the page faults of the second time.
_PROBE = """
import resource, sys, torch
from blindbench.runtime import keep_freed_memory
applied = keep_freed_memory()
def touch():
    t = torch.empty(16 * 2**20)
    t.fill_(1.0)
    del t
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch()
print(int(applied), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(env_value: str) -> tuple[bool, int]:
    env = {"PATH": "/usr/bin:/bin", MALLOC_TUNING_ENV: env_value}
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied == "1", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_freed_memory_is_reused_without_page_faults():
    applied, faults = _probe("1")
    assert applied
    assert faults < 1000, faults  # 64 MiB is 16,384 pages: reused, not faulted in again
    applied_off, faults_off = _probe("0")
    assert not applied_off
    assert faults_off > 10_000, faults_off  # glibc's default: unmapped on free, faulted in again


def test_switch_off(monkeypatch):
    monkeypatch.setenv(MALLOC_TUNING_ENV, "0")
    assert keep_freed_memory() is False
