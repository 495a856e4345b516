"""Tests for blindbench.runtime: the `blindbench` command starts under tcmalloc, and that stops the page faults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from blindbench import runtime
from blindbench.allocator import ALLOCATOR_ENV, active_allocator, find_tcmalloc

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD and /proc: Linux only")

COMMAND = Path(sys.executable).with_name("blindbench")  # the console script `pip install -e .` made

# Allocates, touches and frees a 64 MiB tensor 3 times, then 5 more times, and prints the page faults of those 5.
_PROBE = """
import resource, torch
def touch():
    t = torch.empty(16 * 2**20)
    t.fill_(1.0)
    del t
for _ in range(3):
    touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    touch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", ALLOCATOR_ENV, "_BLINDBENCH_REEXECUTED")}
    return {**env, **extra}


def _run(args: list[str], cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=_env(**env), cwd=cwd, capture_output=True, text=True, timeout=120)


def test_tcmalloc_is_installed():
    assert find_tcmalloc() is not None, "libtcmalloc-minimal4 is missing: run `make test` (it installs it)"


def test_command_starts_under_tcmalloc_unless_told_not_to(tmp_path):
    out = _run([str(COMMAND), "--version"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("blindbench ") and "allocator tcmalloc" in out.stdout
    assert "allocator system" in _run([str(COMMAND), "--version"], **{ALLOCATOR_ENV: "system"}).stdout
    assert active_allocator() == "system"  # this pytest process was not started through the command


def test_reexecuted_command_keeps_exit_codes_and_one_line_errors():
    out = _run([str(COMMAND), "eval", "--model", "no-such-model"])
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert out.stderr.startswith("blindbench: error: unknown model 'no-such-model'")


def test_working_directory_does_not_shadow_modules(tmp_path):
    """The re-executed interpreter must not import a stray numba.py from where the user stands."""
    (tmp_path / "numba.py").write_text("raise SystemExit('shadowed')\n")
    out = _run([str(COMMAND), "--version"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "allocator tcmalloc" in out.stdout


def test_tcmalloc_reuses_freed_buffers_where_glibc_faults_them_in_again():
    library = find_tcmalloc()
    system = int(_run([sys.executable, "-c", _PROBE]).stdout)
    tcmalloc = int(_run([sys.executable, "-c", _PROBE], LD_PRELOAD=library).stdout)
    assert tcmalloc * 10 < system, (tcmalloc, system)  # measured: 0 against 81,925 (5 x 16,384 pages)


def test_bad_allocator_setting_is_a_one_line_error():
    out = _run([str(COMMAND), "--version"], **{ALLOCATOR_ENV: "glibc"})
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == f"blindbench: error: {ALLOCATOR_ENV} must be 'tcmalloc' or 'system'; got 'glibc'\n"


def test_reexecution_repeats_the_original_command_line(monkeypatch):
    """Started as a script: the script again (the process keeps its name); with interpreter flags: all of them."""
    script = str(COMMAND)
    monkeypatch.setattr(sys, "argv", [script, "eval", "--limit", "2"])
    monkeypatch.setattr(sys, "orig_argv", [sys.executable, script, "eval", "--limit", "2"])
    assert runtime._command_line() == (script, [script, "eval", "--limit", "2"])
    flagged = [sys.executable, "-X", "dev", "-W", "error", script, "eval", "--limit", "2"]
    monkeypatch.setattr(sys, "orig_argv", flagged)
    assert runtime._command_line() == (sys.executable, flagged)


def test_allocator_is_read_from_library_names_not_any_path(tmp_path):
    import mmap

    decoy = tmp_path / "my-tcmalloc-notes.bin"
    decoy.write_bytes(b"\0" * 4096)
    with open(decoy, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ):
        assert "my-tcmalloc-notes.bin" in Path("/proc/self/maps").read_text()
        assert active_allocator() == "system"


def test_cli_and_runtime_import_no_circle():
    """The CLI reads the allocator from blindbench.allocator; runtime imports the CLI only to run it."""
    probe = ("import sys, blindbench.cli; print('blindbench.runtime' in sys.modules); "
             "import blindbench.allocator as a, blindbench.runtime as r; "
             "print(r.active_allocator is a.active_allocator)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]
