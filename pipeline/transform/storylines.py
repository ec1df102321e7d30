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
bipartite graph (about 4 s of a 1M-event build, BENCHMARKS.md). An incremental build
recomputes only the region its changed events can reach (`_write_region`: one new event
can change whether a tag is specific, so the region takes in every event linked through
the tags the changed rows name), then writes only the year parts of `event_storylines`
whose rows changed and hard-links the others, so that only those are validated again.
Each publication keeps its list of specific tags (`.storylines/`): the next incremental
build reads only the rows of the tags its changed events name; every other tag is as
specific as the list says.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.config import StorylineRule
from pipeline.core.faults import crash_point
from pipeline.core.sqltext import model_sql, sql_list, sql_literal
from pipeline.core.tables import (
    NO_EVENT,
    WHOLE,
    link_untouched,
    part_filter,
    part_path,
    parts,
    parts_rows,
    pointing_parts,
    table_glob,
    write_part,
    write_parts,
)
from pipeline.transform.scoped import scoped_model

DEFAULT_RULE = StorylineRule()


def components(edges: pa.Table) -> pa.Table:
    """(event_id, component) for every event in `edges` (columns event_id, tag_id): events
    sharing a component are connected through tags. Component numbers are arbitrary."""
    if edges.num_rows == 0:  # before importing scipy's graphs (0.18 s of an empty run)
        return pa.table({"event_id": pa.array([], pa.string()), "component": pa.array([], pa.int64())})
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    events = pc.dictionary_encode(edges.column("event_id")).combine_chunks()
    tags = pc.dictionary_encode(edges.column("tag_id")).combine_chunks()
    n_events, n_tags = len(events.dictionary), len(tags.dictionary)
    rows = events.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    cols = tags.indices.to_numpy(zero_copy_only=False).astype(np.int64) + n_events
    size = n_events + n_tags
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(size, size)).tocsr()
    _, labels = connected_components(graph, directed=False)
    return pa.table({"event_id": events.dictionary, "component": pa.array(labels[:n_events], pa.int64())})


# Each publication keeps its specific tags (for the rule's limits) in a hidden folder: an
# incremental build finds the specificity of every tag its changed events do not name there
# (none of their rows changed), rather than reading those tags' rows again.
KEPT = ".storylines"
OWN, REL = ("event_id", "tag_id"), ("event_id", "related_event_id", "tag_id")  # the tables' columns read here


def specific_file(publication: Path, params: dict[str, int]) -> Path:
    return publication / KEPT / f"specific-{params['max_events']}-{params['max_span_days']}.parquet"


def _keep_specific(
    con: duckdb.DuckDBPyConnection, table: str, publication: Path, params: dict[str, int]
) -> None:
    target = specific_file(publication, params)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_part(con, f"SELECT tag_id FROM {table} ORDER BY tag_id", target, "FORMAT parquet, COMPRESSION zstd")


def write_storylines(
    con: duckdb.DuckDBPyConnection,
    publication: Path,
    rule: StorylineRule,
    parquet_options: str,
    previous: Path | None = None,
    workers: int = 1,
    changed: str | None = None,
) -> tuple[list[str], int, list[str] | None]:
    """Write `event_storylines` (split by event year) and `storylines` (one file) from the
    written tables. With `previous` (the publication an incremental build starts from), only
    the year parts whose rows changed are written, the rest are hard-linked, so validation
    checks only those. With `changed` too (a table in `con` of the event ids whose rows the
    build recomputed), only the storylines those events can reach are recomputed
    (`_write_region`). Returns (parts written, parts linked, the storyline ids whose rows were
    recomputed or removed: None when all were)."""
    for name in ("events", "event_tags", "relation_tags", "tags"):
        con.execute(
            f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet({sql_literal(table_glob(publication, name))})"
        )
    params = {"max_events": rule.max_tag_events, "max_span_days": rule.max_tag_span_days}
    old_parts = parts(previous, "event_storylines") if previous is not None else []
    if (
        previous is not None
        and changed is not None
        and old_parts
        and WHOLE not in old_parts
        and specific_file(previous, params).exists()
    ):
        return _write_region(con, publication, params, parquet_options, previous, workers, changed)
    con.execute(f"CREATE OR REPLACE TABLE specific_tags AS {model_sql('specific_tags')}", params)
    _keep_specific(con, "specific_tags", publication, params)
    edges = con.sql(model_sql("storyline_edges")).to_arrow_table()
    membership = components(edges)
    del edges
    con.register("event_components", membership)
    con.execute(f"CREATE OR REPLACE TABLE fresh_event_storylines AS {model_sql('event_storylines')}")
    con.unregister("event_components")
    con.execute("CREATE OR REPLACE VIEW event_storylines AS SELECT * FROM fresh_event_storylines")
    con.execute(f"CREATE OR REPLACE TABLE fresh_storylines AS {model_sql('storylines')}")
    if WHOLE in old_parts:  # a publication of the layout before the split: nothing to reuse
        previous, old_parts = None, []
    written = _changed_parts(con, previous, old_parts)
    linked = _write_event_parts(con, publication, written, parquet_options, workers, previous)
    write_part(
        con, "SELECT * FROM fresh_storylines", part_path(publication, "storylines", WHOLE), parquet_options
    )
    for name in ("event_storylines", "storylines"):
        con.execute(f"DROP TABLE fresh_{name} CASCADE")
    con.execute("DROP TABLE specific_tags")
    crash_point("normalize:storylines")
    return written, linked, None


