"""Find the archive's `*.md` files (without following directory symlinks: no loops) as an
Arrow listing, the boundary between discover and parse."""

from __future__ import annotations

import json
import os
import stat as stat_module
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather

from pipeline.core.arrow import among
from pipeline.core.locations import is_url
from pipeline.core.storage import atomic_path
from pipeline.extract import walk


class InputFile(NamedTuple):
    rel_path: str  # `/`-separated, relative to the input root, always valid UTF-8 text
    os_path: str  # what to open; differs from rel_path only for undecodable names
    bad_name: bool  # the file name is not valid UTF-8
    size: int = -1  # from stat at discovery; -1 when stat failed
    mtime_ns: int = -1
    root: str = ""  # the input root: a symbolic link is followed only to a file inside it


class InputMissing(Exception):
    """The input folder does not exist or is not a folder."""


class InputUnlistable(Exception):
    """Part of the input could not be listed: publishing would silently drop its files."""

    def __init__(self, root: Path, errors: list[tuple[str, str]]) -> None:
        self.errors = sorted(errors)
        first, reason = self.errors[0]
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        super().__init__(
            f"cannot list input folder {root / first if first != '.' else root}: {reason}{more}; "
            "nothing published"
        )


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


def discover_table(root: Path | str, helper_after: int = 10_000) -> pa.Table:
    """The listing as columns, sorted by relative path (UTF-8 byte order is code-point order);
    the root is in the metadata. A string root is an fsspec URL (pipeline/locations.py).

    Once `helper_after` files are listed and folders remain, every other remaining folder
    goes to a second process (pipeline/walk.py): listing the 1M-file benchmark archive took
    2.7 s instead of 3.9 s, the 200k one 0.65-0.71 s instead of 0.85 s (the helper's start and
    the hand-over cost ~0.15 s). A listing is never short: if the helper cannot start or
    dies, its folders are listed here."""
    if isinstance(root, str):
        return _discover_url(root)
    if not root.is_dir():
        raise InputMissing(f"input folder not found: {root}")
    chunks: list[walk.Chunk] = []
    pending: list[walk.Folder] = [(str(root), "")]
    walk.walk(pending, chunks, stop_after=helper_after)
    helper = _Helper(pending[0::2]) if len(pending) > 1 else None
    if helper is not None:
        pending = pending[1::2]
    walk.walk(pending, chunks)
    if helper is not None:
        chunks.extend(helper.result())
    errors = [error for chunk in chunks for error in chunk.errors]
    if errors:
        raise InputUnlistable(root, errors)
    table = pa.Table.from_batches([_batch(c) for c in chunks], schema=LISTING_SCHEMA).sort_by("rel_path")
    del chunks
    release_arrow_memory()
    return table.replace_schema_metadata({ROOT_KEY: os.fsencode(str(root))})


class BadChangedPath(ValueError):
    """A reported changed path that is not a relative path inside the input."""


