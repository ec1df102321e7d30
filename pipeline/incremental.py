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

import os
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.discover import InputFile
from pipeline.normalize import sql_literal
from pipeline.schema import STAGING

# A file rejected for one of these may be accepted later without any change to its bytes.
RETRY_REASONS = frozenset({"unreadable", "vanished", "not_a_regular_file", "date_out_of_range"})

MANIFEST_SCHEMA = pa.schema(
    [
        ("file_path", pa.string()),
        ("content_sha256", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("batch", pa.string()),
    ]
)


def read_manifest(path: Path) -> pa.Table:
    if path.exists():
        return pq.read_table(path).select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA)
    return MANIFEST_SCHEMA.empty_table()


def plan(files: Sequence[InputFile], previous: pa.Table) -> list[InputFile]:
    """The files that must be (re)parsed: new, changed by size or mtime, or worth retrying."""
    if previous.num_rows == 0:
        return list(files)
    cols = previous.select(["file_path", "size", "mtime_ns", "reason"]).to_pydict()
    known = {
        path: (size, mtime, reason)
        for path, size, mtime, reason in zip(
            cols["file_path"], cols["size"], cols["mtime_ns"], cols["reason"], strict=True
        )
    }
    todo = []
    for f in files:
        seen = known.get(f.rel_path)
        if (
            seen is None
            or seen[0] != f.size
            or seen[1] != f.mtime_ns
            or f.size < 0
            or seen[2] in RETRY_REASONS
        ):
            todo.append(f)
    return todo


def next_manifest(
    files: Sequence[InputFile],
    parsed: Sequence[InputFile],
    previous: pa.Table,
    staging: Path,
    batches: Sequence[str],
) -> pa.Table:
    """Previous entries of unchanged files plus this run's staged files; vanished files drop out."""
    current = {f.rel_path for f in files}
    reparsed = {f.rel_path for f in parsed}
    stat = {f.rel_path: (f.size, f.mtime_ns) for f in parsed}
    kept = previous.filter(
        pa.array([p in current and p not in reparsed for p in previous["file_path"].to_pylist()], pa.bool_())
    )
    fresh = [staging / f"stg_files-{b}.parquet" for b in batches]
    staged = (
        pq.read_table(fresh, columns=["file_path", "content_sha256", "status", "reason", "batch"])
        if fresh
        else None
    )
    if staged is None or staged.num_rows == 0:
        return kept
    paths = staged["file_path"].to_pylist()
    staged = staged.append_column("size", pa.array([stat[p][0] for p in paths], pa.int64()))
    staged = staged.append_column("mtime_ns", pa.array([stat[p][1] for p in paths], pa.int64()))
    return pa.concat_tables([kept, staged.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA)])


def write_manifest(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def collect_garbage(staging: Path, live_batches: set[str]) -> int:
    """Delete staging files of batches no manifest names (failed or crashed runs, replaced files)."""
    removed = 0
    if not staging.is_dir():
        return 0
    for path in staging.iterdir():
        table, _, rest = path.name.partition("-")
        batch = rest.removesuffix(".parquet").removesuffix(".tmp")
        if table in STAGING and batch not in live_batches:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def live_batches(manifest: pa.Table) -> set[str]:
    return set(manifest["batch"].unique().to_pylist()) if manifest.num_rows else set()


def event_changes(old_events: Path | None, new_events: Path) -> tuple[int, int, int]:
    """(added, changed, removed) events between two publications, by event_id and content hash."""
    if old_events is None or not old_events.exists():
        with duckdb.connect() as con:
            added = con.execute(
                f"SELECT count(*) FROM read_parquet({sql_literal(str(new_events))})"
            ).fetchone()[0]
        return added, 0, 0
    old, new = sql_literal(str(old_events)), sql_literal(str(new_events))
    with duckdb.connect() as con:
        return con.execute(
            f"""
        SELECT count(*) FILTER (WHERE o.event_id IS NULL),
               count(*) FILTER (WHERE o.event_id IS NOT NULL AND n.event_id IS NOT NULL
                                AND (o.content_sha256 <> n.content_sha256 OR o.file_path <> n.file_path)),
               count(*) FILTER (WHERE n.event_id IS NULL)
        FROM (SELECT event_id, content_sha256, file_path FROM read_parquet({old})) o
        FULL JOIN (SELECT event_id, content_sha256, file_path FROM read_parquet({new})) n USING (event_id)
        """
        ).fetchone()
