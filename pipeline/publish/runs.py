"""The run log: one row per run, published or not; the `runs` table is a copy of it."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.storage import not_a_link, save_parquet
from pipeline.transform.incremental import StateError, set_aside


def new_run_id(now: dt.datetime) -> str:
    """Sortable by time, unique per process: `20261124T142600123456Z-<pid>`."""
    return now.strftime("%Y%m%dT%H%M%S%fZ") + f"-{os.getpid()}"


# How a run ended (`runs.outcome`).
PUBLISHED = "published"
UNCHANGED = "unchanged"  # nothing changed since the current publication: none made
VALIDATION_FAILED = "validation_failed"
SHRINK_REFUSED = "shrink_refused"
FAILED = "failed"
INTERRUPTED = "interrupted"
RUNNING = "running"  # written before publishing; a run killed then stays so


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
    outcome: str = RUNNING
    detail: str | None = None  # why the run ended as it did, when not published

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the block's wall-clock seconds to `seconds_<stage>`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            name = f"seconds_{stage}"
            setattr(self, name, getattr(self, name) + time.perf_counter() - start)


_ARROW_TYPES = {
    "str": pa.string(),
    "str | None": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "bool | None": pa.bool_(),
    "dt.datetime": pa.timestamp("us", tz="UTC"),
    "dt.datetime | None": pa.timestamp("us", tz="UTC"),
}
# The run log's columns, in the dataclass's order and types.
SCHEMA = pa.schema([(f.name, _ARROW_TYPES[str(f.type)]) for f in fields(RunRecord)])


def read_log(path: Path) -> pa.Table:
    """The run log at `path` (empty if there is none); raises StateError if unreadable."""
    if not (path.is_symlink() or path.exists()):
        return SCHEMA.empty_table()
    try:
        log = pq.ParquetFile(not_a_link(path)).read()  # not read_table: it imports pyarrow.dataset (0.3 s)
    except (OSError, pa.ArrowException) as exc:
        raise StateError(str(exc)) from exc
    for name in SCHEMA.names:  # a log written by an older version lacks newer columns
        if name not in log.column_names:
            log = log.append_column(name, pa.nulls(log.num_rows, SCHEMA.field(name).type))
    return log.select(SCHEMA.names).cast(SCHEMA)


def append(path: Path, record: RunRecord) -> pa.Table:
    """Add (or replace) `record` in the log at `path`, atomically; return the whole log."""
    log = with_record(read_log(path), record)
    save_parquet(path, log)
    return log


def with_record(log: pa.Table, record: RunRecord) -> pa.Table:
    """`log` with `record`'s row replaced (or added)."""
    kept = log.filter(pa.compute.not_equal(log["run_id"], record.run_id)) if log.num_rows else log
    return pa.concat_tables([kept, pa.Table.from_pylist([asdict(record)], schema=SCHEMA)])


# The statuses of the publications counted last, by folder: a watcher's next batch counts
# only the parts it rewrote against its previous publication's (a publication's `files` parts
# are written once, before they are counted, and never again).
_counted: dict[str, Counter[tuple[str, str]]] = {}


def file_statuses(
    publication: Path, base: Path | None = None, rewritten: Sequence[str] | None = None
) -> dict[str, dict[str, int]]:
    """{status: {reason: files}} of a publication's files table. With `base` (the previous
    publication) and `rewritten` (the `files` parts this one rewrote; the others are base's),
    and base counted before in this process, only the rewritten parts are read: counting the
    whole table took 30 ms of each of a watcher's batches at a million events."""
    if base is not None and rewritten is not None and str(base) in _counted:
        counts = _counted[str(base)].copy()
        counts.subtract(_statuses(base, rewritten))
        counts.update(_statuses(publication, rewritten))
    else:
        counts = _statuses(publication, None)
    _counted.clear()
    _counted[str(publication)] = counts
    out: dict[str, dict[str, int]] = {}
    for (status, reason), count in sorted(counts.items()):
        if count:
            out.setdefault(status, {})[reason] = count
    return out


def _statuses(publication: Path, names: Sequence[str] | None) -> Counter[tuple[str, str]]:
    """(status, reason or '') -> files, over the `files` parts `names` that exist (None: all)."""
    folder = publication / "files"
    paths = (
        sorted(folder.glob("*.parquet"))
        if names is None
        else [folder / f"{n}.parquet" for n in names if (folder / f"{n}.parquet").exists()]
    )
    counts: Counter[tuple[str, str]] = Counter()
    for path in paths:
        part = pq.ParquetFile(path).read(columns=["status", "reason"])
        if part.num_rows == 0:
            continue
        grouped = part.group_by(["status", "reason"]).aggregate([([], "count_all")])
        for status, reason, count in zip(
            grouped["status"].to_pylist(),
            grouped["reason"].to_pylist(),
            grouped["count_all"].to_pylist(),
            strict=True,
        ):
            counts[(status, reason or "")] += count
    return counts


def write_table(log: pa.Table, path: Path) -> None:
    """The `runs` table of a publication: the run log as of that run."""
    save_parquet(path, log)


def check_log(path: Path, current: Path | None) -> str | None:
    """Set an unreadable run log aside and rebuild it from the current publication's `runs`
    table (the log as of that publication); the warning, if any."""
    try:
        read_log(path)
        return None
    except StateError as exc:
        warning = set_aside(path, "the run log", exc)
    rebuilt = SCHEMA.empty_table()
    if current is not None:
        from pipeline.core.tables import runs_file

        with suppress(StateError):
            rebuilt = read_log(runs_file(current))
    save_parquet(path, rebuilt)
    return warning.format(f"rebuilt with the {rebuilt.num_rows} runs the current publication records")
