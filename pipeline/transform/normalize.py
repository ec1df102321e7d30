"""Derive the published tables from the staging Parquet with DuckDB (models in pipeline/transform/sql/).

Every model is a SELECT in its own `.sql` file. A full build runs the models over
every live staged row and writes each table split by event year
(pipeline/tables.py). An incremental build runs the same models over only the
files its changes touch, then rewrites just the year parts those files (and the
relations pointing at their events) fall in: each rewritten part is the previous
part minus the touched events plus their fresh rows, and every other part is
hard-linked from the previous publication. Derived columns that cross events
(`resolved`, duplicates, tags) are recomputed for every rewritten row, so the
result equals a full build (tests/test_incremental.py checks that after every
step). DuckDB spills to disk under a memory limit, so a million events stay
inside the process's budget.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.arrow import among
from pipeline.core.databases import open_memory
from pipeline.core.faults import crash_point
from pipeline.core.interrupt import track
from pipeline.core.sqltext import model_sql, sql_list, sql_literal
from pipeline.core.tables import (
    NO_EVENT,
    TABLES,
    WHOLE,
    link_untouched,
    part_filter,
    part_path,
    parts_rows,
    pointing_parts,
    row_count,
    table_glob,
    write_part,
    write_parts,
)
from pipeline.parse.schema import STAGING
from pipeline.transform.incremental import changes_path, manifest_in_memory, manifest_written, read_manifest
from pipeline.transform.scoped import scoped_model
from pipeline.transform.storylines import DEFAULT_RULE, StorylineRule, write_storylines

# Models keyed by event, in dependency order: each may read the staging views and the models
# before it (`events` is the winning file of each touched event id).
EVENT_MODELS: tuple[str, ...] = (
    "events",
    "sources",
    "relations",
    "relation_tags",
    "event_tags",
    "event_places",
    "quarantine",
    "tag_spellings",
)
# Every table the models produce (all but the run log and the change log, which the flow writes).
MODELS: tuple[str, ...] = tuple(t.name for t in TABLES if t.name not in ("runs", "changes"))
# Each table's order within a part (the registry's). The models of the big wide tables leave
# their rows unsorted and each part is sorted as it is written, two parts at a time: at 1M
# events that took 1.5-3 s less per table than sorting the whole model (wide rows: titles,
# summaries, URLs). The others end with their ORDER BY and their parts keep that order
# (DuckDB keeps insertion order): sorting relation_tags part by part was 4 s slower.
ORDER: dict[str, str] = {t.name: t.order for t in TABLES}
PRESORTED = frozenset(t.name for t in TABLES if t.presorted)

# Row groups of 8,192 rows: a part's rows are sorted by event id, so reading the rows of a few
# events (an incremental build's old rows, its change log, its checks) skips the row groups
# whose event-id range misses them. A year part at a million events (45,000 events) was one
# row group of 122,880 rows, read whole for one event: the change log's comparison of one
# event's rows took 0.037 s for `events` and 0.023 s for `sources`, 0.0075 s and 0.0076 s
# with 8,192; writing a part got faster too (two threads share its row groups). The analysts'
# queries do not mind: 0.885 s over benchmarks/queries/ against 0.904 s, 3.5% more on disk
# (benchmarks/layout.py, docs/benchmarks-history.md, session 27).
PART_WRITERS = 2  # threads that write an incremental build's parts (`_incremental`)
PARQUET_OPTIONS = "FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 8192"

# A column a model carries for a later model but does not publish, and that later model: the
# events' places (the lists the parse made per file), which event_places unnests with no join
# back to each event by its file path (at 1M events the model took 0.4 s, joining 3M rows on
# 60-character paths 0.9-1.5 s). Dropped from memory once read.
CARRIED: dict[str, tuple[str, str]] = {"events": ("places", "event_places")}


@dataclass(frozen=True)
class BuildBase:
    """The publication the previous manifest belongs to: the base of an incremental build."""

    publication: Path
    manifest: Path


@dataclass
class NormalizeResult:
    counts: dict[str, int]
    added: int
    changed: int
    removed: int
    # Parts rewritten by this run, per table; None when every part was (a full build).
    rewritten: dict[str, list[str]] | None = None
    linked: int = 0
    # Incrementally: the event ids and files whose rows were recomputed (validation checks
    # only their rows; every other row is the previous publication's, which passed).
    touched: Touched | None = None


@dataclass(frozen=True)
class Touched:
    event_ids: list[str]
    file_paths: list[str]
    base: Path  # the previous publication, whose rows passed the same suites
    # Rows of the whole-table models the build recomputed, by key column (`tag_id`: the tags
    # it described again; `storyline_id`: the storylines it recomputed or removed): a suite
    # whose frame declares that `scope` checks those keys' rows alone (expectations/*.json).
    keys: dict[str, list[str]] = field(default_factory=dict)


def _days(event_ids: list[str]) -> dict[str, list[str]]:
    """The days of the recomputed events (an event id begins with its date), as Touched.keys:
    the only days whose event counts (the `daily` suite) can have changed."""
    return {"event_date": sorted({e[:10] for e in event_ids})}


# What an incremental build has written when its year-part tables, `files` and `countries` are
# complete: the parts it rewrote per table, and the events and files it recomputed (no keys yet).
PartsWritten = Callable[[dict[str, list[str]], Touched], None]
# The tables complete at that point.
PARTS_TABLES: tuple[str, ...] = (*EVENT_MODELS, "files", "countries")


def connect(work_dir: Path, threads: int, memory_limit: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that spills to `work_dir` rather than exceed `memory_limit`.

    It keeps the Parquet footers it reads: a build reads each part many times (an incremental
    one-file batch at 1M events opens every part of `events` in a dozen statements), and no
    part is rewritten in place (each is written once, to a new publication's folder)."""
    spill = work_dir / "duckdb-spill"
    spill.mkdir(parents=True, exist_ok=True)
    con = track(open_memory({"threads": threads, "memory_limit": memory_limit}))
    con.execute("SET enable_progress_bar = false")
    con.execute("SET parquet_metadata_cache = true")
    con.execute(f"SET temp_directory = {sql_literal(str(spill))}")
    return con


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    assert row is not None  # an aggregate always gives a row
    return int(row[0])


