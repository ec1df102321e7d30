"""Find the archive's `*.md` files without following directory symlinks (no loops)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple


class InputFile(NamedTuple):
    rel_path: str  # `/`-separated, relative to the input root, always valid UTF-8 text
    os_path: str  # what to open; differs from rel_path only for undecodable names
    bad_name: bool  # the file name is not valid UTF-8
    size: int = -1  # from stat at discovery; -1 when stat failed
    mtime_ns: int = -1


class InputMissing(Exception):
    """The input folder does not exist or is not a folder."""


def discover(root: Path) -> list[InputFile]:
    """Every `*.md` file under `root`, sorted by relative path in code-point order."""
    if not root.is_dir():
        raise InputMissing(f"input folder not found: {root}")
    files = list(_walk(str(root), ""))
    files.sort(key=lambda f: f.rel_path)
    return files


def _walk(directory: str, prefix: str) -> Iterator[InputFile]:
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return  # an unreadable folder: its files cannot be listed, let alone read
    for entry in entries:
        rel = prefix + entry.name
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(entry.path, rel + "/")
                continue
        except OSError:
            continue
        if not entry.name.endswith(".md"):
            continue
        try:
            st = entry.stat()
            size, mtime_ns = st.st_size, st.st_mtime_ns
        except OSError:  # a dangling or looping symlink: reading it will say why
            size = mtime_ns = -1
        try:
            rel.encode("utf-8")
            yield InputFile(rel, entry.path, False, size, mtime_ns)
        except UnicodeEncodeError:
            shown = os.fsencode(rel).decode("utf-8", "backslashreplace")
            yield InputFile(shown, entry.path, True, size, mtime_ns)


def write_listing(files: list[InputFile], path: Path) -> None:
    """The discovered file list as Parquet: the boundary between discover and parse."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "rel_path": pa.array([f.rel_path for f in files], pa.string()),
            "os_path": pa.array([os.fsencode(f.os_path) for f in files], pa.binary()),
            "bad_name": pa.array([f.bad_name for f in files], pa.bool_()),
            "size": pa.array([f.size for f in files], pa.int64()),
            "mtime_ns": pa.array([f.mtime_ns for f in files], pa.int64()),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read_listing(path: Path) -> list[InputFile]:
    import pyarrow.parquet as pq

    cols = pq.read_table(path).to_pydict()
    return [
        InputFile(rel, os.fsdecode(raw), bad, size, mtime)
        for rel, raw, bad, size, mtime in zip(
            cols["rel_path"], cols["os_path"], cols["bad_name"], cols["size"], cols["mtime_ns"], strict=True
        )
    ]
