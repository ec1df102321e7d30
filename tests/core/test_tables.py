"""The rows an incremental build recomputed, as the change log and validation select them."""

import os

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.core import tables
from pipeline.core.tables import TOUCHED_ROWS, touched_rows
from pipeline.transform import normalize
from pipeline.transform.normalize import PARQUET_OPTIONS


@pytest.fixture
def part(tmp_path):
    """A year part as a build writes it: rows sorted by event id, PARQUET_OPTIONS."""
    ids = [f"2025-{m:02d}-{d:02d}/event-{i}" for m in range(1, 13) for d in range(1, 29) for i in range(60)]
    path = tmp_path / "2025.parquet"
    con = duckdb.connect()
    con.register("rows", pa.table({"event_id": ids, "position": list(range(len(ids)))}))
    con.execute(f"COPY (SELECT * FROM rows ORDER BY event_id) TO '{path}' ({PARQUET_OPTIONS})")
    return path, sorted(ids)


def _select(path, where, touched):
    con = duckdb.connect()
    con.register("touched_events", pa.table({"event_id": pa.array(touched, pa.string())}))
    con.register("touched_files", pa.table({"file_path": pa.array([], pa.string())}))
    return con.execute(f"SELECT event_id FROM read_parquet('{path}') WHERE {where} ORDER BY 1").fetchall()


@pytest.mark.parametrize(
    "touched",
    [
        ["2025-06-03/event-7"],
        ["2025-06-03/event-7", "2025-06-21/event-59", "2025-07-01/event-0", "2025-06-04/none"],
        ["2024-12-31/x", "2026-01-01/y"],  # a range around the whole part, none of it touched
        [],
    ],
)
def test_the_range_selects_the_same_rows(part, touched):
    path, _ = part
    assert _select(path, touched_rows("events", touched), touched) == _select(
        path, TOUCHED_ROWS["events"], touched
    )


def test_the_range_leads_only_where_the_rows_own_event_decides():
    touched = ["2025-06-03/event-7"]
    assert "BETWEEN '2025-06-03/event-7' AND '2025-06-03/event-7'" in touched_rows("sources", touched)
    # a relation pointing at a touched event, or a quarantined line of a touched file, is
    # recomputed whatever its own event: no range
    assert touched_rows("relations", touched) == TOUCHED_ROWS["relations"]
    assert touched_rows("quarantine", touched) == TOUCHED_ROWS["quarantine"]
    assert touched_rows("files", touched) == TOUCHED_ROWS["files"]


def test_a_part_has_row_groups_small_enough_to_skip(part):
    path, ids = part
    metadata = pq.ParquetFile(path).metadata
    assert metadata.num_row_groups == -(-len(ids) // 8192)
    first = metadata.row_group(1).column(0).statistics
    assert (first.min, first.max) == (ids[8192], ids[2 * 8192 - 1])  # sorted: ranges that do not overlap


def test_row_counts_read_a_footer_once_per_part_and_see_a_replaced_part(tmp_path, monkeypatch):
    """A hard-linked part (an incremental publication's untouched year) is counted from what
    was read before; a part written anew (temp, then rename) is read again."""

    def write(path, rows):
        tmp = path.with_name("." + path.name + ".tmp")
        pq.write_table(pa.table({"event_id": [f"e{i}" for i in range(rows)]}), tmp)
        os.replace(tmp, path)

    old, new = tmp_path / "old" / "events", tmp_path / "new" / "events"
    old.mkdir(parents=True)
    new.mkdir(parents=True)
    write(old / "2024.parquet", 3)
    write(old / "2025.parquet", 5)
    os.link(old / "2024.parquet", new / "2024.parquet")  # untouched: linked
    write(new / "2025.parquet", 6)  # rewritten
    reads = []
    real = tables.pq.ParquetFile
    monkeypatch.setattr(tables.pq, "ParquetFile", lambda p: reads.append(p.name) or real(p))
    tables._rows_by_identity.clear()
    assert tables.row_count(tmp_path / "old", "events") == 8
    assert sorted(reads) == ["2024.parquet", "2025.parquet"]
    reads.clear()
    assert tables.row_count(tmp_path / "new", "events") == 9
    assert reads == ["2025.parquet"]  # the linked 2024 part was known
    write(new / "2025.parquet", 2)  # replaced again (a later batch's)
    reads.clear()
    assert tables.row_count(tmp_path / "new", "events") == 5 and reads == ["2025.parquet"]
    assert tables.row_count(tmp_path / "old", "events") == 8


def _targets_publication(tmp_path, with_targets=True):
    """A publication whose relations point at events of other years (targets of every year in
    each row group, as a real build's), with or without its relation_targets."""
    pub = tmp_path / "pub"
    rows = [
        (f"{year}-03-01/event-{i}", f"{2000 + (i * 7 + year) % 25}-05-0{1 + i % 9}/target-{i % 40}")
        for year in (2019, 2020, 2021)
        for i in range(3000)
    ]
    con = duckdb.connect()
    con.register(
        "rel", pa.table({"event_id": [r[0] for r in rows], "related_event_id": [r[1] for r in rows]})
    )
    for year in (2019, 2020, 2021):
        (pub / "relations").mkdir(parents=True, exist_ok=True)
        part = pub / "relations" / f"{year}.parquet"
        con.execute(
            f"COPY (SELECT * FROM rel WHERE event_id LIKE '{year}%' ORDER BY ALL) TO '{part}' ({PARQUET_OPTIONS})"
        )
    if with_targets:
        normalize._write_targets(con, pub, ["2019", "2020", "2021", "none"], workers=2)
    return pub, rows


@pytest.mark.parametrize("named", [True, False])
@pytest.mark.parametrize("with_targets", [True, False])
def test_pointing_parts_finds_every_part_pointing_at_the_ids(tmp_path, monkeypatch, named, with_targets):
    """By constants or by a semi join on the ids' table, through relation_targets or (a
    publication without it) relations: every part with an item pointing at one of the ids,
    and no other."""
    pub, rows = _targets_publication(tmp_path, with_targets)
    assert (pub / "relation_targets" / "2020.parquet").exists() == with_targets
    if not named:
        monkeypatch.setattr(tables, "MAX_NAMED_IDS", 0)
    con = duckdb.connect()
    for ids in (
        [rows[5][1], rows[4321][1], "2024-05-09/no-such-target"],
        [rows[8000][1]],
        ["1999-01-01/x"],
        [],
    ):
        con.register("wanted", pa.table({"event_id": pa.array(ids, pa.string())}))
        expected = sorted({event[:4] for event, target in rows if target in ids})
        assert tables.pointing_parts(con, pub, ids, "wanted") == expected
        con.unregister("wanted")