def _write_event_parts(
    con: duckdb.DuckDBPyConnection,
    publication: Path,
    written: list[str],
    parquet_options: str,
    workers: int,
    previous: Path | None,
) -> int:
    """Write the `written` year parts of `event_storylines` from `fresh_event_storylines`, in
    event order, and hard-link the previous publication's others; the number linked."""
    (publication / "event_storylines").mkdir(parents=True, exist_ok=True)
    jobs = [
        (
            f"SELECT * FROM fresh_event_storylines WHERE {part_filter(part)} ORDER BY event_id",
            part_path(publication, "event_storylines", part),
        )
        for part in written
    ]
    write_parts(con, jobs, parquet_options, workers)
    return link_untouched(previous, publication, "event_storylines", written) if previous else 0


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


# --- Incremental: the region a change can reach ---------------------------------------------
# Every link is (event, tag). A link can appear or go only through a tag named by a row of a
# changed event (its own Related items, or an item pointing at it: `resolved` may flip), and
# only such a tag's reach, and so whether it is specific, can change. The region is the
# changed events, every event linked to one of those tags before or after, and every event of
# the storylines these were in. Any other event's links are unchanged and lead only to events
# of its own (unchanged) storyline, and a component of the new graph that holds a region
# event holds only region events: so the region's components over its new links are its new
# storylines, and every other row stays as it was. tests/transform/test_storylines.py holds
# the result equal to the whole recomputation after random edits.
# (Items pointing at a changed event from an unchanged one are the same rows before and
# after, so the new table alone gives their tags, read from the parts that the internal
# `relation_targets` says hold such items: `related_event_id` is the one column here that
# row-group statistics cannot narrow, and scanning all of it in relation_tags took 0.25 s of
# a run adding 100 events to a past month at a million events.)
# The changed events' own rows sit in their years' parts: sl_pairs_<side> are the (tag, event
# reached) pairs they give, before and after.
_REGION_SQL = """
CREATE OR REPLACE TABLE sl_pairs_old AS
    SELECT tag_id, event_id AS reached FROM {old_own} SEMI JOIN {changed} USING (event_id)
    UNION SELECT tag_id, related_event_id FROM {old_rel} SEMI JOIN {changed} USING (event_id);
CREATE OR REPLACE TABLE sl_pairs_new AS
    SELECT tag_id, event_id AS reached FROM {new_own} SEMI JOIN {changed} USING (event_id)
    UNION SELECT tag_id, related_event_id FROM {new_rel} SEMI JOIN {changed} USING (event_id);
CREATE OR REPLACE TABLE sl_tags AS
    SELECT tag_id FROM sl_pairs_old
    UNION SELECT tag_id FROM sl_pairs_new
    UNION SELECT tag_id FROM {pointing_rel} SEMI JOIN {changed} ON related_event_id = {changed}.event_id;
"""
# Of those tags, the rows of some need not be read: a tag that was broad (it has a row in the
# previous tags, and is not in the previous list of specific ones) and lost no pair reaches
# no fewer events over no shorter span, so it is broad still and links nothing before or
# after. Broad tags (a country) are named all over the archive: reading their rows decoded
# every row group (0.17 s of relation_tags at a million events).
_READ_SQL = """
CREATE OR REPLACE TABLE sl_read AS
    SELECT tag_id FROM sl_tags
    EXCEPT (
        SELECT tag_id FROM sl_tags SEMI JOIN old.tags USING (tag_id)
        ANTI JOIN read_parquet({kept}) USING (tag_id)
        ANTI JOIN (SELECT tag_id FROM (SELECT * FROM sl_pairs_old EXCEPT SELECT * FROM sl_pairs_new)) USING (tag_id)
    );
"""