def _column(con: duckdb.DuckDBPyConnection, sql: str) -> list[str]:
    return [row[0] for row in con.execute(sql).fetchall()]


def normalize(
    staging_dir: Path,
    publication_dir: Path,
    work_dir: Path,
    live_manifest: Path | None = None,
    previous: BuildBase | None = None,
    threads: int = 2,
    memory_limit: str = "1GB",
    storylines: StorylineRule = DEFAULT_RULE,
    on_parts: PartsWritten | None = None,
) -> NormalizeResult:
    """Write every table under `publication_dir` (see pipeline/tables.py).

    `live_manifest` is the manifest naming each file's current batch (without it every staged row
    counts). With `previous` (and `live_manifest`), only what changed since that publication is
    recomputed; without it, everything is. An incremental build calls `on_parts` once the
    tables written by year parts, `files` and `countries` are complete, before the tags and
    storylines (a third of a one-file batch's build): their checks can start meanwhile."""
    publication_dir.mkdir(parents=True, exist_ok=True)
    con = connect(work_dir, threads, memory_limit)
    try:
        base = previous if live_manifest is not None else None
        if base is not None and live_manifest is not None:
            result = _incremental(con, staging_dir, publication_dir, live_manifest, base, threads, on_parts)
        else:
            result = _full(con, staging_dir, publication_dir, live_manifest, threads)
        written, linked, storyline_ids = write_storylines(
            con,
            publication_dir,
            storylines,
            PARQUET_OPTIONS,
            base.publication if base else None,
            threads,
            changed="affected" if base else None,
        )
        if result.rewritten is not None:
            result.rewritten["event_storylines"] = written
            result.linked += linked
        if result.touched is not None and storyline_ids is not None:
            keys = result.touched.keys | {"storyline_id": storyline_ids}
            result.touched = replace(result.touched, keys=keys)
        result.counts = _counts(publication_dir)
        return result
    finally:
        con.close()


