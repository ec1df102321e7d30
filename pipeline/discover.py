"""Find the archive's `*.md` files without following directory symlinks (no loops)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.locations import is_url


class InputFile(NamedTuple):
    rel_path: str  # `/`-separated, relative to the input root, always valid UTF-8 text
    os_path: str  # what to open; differs from rel_path only for undecodable names
    bad_name: bool  # the file name is not valid UTF-8
    size: int = -1  # from stat at discovery; -1 when stat failed
    mtime_ns: int = -1


class InputMissing(Exception):
    """The input folder does not exist or is not a folder."""


LISTING_SCHEMA = pa.schema(
    [
        ("rel_path", pa.string()),
        ("os_path", pa.binary()),  # only for undecodable names; otherwise the root joined with rel_path
        ("bad_name", pa.bool_()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
    ]
)
ROOT_KEY = b"root"


def discover(root: Path | str) -> list[InputFile]:
    """Every `*.md` file under `root`, sorted by relative path in code-point order."""
    return to_files(discover_table(root))


def discover_table(root: Path | str) -> pa.Table:
    """The listing as columns, sorted by relative path (UTF-8 byte order is code-point order);
    the root is in the metadata. Names are moved into Arrow every CHUNK files, so no more than
    that many exist as Python objects: a million at once left ~500 MB in the heap for the rest
    of the run. A string root is an fsspec URL (pipeline/locations.py)."""
    if isinstance(root, str):
        return _discover_url(root)
    if not root.is_dir():
        raise InputMissing(f"input folder not found: {root}")
    cols: dict[str, list] = {name: [] for name in LISTING_SCHEMA.names}
    batches: list[pa.RecordBatch] = []
    _walk(str(root), "", cols, batches)
    _flush(cols, batches)
    table = pa.Table.from_batches(batches, schema=LISTING_SCHEMA).sort_by("rel_path")
    del batches
    release_arrow_memory()
    return table.replace_schema_metadata({ROOT_KEY: os.fsencode(str(root))})


def _discover_url(url: str) -> pa.Table:
    """The listing of a remote archive through fsspec; `os_path` of each file is its URL."""
    import fsspec

    from pipeline.locations import modified_ns

    fs, path = fsspec.core.url_to_fs(url)
    if not fs.isdir(path):
        raise InputMissing(f"input folder not found: {url}")
    base = path.rstrip("/") + "/"
    cols: dict[str, list] = {name: [] for name in LISTING_SCHEMA.names}
    batches: list[pa.RecordBatch] = []
    for name, info in fs.find(path, detail=True).items():
        if info.get("type") != "file" or not name.endswith(".md") or not name.startswith(base):
            continue
        cols["rel_path"].append(name[len(base) :])
        cols["os_path"].append(None)
        cols["bad_name"].append(False)
        cols["size"].append(int(info.get("size") if info.get("size") is not None else -1))
        cols["mtime_ns"].append(modified_ns(info))
        if len(cols["rel_path"]) >= CHUNK:
            _flush(cols, batches)
    _flush(cols, batches)
    table = pa.Table.from_batches(batches, schema=LISTING_SCHEMA).sort_by("rel_path")
    return table.replace_schema_metadata({ROOT_KEY: fs.unstrip_protocol(base.rstrip("/")).encode()})


def release_arrow_memory() -> None:
    """Hand memory Arrow's allocator keeps for reuse back to the system: after a million-row
    listing it otherwise holds ~500 MB it will not need again during the run."""
    pa.default_memory_pool().release_unused()


CHUNK = 20_000


def _flush(cols: dict[str, list], batches: list[pa.RecordBatch]) -> None:
    batches.append(pa.RecordBatch.from_pydict(cols, schema=LISTING_SCHEMA))
    for values in cols.values():
        values.clear()


def _walk(directory: str, prefix: str, cols: dict[str, list], batches: list[pa.RecordBatch]) -> None:
    """Files are stat-ed relative to their folder's descriptor (`dir_fd`): the kernel then
    resolves one name instead of the whole path, which made listing 200k files ~35% faster."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return  # an unreadable folder: its files cannot be listed, let alone read
    try:
        try:
            entries = list(os.scandir(fd))
        except OSError:
            return
        rel_paths, os_paths, bad_names = cols["rel_path"], cols["os_path"], cols["bad_name"]
        sizes, mtimes = cols["size"], cols["mtime_ns"]
        for entry in entries:
            name = entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    _walk(os.path.join(directory, name), prefix + name + "/", cols, batches)
                    continue
            except OSError:
                continue
            if not name.endswith(".md"):
                continue
            try:
                st = os.stat(name, dir_fd=fd)
                sizes.append(st.st_size)
                mtimes.append(st.st_mtime_ns)
            except OSError:  # a dangling or looping symlink: reading it will say why
                sizes.append(-1)
                mtimes.append(-1)
            rel = prefix + name
            try:
                rel.encode("utf-8")
                rel_paths.append(rel)
                os_paths.append(None)
                bad_names.append(False)
            except UnicodeEncodeError:
                rel_paths.append(os.fsencode(rel).decode("utf-8", "backslashreplace"))
                os_paths.append(os.fsencode(os.path.join(directory, name)))
                bad_names.append(True)
    finally:
        os.close(fd)
    if len(cols["rel_path"]) >= CHUNK:
        _flush(cols, batches)


def to_files(table: pa.Table) -> list[InputFile]:
    """One InputFile per listed row (for the files a run actually reads)."""
    root = os.fsdecode((table.schema.metadata or {}).get(ROOT_KEY, b""))
    join = (lambda rel: f"{root}/{rel}") if is_url(root) else (lambda rel: os.path.join(root, rel))
    cols = table.select(LISTING_SCHEMA.names).to_pydict()
    return [
        InputFile(rel, os.fsdecode(raw) if raw is not None else join(rel), bad, size, mtime)
        for rel, raw, bad, size, mtime in zip(
            cols["rel_path"], cols["os_path"], cols["bad_name"], cols["size"], cols["mtime_ns"], strict=True
        )
    ]


def write_listing(table: pa.Table, path: Path) -> None:
    """The discovered listing as Parquet: the boundary between discover and parse."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read_listing(path: Path) -> pa.Table:
    return pq.read_table(path)