def _reach_both(con: duckdb.DuckDBPyConnection, previous: Path, publication: Path, tags: str) -> None:
    """The rows of the tags in table `tags` that the model specific_tags reads, in the
    previous publication (`sl_old_*`) and the new one (`sl_new_*`): `*_own` (tag_id,
    event_id) from event_tags and `*_rel` (tag_id, related_event_id) from relation_tags.
    Whether a tag is specific and which events it links both follow from its rows alone. One
    scan of each table serves both publications: the parts this build did not rewrite are
    hard links to the previous ones (the same file), read once (a scan of relation_tags, 4.8
    million rows at a million events, took 0.17 s)."""
    for table, target, column in (
        ("event_tags", "own", "event_id"),
        ("relation_tags", "rel", "related_event_id"),
    ):
        new_files = [str(f) for f in sorted((publication / table).glob("*.parquet"))]
        old_files = [str(f) for f in sorted((previous / table).glob("*.parquet"))]
        new_ids, old_ids = {_file_id(f) for f in new_files}, {_file_id(f) for f in old_files}
        old_only = [f for f in old_files if _file_id(f) not in new_ids]
        shared = {f for f in new_files if _file_id(f) in old_ids}
        files = new_files + old_only
        if not files:
            for side in ("new", "old"):
                con.execute(
                    f"CREATE OR REPLACE TABLE sl_{side}_{target} AS SELECT NULL::VARCHAR AS tag_id, NULL::VARCHAR AS {column} LIMIT 0"
                )
            continue
        con.register(
            "sl_files",
            pa.table(
                {
                    "filename": pa.array(files, pa.string()),
                    "new": pa.array([i < len(new_files) for i in range(len(files))]),
                    "old": pa.array([i >= len(new_files) or f in shared for i, f in enumerate(files)]),
                }
            ),
        )
        con.execute(
            f"""CREATE OR REPLACE TABLE sl_both AS
            SELECT tag_id, {column}, filename FROM read_parquet({sql_list(files)}, filename = true)
            SEMI JOIN main.{tags} USING (tag_id)"""
        )
        for side in ("new", "old"):
            con.execute(
                f"""CREATE OR REPLACE TABLE sl_{side}_{target} AS
                SELECT tag_id, {column} FROM sl_both
                SEMI JOIN (SELECT filename FROM sl_files WHERE "{side}") USING (filename)"""
            )
        con.unregister("sl_files")
        con.execute("DROP TABLE sl_both")


def _file_id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _specific(con: duckdb.DuckDBPyConnection, reach: str, params: dict[str, int]) -> str:
    """The specific tags among those whose rows `_reach_both` put in `reach`: the model run
    over those rows alone."""
    target = f"{reach}_specific"
    views = {
        "event_tags": f"SELECT * FROM main.{reach}_own",
        "relation_tags": f"SELECT * FROM main.{reach}_rel",
    }
    scoped_model(con, "specific_tags", target, views, params)
    return target


def _links(reach: str, specific: str) -> str:
    """The links (event_id, tag_id) through the tags of `specific`, from the rows `_reach_both`
    put in `reach` (the model storyline_edges, restricted), items pointing at events not in
    the archive included: a superset, for finding the region (asking which targets exist read
    every event id twice, 0.06 s of a one-file batch at a million events; an event with no
    link is in no storyline)."""
    return f"""
        SELECT event_id, tag_id FROM {reach}_own SEMI JOIN {specific} USING (tag_id)
        UNION
        SELECT related_event_id AS event_id, tag_id FROM {reach}_rel SEMI JOIN {specific} USING (tag_id)"""


