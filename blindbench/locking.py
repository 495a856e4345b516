"""One writer per output folder: an advisory lock that a second ``generate``/``eval``/``train``/``inpaint`` into the
same folder meets as a one-line error instead of interleaving its files with the first one's.

The lock is ``flock`` on ``<folder>/.blindbench.lock``, removed when the block ends. The kernel releases a
flock when its process dies, so a killed run leaves at most an unlocked file, which the next run takes over.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from blindbench.errors import BlindbenchError

try:
    import fcntl
except ImportError:  # not POSIX: no locking (documented limitation)
    fcntl = None

LOCK_NAME = ".blindbench.lock"


@contextmanager
def exclusive_folder(folder: str | os.PathLike[str], what: str, wait: bool = False) -> Iterator[Path]:
    """Hold the folder's lock for the block; another holder makes this a one-line `BlindbenchError`.

    Args:
        folder: the output folder (created if missing).
        what: the command, for the message (``generate``, ``eval``, ...).
        wait: block until another holder is done instead of failing (for work that is resumable, such as two
            trainings that both generate their missing validation set).
    """
    folder = Path(folder)
    path = folder / LOCK_NAME
    while True:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise BlindbenchError(f"output folder not writable: {folder} ({exc.strerror})") from None
        if fcntl is None:
            break
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise BlindbenchError(f"{folder} is in use by another blindbench {what} (pid {holder}): wait for it "
                                  f"to finish or choose another folder") from None  # fmt: skip
        try:  # the holder before us may have removed the file after we opened it: lock the file on disk
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield folder
    finally:
        with suppress(OSError):
            path.unlink(missing_ok=True)  # while still holding the lock, so no one else holds this file
        os.close(fd)  # closing releases the flock
