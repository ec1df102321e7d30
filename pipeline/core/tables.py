"""Where each table lives inside a publication folder, built in one place.

Every table is a folder of Parquet files: `<publication>/<table>/<part>.parquet`.
The event-keyed tables are split by the year in the event id (`2014.parquet`),
plus one `none.parquet` (rows without an event: rejected and skipped files; empty
for the other tables, so that every table always has at least one file). An
incremental run rewrites only the parts its changes touch and hard-links the
rest from the previous publication. `tags`, `storylines` and `runs` are one file
each, `all.parquet`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from pipeline.core.sqltext import sql_list, sql_literal
from pipeline.core.storage import atomic_path

YEAR = "year"  # parts by the year of the event id, plus `none` (rows without an event)
ONE_FILE = "one_file"  # one part, `all.parquet`
BY_RUN = "by_run"  # a part per run that added rows, older ones merged (publish/changes.py)


@dataclass(frozen=True)
class Table:
    """One table of a publication: the one place its name, key, layout and row order live.
    Its description and column docs are the data dictionary's entry of the same name
    (pipeline/publish/dictionary.py); its expectation suite, if any, has its name too."""

    name: str
    # The columns that say which rows belong together: a change set replaces all rows of a
    # changed key (`export --since`); () for a small table replaced whole.
    key: tuple[str, ...]
    layout: str = YEAR
    order: str = "ALL"  # row order within a part
    presorted: bool = False  # the model ends with that ORDER BY: fresh rows need no sort
    published: bool = True  # a view in the catalog; False: kept only for incremental runs


# In catalog order.
TABLES: tuple[Table, ...] = (
    Table("events", ("event_id",), order="event_id"),
    Table("files", ("file_path",), order="file_path"),
    Table("sources", ("event_id",), order="event_id, position"),
    Table("relations", ("event_id",), order="event_id, position"),
    Table("relation_tags", ("event_id",), presorted=True),
    Table("event_tags", ("event_id",), presorted=True),
    Table("event_places", ("event_id",), order="event_id, country_code"),
    Table("countries", ("country_code",), layout=ONE_FILE),
    Table("tags", ("tag_id",), layout=ONE_FILE),
    Table("quarantine", ("event_id",), order="file_path, line_number", presorted=True),
    Table("storylines", ("storyline_id",), layout=ONE_FILE),
    Table("event_storylines", ("event_id",)),
    Table("runs", (), layout=ONE_FILE),  # small: replaced whole in change sets
    Table("changes", ("run_id",), layout=BY_RUN),
    Table("tag_spellings", ("event_id",), presorted=True, published=False),
    Table("relation_targets", ("related_event_id",), order="related_event_id", published=False),
)
TABLE: dict[str, Table] = {t.name: t for t in TABLES}
PUBLISHED: tuple[str, ...] = tuple(t.name for t in TABLES if t.published)
# Analytical views in the catalog, one `.sql` file each in pipeline/transform/sql/views/.
VIEWS: tuple[str, ...] = (
    "daily_counts",
    "tag_timeline",
    "publishers",
    "publisher_share",
    "tag_cooccurrence",
    "country_timeline",
    "country_pairs",
)
NO_EVENT = "none"
WHOLE = "all"


def view_sql(name: str) -> str:
    return (
        resources.files("pipeline.transform")
        .joinpath("sql", "views", f"{name}.sql")
        .read_text(encoding="utf-8")
    )


def part_path(publication: Path, table: str, part: str) -> Path:
    return publication / table / f"{part}.parquet"


def table_glob(publication: Path, table: str) -> str:
    """An absolute glob over the table's files (DuckDB resolves relative paths against the cwd)."""
    return str(publication.resolve() / table / "*.parquet")


def parts(publication: Path, table: str) -> list[str]:
    folder = publication / table
    return sorted(p.stem for p in folder.glob("*.parquet")) if folder.is_dir() else []


def runs_file(publication: Path) -> Path:
    """The last file a publication gets: its presence marks the publication complete."""
    return part_path(publication, "runs", WHOLE)


