"""The incremental manifest on disk: a base file and an amendment beside it.

The manifest (`state/manifest.parquet`) names, per input file, its content hash, size,
mtime, status and the staging batch holding its rows (pipeline/transform/incremental.py).
At a million files it is 128 MB, and writing it whole took 0.5 s of CPU in each of a
watcher's one-file batches, with the publish waiting for it. So a run that changes a few
files writes only an *amendment* (`manifest-delta.parquet`): the paths of the base's entries
that are no longer current and the entries that are new, cumulative since the base was
written. The base is written whole again (and the amendment dropped) once the amendment
grows past a twentieth of the manifest, and by every full build.

Each base carries a random id, and an amendment names the id of the base it amends. A run
commits its manifest by one rename, of the amendment or of the base: a base committed over
an older one leaves the older amendment naming another id, and it is ignored (then
deleted), so a kill between any two steps leaves a manifest that describes one publication.
"""

from __future__ import annotations

import os
import uuid
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.core.storage import not_a_link, save_parquet

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
# Origin's fields, in order, as schema metadata keys.
_ORIGIN_KEYS = (PUBLICATION_KEY, EXPECTATIONS_KEY, PARSER_KEY, CODE_KEY, TODAY_KEY)
# A base's id; in an amendment, the id of the base it amends.
BASE_KEY = b"base"
# An amendment's rows: MANIFEST_SCHEMA plus this flag, true for a path the base's entry of
# which is no longer current (its other columns are null).
REMOVED = "removed"
# An amendment is written while it holds at most this share of the manifest's rows (or this
# many, for a small manifest); past it, the base is written whole.
AMEND_SHARE = 20
AMEND_MIN_ROWS = 1000


class Origin(NamedTuple):
    """What a manifest's publication was built with; None for what a manifest does not say."""

    run_id: str | None
    expectations: str | None
    parser: str | None
    code: str | None = None
    today: str | None = None  # ISO date

    def metadata(self) -> dict[bytes, bytes]:
        return {
            key: value.encode() for key, value in zip(_ORIGIN_KEYS, self, strict=True) if value is not None
        }

    @classmethod
    def of(cls, metadata: dict[bytes, bytes]) -> Origin:
        return cls(*(metadata[key].decode() if metadata.get(key) else None for key in _ORIGIN_KEYS))


class StateError(Exception):
    """State the pipeline keeps between runs cannot be read."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path  # the file that could not be read


class Amendment(NamedTuple):
    """How a manifest differs from the base `base`: the base's paths whose entries are no
    longer current (replaced or gone) and the entries not in the base."""

    base: str
    removed: pa.Array  # string
    added: pa.Table  # MANIFEST_SCHEMA

    @classmethod
    def none(cls, base: str) -> Amendment:
        return cls(base, pa.array([], pa.string()), MANIFEST_SCHEMA.empty_table())

    @property
    def rows(self) -> int:
        return len(self.removed) + self.added.num_rows

    def then(self, dropped: pa.Array | pa.ChunkedArray, staged: pa.Table) -> Amendment:
        """This amendment after a run dropped the entries of paths `dropped` and added `staged`.
        A dropped path the base never had only makes `removed` longer, never wrong."""
        dropped = dropped.combine_chunks() if isinstance(dropped, pa.ChunkedArray) else dropped
        removed = pc.unique(pa.concat_arrays([self.removed, dropped.cast(pa.string())]))
        kept = self.added.filter(pc.invert(pc.is_in(self.added["file_path"], value_set=dropped)))
        added = pa.concat_tables([kept, staged.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA)])
        return Amendment(self.base, removed, added.combine_chunks())

    def fits(self, manifest_rows: int) -> bool:
        return self.rows <= max(AMEND_MIN_ROWS, manifest_rows // AMEND_SHARE)

    def to_table(self, origin: Origin) -> pa.Table:
        gone = pa.table(
            {
                name: pa.nulls(len(self.removed), field.type)
                for name, field in zip(MANIFEST_SCHEMA.names, MANIFEST_SCHEMA, strict=True)
            }
        ).set_column(0, "file_path", self.removed)
        rows = pa.concat_tables([gone, self.added]).append_column(
            REMOVED,
            pa.array(np.arange(len(self.removed) + self.added.num_rows) < len(self.removed)),
        )
        return rows.replace_schema_metadata(origin.metadata() | {BASE_KEY: self.base.encode()})

    def apply(self, base: pa.Table) -> pa.Table:
        """The manifest: `base` without the removed paths' entries, then the added ones."""
        if len(self.removed) == 0:
            return pa.concat_tables([base, self.added]) if self.added.num_rows else base
        rows = pc.indices_nonzero(pc.is_in(base["file_path"], value_set=self.removed)).to_numpy()
        keep = np.ones(base.num_rows, dtype=bool)
        keep[rows] = False
        return pa.concat_tables([base.filter(keep), self.added])


