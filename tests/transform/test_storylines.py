"""Storylines: specific contexts join events, broad ones do not chain stories together.

The archives here are written by hand; normalize runs for real (DuckDB, Parquet, scipy)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from pipeline.core.tables import table_glob
from pipeline.extract.discover import discover
from pipeline.parse.stage import stage_all
from pipeline.transform.normalize import normalize
from pipeline.transform.storylines import DEFAULT_RULE, StorylineRule, components
from tests.conftest import TODAY, event_doc, write_archive


def link(date: str, title: str, contexts: str | None) -> str:
    from pipeline.parse.ids import slugify

    y, m, d = date.split("-")
    tail = f" _Context: {contexts}_" if contexts else ""
    return f"1. [{title}](/news/{y}/{m}/{int(d)}/{slugify(title)}.md){tail}"


def doc(date: str, title: str, *related: str) -> tuple[str, str]:
    from pipeline.parse.ids import slugify

    y, m, d = date.split("-")
    return f"news/{y}/{m}/{int(d)}/{slugify(title)}.md", event_doc(date, title, related=related)


def storylines_of(root: Path, rule: StorylineRule = DEFAULT_RULE) -> dict[str, str]:
    """event title -> storyline name, for the events in a storyline."""
    stage_all(discover(root / "in"), root / "staging", TODAY, 100, 1)
    normalize(root / "staging", root / "pub", root, storylines=rule)
    con = duckdb.connect()
    try:
        for name in ("events", "storylines", "event_storylines"):
            con.execute(
                f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{table_glob(root / 'pub', name)}')"
            )
        return dict(
            con.execute(
                """SELECT e.title, s.name FROM event_storylines es JOIN events e USING (event_id)
                   JOIN storylines s USING (storyline_id)"""
            ).fetchall()
        )
    finally:
        con.close()


def iraq_archive(root: Path) -> Path:
    """Two episodes that both name Islamic State, which recurs from 2014 to 2017."""
    offensive = "2014 Northern Iraq offensive, Islamic State"
    mosul = "Battle of Mosul (2016–2017), Islamic State"
    files = dict(
        [
            doc("2014-06-21", "ISIL captures Anah", link("2014-08-03", "ISIL seizes Sinjar", offensive)),
            # the target names no context itself: the relation alone puts it in the storyline
            doc("2014-08-03", "ISIL seizes Sinjar"),
            doc(
                "2014-06-29", "A caliphate is proclaimed", link("2014-06-21", "ISIL captures Anah", offensive)
            ),
            doc("2016-10-17", "The battle for Mosul begins", link("2017-07-10", "Mosul is retaken", mosul)),
            doc("2017-07-10", "Mosul is retaken", link("2016-10-17", "The battle for Mosul begins", mosul)),
            # linked through the broad context only: no storyline
            doc(
                "2015-01-01",
                "An ISIL video appears",
                link("2014-06-21", "ISIL captures Anah", "Islamic State"),
            ),
            # a relation without a context links nothing
            doc("2014-07-01", "A general comments", link("2014-06-29", "A caliphate is proclaimed", None)),
        ]
    )
    return write_archive(root / "in", files)


def test_a_specific_context_joins_and_a_broad_one_does_not_chain(tmp_path):
    iraq_archive(tmp_path)
    assert storylines_of(tmp_path) == {
        "ISIL captures Anah": "2014 Northern Iraq offensive",
        "ISIL seizes Sinjar": "2014 Northern Iraq offensive",
        "A caliphate is proclaimed": "2014 Northern Iraq offensive",
        "The battle for Mosul begins": "Battle of Mosul (2016–2017)",
        "Mosul is retaken": "Battle of Mosul (2016–2017)",
    }


def test_a_context_named_by_too_many_events_is_broad(tmp_path):
    iraq_archive(tmp_path)
    # the offensive reaches 3 events, the Mosul battle 2: a limit of 2 leaves only Mosul
    assert storylines_of(tmp_path, StorylineRule(max_tag_events=2)) == {
        "The battle for Mosul begins": "Battle of Mosul (2016–2017)",
        "Mosul is retaken": "Battle of Mosul (2016–2017)",
    }


def test_the_span_limit_counts_the_dates_a_context_reaches(tmp_path):
    # "Atlantic hurricanes" is named by one event only, but points from 2012 back to 2005
    files = dict(
        [
            doc("2012-10-29", "Sandy lands", link("2005-08-29", "Katrina lands", "Atlantic hurricanes")),
            doc("2005-08-29", "Katrina lands"),
        ]
    )
    write_archive(tmp_path / "narrow" / "in", files)
    write_archive(tmp_path / "wide" / "in", files)
    assert storylines_of(tmp_path / "narrow") == {}
    assert storylines_of(tmp_path / "wide", StorylineRule(max_tag_span_days=3000)) == {
        "Sandy lands": "Atlantic hurricanes",
        "Katrina lands": "Atlantic hurricanes",
    }


def test_storyline_rows_and_ids(tmp_path):
    iraq_archive(tmp_path)
    storylines_of(tmp_path)
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT storyline_id, name, size, first_date::VARCHAR, last_date::VARCHAR, top_tags "
        f"FROM read_parquet('{table_glob(tmp_path / 'pub', 'storylines')}') ORDER BY first_date"
    ).fetchall()
    first = "2014-06-21/isil-captures-anah"
    assert rows == [
        (
            hashlib.md5(first.encode()).hexdigest()[:16],
            "2014 Northern Iraq offensive",
            3,
            "2014-06-21",
            "2014-08-03",
            # two events name both tags; the tie goes by name
            ["2014 Northern Iraq offensive", "Islamic State"],
        ),
        (
            hashlib.md5(b"2016-10-17/the-battle-for-mosul-begins").hexdigest()[:16],
            "Battle of Mosul (2016–2017)",
            2,
            "2016-10-17",
            "2017-07-10",
            ["Battle of Mosul (2016–2017)", "Islamic State"],
        ),
    ]


def test_components_of_a_bipartite_edge_list():
    edges = pa.table({"event_id": ["a", "b", "b", "c", "d", "e"], "tag_id": ["x", "x", "y", "y", "z", "w"]})
    found = components(edges).to_pylist()
    label = {row["event_id"]: row["component"] for row in found}
    assert set(label) == {"a", "b", "c", "d", "e"}
    assert label["a"] == label["b"] == label["c"]
    assert len({label["a"], label["d"], label["e"]}) == 3
    assert components(edges.slice(0, 0)).num_rows == 0


def test_the_rule_refuses_nonsense():
    with pytest.raises(ValueError, match="max_tag_events"):
        StorylineRule(max_tag_events=0)


def test_an_incremental_build_rewrites_only_the_storyline_parts_that_changed(tmp_path):
    """Against the previous publication, a year part of `event_storylines` is written when a
    row in it was added, removed or moved to another storyline, and hard-linked otherwise;
    the table equals the full build either way."""
    from pipeline.transform.normalize import PARQUET_OPTIONS
    from pipeline.transform.storylines import write_storylines

    before = iraq_archive(tmp_path / "before")
    storylines_of(tmp_path / "before")
    after = tmp_path / "after" / "in"
    shutil.copytree(before, after)
    # joins the 2014 offensive's storyline from 2015 (its id stays: the first event is unchanged)
    name, text = doc(
        "2015-03-01",
        "ISIL attacks again",
        link("2014-08-03", "ISIL seizes Sinjar", "2014 Northern Iraq offensive"),
    )
    write_archive(after, {name: text})
    # the Mosul storyline loses an event and so both its rows (2016 and 2017)
    next(after.glob("news/2017/07/10/*.md")).unlink()
    storylines_of(tmp_path / "after")
    pub = tmp_path / "after" / "pub"

    def rows() -> list[tuple]:
        return duckdb.sql(
            f"SELECT * FROM read_parquet('{table_glob(pub, 'event_storylines')}') ORDER BY ALL"
        ).fetchall()

    full = rows()
    assert len(full) == 4
    shutil.rmtree(pub / "event_storylines")
    con = duckdb.connect()
    try:
        written, linked = write_storylines(
            con, pub, DEFAULT_RULE, PARQUET_OPTIONS, tmp_path / "before" / "pub"
        )
    finally:
        con.close()
    assert written == ["2015", "2016", "2017"]
    assert linked == 2  # 2014 and none
    assert (pub / "event_storylines" / "2014.parquet").stat().st_nlink == 2
    assert rows() == full


def test_a_publication_of_the_single_file_layout_is_not_reused(tmp_path):
    """Publications before the split kept `event_storylines/all.parquet`: an incremental
    build on one writes every year part and links nothing (no row twice)."""
    from pipeline.transform.normalize import PARQUET_OPTIONS
    from pipeline.transform.storylines import write_storylines

    iraq_archive(tmp_path)
    storylines_of(tmp_path)
    pub = tmp_path / "pub"
    old = tmp_path / "old"
    (old / "event_storylines").mkdir(parents=True)
    duckdb.sql(
        f"COPY (SELECT * FROM read_parquet('{table_glob(pub, 'event_storylines')}')) "
        f"TO '{old / 'event_storylines' / 'all.parquet'}' (FORMAT parquet)"
    )
    expected = duckdb.sql(
        f"SELECT * FROM read_parquet('{table_glob(pub, 'event_storylines')}') ORDER BY ALL"
    ).fetchall()
    shutil.rmtree(pub / "event_storylines")
    con = duckdb.connect()
    try:
        written, linked = write_storylines(con, pub, DEFAULT_RULE, PARQUET_OPTIONS, old)
    finally:
        con.close()
    assert (written, linked) == (["2014", "2016", "2017", "none"], 0)
    assert not (pub / "event_storylines" / "all.parquet").exists()
    rows = duckdb.sql(
        f"SELECT * FROM read_parquet('{table_glob(pub, 'event_storylines')}') ORDER BY ALL"
    ).fetchall()
    assert rows == expected and len(rows) == 5
