"""An exclusive lock on a file, held by one process until released or until it dies.

The SQLite backend keeps recently used documents in memory, which is only right while
one process uses the database file; the lock makes a second one fail at start with a
message instead of working on stale data. It is an advisory ``flock``: the kernel
drops it when the process ends, even by kill -9, so a crash never leaves it behind.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from opscore.errors import StorageUnavailableError

if sys.platform != "win32":
    import fcntl

__all__ = ["ProcessLock"]


class ProcessLock:
    """``acquire()`` the lock on ``path`` (created if needed), ``release()`` it."""

    def __init__(self, path: Path, *, what: str) -> None:
        self.path = path
        self._what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock; StorageUnavailableError naming the holder if it is taken."""
        if self._fd is not None or sys.platform == "win32":
            return  # Windows: no flock; one process per file is then up to the user
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # The holder's pid, for the message another process gets.
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StorageUnavailableError(
                f"{self._what} is in use by another process{holder}; it serves one "
                "process at a time (use Redis storage to run several)"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the lock


def _read_holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f" (pid {int(os.pread(fd, 32, 0).decode().strip())})"
    return ""
