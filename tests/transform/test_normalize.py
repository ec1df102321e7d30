"""The DuckDB models over real staging Parquet: duplicates, resolution, tags, accounting."""

import datetime as dt

from tests.conftest import event_doc, write_archive


def rel(date: str, slug: str, title: str = "T", contexts: str | None = None) -> str:
    y, m, d = date.split("-")
    item = f"1. [{title}](/news/{y}/{m}/{int(d)}/{slug}.md)"
    return item + (f" _Context: {contexts}_" if contexts else "")


def test_duplicate_event_ids_keep_the_first_path_in_code_point_order(tmp_path):
    doc = event_doc(title="Same event")
    write_archive(
        tmp_path / "in",
        {
            "news/2014/06/21/same-event.md": doc,
            "news/2014/06/21/Same-Event-copy.md": doc.replace(
                "A summary.", "copy"
            ),  # not a slug: id from title
            "a/news/2014/06/21/same-event.md": doc.replace("A summary.", "first"),
        },
    )
    con = build(tmp_path)
    assert con.execute("SELECT file_path, summary FROM events").fetchall() == [
        ("a/news/2014/06/21/same-event.md", "first")
    ]
    assert con.execute(
        "SELECT file_path, status, reason, event_id, duplicate_of FROM files ORDER BY 1"
    ).fetchall() == [
        ("a/news/2014/06/21/same-event.md", "parsed", None, "2014-06-21/same-event", None),
        (
            "news/2014/06/21/Same-Event-copy.md",
            "duplicate",
            "duplicate_event_id",
            "2014-06-21/same-event",
            "a/news/2014/06/21/same-event.md",
        ),
        (
            "news/2014/06/21/same-event.md",
            "duplicate",
            "duplicate_event_id",
            "2014-06-21/same-event",
            "a/news/2014/06/21/same-event.md",
        ),
    ]


def test_code_point_order_is_not_locale_order(tmp_path):
    doc = event_doc(title="Same event")
    write_archive(tmp_path / "in", {"b/x.md": doc, "Z/x.md": doc, "é/x.md": doc})
    con = build(tmp_path)
    assert con.execute("SELECT file_path FROM events").fetchall() == [("Z/x.md",)]


def test_relations_resolve_and_measure_days(tmp_path):
    write_archive(
        tmp_path / "in",
        {
            "news/2014/06/21/a.md": event_doc(
                date="2014-06-21", title="A", related=(rel("2014-06-29", "b"), rel("2014-06-01", "missing"))
            ),
            "news/2014/06/29/b.md": event_doc(
                date="2014-06-29", title="B", related=(rel("2014-06-21", "a"),)
            ),
        },
    )
    con = build(tmp_path)
    assert con.execute(
        "SELECT event_id, position, related_event_id, resolved, days_apart FROM relations ORDER BY 1, 2"
    ).fetchall() == [
        ("2014-06-21/a", 1, "2014-06-29/b", True, 8),
        ("2014-06-21/a", 2, "2014-06-01/missing", False, -20),
        ("2014-06-29/b", 1, "2014-06-21/a", True, -8),
    ]


def test_tags_merge_spellings_and_count_events(tmp_path):
    write_archive(
        tmp_path / "in",
        {
            "news/2014/06/21/a.md": event_doc(
                date="2014-06-21",
                related=(
                    rel("2014-01-01", "x", contexts="Islamic State, Iraq"),
                    rel("2014-01-02", "y", contexts="islamic  State"),
                ),
            ),
            "news/2015/01/1/b.md": event_doc(
                date="2015-01-01", related=(rel("2014-01-01", "x", contexts="islamic State"),)
            ),
            "news/2016/01/1/c.md": event_doc(
                date="2016-01-01", related=(rel("2014-01-01", "x", contexts="islamic State"),)
            ),
        },
    )
    con = build(tmp_path)
    tags = con.execute("SELECT name, event_count, first_date, last_date FROM tags ORDER BY name").fetchall()
    # "islamic State" is written 3 times, "Islamic State" and "islamic  State" once each.
    assert tags == [
        ("Iraq", 1, dt.date(2014, 6, 21), dt.date(2014, 6, 21)),
        ("islamic State", 3, dt.date(2014, 6, 21), dt.date(2016, 1, 1)),
    ]
    assert con.execute("SELECT count(*) FROM event_tags").fetchone() == (4,)
    # a relation names each tag once even when two spellings of it appear
    assert con.execute(
        "SELECT event_id, related_event_id, count(*) FROM relation_tags GROUP BY ALL ORDER BY ALL"
    ).fetchall() == [
        ("2014-06-21/a", "2014-01-01/x", 2),
        ("2014-06-21/a", "2014-01-02/y", 1),
        ("2015-01-01/b", "2014-01-01/x", 1),
        ("2016-01-01/c", "2014-01-01/x", 1),
    ]


