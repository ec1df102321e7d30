"""The run log: one row per run, published or not; the `runs` table is a copy of it."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.tables import table_glob


def new_run_id(now: dt.datetime) -> str:
    """Sortable by time, unique per process: `20261124T142600123456Z-<pid>`."""
    return now.strftime("%Y%m%dT%H%M%S%fZ") + f"-{os.getpid()}"


@dataclass
class RunRecord:
    run_id: str
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    files_seen: int = 0
    events: int = 0
    rejected: int = 0
    validation_passed: bool | None = None
    parsed: int = 0
    skipped: int = 0
    duplicates: int = 0
    quarantined: int = 0
    published: bool = False
    files_read: int = 0  # files this run actually read and parsed (all of them on a full refresh)
    events_added: int = 0
    events_changed: int = 0
    events_removed: int = 0
    full_refresh: bool = False
    seconds_discover: float = 0.0
    seconds_parse: float = 0.0
    seconds_normalize: float = 0.0
    seconds_validate: float = 0.0


SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("finished_at", pa.timestamp("us", tz="UTC")),
        ("files_seen", pa.int64()),
        ("events", pa.int64()),
        ("rejected", pa.int64()),
        ("validation_passed", pa.bool_()),
        ("parsed", pa.int64()),
        ("skipped", pa.int64()),
        ("duplicates", pa.int64()),
        ("quarantined", pa.int64()),
        ("published", pa.bool_()),
        ("files_read", pa.int64()),
        ("events_added", pa.int64()),
        ("events_changed", pa.int64()),
        ("events_removed", pa.int64()),
        ("full_refresh", pa.bool_()),
        ("seconds_discover", pa.float64()),
        ("seconds_parse", pa.float64()),
        ("seconds_normalize", pa.float64()),
        ("seconds_validate", pa.float64()),
    ]
)
assert [f.name for f in fields(RunRecord)] == SCHEMA.names


def read_log(path: Path) -> pa.Table:
    if not path.exists():
        return SCHEMA.empty_table()
    log = pq.read_table(path)
    for name in SCHEMA.names:  # a log written by an older version lacks newer columns
        if name not in log.column_names:
            log = log.append_column(name, pa.nulls(log.num_rows, SCHEMA.field(name).type))
    return log.select(SCHEMA.names).cast(SCHEMA)


def append(path: Path, record: RunRecord) -> pa.Table:
    """Add (or replace) `record` in the log at `path`, atomically; return the whole log."""
    log = read_log(path)
    log = log.filter(pa.compute.not_equal(log["run_id"], record.run_id)) if log.num_rows else log
    row = pa.Table.from_pylist([asdict(record)], schema=SCHEMA)
    log = pa.concat_tables([log, row])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(log, tmp)
    os.replace(tmp, path)
    return log


def file_statuses(publication: Path) -> dict[str, dict[str, int]]:
    """{status: {reason: files}} of a publication's files table."""
    import duckdb

    with duckdb.connect() as con:
        rows = con.execute(
            "SELECT status, coalesce(reason, ''), count(*) FROM read_parquet(?) GROUP BY ALL",
            [table_glob(publication, "files")],
        ).fetchall()
    out: dict[str, dict[str, int]] = {}
    for status, reason, count in rows:
        out.setdefault(status, {})[reason] = count
    return out


def write_table(log: pa.Table, path: Path) -> None:
    """The `runs` table of a publication: the run log as of that run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(log, tmp)
    os.replace(tmp, path)