# --- Full build --------------------------------------------------------------------------------
def _full(
    con: duckdb.DuckDBPyConnection,
    staging_dir: Path,
    publication: Path,
    live_manifest: Path | None,
    workers: int,
) -> NormalizeResult:
    """Every live staged row. Rather than semi-joining every staging view with the live manifest
    manifest (a hash table of every file, probed in each model: DuckDB ran out of its 1 GB at
    1M events), the dead (file, batch) pairs, those of replaced or removed files, are found
    once from stg_files and anti-joined; on a first build there are none."""
    dead = ""
    batches: list[str] | None = None
    if live_manifest is not None:
        manifest_written(live_manifest)
        # Only the batches the manifest names are read: a full refresh never depends on other
        # (older, possibly damaged) staging files.
        batches = _column(
            con, f"SELECT DISTINCT batch FROM read_parquet({sql_literal(str(live_manifest))}) ORDER BY 1"
        )
    if batches:
        files = sql_list([str(staging_dir / f"stg_files-{b}.parquet") for b in batches])
        con.execute(
            f"""CREATE TABLE dead AS
            SELECT file_path, batch FROM read_parquet({files})
            ANTI JOIN (SELECT file_path, batch FROM read_parquet({sql_literal(str(live_manifest))}))
            USING (file_path, batch)"""
        )
        if _one(con, "SELECT count(*) FROM dead"):
            dead = " ANTI JOIN dead USING (file_path, batch)"
    for name, schema in STAGING.items():
        if batches == []:
            con.register(f"empty_{name}", schema.empty_table())
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM empty_{name}")
            continue
        if batches is None:
            source = sql_literal(str(staging_dir / f"{name}-*.parquet"))
        else:
            source = sql_list([str(staging_dir / f"{name}-{b}.parquet") for b in batches])
        con.execute(f"CREATE VIEW {name} AS SELECT * EXCLUDE (batch) FROM read_parquet({source}){dead}")
    _fresh(con, "events")
    con.execute("CREATE TABLE event_ids AS SELECT event_id FROM fresh_events")
    years = _column(con, "SELECT DISTINCT substr(event_id, 1, 4) FROM fresh_events ORDER BY 1")
    event_parts = [*years, NO_EVENT]
    for name in EVENT_MODELS:
        if name != "events":
            _fresh(con, name)
        _write_parts(con, publication, name, event_parts, None, workers)
        crash_point(f"normalize:{name}")
        if name not in ("events", "relation_tags"):
            con.execute(f"DROP TABLE fresh_{name}")
    _write_targets(con, publication, event_parts, workers)
    crash_point("normalize:relation_targets")
    _fresh(con, "files")
    file_parts = sorted(
        {
            NO_EVENT,
            *_column(
                con, "SELECT DISTINCT substr(event_id, 1, 4) FROM fresh_files WHERE event_id IS NOT NULL"
            ),
        }
    )
    _write_parts(con, publication, "files", file_parts, None, workers)
    crash_point("normalize:files")
    _write_tags(con, publication)
    _write_countries(con, publication)
    return NormalizeResult(
        counts={},
        added=_one(con, "SELECT count(*) FROM fresh_events"),
        changed=0,
        removed=0,
    )


# --- Incremental build -------------------------------------------------------------------------
_SCOPE_KEYS = (("file_path", "changed"), ("event_id", "affected"))  # what puts a live file in scope


