"""The run log: one row per run, published or not; the `runs` table is a copy of it."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


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
    ]
)
assert [f.name for f in fields(RunRecord)] == SCHEMA.names


def read_log(path: Path) -> pa.Table:
    if path.exists():
        return pq.read_table(path).cast(SCHEMA)
    return SCHEMA.empty_table()


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


def write_table(log: pa.Table, path: Path) -> None:
    """The `runs` table of a publication: the run log as of that run."""
    tmp = path.with_suffix(".tmp")
    pq.write_table(log, tmp)
    os.replace(tmp, path)
