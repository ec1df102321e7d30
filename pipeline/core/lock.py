"""One writer at a time per output folder, and only in a folder that is ours.

An advisory `flock` on `OUTPUT/.lock`: the kernel releases it when the holder dies, so a
lock left by a killed run never blocks the next one. The lock file says who holds it
(`run`, `watch`, `rollback`; pid; since when), so a refused command can say so. The lock is
re-entrant within a process: the command line takes it before anything slow starts (the
Prefect server, imports), and the flow it then runs, or each batch of a watcher, finds it
already held.

This module imports nothing but the standard library: it runs before anything else.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# Marks a folder as an output of this pipeline; a non-empty folder without it is not ours.
MARKER = ".news-pipeline"
MARKER_TEXT = "This folder is managed by news-pipeline (python -m pipeline). Do not keep other files here.\n"
# A folder written by a release from before the marker: it has our run log.
_LEGACY_SIGNS = ("state/runs.parquet", "state/manifest.parquet")


class OutputLocked(Exception):
    """Another process holds the output folder."""


class NotOurFolder(Exception):
    """The output folder holds files this pipeline did not make."""


_held: dict[str, tuple[int, int]] = {}  # lock path -> (descriptor, depth) held by this process


def claim_output(root: Path) -> None:
    """Make sure `root` is an output folder of ours: create it (or adopt it when empty) and
    mark it; refuse a folder that holds anything else, so that no run overwrites or deletes a
    file it did not make."""
    if root.exists() and not root.is_dir():
        raise NotOurFolder(f"the output {root} is a file, not a folder")
    marker = root / MARKER
    if marker.is_file() and not marker.is_symlink():
        return
    if root.is_dir():
        entries = sorted(p.name for p in root.iterdir())
        legacy = any((root / sign).is_file() for sign in _LEGACY_SIGNS)
        if entries and not legacy:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise NotOurFolder(
                f"the output folder {root} is not empty and was not made by this pipeline "
                f"(it holds {shown}); choose a new or empty folder"
            )
    root.mkdir(parents=True, exist_ok=True)
    if marker.is_symlink():
        marker.unlink()
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(MARKER_TEXT)


def is_ours(root: Path) -> bool:
    marker = root / MARKER
    return marker.is_file() and not marker.is_symlink()


def _open_lock(path: Path) -> int:
    """The lock file's descriptor; a symbolic link planted in its place is replaced, never
    followed (it would truncate whatever it points at)."""
    for _ in range(3):
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            path.unlink(missing_ok=True)
    raise OSError(errno.ELOOP, "the lock file keeps being replaced by a link", str(path))


def holder(path: Path) -> dict:
    """Who holds (or last held) the lock: {"pid", "command", "since"}; {} if unknown."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except OSError:
        return {}
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    finally:
        os.close(fd)
    try:
        value = json.loads(text)
    except ValueError:
        return {"pid": text} if text else {}
    return value if isinstance(value, dict) else {}


def _refusal(path: Path, command: str) -> str:
    info = holder(path)
    pid = info.get("pid", "unknown")
    since = f", since {info['since']}" if info.get("since") else ""
    if info.get("command") == "watch":
        return f"a watcher holds the output {path.parent} (pid {pid}{since}); stop it first"
    return f"a run is in progress on {path.parent} (pid {pid}{since}); use --wait to wait for it"


@contextmanager
def output_lock(path: Path, wait: bool = False, command: str = "run") -> Iterator[None]:
    """Hold the output's lock for the block (at once, or after waiting with `wait`)."""
    key = os.path.abspath(path)
    if key in _held:
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _held[key]
            _held[key] = (fd, depth - 1)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _open_lock(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise OutputLocked(_refusal(path, command)) from None
        since = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": command, "since": since}).encode(), 0)
        _held[key] = (fd, 1)
        try:
            yield
        finally:
            del _held[key]
    finally:
        os.close(fd)


def held_here(path: Path) -> bool:
    """Whether this process holds the lock at `path`."""
    return os.path.abspath(path) in _held
