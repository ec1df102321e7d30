"""Storylines: events grouped into stories through their relations and shared contexts.

A storyline is a connected group of events in the graph whose links are *specific*
contexts: an event is linked to every specific tag it names in its own Related items,
and to every specific tag a Related item pointing at it names. So two events joined
by a relation that names a specific context always share a storyline, and so do two
events naming the same specific context.

A context is specific when it names an episode, not a theme: it reaches at most
`max_tag_events` events (those naming it and those the naming items point at) within
at most `max_tag_span_days` days. Countries,
organizations ("Islamic State") and wars that run for years are named by many events
over many years; letting them link would chain every story that mentions Iraq into
one component. An episode ("2014 Northern Iraq offensive", "Battle of Mosul
(2016–2017)") is named by tens of events over weeks or months. Broad contexts still
describe a storyline (`top_tags`); they just do not join storylines. A relation that
names only broad contexts, or none, links nothing. Only groups of two or more events
are storylines; an event in none has no `event_storylines` row.

The components are found with scipy's connected_components over the event-tag
bipartite graph; storylines are recomputed whole on every run, since one new event
can change whether a tag is specific (about 4 s of a 1M-event build, BENCHMARKS.md).
An incremental run then writes only the year parts of `event_storylines` whose rows
changed and hard-links the others, so that only those are validated again.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.config import StorylineRule
from pipeline.core.faults import crash_point
from pipeline.core.sqltext import model_sql, sql_literal
from pipeline.core.tables import (
    NO_EVENT,
    WHOLE,
    link_untouched,
    part_filter,
    part_path,
    parts,
    table_glob,
    write_part,
    write_parts,
)

DEFAULT_RULE = StorylineRule()


def components(edges: pa.Table) -> pa.Table:
    """(event_id, component) for every event in `edges` (columns event_id, tag_id): events
    sharing a component are connected through tags. Component numbers are arbitrary."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if edges.num_rows == 0:
        return pa.table({"event_id": pa.array([], pa.string()), "component": pa.array([], pa.int64())})
    events = pc.dictionary_encode(edges.column("event_id")).combine_chunks()
    tags = pc.dictionary_encode(edges.column("tag_id")).combine_chunks()
    n_events, n_tags = len(events.dictionary), len(tags.dictionary)
    rows = events.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    cols = tags.indices.to_numpy(zero_copy_only=False).astype(np.int64) + n_events
    size = n_events + n_tags
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(size, size)).tocsr()
    _, labels = connected_components(graph, directed=False)
    return pa.table({"event_id": events.dictionary, "component": pa.array(labels[:n_events], pa.int64())})


def write_storylines(
    con: duckdb.DuckDBPyConnection,
    publication: Path,
    rule: StorylineRule,
    parquet_options: str,
    previous: Path | None = None,
    workers: int = 1,
) -> tuple[list[str], int]:
    """Write `event_storylines` (split by event year) and `storylines` (one file) from the
    written tables. With `previous` (the publication an incremental build starts from), only
    the year parts whose rows changed are written, the rest are hard-linked, so validation
    checks only those. Returns (parts written, parts linked)."""
    for name in ("events", "event_tags", "relation_tags", "tags"):
        con.execute(
            f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet({sql_literal(table_glob(publication, name))})"
        )
    params = {"max_events": rule.max_tag_events, "max_span_days": rule.max_tag_span_days}
    con.execute(f"CREATE OR REPLACE TABLE specific_tags AS {model_sql('specific_tags')}", params)
    edges = con.sql(model_sql("storyline_edges")).to_arrow_table()
    membership = components(edges)
    del edges
    con.register("event_components", membership)
    con.execute(f"CREATE OR REPLACE TABLE fresh_event_storylines AS {model_sql('event_storylines')}")
    con.unregister("event_components")
    con.execute("CREATE OR REPLACE VIEW event_storylines AS SELECT * FROM fresh_event_storylines")
    con.execute(f"CREATE OR REPLACE TABLE fresh_storylines AS {model_sql('storylines')}")
    old_parts = parts(previous, "event_storylines") if previous is not None else []
    if WHOLE in old_parts:  # a publication of the layout before the split: nothing to reuse
        previous, old_parts = None, []
    written = _changed_parts(con, previous, old_parts)
    (publication / "event_storylines").mkdir(parents=True, exist_ok=True)
    jobs = [
        (
            f"SELECT * FROM fresh_event_storylines WHERE {part_filter(part)}",
            part_path(publication, "event_storylines", part),
        )
        for part in written
    ]
    write_parts(con, jobs, parquet_options, workers)
    linked = link_untouched(previous, publication, "event_storylines", written) if previous else 0
    write_part(
        con, "SELECT * FROM fresh_storylines", part_path(publication, "storylines", WHOLE), parquet_options
    )
    for name in ("event_storylines", "storylines"):
        con.execute(f"DROP TABLE fresh_{name} CASCADE")
    con.execute("DROP TABLE specific_tags")
    crash_point("normalize:storylines")
    return written, linked


def _changed_parts(con: duckdb.DuckDBPyConnection, previous: Path | None, old_parts: list[str]) -> list[str]:
    """The year parts of `event_storylines` to write: all of them, or with a previous
    publication (whose parts are `old_parts`) those where a row was added, removed or
    changed its storyline (a part whose rows all left is written empty rather than linked)."""
    years = [
        r[0]
        for r in con.execute("SELECT DISTINCT substr(event_id, 1, 4) FROM fresh_event_storylines").fetchall()
    ]
    every = sorted({*years, NO_EVENT})
    if previous is None or not old_parts:
        return every
    old = f"read_parquet({sql_literal(table_glob(previous, 'event_storylines'))})"
    changed = con.execute(
        f"""SELECT DISTINCT substr(event_id, 1, 4) FROM (
            (SELECT event_id, storyline_id FROM fresh_event_storylines
             EXCEPT SELECT event_id, storyline_id FROM {old})
            UNION ALL
            (SELECT event_id, storyline_id FROM {old}
             EXCEPT SELECT event_id, storyline_id FROM fresh_event_storylines))"""
    ).fetchall()
    return sorted({p for p in every if p not in old_parts} | {r[0] for r in changed})