class Manifest(NamedTuple):
    table: pa.Table  # MANIFEST_SCHEMA, one row per file
    amendment: Amendment | None  # how it differs from its base; None: not known (an older file)


def delta_path(path: Path) -> Path:
    """Where the amendment of the manifest at `path` is kept."""
    return path.with_name(path.stem + "-delta.parquet")


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _key(path: Path) -> tuple[object, object]:
    """The identity of a manifest's two files (each only ever replaced by a rename, which keeps
    the identity of what was written and changes the path's)."""
    return (_identity(path), _identity(delta_path(path)))


class _Remembered:
    """The last manifest read or committed, while `remember(True)` (a watcher): its batches
    read it three times and commit it once, 0.6 s per read at a million files. Otherwise a
    manifest read with `keep=True` (a run's state check) is handed to the next read of the
    same file (its parse) and then let go: one read per run instead of two, without holding
    the manifest's memory for the rest of the run."""

    enabled = False
    key: tuple[object, object] | None = None
    manifest: Manifest | None = None

    @classmethod
    def get(cls, path: Path) -> Manifest | None:
        if cls.key is None:
            return None
        manifest = cls.manifest if _key(path) == cls.key else None
        if not cls.enabled:
            cls.key = cls.manifest = None  # kept for one read only
        return manifest

    @classmethod
    def put(cls, path: Path, manifest: Manifest, keep: bool = False) -> None:
        if cls.enabled or keep:
            cls.key, cls.manifest = _key(path), manifest


def remember(on: bool = True) -> None:
    """Keep the last manifest in memory between reads (for a long-running watcher)."""
    _Remembered.enabled = on
    if not on:
        _Remembered.key = _Remembered.manifest = None


def _read(path: Path) -> pa.Table:
    try:
        return pq.ParquetFile(not_a_link(path)).read()  # read_table imports pyarrow.dataset (0.3 s)
    except (OSError, pa.ArrowException) as exc:
        raise StateError(str(exc), path) from exc


def _base_id(metadata: dict[bytes, bytes] | None) -> str | None:
    value = (metadata or {}).get(BASE_KEY)
    return value.decode() if value else None


def read(path: Path, keep: bool = False) -> Manifest:
    """The manifest at `path` (its base and the amendment naming it); empty (so every file is
    parsed again) if missing or of an older format. Raises StateError when a file cannot be
    read. With `keep`, the next read of the same manifest takes this one."""
    if path in _writing:
        return _writing[path][1]
    remembered = _Remembered.get(path)
    if remembered is not None:
        return remembered
    if not (path.is_symlink() or path.exists()):
        if delta_path(path).exists():
            raise StateError(
                f"an amendment without its base manifest ({path.name} is missing)", delta_path(path)
            )
        return Manifest(MANIFEST_SCHEMA.empty_table(), None)
    table = _read(path)
    if not set(MANIFEST_SCHEMA.names) <= set(table.column_names):
        return Manifest(MANIFEST_SCHEMA.empty_table(), None)
    base = _base_id(table.schema.metadata)
    table = table.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA)
    amendment = Amendment.none(base) if base else None
    delta = delta_path(path)
    if base and (delta.is_symlink() or delta.exists()) and _base_id(_schema(delta).metadata) == base:
        rows = _read(delta)
        removed = rows[REMOVED].combine_chunks()
        amendment = Amendment(
            base,
            rows.filter(removed)["file_path"].combine_chunks(),
            rows.filter(pc.invert(removed)).select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA),
        )
        table = amendment.apply(table)
    manifest = Manifest(table, amendment)
    _Remembered.put(path, manifest, keep)
    return manifest


def _schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(not_a_link(path))
    except (OSError, pa.ArrowException) as exc:
        raise StateError(str(exc), path) from exc


def origin(path: Path) -> Origin:
    """What the manifest at `path` describes (from its amendment when there is one); all None
    when the manifest is missing, unreadable or of an older format."""
    try:
        schema = _schema(path)
    except StateError:
        return Origin(None, None, None)
    if not set(MANIFEST_SCHEMA.names) <= set(schema.names):
        return Origin(None, None, None)
    metadata = schema.metadata or {}
    base, delta = _base_id(metadata), delta_path(path)
    if base and delta.exists():
        try:
            amended = _schema(delta).metadata or {}
        except StateError:
            amended = {}
        if _base_id(amended) == base:
            metadata = amended
    return Origin.of(metadata)