def test_tag_name_ties_break_on_the_smallest_code_point(tmp_path):
    write_archive(
        tmp_path / "in",
        {
            "news/2014/06/21/a.md": event_doc(
                related=(rel("2014-01-01", "x", contexts="ebola"), rel("2014-01-02", "y", contexts="Ebola"))
            ),
        },
    )
    assert build(tmp_path).execute("SELECT name FROM tags").fetchall() == [("Ebola",)]


def test_every_file_and_item_is_accounted_for(tmp_path):
    write_archive(
        tmp_path / "in",
        {
            "news/2014/06/21/index.md": "# day",
            "news/2014/06/21/a.md": event_doc(
                sources=("1. [A](https://a.com)", "1. [X](javascript:x)"),
                related=(rel("2014-01-01", "x"), "2. [Bad](/wiki/Bad)"),
            ),
            "news/2014/06/21/dup.md": event_doc(title="A", sources=("1. [X](javascript:x)",)),
            "bad.md": b"\xff",
            "notes.txt": "not markdown: not an input file",
        },
    )
    con = build(tmp_path)
    assert con.execute("SELECT file_path, status, reason FROM files ORDER BY 1").fetchall() == [
        ("bad.md", "rejected", "encoding"),
        ("news/2014/06/21/a.md", "parsed", None),
        ("news/2014/06/21/dup.md", "parsed", None),
        ("news/2014/06/21/index.md", "skipped", "day_index"),
    ]
    # quarantine holds the bad items of published events only
    assert con.execute("SELECT file_path, section, raw, reason FROM quarantine ORDER BY 1, 2").fetchall() == [
        ("news/2014/06/21/a.md", "related", "2. [Bad](/wiki/Bad)", "bad_link"),
        ("news/2014/06/21/a.md", "source", "1. [X](javascript:x)", "bad_url"),
        ("news/2014/06/21/dup.md", "source", "1. [X](javascript:x)", "bad_url"),
    ]
    assert con.execute("SELECT event_id, source_count, related_count FROM events ORDER BY 1").fetchall() == [
        ("2014-06-21/a", 1, 1),
        ("2014-06-21/dup", 0, 0),
    ]


def test_batches_and_workers_do_not_change_the_result(tmp_path):
    from pipeline.synthetic.generate import generate

    generate(300, tmp_path / "in", seed=3, malformed=0.1)
    one = build(tmp_path, "w1")
    many = build(tmp_path, "w2", batch_size=7, workers=2)
    for table in (
        "events",
        "files",
        "sources",
        "relations",
        "tags",
        "event_tags",
        "relation_tags",
        "quarantine",
    ):
        assert (
            one.execute(f"SELECT * FROM {table}").fetchall()
            == many.execute(f"SELECT * FROM {table}").fetchall()
        )


def build(tmp_path, work="work", **kwargs):
    from tests.conftest import build_tables

    return build_tables(tmp_path / "in", tmp_path / work, **kwargs)


def test_every_part_is_written_in_its_table_order(tmp_path):
    """Parts are written two at a time from the ordered model tables without sorting again:
    each file's rows must still come in the table's published order (pipeline.transform.normalize.ORDER)."""
    import duckdb

    from pipeline.core.tables import TABLES
    from pipeline.synthetic.generate import generate

    generate(400, tmp_path / "in", seed=5, malformed=0.1)
    build(tmp_path)
    con = duckdb.connect()
    checked = 0
    for name, order in ((t.name, t.order) for t in TABLES if t.layout == "year"):
        files = sorted((tmp_path / "work" / "publication" / name).glob("*.parquet"))
        assert len(files) > 3, name  # several years, so several parts
        for path in files:
            rows = con.execute(f"SELECT * FROM read_parquet('{path}')").fetchall()
            expected = con.execute(f"SELECT * FROM read_parquet('{path}') ORDER BY {order}").fetchall()
            assert rows == expected, path
            checked += len(rows)
    assert checked > 1000