class ListingDelta(NamedTuple):
    """What reported changed paths change in a listing: the rows of the files found at or
    under them (`fresh`, LISTING_SCHEMA, unsorted), and which known rows they replace: those
    at the paths `replaced` or under the folders `prefixes` (each ending in `/`)."""

    fresh: pa.Table
    replaced: list[str]
    prefixes: list[str]

    def unlisted(self, known: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
        """Which of the `known` relative paths the delta replaces (a boolean mask): for a file
        or two, a few ms at a million, where a new listing took 0.7 s."""
        mask = among(known, pa.array(sorted(self.replaced), pa.string()))
        for prefix in self.prefixes:
            mask = pc.or_(mask, pc.starts_with(known, prefix))
        return mask

    def to_table(self, root: Path) -> pa.Table:
        """The delta as a listing file's table: its fresh rows, what they replace in metadata."""
        replaces = json.dumps({"replaced": sorted(self.replaced), "prefixes": self.prefixes})
        return self.fresh.replace_schema_metadata(
            {ROOT_KEY: os.fsencode(str(root)), DELTA_KEY: replaces.encode("utf-8")}
        )

    @classmethod
    def of(cls, table: pa.Table) -> ListingDelta | None:
        """The delta a listing file holds; None for a whole listing."""
        meta = (table.schema.metadata or {}).get(DELTA_KEY)
        if meta is None:
            return None
        replaces = json.loads(meta)
        return cls(table.replace_schema_metadata(None), replaces["replaced"], replaces["prefixes"])


# Metadata of a listing file that holds a delta (the rows of the changed paths alone).
DELTA_KEY = b"delta"


def listing_delta(root: Path, changed: Sequence[str]) -> ListingDelta:
    """Look at the `changed` paths again, without walking the archive. Each (relative to
    `root`, `/`-separated, as a watcher or a mirroring tool reports it: a file or a folder,
    created, modified, moved or removed) is looked at: a file is stat-ed; a folder is walked,
    and its files replace every known file under it; a path that no longer exists removes
    what was known at it or under it."""
    replaced: set[str] = set()
    prefixes: list[str] = []
    chunks: list[walk.Chunk] = []
    single = walk.Chunk()
    found: dict[str, tuple[bytes, os.stat_result | None]] = {}
    for rel in sorted(set(changed)):
        absolute = rel.startswith("/")
        rel = rel.rstrip("/")
        parts = rel.split("/")
        if not rel or absolute or any(p in ("", ".", "..") for p in parts):
            raise BadChangedPath(f"not a relative path inside the input: {rel!r}")
        os_path = os.path.join(os.fsencode(root), walk.unescape(rel))
        try:
            found[rel] = (os_path, os.lstat(os_path))
        except FileNotFoundError:
            found[rel] = (os_path, None)
    # A path inside a reported folder is covered by walking that folder (a new folder's own
    # files and subfolders come with it as events too).
    folders = sorted(
        rel for rel, (_, st) in found.items() if st is not None and stat_module.S_ISDIR(st.st_mode)
    )
    gone = [rel for rel, (_, st) in found.items() if st is None]
    covering = [f + "/" for f in folders + gone]
    for rel, (os_path, st) in sorted(found.items()):
        if any(rel.startswith(prefix) for prefix in covering):
            continue
        if st is None:  # gone: whatever was known at it or under it
            replaced.add(rel)
            prefixes.append(rel + "/")
            continue
        if stat_module.S_ISDIR(st.st_mode):
            prefixes.append(rel + "/")
            walk.walk([(os.fsdecode(os_path), rel + "/")], chunks)
            continue
        replaced.add(rel)
        if not rel.endswith(".md"):
            continue
        try:
            followed = os.stat(os_path)
            size, mtime = followed.st_size, followed.st_mtime_ns
        except OSError:
            size = mtime = -1
        single.sizes.append(size)
        single.mtimes.append(mtime)
        text, bad = walk.escape(os.fsdecode(walk.unescape(rel)))
        if text != rel or bad:
            single.odd.append((len(single.sizes) - 1, os_path, bad))
        single.data += text.encode("utf-8")
        single.offsets.append(len(single.data))
    errors = [error for chunk in chunks for error in chunk.errors]
    if errors:
        raise InputUnlistable(root, errors)
    fresh = [_batch(c) for c in (*chunks, single) if len(c)]
    return ListingDelta(pa.Table.from_batches(fresh, schema=LISTING_SCHEMA), sorted(replaced), prefixes)


def known_rows(root: Path, known: pa.Table) -> pa.Table:
    """Listing rows for `known` files (rel_path, size, mtime_ns: the incremental manifest's)."""
    return pa.table(
        {
            "rel_path": known["rel_path"],
            **dict(zip(("os_path", "bad_name"), _escaped_names(root, known["rel_path"]), strict=True)),
            "size": known["size"],
            "mtime_ns": known["mtime_ns"],
        },
        schema=LISTING_SCHEMA,
    )


def update_listing(root: Path, known: pa.Table, changed: Sequence[str]) -> pa.Table:
    """The listing after the `changed` paths (see `listing_delta`), without walking the
    archive: `known` is the previous listing (rel_path, size, mtime_ns: the incremental
    manifest's files). The result equals a full listing when the reported paths cover every
    change."""
    return apply_delta(root, known, listing_delta(root, changed))


def apply_delta(root: Path, known: pa.Table, delta: ListingDelta) -> pa.Table:
    """The whole listing: the `known` rows the delta does not replace, and its fresh ones."""
    kept = known.filter(pc.invert(delta.unlisted(known["rel_path"])))
    table = pa.concat_tables([known_rows(root, kept), delta.fresh])
    return table.sort_by("rel_path").replace_schema_metadata({ROOT_KEY: os.fsencode(str(root))})


def _escaped_names(root: Path, rel_paths: pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """For known rows: the raw path of each escaped name (NULL for plain ones; opened as the
    root joined with it) and whether the name is not UTF-8. Only rows with a backslash leave
    Arrow: at a million plain names this is one substring scan (0.2 s)."""
    odd = pc.match_substring(rel_paths, "\\")
    if not pc.any(odd).as_py():
        none = pa.Array.from_buffers(
            pa.bool_(), len(rel_paths), [None, pa.py_buffer(bytes(len(rel_paths) // 8 + 1))]
        )
        return pa.nulls(len(rel_paths), pa.binary()), none
    base = os.fsencode(root)
    paths: list[bytes | None] = []
    bad: list[bool] = []
    for value, escaped in zip(rel_paths.to_pylist(), odd.to_pylist(), strict=True):
        if not escaped:
            paths.append(None)
            bad.append(False)
            continue
        raw = walk.unescape(value)
        paths.append(os.path.join(base, raw))
        try:
            raw.decode("utf-8")
            bad.append(False)
        except UnicodeDecodeError:
            bad.append(True)
    return pa.array(paths, pa.binary()), pa.array(bad, pa.bool_())


class _Helper:
    """A second process listing some folders. If it cannot start or fails, `result` lists
    them in this process instead."""

    def __init__(self, folders: list[walk.Folder]) -> None:
        self.folders = folders
        self.pool: ProcessPoolExecutor | None = None
        try:
            self.pool = ProcessPoolExecutor(
                max_workers=1, mp_context=get_context("spawn"), initializer=walk.ignore_interrupts
            )
            self.future = self.pool.submit(walk.walk_share, folders)
        except Exception:  # no process can be started here
            self.shutdown()

    def result(self) -> list[walk.Chunk]:
        try:
            if self.pool is not None:
                return self.future.result()
        except Exception:  # the helper died or could not start: its share is listed here
            pass
        finally:
            self.shutdown()
        return walk.walk_share(self.folders)

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def _batch(chunk: walk.Chunk) -> pa.RecordBatch:
    """A listing batch over the chunk's buffers (no Python object per file)."""
    n = len(chunk)
    paths = pa.StringArray.from_buffers(n, pa.py_buffer(chunk.offsets), pa.py_buffer(chunk.data))
    if chunk.odd:
        raw: list[bytes | None] = [None] * n
        flags = [False] * n
        for row, os_path, bad in chunk.odd:
            raw[row], flags[row] = os_path, bad
        os_paths, bad = pa.array(raw, pa.binary()), pa.array(flags, pa.bool_())
    else:
        os_paths, bad = pa.nulls(n, pa.binary()), pa.repeat(False, n)
    sizes = pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(chunk.sizes)])
    mtimes = pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(chunk.mtimes)])
    return pa.RecordBatch.from_arrays([paths, os_paths, bad, sizes, mtimes], schema=LISTING_SCHEMA)


def _discover_url(url: str) -> pa.Table:
    """The listing of a remote archive through fsspec; `os_path` of each file is its URL."""
    import fsspec

    from pipeline.core.locations import modified_ns

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


def to_files(table: pa.Table) -> list[InputFile]:
    """One InputFile per listed row (for the files a run actually reads)."""
    root = _root(table)
    join = _joiner(root)
    cols = table.select(LISTING_SCHEMA.names).to_pydict()
    return [
        InputFile(rel, os.fsdecode(raw) if raw is not None else join(rel), bad, size, mtime, root)
        for rel, raw, bad, size, mtime in zip(
            cols["rel_path"], cols["os_path"], cols["bad_name"], cols["size"], cols["mtime_ns"], strict=True
        )
    ]


class Listed(NamedTuple):
    """Rows of the listing in the form cheapest to send to a parse worker: the root once and
    the relative paths as plain strings. A list of InputFile per batch cost the main process
    1.8 s per million files to build and pickle (CPU the two parse workers need), this 0.1 s."""

    root: str
    rel_paths: list[str]
    odd: dict[int, tuple[str, bool]]  # row -> (os_path, bad_name) where rel_path is an escape

    def files(self) -> list[InputFile]:
        """The InputFiles of these rows (without size and mtime, which parsing does not use)."""
        join = _joiner(self.root)
        root = self.root
        files = [InputFile(rel, join(rel), False, root=root) for rel in self.rel_paths]
        for row, (os_path, bad) in self.odd.items():
            files[row] = InputFile(self.rel_paths[row], os_path, bad, root=root)
        return files


def listed(table: pa.Table, offset: int, length: int) -> Listed:
    """Rows `offset` to `offset + length` of a listing, as a Listed."""
    part = table.slice(offset, length)
    raw = part.column("os_path")
    odd: dict[int, tuple[str, bool]] = {}
    if raw.null_count < len(raw):
        for row, (os_path, bad) in enumerate(
            zip(raw.to_pylist(), part.column("bad_name").to_pylist(), strict=True)
        ):
            if os_path is not None:
                odd[row] = (os.fsdecode(os_path), bad)
    return Listed(_root(table), part.column("rel_path").to_pylist(), odd)


def _root(table: pa.Table) -> str:
    return os.fsdecode((table.schema.metadata or {}).get(ROOT_KEY, b""))


def _joiner(root: str) -> Callable[[str], str]:
    return (lambda rel: f"{root}/{rel}") if is_url(root) else (lambda rel: os.path.join(root, rel))


def write_listing(table: pa.Table, path: Path) -> None:
    """The discovered listing as an Arrow IPC file: the boundary between discover and parse.
    It lives only for the run, so it is written for speed, not size: at 200k files Parquet
    took 0.13 s to write and read back, IPC about 0.02 s."""
    with atomic_path(path) as tmp:
        feather.write_feather(table, tmp, compression="uncompressed")


def read_listing(path: Path) -> pa.Table:
    """The listing `write_listing` wrote, root metadata included (memory-mapped)."""
    return feather.read_table(path, memory_map=True)