def batches(path: Path) -> set[str]:
    """The batches the manifest at `path` names (reads one column when it is not amended)."""
    remembered = _Remembered.get(path)
    if remembered is not None:
        return live_batches(remembered.table)
    if not path.exists():
        return set()
    if delta_path(path).exists():
        return live_batches(read(path).table)
    return set(pq.ParquetFile(path).read(columns=["batch"])["batch"].unique().to_pylist())


# `live_batches` of the tables asked lately, by identity (a table is immutable): a watcher's
# batch asks twice for those of its manifest, which stays in memory (`remember`), and at a
# million files each answer took 15 ms.
_live: dict[int, tuple[weakref.ref[pa.Table], frozenset[str]]] = {}
_LIVE_KEPT = 4


def live_batches(table: pa.Table) -> set[str]:
    """The staging batches the manifest `table` names."""
    known = _live.get(id(table))
    if known is not None and known[0]() is table:
        return set(known[1])
    found = frozenset(table["batch"].unique().to_pylist()) if table.num_rows else frozenset()
    _live[id(table)] = (weakref.ref(table), found)
    while len(_live) > _LIVE_KEPT:
        _live.pop(next(iter(_live)))
    return set(found)


def write(
    table: pa.Table,
    path: Path,
    origin: Origin,
    amendment: Amendment | None = None,
    background: bool = False,
) -> None:
    """Write `table` as the manifest `path` for publication `origin`: as an amendment of the
    base that `amendment` names when it is small enough, else whole (a new base).

    With `background`, a thread writes it while the run goes on (0.6 s for a whole manifest
    at a million files, mostly outside the GIL). Until `written(path)` the file may be
    missing; `read` and `in_memory` give the table meanwhile (an amendment's, until commit)."""
    rows = table.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA)
    if amendment is not None and amendment.fits(rows.num_rows):
        target, data = delta_path(path), amendment.to_table(origin)
    else:
        amendment = Amendment.none(uuid.uuid4().hex)
        target = path
        data = table.replace_schema_metadata(origin.metadata() | {BASE_KEY: amendment.base.encode()})
    manifest = Manifest(rows, amendment)
    if background:
        _writing[path] = (_writer().submit(save_parquet, target, data), manifest)
        return
    save_parquet(target, data)
    if target != path:  # held until committed: an amendment is read with its base
        done: Future[None] = Future()
        done.set_result(None)
        _writing[path] = (done, manifest)
        return
    _Remembered.put(path, manifest)


# Manifests this process wrote (or is writing) and has not committed or forgotten:
# path -> (the write's outcome, the manifest).
_writing: dict[Path, tuple[Future[None], Manifest]] = {}


@lru_cache(maxsize=1)
def _writer() -> ThreadPoolExecutor:
    """One thread for every background write of the process. A thread per write (a watcher
    writes one per batch) let the watcher's resident memory grow by 1.5 MB a batch at 110k
    events (each new thread's allocations in other arenas)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="manifest-writer")


def written(path: Path) -> Manifest | None:
    """Wait until a manifest `write` writes in the background is on disk (at once if none is);
    raises what the write met. The manifest, if this process wrote it: held until `commit`
    or `forget` (the commit takes it rather than reading back what it renames)."""
    entry = _writing.get(path)
    if entry is None:
        return None
    done, manifest = entry
    done.result()
    return manifest


def forget(path: Path) -> None:
    """Let go of a manifest written at `path` and not committed (a failed run's), once no
    writer is left on it."""
    entry = _writing.pop(path, None)
    if entry is not None:
        entry[0].exception()  # waits; what it met is the failed run's, already raised or moot


def in_memory(path: Path) -> pa.Table | None:
    """The manifest at `path` if this process holds it (being written, or remembered), else
    None: then read it from the file."""
    entry = _writing.get(path)
    if entry is not None:
        return entry[1].table
    if _Remembered.enabled and _Remembered.key is not None and _key(path) == _Remembered.key:
        return _Remembered.manifest.table if _Remembered.manifest else None
    return None


def commit(written_path: Path, committed: Path) -> Manifest | None:
    """Make the manifest written at `written_path` the one at `committed` (one rename); the
    manifest, if this process wrote it."""
    manifest = written(written_path)
    _writing.pop(written_path, None)
    amendment = delta_path(written_path)
    if amendment.exists():
        os.replace(amendment, delta_path(committed))
    elif written_path.exists():
        os.replace(written_path, committed)
        delta_path(committed).unlink(missing_ok=True)  # it amended the base just replaced
    else:
        return None
    if manifest is not None:
        _Remembered.put(committed, manifest)
    return manifest