def _incremental(
    con: duckdb.DuckDBPyConnection,
    staging_dir: Path,
    publication: Path,
    live_manifest: Path,
    previous: BuildBase,
    workers: int,
    on_parts: PartsWritten | None = None,
) -> NormalizeResult:
    old = previous.publication
    # The live manifest from memory when this process holds it (its file may still be being
    # written: write_manifest), else from its file.
    rows = manifest_in_memory(live_manifest)
    if rows is None:  # (read with the amendment beside its base, if any)
        rows = read_manifest(live_manifest)
    con.register("live_manifest", rows.select(["file_path", "batch", "event_id"]))
    listed = changes_path(live_manifest)  # written by the parse (the same rows, known there)
    if listed.exists():
        con.execute(
            f"""CREATE TABLE changed AS SELECT file_path, old_event_id, new_event_id, coalesce(known, false) AS known
            FROM read_parquet({sql_literal(str(listed))})"""
        )
    else:
        con.register(
            "previous_manifest", read_manifest(previous.manifest).select(["file_path", "batch", "event_id"])
        )
        con.execute(
            """CREATE TABLE changed AS
            SELECT coalesce(n.file_path, o.file_path) AS file_path,
                   o.event_id AS old_event_id, n.event_id AS new_event_id, o.file_path IS NOT NULL AS known
            FROM previous_manifest o
            FULL JOIN live_manifest n ON n.file_path = o.file_path
            WHERE o.batch IS DISTINCT FROM n.batch"""
        )
    # Event ids whose winning file may differ: those any changed file had or has.
    con.execute(
        """CREATE TABLE affected AS
        SELECT old_event_id AS event_id FROM changed WHERE old_event_id IS NOT NULL
        UNION SELECT new_event_id FROM changed WHERE new_event_id IS NOT NULL"""
    )
    # Files whose rows are recomputed: the changed ones and every live file of an affected event.
    # Looked up in the manifest's Arrow columns: for a few paths and ids one comparison per key
    # (`among`); DuckDB's two semi joins built hash tables over the million-row manifest, 45 ms
    # of every one-file batch.
    keys = [pa.array(_column(con, f"SELECT DISTINCT {c} FROM {t}"), pa.string()) for c, t in _SCOPE_KEYS]
    mask = pc.or_(among(rows["file_path"], keys[0]), among(rows["event_id"], keys[1]))
    con.register("scope_rows", rows.filter(mask).select(["file_path", "batch"]))
    con.execute("CREATE TABLE scope AS SELECT DISTINCT file_path, batch FROM scope_rows")
    con.execute("CREATE TABLE recomputed AS SELECT file_path FROM changed UNION SELECT file_path FROM scope")
    batches = _column(con, "SELECT DISTINCT batch FROM scope ORDER BY 1")
    for name, schema in STAGING.items():
        if batches:
            files = sql_list([str(staging_dir / f"{name}-{b}.parquet") for b in batches])
            con.execute(
                f"CREATE VIEW {name} AS SELECT * EXCLUDE (batch) FROM read_parquet({files}) "
                "SEMI JOIN scope USING (file_path, batch)"
            )
        else:
            con.register(f"empty_{name}", schema.empty_table())
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM empty_{name}")

    years = _column(con, "SELECT DISTINCT substr(event_id, 1, 4) FROM affected")
    _fresh(con, "events")
    old_events = sql_list(
        [str(part_path(old, "events", y)) for y in years if part_path(old, "events", y).exists()]
    )
    con.execute(
        "CREATE TABLE old_touched AS "
        + (
            f"SELECT event_id, content_sha256, file_path FROM read_parquet({old_events}) "
            "SEMI JOIN affected USING (event_id)"
            if old_events != "[]"
            else "SELECT NULL::VARCHAR AS event_id, NULL::VARCHAR AS content_sha256, "
            "NULL::VARCHAR AS file_path WHERE false"
        )
    )
    # The new publication's event ids that the recomputed Related items point at (the model
    # `relations` asks): the fresh events, and the previous ones those items name. Not all:
    # a million ids, hashed for each `IN`, took 0.4 s of a one-file batch at 1M events.
    con.execute(
        f"""CREATE TABLE event_ids AS
        SELECT event_id FROM read_parquet({sql_literal(table_glob(old, "events"))})
        SEMI JOIN (SELECT DISTINCT related_event_id AS event_id FROM stg_relations) USING (event_id)
        ANTI JOIN affected USING (event_id)
        UNION ALL SELECT event_id FROM fresh_events"""
    )
    # Relations elsewhere whose target appeared or disappeared change `resolved`: their parts too.
    flips = """(SELECT event_id FROM old_touched EXCEPT SELECT event_id FROM fresh_events)
               UNION (SELECT event_id FROM fresh_events EXCEPT SELECT event_id FROM old_touched)"""
    con.execute(f"CREATE TABLE flipped AS {flips}")
    flip_years = pointing_parts(con, old, _column(con, "SELECT event_id FROM flipped ORDER BY 1"), "flipped")
    event_parts = sorted(set(years) | set(flip_years))
    linked = 0
    # Each table's parts are written by threads while this one computes the next table's
    # rows: a one-file batch's parts at 110k were written 35 ms sooner than after the models.
    # Two writers, each on its cursor: a part's COPY keeps one core busy and more only in its
    # parallel phases (the sort, the compression), so two overlap their single-threaded ones
    # (a run adding 100 files at 1M: the eight year-part writes in 0.52 s instead of 0.65 s).
    # Started in table order; the crash points are passed in that order once all are written.
    cursors: queue.SimpleQueue[duckdb.DuckDBPyConnection] = queue.SimpleQueue()
    for _ in range(PART_WRITERS):
        cursors.put(track(con.cursor()))  # interrupted on a signal, as `con` is
    writer = ThreadPoolExecutor(PART_WRITERS, thread_name_prefix="write-parts")
    failed: list[BaseException] = []

    def write(
        step: Callable[..., None], *args: Any, after: Future[None] | None = None, **kwargs: Any
    ) -> None:
        if after is not None:  # a write this one reads
            after.result()
        if failed:  # an earlier write failed, and with it the run
            return
        cursor = cursors.get()
        try:
            step(cursor, publication, *args, **kwargs)
        except BaseException as exc:
            failed.append(exc)
            raise
        finally:
            cursors.put(cursor)

    writes: dict[str, Future[None]] = {}
    try:
        for name in EVENT_MODELS:
            if failed:
                break
            for model, (_, read_by) in CARRIED.items():
                if read_by == name:  # its carried column goes with this model: written first
                    writes[model].result()
            if name != "events":
                _fresh(con, name)
            (publication / name).mkdir(parents=True, exist_ok=True)  # linked into meanwhile
            writes[name] = writer.submit(write, _write_parts, name, event_parts, old, 1)
            linked += link_untouched(old, publication, name, event_parts)
        # From the written parts of relations.
        (publication / "relation_targets").mkdir(parents=True, exist_ok=True)
        writes["relation_targets"] = writer.submit(
            write, _write_targets, event_parts, 1, after=writes["relations"]
        )
        linked += link_untouched(old, publication, "relation_targets", event_parts)
        _fresh(con, "files")
        file_parts = sorted(
            {
                # A new file had no row; a known one without an event had its row in `none`.
                *_column(
                    con,
                    "SELECT DISTINCT coalesce(substr(old_event_id, 1, 4), 'none') FROM changed WHERE known",
                ),
                *_column(con, "SELECT DISTINCT coalesce(substr(new_event_id, 1, 4), 'none') FROM changed"),
                *years,
            }
        )
        (publication / "files").mkdir(parents=True, exist_ok=True)
        writes["files"] = writer.submit(write, _write_parts, "files", file_parts, old, 1, keyed_by_file=True)
        linked += link_untouched(old, publication, "files", file_parts)
        for name, done in writes.items():  # each table's crash point, in this thread (a stall
            done.result()  # there must see the run's signals), after its write
            crash_point(f"normalize:{name}")
    finally:
        writer.shutdown(wait=True, cancel_futures=True)
        for _ in range(PART_WRITERS):
            cursors.get().close()
    for name in EVENT_MODELS:
        if name not in ("events", "relation_tags"):
            con.execute(f"DROP TABLE fresh_{name}")
    if part_path(old, "countries", WHOLE).exists():  # the gazetteer ships with the code: as before
        (publication / "countries").mkdir(parents=True, exist_ok=True)
        linked += link_untouched(old, publication, "countries", [])
        crash_point("normalize:countries")
    else:
        _write_countries(con, publication)
    rewritten = {name: event_parts for name in EVENT_MODELS} | {"files": file_parts}
    event_ids = _column(con, "SELECT event_id FROM affected ORDER BY 1")
    file_paths = _column(con, "SELECT file_path FROM recomputed ORDER BY 1")
    if on_parts is not None:
        on_parts(dict(rewritten), Touched(event_ids, file_paths, old, _days(event_ids)))
    tag_ids = _write_tags(con, publication, old)
    counts = con.execute(
        """SELECT count(*) FILTER (WHERE o.event_id IS NULL),
                  count(*) FILTER (WHERE o.event_id IS NOT NULL AND n.event_id IS NOT NULL
                                   AND (o.content_sha256 <> n.content_sha256 OR o.file_path <> n.file_path)),
                  count(*) FILTER (WHERE n.event_id IS NULL)
           FROM old_touched o FULL JOIN (SELECT event_id, content_sha256, file_path FROM fresh_events) n
           USING (event_id)"""
    ).fetchone()
    assert counts is not None
    added, changed, removed = counts
    touched = Touched(
        event_ids, file_paths, old, _days(event_ids) | ({} if tag_ids is None else {"tag_id": tag_ids})
    )
    return NormalizeResult(
        counts={},
        added=added,
        changed=changed,
        removed=removed,
        rewritten=rewritten,
        linked=linked,
        touched=touched,
    )


