"""What each publication changed, kept for downstream systems that load incrementally.

Every time the current publication changes (a run publishes, a rollback restores), a
transition is recorded in `state/changes/<seq>/`: `meta.json` (`from`, `to`, when, and the
parts of each table it touched) and, per table, `<table>.parquet` with the key values (the
registry's key columns, pipeline/core/tables.py) of every row group that was inserted,
changed or removed. Only the parts the run rewrote are compared (the others are hard links to
the previous publication's), so recording is proportional to the change, and the log stays
when old publications are pruned.

`changes_since(RUN_ID)` follows the transitions from the last time RUN_ID became current up
to the current publication; the union of their keys is the change set (pipeline/publish/
export.py writes it). The `changes` table lists, for each transition of a published run, the
events it added, changed or removed: an event is changed when any of its rows, in any
event-keyed table, changed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.core.config import OutputLayout
from pipeline.core.databases import open_memory
from pipeline.core.sqltext import sql_list, sql_literal
from pipeline.core.storage import save_json, save_parquet
from pipeline.core.tables import (
    KEYED_ROWS,
    PUBLISHED,
    TABLE,
    TOUCHED_ROWS,
    WHOLE,
    YEAR,
    link_untouched,
    part_path,
    parts,
    touched_rows,
)

if TYPE_CHECKING:
    from pipeline.transform.normalize import Touched

CHANGES_SCHEMA = pa.schema([("run_id", pa.string()), ("event_id", pa.string()), ("change", pa.string())])
# Tables whose rows belong to an event (keyed by event_id): an event changed in any of them is
# `changed` in the `changes` table.
EVENT_KEYED = tuple(t for t in PUBLISHED if TABLE[t].key == ("event_id",))
# Tables whose changed keys are found by comparing the parts; `runs` (key []) is replaced whole
# in a change set and `changes` is keyed by the runs it lists.
DIFFED = tuple(t for t in PUBLISHED if TABLE[t].key and t != "changes")


class ChangeLogError(Exception):
    """No change set can be made from that run."""


@dataclass(frozen=True)
class Transition:
    seq: int
    folder: Path
    source: str | None  # the publication current before (None: the first publication)
    target: str  # the publication current after
    at: str
    parts: dict[str, list[str] | None]  # table -> parts touched (None: every part)


def log_folder(layout: OutputLayout) -> Path:
    return layout.state / "changes"


# Transitions read before, by their meta.json's identity: a watcher records one per batch and
# reads them all in each, so a week of batches would otherwise parse ten thousand files per
# batch. A meta.json is written once (atomically: a new inode), so its identity names its content.
_read: dict[str, dict[tuple[str, int, int, int], Transition]] = {}


def transitions(layout: OutputLayout) -> list[Transition]:
    """Every recorded transition, oldest first."""
    folder = log_folder(layout)
    found = []
    known = _read.get(str(folder), {})
    seen: dict[tuple[str, int, int, int], Transition] = {}
    if folder.is_dir():
        for entry in folder.iterdir():
            meta = entry / "meta.json"
            try:
                st = meta.stat()
            except OSError:
                st = None
            if not entry.name.isdigit() or st is None or not stat.S_ISREG(st.st_mode):
                continue  # a transition being written, or killed before its meta: not recorded
            key = (str(meta), st.st_dev, st.st_ino, st.st_mtime_ns)
            transition = known.get(key)
            if transition is None:
                value = json.loads(meta.read_text(encoding="utf-8"))
                transition = Transition(
                    int(entry.name), entry, value["from"], value["to"], value["at"], value["parts"]
                )
            seen[key] = transition
            found.append(transition)
    _read[str(folder)] = seen  # only what is there now: forgotten transitions go
    return sorted(found, key=lambda t: t.seq)


def _arrow(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    table = con.sql(sql).to_arrow_table()
    assert table is not None
    return table


def _connect(spill: Path) -> duckdb.DuckDBPyConnection:
    """1 GB of memory, spilling inside the output (DuckDB's default is `.tmp` in the working
    directory: outside the output, and maybe not writable)."""
    spill.mkdir(parents=True, exist_ok=True)
    con = open_memory({"threads": 2, "memory_limit": "1GB"})
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET temp_directory = {sql_literal(str(spill))}")
    con.execute("SET parquet_metadata_cache = true")  # each part is described, then read
    return con


def _part_files(publication: Path | None, table: str, names: list[str] | None) -> list[str]:
    if publication is None:
        return []
    chosen = (
        parts(publication, table)
        if names is None
        else [n for n in names if part_path(publication, table, n).exists()]
    )
    return [str(part_path(publication, table, n)) for n in chosen]


def _relation(
    con: duckdb.DuckDBPyConnection, files: list[str], columns: list[str], where: str | None = None
) -> str:
    if files:
        rows = f" WHERE {where}" if where else ""
        return (
            f"(SELECT {', '.join(columns)} FROM read_parquet({sql_list(files)}, union_by_name = true){rows})"
        )
    return f"(SELECT {', '.join(f'NULL AS {c}' for c in columns)} WHERE false)"


def _columns(files: list[str]) -> list[str]:
    """The columns of `files` as `read_parquet(files, union_by_name = true)` has them (in order
    of first appearance), from the footers: asking DuckDB (`DESCRIBE`) took 2 ms a file, and
    a watcher's batch asks for 26."""
    names: dict[str, None] = {}
    for file in files:
        names.update(dict.fromkeys(pq.ParquetFile(file).schema_arrow.names))
    return list(names)


