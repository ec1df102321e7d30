"""One run at a time per output folder.

An advisory `flock` on `OUTPUT/.lock`: the kernel releases it when the holder
dies, so a lock left by a killed run never blocks the next one.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class OutputLocked(Exception):
    """Another run holds the output folder."""


@contextmanager
def output_lock(path: Path, wait: bool = False) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            raise OutputLocked(
                f"a run is in progress on {path.parent} (pid {holder}); use --wait to wait for it"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