# --- Shared steps ------------------------------------------------------------------------------
def _fresh(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Materialize a model over the staging views in scope; later models read it as `name`
    (without a CARRIED column: that one only the model it is carried for reads, from `fresh_`,
    and it is dropped once that model is materialized)."""
    con.execute(f"CREATE TABLE fresh_{name} AS {model_sql(name)}")
    con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT {_published(name)} FROM fresh_{name}")
    _release_carried(con, name)


def _published(name: str) -> str:
    """The columns of `fresh_<name>` that its table publishes."""
    return f"* EXCLUDE ({CARRIED[name][0]})" if name in CARRIED else "*"


def _release_carried(con: duckdb.DuckDBPyConnection, reader: str) -> None:
    """Drop the CARRIED columns that model `reader` has now read."""
    for model, (column, read_by) in CARRIED.items():
        if read_by == reader:
            con.execute(f"ALTER TABLE fresh_{model} DROP COLUMN {column}")
            con.execute(f"CREATE OR REPLACE VIEW {model} AS SELECT * FROM fresh_{model}")


def _write_parts(
    con: duckdb.DuckDBPyConnection,
    publication: Path,
    name: str,
    part_keys: list[str],
    old: Path | None,
    workers: int,
    keyed_by_file: bool = False,
) -> None:
    """Write each part, in the table's ORDER: its fresh rows plus, incrementally, the previous
    part's untouched rows. The caller passes the table's crash point once it is written."""
    (publication / name).mkdir(parents=True, exist_ok=True)
    jobs = []
    for part in part_keys:
        fresh = f"SELECT {_published(name)} FROM fresh_{name} WHERE {part_filter(part)}"
        sql = fresh if name in PRESORTED else f"{fresh} ORDER BY {ORDER[name]}"
        previous_part = part_path(old, name, part) if old is not None else None
        if previous_part is not None and previous_part.exists():
            untouched = (
                "ANTI JOIN recomputed USING (file_path)"
                if keyed_by_file
                else "ANTI JOIN affected USING (event_id)"
            )
            columns = "*"
            if name == "relations":
                # A kept row's target may have appeared or gone: only a recomputed event can
                # have (it is in the new publication if it is fresh); any other is as it was.
                columns = (
                    "* REPLACE (CASE WHEN related_event_id IN (SELECT event_id FROM affected) "
                    "THEN related_event_id IN (SELECT event_id FROM fresh_events) ELSE resolved END "
                    "AS resolved)"
                )
            sql = (
                f"SELECT * FROM ({fresh} UNION ALL BY NAME SELECT {columns} "
                f"FROM read_parquet({sql_literal(str(previous_part))}) {untouched}) ORDER BY {ORDER[name]}"
            )
        jobs.append((sql, part_path(publication, name, part)))
    write_parts(con, jobs, PARQUET_OPTIONS, workers)


def _write_targets(
    con: duckdb.DuckDBPyConnection, publication: Path, part_keys: list[str], workers: int
) -> None:
    """`relation_targets` (internal): each written part of `relations`, its distinct targets
    sorted, so that which parts point at given events is read from a few row groups
    (`pointing_parts`). From the written parts: a part's rows are complete only there."""
    (publication / "relation_targets").mkdir(parents=True, exist_ok=True)
    jobs = [
        (
            f"SELECT DISTINCT related_event_id FROM read_parquet({sql_literal(str(part_path(publication, 'relations', part)))}) ORDER BY 1",
            part_path(publication, "relation_targets", part),
        )
        for part in part_keys
        if part_path(publication, "relations", part).exists()
    ]
    write_parts(con, jobs, PARQUET_OPTIONS, workers)


def _write_tags(
    con: duckdb.DuckDBPyConnection, publication: Path, old: Path | None = None
) -> list[str] | None:
    """`tags` from every part of event_tags and tag_spellings (a few columns of each). With
    `old` (the previous publication; `affected` holds the events whose rows were recomputed),
    only the tags those events name, before or after, are recomputed: a tag's row depends on
    the events naming it alone. The rest are the previous rows. Returns the recomputed tag
    ids (None: all of them)."""
    for name in ("events", "event_tags", "tag_spellings"):
        con.execute(
            f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet({sql_literal(table_glob(publication, name))})"
        )
    target = part_path(publication, "tags", WHOLE)
    if old is None or not part_path(old, "tags", WHOLE).exists():
        write_part(con, model_sql("tags"), target, PARQUET_OPTIONS)
        crash_point("normalize:tags")
        return None
    # The recomputed events' rows, before and after: in their years' parts.
    years = _column(con, "SELECT DISTINCT substr(event_id, 1, 4) FROM affected")
    for side, pub in (("old", old), ("new", publication)):
        for name, columns in (
            ("event_tags", ("event_id", "tag_id")),
            ("tag_spellings", ("event_id", "tag_id", "name")),
        ):
            rows = f"SELECT {', '.join(columns)} FROM {parts_rows(pub, name, years, columns)} SEMI JOIN affected USING (event_id)"
            con.execute(f"CREATE TABLE tg_{side}_{name} AS {rows}")
    con.execute(
        """CREATE TABLE touched_tags AS
        SELECT tag_id FROM tg_new_event_tags UNION SELECT tag_id FROM tg_old_event_tags
        UNION SELECT tag_id FROM tg_new_tag_spellings UNION SELECT tag_id FROM tg_old_tag_spellings"""
    )
    previous = f"read_parquet({sql_literal(str(part_path(old, 'tags', WHOLE)))})"
    # A tag that the recomputed events did not name before, and now name only by its name,
    # only gained events: its name stays the most used spelling, its count and dates follow
    # from the previous row and the events gained. Reading a broad tag's rows to recount
    # them decoded every row group of event_tags and tag_spellings (a country's rows are all
    # over the archive: 0.25 s of a one-file batch at a million events). The other tags
    # (new, renamed, or losing an event) are recomputed from their rows.
    con.execute(
        f"""CREATE TABLE tg_gained AS
        SELECT o.tag_id, o.name,
               CAST(o.event_count + g.events AS INTEGER) AS event_count,
               least(o.first_date, g.first_date) AS first_date,
               greatest(o.last_date, g.last_date) AS last_date
        FROM {previous} o
        JOIN (SELECT tag_id, count(*) AS events, min(e.event_date) AS first_date, max(e.event_date) AS last_date
              FROM tg_new_event_tags JOIN (SELECT event_id, event_date FROM fresh_events) e USING (event_id)
              GROUP BY tag_id) g USING (tag_id)
        WHERE o.tag_id NOT IN (SELECT tag_id FROM tg_old_event_tags UNION SELECT tag_id FROM tg_old_tag_spellings)
          AND NOT EXISTS (SELECT 1 FROM tg_new_tag_spellings s WHERE s.tag_id = o.tag_id AND s.name <> o.name)"""
    )
    con.execute(
        "CREATE TABLE tg_recount AS SELECT tag_id FROM touched_tags ANTI JOIN tg_gained USING (tag_id)"
    )
    scoped_model(
        con,
        "tags",
        "fresh_tags",
        {
            name: f"SELECT * FROM main.{name} SEMI JOIN main.tg_recount USING (tag_id)"
            for name in ("event_tags", "tag_spellings")
        },
    )
    write_part(
        con,
        f"""SELECT * FROM (SELECT * FROM {previous} ANTI JOIN touched_tags USING (tag_id)
            UNION ALL SELECT * FROM tg_gained UNION ALL SELECT * FROM fresh_tags) ORDER BY tag_id""",
        target,
        PARQUET_OPTIONS,
    )
    tag_ids = _column(con, "SELECT tag_id FROM touched_tags ORDER BY 1")
    for name in ("fresh_tags", "touched_tags", "tg_gained", "tg_recount"):
        con.execute(f"DROP TABLE {name}")
    for side in ("old", "new"):
        for name in ("event_tags", "tag_spellings"):
            con.execute(f"DROP TABLE tg_{side}_{name}")
    crash_point("normalize:tags")
    return tag_ids


def _write_countries(con: duckdb.DuckDBPyConnection, publication: Path) -> None:
    """`countries` from the gazetteer (pipeline/places): every ISO 3166-1 code, and Kosovo."""
    from pipeline.places.gazetteer import countries_table

    con.register("gazetteer_countries", countries_table())
    write_part(
        con,
        "SELECT * FROM gazetteer_countries ORDER BY country_code",
        part_path(publication, "countries", WHOLE),
        PARQUET_OPTIONS,
    )
    con.unregister("gazetteer_countries")
    crash_point("normalize:countries")


def _counts(publication: Path) -> dict[str, int]:
    return {name: row_count(publication, name) for name in MODELS}