def record(
    layout: OutputLayout,
    source: str | None,
    target: str,
    rewritten: dict[str, list[str]] | None,
    recomputed: Touched | None = None,
) -> Transition:
    """Record the change from publication `source` (None: nothing before) to `target`.
    `rewritten`: the parts the run wrote per table (None: compare every part); with
    `recomputed` too (an incremental build's recomputed events and files), only the rows of
    those parts that can differ are compared (TOUCHED_ROWS): the rest are the previous
    publication's (at 1M events, a run adding 100 files compared a year of every table)."""
    old = layout.publication(source) if source else None
    new = layout.publication(target)
    folder = log_folder(layout)
    folder.mkdir(parents=True, exist_ok=True)
    seq = max((t.seq for t in transitions(layout)), default=0) + 1
    entry = folder / f"{seq:09d}"
    entry.mkdir(exist_ok=True)
    touched: dict[str, list[str] | None] = {}
    spill = layout.work / f"changes-{seq:09d}"
    con = _connect(spill)
    rows = recomputed if rewritten is not None else None  # only rewritten parts have such rows
    try:
        if rows is not None:
            con.register("touched_events", pa.table({"event_id": pa.array(rows.event_ids, pa.string())}))
            con.register("touched_files", pa.table({"file_path": pa.array(rows.file_paths, pa.string())}))
            for column, values in rows.keys.items():
                con.register(f"touched_key_{column}", pa.table({column: pa.array(values, pa.string())}))
        # The first publication's keys are never read (a change set starts after a run's
        # transition, and nothing comes before the first): only its events are listed.
        compared: dict[str, tuple[list[str] | None, str | None]] = {}
        for table in DIFFED if old is not None else ():
            spec = TABLE[table]
            names = None if rewritten is None or spec.layout != YEAR else rewritten.get(table)
            touched[table] = names
            compared[table] = (names, _recomputed_rows(table, rows))
        if rows is not None and old is not None:  # a few rows of a few parts: one query
            found = _changed_keys_at_once(con, old, new, compared)
        else:
            found = {t: _changed_keys(con, old, new, t, *compared[t]) for t in compared}
        for table, keys in found.items():
            save_parquet(entry / f"{table}.parquet", keys)
        events = _event_changes(con, entry, old, new, target)
        save_parquet(entry / "events-changes.parquet", events)
        # `changes` itself, keyed by run: this run's rows are new; a rollback drops the rows of
        # the runs it goes back over (they are not in the restored publication's table).
        before = _changes_runs(con, old)
        after = _changes_runs(con, new) if (new / "changes").is_dir() else before | {target}
        keys = sorted((before ^ after) | {target})
        save_parquet(entry / "changes.parquet", pa.table({"run_id": pa.array(keys, pa.string())}))
        touched["changes"] = None
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    save_json(
        entry / "meta.json", {"from": source, "to": target, "at": at, "parts": touched}
    )  # last: recorded
    return Transition(seq, entry, source, target, at, touched)


def _recomputed_rows(table: str, rows: Touched | None) -> str | None:
    """The rows of `table` an incremental build recomputed, as SQL (None: every row): those of
    its recomputed events and files, or of the keys it names (the tags and storylines it
    recomputed: at 110k events, diffing those two tables whole was 85 ms of a one-file batch)."""
    if rows is None:
        return None
    if table in TOUCHED_ROWS:
        return touched_rows(table, rows.event_ids)
    keyed = KEYED_ROWS.get(table)
    return keyed[1] if keyed is not None and keyed[0] in rows.keys else None


