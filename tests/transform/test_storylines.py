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


def storyline_rows(pub: Path) -> list[tuple]:
    """Every `event_storylines` row of a publication, sorted."""
    return duckdb.sql(
        f"SELECT * FROM read_parquet('{table_glob(pub, 'event_storylines')}') ORDER BY ALL"
    ).fetchall()


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
        return storyline_rows(pub)

    full = rows()
    assert len(full) == 4
    shutil.rmtree(pub / "event_storylines")
    con = duckdb.connect()
    try:
        written, linked, _ = write_storylines(
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
    expected = storyline_rows(pub)
    shutil.rmtree(pub / "event_storylines")
    con = duckdb.connect()
    try:
        written, linked, _ = write_storylines(con, pub, DEFAULT_RULE, PARQUET_OPTIONS, old)
    finally:
        con.close()
    assert (written, linked) == (["2014", "2016", "2017", "none"], 0)
    assert not (pub / "event_storylines" / "all.parquet").exists()
    rows = storyline_rows(pub)
    assert rows == expected and len(rows) == 5


def test_recomputing_only_the_changed_region_equals_recomputing_everything(tmp_path):
    """Random archives, edited at random (events added, removed, their related items and
    contexts changed, so that contexts cross the rule's limits both ways): `write_storylines`
    given the previous publication and the changed events writes exactly the tables that
    recomputing every storyline writes, and links the year parts it leaves alone."""
    import random

    from pipeline.transform.normalize import PARQUET_OPTIONS, _write_tags
    from pipeline.transform.storylines import KEPT, write_storylines

    rng = random.Random(7)
    rule = StorylineRule(max_tag_events=5, max_tag_span_days=500)
    contexts = [f"Episode {n}" for n in range(16)] + ["Broad theme", "Another theme"]
    dates = [f"{y}-{m:02d}-{d:02d}" for y in (2014, 2015, 2016) for m in (1, 5, 9) for d in (3, 17)]
    events: dict[str, tuple[str, list[tuple[str, str]]]] = {}  # title -> (date, [(target, contexts)])

    # Titles of events that arrive later: items point at them before they exist (and after
    # they are gone), so links appear and vanish as their target comes and goes.
    upcoming = [f"Event number {n} happens" for n in range(200)]
    dated = {title: rng.choice(dates) for title in upcoming}

    def new_title() -> str:
        return upcoming.pop(rng.randrange(20))

    def spelled(context: str) -> str:  # the same tag, spelled differently: its name can change
        return context.upper() if rng.random() < 0.3 else context

    def related() -> list[tuple[str, str]]:
        targets = [*events, *upcoming[:20]]
        return [
            (rng.choice(targets), ", ".join(spelled(c) for c in rng.sample(contexts, rng.randint(0, 2))))
            for _ in range(rng.randint(0, 3))
        ]

    for _ in range(40):
        title = new_title()
        events[title] = (dated[title], [])
    for title in events:
        events[title] = (events[title][0], related())

    def write(root: Path) -> None:
        files = {}
        for title, (date, items) in events.items():
            lines = []
            for target, ctx in items:
                lines.append(link(dated[target], target, ctx or None))
            files[doc(date, title)[0]] = event_doc(date, title, related=tuple(lines))
        write_archive(root / "in", files)

    def build(root: Path) -> Path:
        write(root)
        stage_all(discover(root / "in"), root / "staging", TODAY, 100, 1)
        normalize(root / "staging", root / "pub", root, storylines=rule)
        return root / "pub"

    def table(pub: Path, name: str) -> list[tuple]:
        return duckdb.sql(f"SELECT * FROM read_parquet('{table_glob(pub, name)}') ORDER BY ALL").fetchall()

    before = build(tmp_path / "step0")
    assert table(before, "storylines"), "the random archive has storylines"
    for step in range(1, 13):
        for title in rng.sample(sorted(events), 3):  # removed (and may come back)
            del events[title]
            upcoming.insert(rng.randrange(20), title)
        for _ in range(3):  # added
            title = new_title()
            events[title] = (dated[title], related())
        for title in rng.sample(sorted(events), 4):  # related items edited
            events[title] = (events[title][0], related())
        after = build(tmp_path / f"step{step}")
        full = {name: table(after, name) for name in ("event_storylines", "storylines")}
        changed = duckdb.sql(
            f"""SELECT event_id FROM (
                (SELECT event_id, content_sha256 FROM read_parquet('{table_glob(before, "events")}')
                 EXCEPT SELECT event_id, content_sha256 FROM read_parquet('{table_glob(after, "events")}'))
                UNION ALL
                (SELECT event_id, content_sha256 FROM read_parquet('{table_glob(after, "events")}')
                 EXCEPT SELECT event_id, content_sha256 FROM read_parquet('{table_glob(before, "events")}')))"""
        ).to_arrow_table()
        shutil.rmtree(after / "event_storylines")
        (after / "storylines" / "all.parquet").unlink()
        kept = sorted((after / KEPT).glob("*.parquet"))
        specific = [duckdb.sql(f"SELECT * FROM '{f}'").fetchall() for f in kept]
        shutil.rmtree(after / KEPT)
        if step == 5:  # a previous publication that kept no specific tags (an earlier release's)
            shutil.rmtree(before / KEPT)
        con = duckdb.connect()
        try:
            con.register("changed_events", changed)
            written, linked, recomputed = write_storylines(
                con, after, rule, PARQUET_OPTIONS, before, changed="changed_events"
            )
        finally:
            con.close()
        assert {name: table(after, name) for name in full} == full, f"step {step}"
        assert len(written) + linked == len(list((after / "event_storylines").glob("*.parquet")))
        # the specific tags it keeps for the next build are those a full build keeps
        assert sorted((after / KEPT).glob("*.parquet")) == kept and len(kept) == 1
        assert [duckdb.sql(f"SELECT * FROM '{f}'").fetchall() for f in kept] == specific, f"step {step}"
        # Validation checks the rows of the storylines it names alone: every storyline whose
        # row or members differ from before must be among them.
        differs = {
            id_
            for name, at in (("storylines", 0), ("event_storylines", 1))
            for id_, _ in {(r[at], repr(r)) for r in table(before, name)}
            ^ {(r[at], repr(r)) for r in table(after, name)}
        }
        # `tags` recomputed for the changed events alone equals a full build's too
        full_tags = table(after, "tags")
        (after / "tags" / "all.parquet").unlink()
        con = duckdb.connect()
        try:
            con.register("affected", changed)
            con.execute(
                f"CREATE TABLE fresh_events AS SELECT * FROM read_parquet('{table_glob(after, 'events')}') "
                "SEMI JOIN affected USING (event_id)"
            )
            recounted = _write_tags(con, after, before)
        finally:
            con.close()
        assert table(after, "tags") == full_tags, f"step {step}"
        assert recounted is not None and {r[0] for r in full_tags} ^ {
            r[0] for r in table(before, "tags")
        } <= set(recounted)
        if step == 5:  # without them every storyline was recomputed: all are checked
            assert recomputed is None
        else:
            assert recomputed is not None and differs <= set(recomputed), f"step {step}"
        before = after


def test_an_event_that_arrives_joins_the_storyline_pointing_at_it_incrementally(tmp_path):
    """An item of an unchanged event pointed at an event not yet in the archive: when that
    event arrives, the link through the item's context appears although nothing that names
    the context changed. The region recomputation must reach the pointing event's storyline."""
    from pipeline.transform.normalize import PARQUET_OPTIONS
    from pipeline.transform.storylines import write_storylines

    before = tmp_path / "before"
    write_archive(
        before / "in",
        dict(
            [
                doc("2014-06-21", "Z names the episode", link("2014-06-25", "Y arrives", "Some episode")),
                doc(
                    "2014-06-22", "W names it too", link("2014-06-21", "Z names the episode", "Some episode")
                ),
            ]
        ),
    )
    assert len(storylines_of(before)) == 2
    after = tmp_path / "after"
    shutil.copytree(before / "in", after / "in")
    write_archive(after / "in", dict([doc("2014-06-25", "Y arrives")]))
    assert set(storylines_of(after)) == {"Z names the episode", "W names it too", "Y arrives"}
    pub = after / "pub"
    expected = storyline_rows(pub)
    shutil.rmtree(pub / "event_storylines")
    con = duckdb.connect()
    try:
        con.register("changed_events", pa.table({"event_id": ["2014-06-25/y-arrives"]}))
        write_storylines(con, pub, DEFAULT_RULE, PARQUET_OPTIONS, before / "pub", changed="changed_events")
    finally:
        con.close()
    rows = storyline_rows(pub)
    assert rows == expected and len(rows) == 3