def row_count(publication: Path, table: str) -> int:
    """Rows of a table, from the Parquet footers, each read once: a part is written once, under
    a new name, and an incremental publication hard-links the parts it did not rewrite, so a
    part's rows are known by its file's identity. A watcher's one-file batch at a million
    events counted every table of two publications, 300 footers (20-25 ms); now it reads the
    footers of the parts it wrote. Only the identities of the table's last count are kept."""
    counted: dict[tuple[int, int, int, int], int] = {}
    known = _rows_by_identity.get(table, {})
    total = 0
    for path in (publication / table).glob("*.parquet"):
        st = path.stat()
        identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        rows = known.get(identity)
        if rows is None:
            rows = pq.ParquetFile(path).metadata.num_rows
        counted[identity] = rows
        total += rows
    _rows_by_identity[table] = known | counted if len(known) < _KEPT_IDENTITIES else counted
    return total


# Per table, the row counts of the parts counted last, by file identity (see `row_count`); a
# table's entries are replaced by one count's once they reach this many.
_KEPT_IDENTITIES = 2_000
_rows_by_identity: dict[str, dict[tuple[int, int, int, int], int]] = {}


def row_count_of(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def parts_rows(publication: Path, table: str, names: Sequence[str], columns: Sequence[str]) -> str:
    """A relation over the parts `names` of `table` that exist (say, the years of a few events,
    whose rows sit in those parts alone), or an empty one with `columns` (VARCHAR) if none does."""
    files = [
        str(part_path(publication, table, n)) for n in names if part_path(publication, table, n).exists()
    ]
    if files:
        return f"read_parquet({sql_list(files)})"
    return "(SELECT " + ", ".join(f"NULL::VARCHAR AS {c}" for c in columns) + " WHERE false)"


# Up to this many ids are named as constants in `pointing_parts`: DuckDB then checks each one
# against a row group's range and reads only the row groups that can hold it. At a million
# events: 100 events of one month, 0.026 s (as a semi join, 0.031 s); 100 spread over the
# years, 0.16 s (0.31 s); 500, 0.31 s (0.33 s); 2,000, 0.38 s (0.34 s): more ids, a semi join
# on the caller's table.
MAX_NAMED_IDS = 500


def pointing_parts(
    con: duckdb.DuckDBPyConnection, publication: Path, ids: Sequence[str], table: str
) -> list[str]:
    """The year parts of `publication` holding a Related item that points at one of `ids`
    (also the `event_id` column of the relation `table` in `con`). Asked of
    `relation_targets`, each part's distinct targets sorted, so only the row groups whose range
    can hold an id are read: `relations` is sorted by its own events, every row group holds
    targets of every year, and the same question read all of `related_event_id` (0.25 s at a
    million events). A publication without it (an older release's) is asked through
    `relations`."""
    source = next((t for t in ("relation_targets", "relations") if parts(publication, t)), None)
    if not ids or source is None:
        return []
    wanted = (
        f"IN ({', '.join(sql_literal(i) for i in ids)})"
        if len(ids) <= MAX_NAMED_IDS
        else f"IN (SELECT event_id FROM {table})"
    )
    files = con.execute(
        f"SELECT DISTINCT filename FROM read_parquet({sql_literal(table_glob(publication, source))}, "
        f"filename = true) WHERE related_event_id {wanted}"
    ).fetchall()
    return sorted(Path(row[0]).stem for row in files)


def part_filter(part: str) -> str:
    """Rows of one part, as a range on event_id so DuckDB can skip row groups by min/max."""
    if part == NO_EVENT:
        return "event_id IS NULL"
    return f"event_id >= {sql_literal(part)} AND event_id < {sql_literal(str(int(part) + 1).zfill(4))}"


def link_untouched(old: Path, publication: Path, name: str, rewritten: list[str]) -> int:
    """Hard-link the previous publication's parts this run did not rewrite (copy if links fail)."""
    linked = 0
    for part in parts(old, name):
        if part in rewritten:
            continue
        source, target = part_path(old, name, part), part_path(publication, name, part)
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
        linked += 1
    return linked


def write_part(con: duckdb.DuckDBPyConnection, sql: str, target: Path, parquet_options: str) -> None:
    """Write the rows of `sql` as one Parquet part, atomically (a temporary file, then rename)."""
    with atomic_path(target) as tmp:
        con.execute(f"COPY ({sql}) TO {sql_literal(str(tmp))} ({parquet_options})")


def write_parts(
    con: duckdb.DuckDBPyConnection, jobs: Sequence[tuple[str, Path]], parquet_options: str, workers: int
) -> None:
    """Write several parts (`(sql, target)` pairs) `workers` at a time, each on its own cursor
    of `con`'s database (so the tables they read must not be TEMP: those belong to one
    connection). One part's COPY keeps about one core busy compressing; two at a time cut
    the 1M-event build's part writes by about a third (BENCHMARKS.md)."""
    if workers <= 1 or len(jobs) <= 1:
        for sql, target in jobs:
            write_part(con, sql, target, parquet_options)
        return

    def one(job: tuple[str, Path]) -> None:
        cursor = con.cursor()
        try:
            write_part(cursor, job[0], job[1], parquet_options)
        finally:
            cursor.close()

    with ThreadPoolExecutor(workers, thread_name_prefix="write-part") as pool:
        for future in [pool.submit(one, job) for job in jobs]:
            future.result()


# Incrementally, the rows of a rewritten part that were recomputed: those of the touched
# events (relations pointing at them too: their `resolved` may have flipped), and for `files`
# and `quarantine` those of the touched files; every other row of the part is the previous
# publication's. Validation checks only these rows and the change log compares only these
# (as SQL over `touched_events` and `touched_files`); other tables' parts are taken whole.
_OWN_EVENT = "event_id IN (SELECT event_id FROM touched_events)"  # the rows of the touched events
TOUCHED_ROWS = {
    "events": _OWN_EVENT,
    "sources": _OWN_EVENT,
    "relations": f"{_OWN_EVENT} OR related_event_id IN (SELECT event_id FROM touched_events)",
    "relation_tags": _OWN_EVENT,
    "event_tags": _OWN_EVENT,
    "event_places": _OWN_EVENT,
    "tag_spellings": _OWN_EVENT,
    "quarantine": f"{_OWN_EVENT} OR file_path IN (SELECT file_path FROM touched_files)",
    "files": "file_path IN (SELECT file_path FROM touched_files)",
}


def touched_rows(table: str, event_ids: Sequence[str] = ()) -> str:
    """TOUCHED_ROWS[table], led, where a row's own event decides, by the range of the touched
    `event_ids` as constants: DuckDB skips the row groups outside it by their statistics
    (a part's rows are sorted by event id). A semi join alone narrowed the scan for one
    event, not for a run's hundreds: comparing the old and new rows of 200 events in a year
    part of `events` took 0.054 s, 0.017 s with the range."""
    rows = TOUCHED_ROWS[table]
    if event_ids and rows == _OWN_EVENT:
        low, high = sql_literal(min(event_ids)), sql_literal(max(event_ids))
        return f"event_id BETWEEN {low} AND {high} AND {rows}"
    return rows


# Likewise for the whole-table models an incremental build recomputes by key (Touched.keys):
# (key column, the rows of the keys it names). Any other row is the previous publication's.
KEYED_ROWS = {
    "tags": ("tag_id", "tag_id IN (SELECT tag_id FROM touched_key_tag_id)"),
    "storylines": ("storyline_id", "storyline_id IN (SELECT storyline_id FROM touched_key_storyline_id)"),
    # a row (event, storyline) that appeared or went has its storyline among those named
    "event_storylines": (
        "storyline_id",
        "storyline_id IN (SELECT storyline_id FROM touched_key_storyline_id)",
    ),
}