def _changed_keys(
    con: duckdb.DuckDBPyConnection,
    old: Path | None,
    new: Path,
    table: str,
    names: list[str] | None,
    where: str | None = None,
) -> pa.Table:
    """The keys of `table` whose rows differ between the two publications, in the parts
    `names` (None: all), among the rows `where` selects (None: every row). A table split by
    year is compared part by part: a row's part follows from its own event id, so equal rows
    share a part, and DuckDB holds one year at a time (comparing a 1M-event publication whole
    ran out of its 1 GB on relations)."""
    key = list(TABLE[table].key)
    pairs = _part_pairs(old, new, table, names)
    if TABLE[table].layout != YEAR:
        ((old_files, new_files),) = pairs
        if _same_files(old_files, new_files):  # hard-linked: nothing can differ
            return _arrow(con, _diff_sql(con, [], [], key))
        return _arrow(con, _diff_sql(con, old_files, new_files, key, where))
    pieces = [
        _arrow(con, _diff_sql(con, old_files, new_files, key, where))
        for old_files, new_files in pairs
        if old_files or new_files
    ]
    if not pieces:
        return _arrow(con, _diff_sql(con, [], [], key))
    return pa.concat_tables(pieces, promote_options="permissive").group_by(key).aggregate([])


def _part_pairs(
    old: Path | None, new: Path, table: str, names: list[str] | None
) -> list[tuple[list[str], list[str]]]:
    """The files to compare of `table`, old against new: its one set of files, or each year
    part of `names` (None: every part either publication has)."""
    if TABLE[table].layout != YEAR:
        return [(_part_files(old, table, names), _part_files(new, table, names))]
    if names is None:
        names = (
            sorted(set(parts(old, table)) | set(parts(new, table))) if old is not None else parts(new, table)
        )
    return [(_part_files(old, table, [n]), _part_files(new, table, [n])) for n in names]


UNION_PIECES = 16  # comparisons per query in `_changed_keys_at_once` (a one-file batch: 11)


def _changed_keys_at_once(
    con: duckdb.DuckDBPyConnection,
    old: Path,
    new: Path,
    compared: dict[str, tuple[list[str] | None, str | None]],
) -> dict[str, pa.Table]:
    """`_changed_keys` of every table in `compared` (table -> its parts and rows), in a query
    per `UNION_PIECES` comparisons: an incremental build's recomputed rows are few, and a query
    per table and part (11-12 in a watcher's one-file batch) paid DuckDB's and its Python
    layer's fixed cost each time, the change log's largest share of a batch. Each table's keys
    keep their column's type; a table with no file on either side is asked on its own
    (`_changed_keys`)."""
    pieces: list[str] = []
    found: dict[str, pa.Table] = {}
    types: dict[str, pa.DataType] = {}
    for number, (table, (names, where)) in enumerate(compared.items()):
        (key,) = TABLE[table].key
        pairs = _part_pairs(old, new, table, names)
        files = [f for pair in pairs for side in pair for f in side]
        if not files:
            found[table] = _changed_keys(con, old, new, table, names, where)
            continue
        types[table] = pq.ParquetFile(files[0]).schema_arrow.field(key).type
        for old_files, new_files in pairs:
            if (old_files or new_files) and not _same_files(old_files, new_files):
                diff = _diff_sql(con, old_files, new_files, [key], where, grouped=True)
                pieces.append(f"SELECT {number} AS t, CAST({key} AS VARCHAR) AS k FROM ({diff})")
    # A query per UNION_PIECES comparisons: each holds its own hash table, and a run that
    # emptied the sample archive (every year part of every table, 219 of them in one query)
    # ran out of the connection's 1 GB.
    answers = [
        _arrow(con, f"SELECT DISTINCT t, k FROM ({' UNION ALL '.join(pieces[at : at + UNION_PIECES])})")
        for at in range(0, len(pieces), UNION_PIECES)
    ]
    result = (
        pa.concat_tables(answers)
        .group_by(["t", "k"])
        .aggregate([])
        .sort_by([("t", "ascending"), ("k", "ascending")])
        if answers
        else None
    )
    for number, table in enumerate(compared):
        if table in found:
            continue
        (key,) = TABLE[table].key
        keys = pa.array([], pa.string())
        if result is not None:
            keys = result.filter(pc.equal(result["t"], number))["k"].combine_chunks()
        found[table] = pa.table({key: keys.cast(types[table])})
    return {table: found[table] for table in compared}


def _same_files(old_files: list[str], new_files: list[str]) -> bool:
    """Whether both lists name the same files (hard links of one another), in order."""
    if not old_files or len(old_files) != len(new_files):
        return False
    try:
        return all(os.path.samefile(a, b) for a, b in zip(old_files, new_files, strict=True))
    except OSError:
        return False