def _write_region(
    con: duckdb.DuckDBPyConnection,
    publication: Path,
    params: dict[str, int],
    parquet_options: str,
    previous: Path,
    workers: int,
    changed: str,
) -> tuple[list[str], int, list[str]]:
    """The incremental path of `write_storylines` (see the comment above `_REGION_SQL`)."""
    con.execute("DROP SCHEMA IF EXISTS old CASCADE")
    con.execute("CREATE SCHEMA old")
    for name in ("events", "event_tags", "relation_tags", "tags", "event_storylines", "storylines"):
        con.execute(
            f"CREATE OR REPLACE VIEW old.{name} AS SELECT * FROM read_parquet({sql_literal(table_glob(previous, name))})"
        )
    ids = _column(con, f"SELECT event_id FROM {changed} ORDER BY 1")
    years = sorted({i[:4] for i in ids})
    # The parts of relation_tags holding an item that points at a changed event (from any event).
    pointing = pointing_parts(con, publication, ids, changed)
    con.execute(
        _REGION_SQL.format(
            changed=changed,
            pointing_rel=parts_rows(publication, "relation_tags", pointing, REL),
            old_own=parts_rows(previous, "event_tags", years, OWN),
            old_rel=parts_rows(previous, "relation_tags", years, REL),
            new_own=parts_rows(publication, "event_tags", years, OWN),
            new_rel=parts_rows(publication, "relation_tags", years, REL),
        )
    )
    con.execute(_READ_SQL.format(kept=sql_literal(str(specific_file(previous, params)))))
    _reach_both(con, previous, publication, "sl_read")
    old_specific = _specific(con, "sl_old", params)
    new_specific = _specific(con, "sl_new", params)
    con.execute(
        f"""CREATE OR REPLACE TABLE sl_seed AS
        SELECT event_id FROM {changed}
        UNION SELECT event_id FROM ({_links("sl_old", old_specific)})
        UNION SELECT event_id FROM ({_links("sl_new", new_specific)})"""
    )
    con.execute(
        """CREATE OR REPLACE TABLE sl_region AS
        SELECT event_id FROM sl_seed
        UNION SELECT event_id FROM old.event_storylines
        WHERE storyline_id IN (SELECT storyline_id FROM old.event_storylines SEMI JOIN sl_seed USING (event_id))"""
    )
    # Every specific tag of the new graph: a tag no changed event names kept its rows, and so
    # its specificity (the previous publication's list); of the others, those read are as
    # new_specific says, those not read are broad.
    con.execute(
        f"""CREATE OR REPLACE TABLE sl_all_specific AS
        SELECT tag_id FROM read_parquet({sql_literal(str(specific_file(previous, params)))})
        ANTI JOIN sl_tags USING (tag_id)
        UNION ALL SELECT tag_id FROM {new_specific}"""
    )
    _keep_specific(con, "sl_all_specific", publication, params)
    # The region's links in the new graph: its events' own rows, and the items of its events
    # pointing at its events in the archive. An item pointing at a region event from outside
    # would link through a specific tag its event names too: a changed tag links that event
    # as a seed, an unchanged one linked it to the same storyline before; either way it is in
    # the region. So only the region's own rows are read: the year parts of its events.
    con.execute(
        "CREATE OR REPLACE TABLE sl_archived AS SELECT event_id FROM sl_region SEMI JOIN events USING (event_id)"
    )
    years = _column(con, "SELECT DISTINCT substr(event_id, 1, 4) FROM sl_region ORDER BY 1")
    edges = con.sql(
        f"""SELECT event_id, tag_id FROM {parts_rows(publication, "event_tags", years, OWN)}
        SEMI JOIN sl_region USING (event_id) SEMI JOIN sl_all_specific USING (tag_id)
        UNION
        SELECT related_event_id AS event_id, tag_id FROM {parts_rows(publication, "relation_tags", years, REL)}
        SEMI JOIN sl_region USING (event_id) SEMI JOIN sl_all_specific USING (tag_id)
        WHERE related_event_id IN (SELECT event_id FROM sl_archived)"""
    ).to_arrow_table()
    membership = components(edges)
    del edges
    con.register("event_components", membership)
    con.execute(f"CREATE OR REPLACE TABLE sl_rows AS {model_sql('event_storylines')}")
    con.unregister("event_components")
    # The previous rows of the region's events; the whole table is the previous rows outside
    # the region and the region's new ones, a view (materializing it was 0.1 s of a one-file
    # batch at a million events): each year part written reads that part of the previous one.
    con.execute(
        """CREATE OR REPLACE TABLE sl_left AS
        SELECT event_id, storyline_id FROM old.event_storylines SEMI JOIN sl_region USING (event_id)"""
    )
    con.execute(
        """CREATE OR REPLACE VIEW fresh_event_storylines AS
        SELECT * FROM old.event_storylines ANTI JOIN sl_region USING (event_id)
        UNION ALL SELECT * FROM sl_rows"""
    )
    # Storylines described again: the region's, and those naming a tag whose name changed.
    # A region storyline's members are all region events (sl_rows); only a renamed tag's
    # storyline may have members outside the region.
    renamed = _column(
        con, "SELECT tag_id FROM (SELECT tag_id, name FROM tags EXCEPT SELECT tag_id, name FROM old.tags)"
    )
    con.execute("CREATE OR REPLACE TABLE sl_described AS SELECT DISTINCT storyline_id FROM sl_rows")
    members = "SELECT * FROM sl_rows"
    if renamed:
        con.register("sl_renamed", pa.table({"tag_id": pa.array(renamed, pa.string())}))
        con.execute(
            """INSERT INTO sl_described
            SELECT storyline_id FROM fresh_event_storylines
            SEMI JOIN (SELECT event_id FROM event_tags SEMI JOIN sl_renamed USING (tag_id)) USING (event_id)
            EXCEPT SELECT storyline_id FROM sl_described"""
        )
        con.unregister("sl_renamed")
        members = "SELECT * FROM fresh_event_storylines SEMI JOIN sl_described USING (storyline_id)"
    con.execute(f"CREATE OR REPLACE TABLE sl_members AS {members}")
    scoped_model(
        con,
        "storylines",
        "sl_storylines",
        {
            "event_storylines": "SELECT * FROM main.sl_members",
            "specific_tags": "SELECT * FROM main.sl_all_specific",
        },
    )
    con.execute(
        """CREATE OR REPLACE TABLE fresh_storylines AS
        SELECT * FROM (
            SELECT * FROM old.storylines
            WHERE storyline_id NOT IN (SELECT storyline_id FROM sl_described)
              AND storyline_id NOT IN (SELECT storyline_id FROM sl_left)
            UNION ALL SELECT * FROM sl_storylines)
        ORDER BY storyline_id"""
    )
    # The year parts where a row of the region was added, removed or changed its storyline.
    written = sorted(
        r[0]
        for r in con.execute(
            """SELECT DISTINCT coalesce(substr(event_id, 1, 4), 'none') FROM (
                (SELECT event_id, storyline_id FROM sl_rows EXCEPT SELECT * FROM sl_left)
                UNION ALL
                (SELECT * FROM sl_left EXCEPT SELECT event_id, storyline_id FROM sl_rows))"""
        ).fetchall()
    )
    old_parts = set(parts(previous, "event_storylines"))
    (publication / "event_storylines").mkdir(parents=True, exist_ok=True)
    jobs = [
        (_region_part(previous, part), part_path(publication, "event_storylines", part)) for part in written
    ]
    write_parts(con, jobs, parquet_options, workers)
    linked = link_untouched(previous, publication, "event_storylines", written)
    for part in sorted(old_parts | {NO_EVENT}):
        if not part_path(publication, "event_storylines", part).exists():  # not linked: none yet
            write_part(
                con,
                _region_part(previous, part),
                part_path(publication, "event_storylines", part),
                parquet_options,
            )
            written.append(part)
    write_part(
        con, "SELECT * FROM fresh_storylines", part_path(publication, "storylines", WHOLE), parquet_options
    )
    # Every storyline whose row was described again or whose events left the region's old ones.
    storyline_ids = _column(
        con, "SELECT storyline_id FROM sl_described UNION SELECT storyline_id FROM sl_left ORDER BY 1"
    )
    con.execute("DROP VIEW fresh_event_storylines")
    for name in (
        "sl_tags",
        "sl_pairs_old",
        "sl_pairs_new",
        "sl_read",
        "sl_seed",
        "sl_region",
        "sl_rows",
        "sl_left",
        "sl_described",
        "sl_members",
        "sl_storylines",
        "sl_archived",
        "sl_all_specific",
        *(f"sl_{side}_{kind}" for side in ("old", "new") for kind in ("own", "rel")),
        old_specific,
        new_specific,
        "fresh_storylines",
    ):
        con.execute(f"DROP TABLE IF EXISTS {name}")
    con.execute("DROP SCHEMA old CASCADE")
    crash_point("normalize:storylines")
    return sorted(set(written)), linked, storyline_ids


def _region_part(previous: Path, part: str) -> str:
    """The rows of one year part of `event_storylines` after a region's recomputation: the
    previous part's rows outside the region (that part's file alone), and the region's."""
    rows = f"SELECT * FROM sl_rows WHERE {part_filter(part)}"
    before = part_path(previous, "event_storylines", part)
    if before.exists():
        rows = f"SELECT * FROM read_parquet({sql_literal(str(before))}) ANTI JOIN sl_region USING (event_id) UNION ALL {rows}"
    return f"SELECT * FROM ({rows}) ORDER BY event_id"


def _column(con: duckdb.DuckDBPyConnection, sql: str) -> list[str]:
    return [row[0] for row in con.execute(sql).fetchall()]