def _diff_sql(
    con: duckdb.DuckDBPyConnection,
    old_files: list[str],
    new_files: list[str],
    key: list[str],
    where: str | None = None,
    grouped: bool = False,
) -> str:
    """The distinct keys of the rows (those `where` selects) in one set of files and not the other.

    `grouped`: by comparing each key's rows on both sides as sorted lists, which reads each
    side once where the two `EXCEPT ALL`s read it twice (the same keys: NULLs compare equal
    in both, and a sorted list is the rows with their repeats): a quarter to a third less time
    over the few recomputed rows of an incremental build (measured at 110k events); a full
    build's whole parts keep `EXCEPT ALL`."""
    old_cols, new_cols = _columns(old_files), _columns(new_files)
    if old_cols and new_cols and old_cols != new_cols:  # another release's columns: all of it
        return f"SELECT DISTINCT {', '.join(key)} FROM ({_relation(con, old_files, key)} UNION ALL {_relation(con, new_files, key)})"
    cols = new_cols or old_cols or key
    a, b = _relation(con, old_files, cols, where), _relation(con, new_files, cols, where)
    keys = ", ".join(key)
    if grouped:
        side = "SELECT {keys}, {n} AS side, row_values AS r FROM {rows} AS row_values"  # the row as a struct
        return (
            f"SELECT {keys} FROM ({side.format(keys=keys, n=0, rows=a)} UNION ALL "
            f"{side.format(keys=keys, n=1, rows=b)}) GROUP BY {keys} HAVING "
            "list_sort(list(r) FILTER (WHERE side = 0)) IS DISTINCT FROM list_sort(list(r) FILTER (WHERE side = 1))"
        )
    return (
        f"SELECT DISTINCT {', '.join(key)} FROM "
        f"((SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b}) UNION ALL (SELECT * FROM {b} EXCEPT ALL SELECT * FROM {a}))"
    )


def _changes_runs(con: duckdb.DuckDBPyConnection, publication: Path | None) -> set[str]:
    if publication is None or not (publication / "changes").is_dir():
        return set()
    glob = sql_literal(str(publication / "changes" / "*.parquet"))
    return {row[0] for row in con.execute(f"SELECT DISTINCT run_id FROM read_parquet({glob})").fetchall()}


def _event_changes(
    con: duckdb.DuckDBPyConnection, entry: Path, old: Path | None, new: Path, target: str
) -> pa.Table:
    """(run_id, event_id, change) for every event whose rows changed in this transition."""
    if old is None:  # the first publication: every event is added
        glob = sql_literal(str(new / "events" / "*.parquet"))
        return _arrow(
            con,
            f"SELECT {sql_literal(target)} AS run_id, event_id, 'added' AS change "
            f"FROM read_parquet({glob}) ORDER BY event_id",
        ).cast(CHANGES_SCHEMA)
    keyed = [sql_literal(str(entry / f"{t}.parquet")) for t in EVENT_KEYED]
    union = " UNION ".join(f"SELECT event_id FROM read_parquet({f})" for f in keyed)
    old_events = (
        f"read_parquet({sql_literal(str(old / 'events' / '*.parquet'))})"
        if old
        else "(SELECT NULL::VARCHAR AS event_id WHERE false)"
    )
    new_events = f"read_parquet({sql_literal(str(new / 'events' / '*.parquet'))})"
    return _arrow(
        con,
        f"""WITH touched AS ({union}),
        o AS (SELECT event_id FROM {old_events} SEMI JOIN touched USING (event_id)),
        n AS (SELECT event_id FROM {new_events} SEMI JOIN touched USING (event_id))
        SELECT {sql_literal(target)} AS run_id, t.event_id,
               CASE WHEN o.event_id IS NULL THEN 'added' WHEN n.event_id IS NULL THEN 'removed' ELSE 'changed' END AS change
        FROM touched t LEFT JOIN o USING (event_id) LEFT JOIN n USING (event_id)
        WHERE o.event_id IS NOT NULL OR n.event_id IS NOT NULL
        ORDER BY t.event_id""",
    ).cast(CHANGES_SCHEMA)


def changes_table(layout: OutputLayout, publishing: str | None = None) -> pa.Table:
    """The `changes` table: the event changes of every transition into a published run (and
    into `publishing`, the run being published), oldest first; a rollback's transition is not
    a run's change and is left out."""
    from pipeline.publish import runs

    log = runs.read_log(layout.run_log).select(["run_id", "published"]).to_pylist()
    published = {row["run_id"] for row in log if row["published"]} | ({publishing} if publishing else set())
    tables = []
    seen: set[str] = set()
    for transition in transitions(layout):
        if transition.target in published and transition.target not in seen:
            seen.add(transition.target)
            path = transition.folder / "events-changes.parquet"
            if path.exists():
                tables.append(pq.read_table(path).cast(CHANGES_SCHEMA))
    return pa.concat_tables(tables) if tables else CHANGES_SCHEMA.empty_table()


# A publication's `changes` is kept in parts: the previous publication's, hard-linked, and one
# with the rows of the run publishing it. Past this many parts, all but the largest are put
# back into one (a watcher publishes every few seconds).
MAX_CHANGES_PARTS = 32


def write_changes_table(layout: OutputLayout, publishing: str, base: Path | None, publication: Path) -> int:
    """Write the `changes` table of `publication` (run `publishing`, following the current
    publication `base`); the number of rows written.

    When the transition before this run's is the one that first made `base` current, base's
    own table is the table up to it: its parts are linked and only this run's rows written,
    instead of the whole table again (the first transition alone lists every event: reading
    and writing it was 0.55 s of each one-file batch at a million events)."""
    added = _appended(layout, publishing, base)
    folder = publication / "changes"
    folder.mkdir(parents=True, exist_ok=True)
    if added is None or base is None:  # (base is None only when added is: for the type checker)
        table = changes_table(layout, publishing=publishing)
        save_parquet(part_path(publication, "changes", WHOLE), table)
        return table.num_rows
    names = parts(base, "changes")
    merged: list[str] = []
    if len(names) >= MAX_CHANGES_PARTS:
        largest = max(names, key=lambda name: part_path(base, "changes", name).stat().st_size)
        merged = [name for name in names if name != largest]
        added = pa.concat_tables(
            [pq.read_table(part_path(base, "changes", name)).cast(CHANGES_SCHEMA) for name in merged]
            + [added]
        )
    link_untouched(base, publication, "changes", merged)
    save_parquet(part_path(publication, "changes", publishing), added)
    return added.num_rows


def _appended(layout: OutputLayout, publishing: str, base: Path | None) -> pa.Table | None:
    """The rows run `publishing` adds to base's `changes`; None unless base's table is the
    whole table up to this run's transition (no rollback in between, a table of parts)."""
    chain = transitions(layout)
    if base is None or len(chain) < 2 or not (base / "changes").is_dir():
        return None
    last, before = chain[-1], chain[-2]
    path = last.folder / "events-changes.parquet"
    if (
        last.target == publishing
        and before.target == base.name
        and all(t.target not in (base.name, publishing) for t in chain[:-2])
        and path.exists()
    ):
        return pq.read_table(path).cast(CHANGES_SCHEMA)
    return None


def path_since(layout: OutputLayout, run_id: str, current: str) -> list[Transition]:
    """The transitions from the last time `run_id` became current to the current publication."""
    from pipeline.publish import runs

    log = {row["run_id"]: row for row in runs.read_log(layout.run_log).to_pylist()}
    if run_id not in log:
        raise ChangeLogError(f"unknown run {run_id!r}: not in the run log of {layout.root}")
    if not log[run_id]["published"]:
        raise ChangeLogError(
            f"run {run_id} never published (outcome: {log[run_id].get('outcome') or 'failed'}): no publication to start from"
        )
    chain = transitions(layout)
    starts = [i for i, t in enumerate(chain) if t.target == run_id]
    if not starts:
        raise ChangeLogError(
            f"run {run_id} published before the change log began (its first entry is "
            f"{chain[0].target if chain else 'none'}): export the whole publication instead"
        )
    path = chain[starts[-1] + 1 :]
    position = run_id
    for step in path:
        if step.source != position:
            raise ChangeLogError(f"the change log has a gap between {position} and {step.target}")
        position = step.target
    if position != current:
        raise ChangeLogError(f"the change log ends at {position}, not at the current publication {current}")
    return path


def forget(layout: OutputLayout, targets: set[str]) -> None:
    """Drop the transitions into publications that never became current (a failed or killed
    publish), and folders a killed recording left without their meta. Each batch of a watcher
    calls it: the recorded ones are known from `transitions` (read once each), not read again."""
    folder = log_folder(layout)
    if not folder.is_dir():
        return
    recorded = {t.folder.name: t for t in transitions(layout)}
    for entry in folder.iterdir():
        if not entry.name.isdigit():
            continue
        transition = recorded.get(entry.name)
        if transition is None or transition.target in targets:
            shutil.rmtree(entry, ignore_errors=True)
