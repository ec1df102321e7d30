"""Great Expectations guards every publish: each critical expectation fails on a table broken for it."""

import json
import shutil
from contextlib import nullcontext
from pathlib import Path

import duckdb
import pytest

from pipeline.quality.validate import (
    DEFAULT_EXPECTATIONS,
    SuiteError,
    build_suites,
    load_specs,
    validate_publication,
)
from tests.conftest import SAMPLE, TODAY, build_tables

FILES_SEEN = 40


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("clean")
    build_tables(SAMPLE, work).close()
    return work / "publication"


def test_every_expectation_in_the_files_is_loaded():
    specs = load_specs()
    suites = build_suites(specs)
    for spec in specs:
        listed = json.loads((DEFAULT_EXPECTATIONS / f"{spec.name}.json").read_text())["expectations"]
        loaded = suites[spec.name].expectations
        assert len(loaded) == len(listed) > 0, spec.name
        assert [e.expectation_type for e in loaded] == [e["type"] for e in listed]
        assert all(e["meta"]["severity"] in ("critical", "warning") and e["meta"]["protects"] for e in listed)
    assert {s.name for s in specs} >= {
        "events",
        "sources",
        "relations",
        "event_tags",
        "relation_tags",
        "tags",
        "files",
        "quarantine",
        "run_summary",
    }


def test_an_unknown_expectation_type_is_an_error_not_a_log_line(tmp_path):
    shutil.copytree(DEFAULT_EXPECTATIONS, tmp_path / "exp")
    suite = json.loads((tmp_path / "exp" / "events.json").read_text())
    suite["expectations"].append(
        {
            "type": "expect_column_values_to_be_glorious",
            "kwargs": {"column": "event_id"},
            "meta": {"severity": "critical", "protects": "nothing"},
        }
    )
    (tmp_path / "exp" / "events.json").write_text(json.dumps(suite))
    with pytest.raises(SuiteError, match="expect_column_values_to_be_glorious"):
        build_suites(load_specs(tmp_path / "exp"))


def test_a_missing_severity_is_an_error(tmp_path):
    shutil.copytree(DEFAULT_EXPECTATIONS, tmp_path / "exp")
    suite = json.loads((tmp_path / "exp" / "tags.json").read_text())
    del suite["expectations"][0]["meta"]["severity"]
    (tmp_path / "exp" / "tags.json").write_text(json.dumps(suite))
    with pytest.raises(SuiteError, match="severity"):
        load_specs(tmp_path / "exp")


def test_the_clean_sample_passes_with_data_docs(clean, tmp_path):
    report = validate_publication(clean, tmp_path / "validation", "run-1", FILES_SEEN, TODAY)
    assert report.passed and report.critical_failures == []
    assert report.docs_index is not None and report.docs_index.exists()
    saved = json.loads(report.report_path.read_text())
    assert saved["passed"] is True and len(saved["outcomes"]) == sum(
        len(s.expectations) for s in load_specs()
    )
    # small and deliberately full of rejects, yet healthy: no warning (thresholds in the suites)
    assert report.warnings == []


def test_a_failed_uniqueness_check_names_the_offending_keys(clean, tmp_path):
    broken = tmp_path / "publication"
    shutil.copytree(clean, broken)
    with duckdb.connect() as con:
        con.execute(
            f"COPY (SELECT * FROM read_parquet('{clean}/files/*.parquet') UNION ALL "
            f"(SELECT * FROM read_parquet('{clean}/files/*.parquet') WHERE file_path = 'news/2016/01/1/empty-file.md')) "
            f"TO '{broken}/files/all.parquet' (FORMAT parquet)"
        )
    for part in (broken / "files").glob("*.parquet"):
        if part.name != "all.parquet":
            part.unlink()
    report = validate_publication(
        broken, tmp_path / "v", "r", FILES_SEEN + 1, TODAY, only={"files"}, build_docs=False
    )
    line = next(o.line() for o in report.critical_failures if "file_path_occurrences" in o.kwargs.values())
    assert "file_path=news/2016/01/1/empty-file.md" in line, line


def _calibration_publication(tmp_path: Path, events: int, edit: str, rejected: int = 0) -> Path:
    """A generated archive's publication with the events table rewritten by `edit` (a SELECT
    over `events` numbering rows `n` from 0) and `rejected` parsed files turned into rejects."""
    from pipeline.synthetic.generate import generate

    generate(events, tmp_path / "archive", seed=3, today=TODAY)
    build_tables(tmp_path / "archive", tmp_path / "w").close()
    publication = tmp_path / "w" / "publication"
    with duckdb.connect() as con:
        con.execute(
            f"CREATE TABLE events AS SELECT *, row_number() OVER (ORDER BY event_id) - 1 AS n "
            f"FROM read_parquet('{publication}/events/*.parquet')"
        )
        con.execute(f"CREATE TABLE edited AS {edit}")
        for part in (publication / "events").glob("*.parquet"):
            part.unlink()
        con.execute(
            f"COPY (SELECT * EXCLUDE (n) FROM edited) TO '{publication}/events/all.parquet' (FORMAT parquet)"
        )
        # on real content every related link resolves; generated stories also link outside the
        # generated range: make 99% resolve, as a healthy real archive would
        con.execute(
            f"CREATE TABLE r AS SELECT * REPLACE (hash(event_id, position) % 100 <> 0 AS resolved) "
            f"FROM read_parquet('{publication}/relations/*.parquet')"
        )
        for part in (publication / "relations").glob("*.parquet"):
            part.unlink()
        con.execute(f"COPY r TO '{publication}/relations/all.parquet' (FORMAT parquet)")
    return publication


REAL_LIKE = """SELECT * REPLACE (
    CASE WHEN n % 100 < 76 THEN '' ELSE coalesce(nullif(summary, ''), 'Officials give updates.') END AS summary,
    CASE WHEN n % 1000 < 14 THEN 'Quake.' WHEN n % 1000 = 500 THEN repeat('Long headline ', 40) ELSE title END AS title)
FROM events"""


def test_a_healthy_archive_shaped_like_the_portal_raises_no_warning(tmp_path):
    """Real portal content: 76% empty summaries, 1.4% titles under 10 characters, 0.1% over 400."""
    publication = _calibration_publication(tmp_path, 1100, REAL_LIKE)
    report = validate_publication(publication, tmp_path / "v", "r", 1100, TODAY, build_docs=False)
    assert report.warnings == [], [o.line() for o in report.warnings]


@pytest.mark.parametrize(
    ("edit", "column"),
    [
        ("SELECT * REPLACE ('' AS summary) FROM events", "share_empty_summaries"),
        (
            "SELECT * REPLACE (CASE WHEN n % 10 = 0 THEN 'Oops' ELSE title END AS title) FROM events",
            "title_length",
        ),
    ],
)
def test_a_broken_archive_still_raises_its_warning(tmp_path, edit, column):
    publication = _calibration_publication(tmp_path, 1100, edit)
    report = validate_publication(publication, tmp_path / "v", "r", 1100, TODAY, build_docs=False)
    assert [o.kwargs["column"] for o in report.warnings] == [column]


def test_many_rejected_files_in_a_large_archive_raise_a_warning(tmp_path):
    publication = _calibration_publication(tmp_path, 1100, "SELECT * FROM events")
    with duckdb.connect() as con:
        files = f"{publication}/files"
        con.execute(
            f"CREATE TABLE f AS SELECT * REPLACE ("
            f"CASE WHEN status = 'parsed' AND hash(file_path) % 10 = 0 THEN 'rejected' ELSE status END AS status) "
            f"FROM read_parquet('{files}/*.parquet')"
        )
        count = con.execute("SELECT count(*) FROM f").fetchone()[0]
        for part in (publication / "files").glob("*.parquet"):
            part.unlink()
        con.execute(f"COPY f TO '{files}/all.parquet' (FORMAT parquet)")
    report = validate_publication(
        publication, tmp_path / "v", "r", count, TODAY, only={"run_summary"}, build_docs=False
    )
    assert "share_rejected_large" in [o.kwargs["column"] for o in report.warnings]


def set_first(table: str, column: str, value: str) -> str:
    """The table with `column` of its first row set to the SQL expression `value`."""
    return f"SELECT * REPLACE (CASE WHEN row_number() OVER () = 1 THEN {value} ELSE {column} END AS {column}) FROM {table}"


# (table whose Parquet is broken, SELECT producing the broken table, suite, failing column/kwarg)
BROKEN = [
    ("events", set_first("events", "event_id", "NULL"), "events", "event_id"),
    (
        "events",
        "SELECT * FROM events UNION ALL (SELECT * FROM events ORDER BY event_id LIMIT 1)",
        "events",
        "event_id_occurrences",
    ),
    ("events", set_first("events", "event_date", "NULL"), "events", "event_date"),
    ("events", set_first("events", "event_date", "DATE '1899-12-31'"), "events", "date_in_range"),
    ("events", set_first("events", "event_date", "DATE '2999-01-01'"), "events", "date_in_range"),
    ("events", set_first("events", "source_count", "source_count + 1"), "events", "source_count"),
    ("events", set_first("events", "related_count", "related_count + 1"), "events", "related_count"),
    ("events", set_first("events", "cover_image_url", "'ftp://x.org/a.jpg'"), "events", "cover_image_url"),
    ("sources", set_first("sources", "event_id", "NULL"), "sources", "event_id"),
    ("sources", set_first("sources", "position", "NULL"), "sources", "position"),
    (
        "sources",
        "SELECT * FROM sources UNION ALL (SELECT * FROM sources ORDER BY ALL LIMIT 1)",
        "sources",
        "key_occurrences",
    ),
    ("sources", set_first("sources", "event_id", "'2000-01-01/nowhere'"), "sources", "event_exists"),
    ("sources", set_first("sources", "position", "0"), "sources", "position"),
    ("sources", set_first("sources", "url", "'javascript:alert(1)'"), "sources", "url"),
    ("sources", set_first("sources", "host", "NULL"), "sources", "host"),
    ("relations", set_first("relations", "event_id", "NULL"), "relations", "event_id"),
    ("relations", set_first("relations", "position", "NULL"), "relations", "position"),
    (
        "relations",
        "SELECT * FROM relations UNION ALL (SELECT * FROM relations ORDER BY ALL LIMIT 1)",
        "relations",
        "key_occurrences",
    ),
    ("relations", set_first("relations", "event_id", "'2000-01-01/nowhere'"), "relations", "event_exists"),
    ("relations", set_first("relations", "related_event_id", "NULL"), "relations", "related_event_id"),
    ("relations", set_first("relations", "related_date", "NULL"), "relations", "related_date"),
    ("relations", "SELECT * REPLACE (NOT resolved AS resolved) FROM relations", "relations", "resolved"),
    ("event_tags", set_first("event_tags", "event_id", "NULL"), "event_tags", "event_id"),
    ("event_tags", set_first("event_tags", "tag_id", "NULL"), "event_tags", "tag_id"),
    (
        "event_tags",
        "SELECT * FROM event_tags UNION ALL (SELECT * FROM event_tags ORDER BY ALL LIMIT 1)",
        "event_tags",
        "key_occurrences",
    ),
    ("event_tags", set_first("event_tags", "event_id", "'2000-01-01/nowhere'"), "event_tags", "event_exists"),
    ("event_tags", set_first("event_tags", "tag_id", "'0000000000000000'"), "event_tags", "tag_exists"),
    ("relation_tags", set_first("relation_tags", "event_id", "NULL"), "relation_tags", "event_id"),
    (
        "relation_tags",
        set_first("relation_tags", "related_event_id", "NULL"),
        "relation_tags",
        "related_event_id",
    ),
    ("relation_tags", set_first("relation_tags", "tag_id", "NULL"), "relation_tags", "tag_id"),
    (
        "relation_tags",
        "SELECT * FROM relation_tags UNION ALL (SELECT * FROM relation_tags ORDER BY ALL LIMIT 1)",
        "relation_tags",
        "key_occurrences",
    ),
    (
        "relation_tags",
        set_first("relation_tags", "event_id", "'2000-01-01/nowhere'"),
        "relation_tags",
        "event_exists",
    ),
    (
        "relation_tags",
        set_first("relation_tags", "tag_id", "'0000000000000000'"),
        "relation_tags",
        "tag_exists",
    ),
    ("tags", set_first("tags", "tag_id", "NULL"), "tags", "tag_id"),
    (
        "tags",
        "SELECT * FROM tags UNION ALL (SELECT * FROM tags ORDER BY ALL LIMIT 1)",
        "tags",
        "tag_id_occurrences",
    ),
    ("tags", set_first("tags", "name", "NULL"), "tags", "name"),
    ("tags", set_first("tags", "event_count", "event_count + 1"), "tags", "event_count"),
    ("tags", set_first("tags", "first_date", "DATE '2999-01-01'"), "tags", "dates_ordered"),
    ("files", set_first("files", "file_path", "NULL"), "files", "file_path"),
    (
        "files",
        "SELECT * FROM files UNION ALL (SELECT * FROM files ORDER BY ALL LIMIT 1)",
        "files",
        "file_path_occurrences",
    ),
    ("files", set_first("files", "status", "'lost'"), "files", "status"),
    (
        "files",
        "SELECT * REPLACE (CASE WHEN status = 'rejected' THEN NULL ELSE reason END AS reason) FROM files",
        "files",
        "reason_present_iff_not_parsed",
    ),
    (
        "files",
        "SELECT * REPLACE (CASE WHEN status = 'parsed' THEN 'oops' ELSE reason END AS reason) FROM files",
        "files",
        "reason_present_iff_not_parsed",
    ),
    (
        "files",
        "SELECT * REPLACE (CASE WHEN status = 'parsed' THEN NULL ELSE event_id END AS event_id) FROM files",
        "files",
        "event_id_present_iff_event",
    ),
    ("quarantine", set_first("quarantine", "file_path", "NULL"), "quarantine", "file_path"),
    ("quarantine", set_first("quarantine", "reason", "NULL"), "quarantine", "reason"),
    ("quarantine", set_first("quarantine", "file_path", "'nowhere.md'"), "quarantine", "file_is_parsed"),
    ("event_storylines", set_first("event_storylines", "event_id", "NULL"), "event_storylines", "event_id"),
    (
        "event_storylines",
        "SELECT * FROM event_storylines UNION ALL (SELECT * FROM event_storylines ORDER BY ALL LIMIT 1)",
        "event_storylines",
        "event_id_occurrences",
    ),
    (
        "event_storylines",
        set_first("event_storylines", "storyline_id", "NULL"),
        "event_storylines",
        "storyline_id",
    ),
    (
        "event_storylines",
        set_first("event_storylines", "event_id", "'2000-01-01/nowhere'"),
        "event_storylines",
        "event_exists",
    ),
    (
        "event_storylines",
        set_first("event_storylines", "storyline_id", "'0000000000000000'"),
        "event_storylines",
        "storyline_exists",
    ),
    ("storylines", set_first("storylines", "storyline_id", "NULL"), "storylines", "storyline_id"),
    (
        "storylines",
        "SELECT * FROM storylines UNION ALL (SELECT * FROM storylines ORDER BY storyline_id LIMIT 1)",
        "storylines",
        "storyline_id_occurrences",
    ),
    ("storylines", set_first("storylines", "size", "1"), "storylines", "size"),
    ("storylines", set_first("storylines", "size", "size + 1"), "storylines", "member_rows"),
    ("storylines", set_first("storylines", "first_date", "first_date - 1"), "storylines", "dates_match"),
    ("storylines", set_first("storylines", "name", "NULL"), "storylines", "name"),
    (
        "files",
        "SELECT * FROM files WHERE file_path <> 'news/2016/01/1/empty-file.md'",
        "run_summary",
        "files_seen",
    ),
    ("events", "SELECT * FROM events WHERE event_id NOT LIKE '2004-%'", "run_summary", "parsed_files"),
    ("files", set_first("files", "status", "'lost'"), "run_summary", "files_rows"),
    ("countries", set_first("countries", "country_code", "NULL"), "countries", "country_code"),
    ("countries", set_first("countries", "country_code", "'usa'"), "countries", "country_code"),
    (
        "countries",
        "SELECT * FROM countries UNION ALL (SELECT * FROM countries ORDER BY ALL LIMIT 1)",
        "countries",
        "key_occurrences",
    ),
    ("countries", set_first("countries", "alpha_3", "'xx'"), "countries", "alpha_3"),
    ("countries", set_first("countries", "name", "NULL"), "countries", "name"),
    ("countries", set_first("countries", "region", "'Mars'"), "countries", "region"),
    ("countries", "SELECT * FROM countries ORDER BY ALL LIMIT 10", "countries", "rows"),
    ("event_places", set_first("event_places", "event_id", "NULL"), "event_places", "event_id"),
    ("event_places", set_first("event_places", "country_code", "NULL"), "event_places", "country_code"),
    (
        "event_places",
        "SELECT * FROM event_places UNION ALL (SELECT * FROM event_places ORDER BY ALL LIMIT 1)",
        "event_places",
        "key_occurrences",
    ),
    (
        "event_places",
        set_first("event_places", "event_id", "'2000-01-01/nowhere'"),
        "event_places",
        "event_exists",
    ),
    ("event_places", set_first("event_places", "country_code", "'QQ'"), "event_places", "country_exists"),
    ("event_places", set_first("event_places", "found_in", "'footer'"), "event_places", "found_in"),
]


@pytest.mark.slow
def test_checking_the_parts_in_small_groups_gives_the_same_outcomes(clean, tmp_path):
    whole = validate_publication(clean, tmp_path / "a", "r", FILES_SEEN, TODAY, build_docs=False)
    grouped = validate_publication(
        clean, tmp_path / "b", "r", FILES_SEEN, TODAY, build_docs=False, group_rows=3
    )
    assert [(o.suite, o.expectation, o.success, o.unexpected_count) for o in grouped.outcomes] == [
        (o.suite, o.expectation, o.success, o.unexpected_count) for o in whole.outcomes
    ]


def test_a_duplicate_key_is_caught_when_parts_are_checked_in_groups(clean, tmp_path):
    broken = tmp_path / "publication"
    shutil.copytree(clean, broken)
    part = next(p for p in sorted((broken / "events").glob("*.parquet")) if p.stem == "2014")
    with duckdb.connect() as con:
        con.execute(
            f"COPY (SELECT * FROM read_parquet('{part}') UNION ALL "
            f"(SELECT * FROM read_parquet('{part}') LIMIT 1)) TO '{part}.tmp' (FORMAT parquet)"
        )
    Path(f"{part}.tmp").replace(part)
    report = validate_publication(
        broken, tmp_path / "v", "r", FILES_SEEN, TODAY, only={"events"}, build_docs=False, group_rows=3
    )
    assert any("event_id_occurrences" in o.kwargs.values() for o in report.critical_failures)


@pytest.mark.slow  # about 50 validations: half a minute
@pytest.mark.parametrize(
    ("table", "sql", "suite", "column"), BROKEN, ids=[f"{b[2]}-{b[3]}-{i}" for i, b in enumerate(BROKEN)]
)
def test_each_critical_expectation_catches_its_breakage(clean, tmp_path, table, sql, suite, column):
    broken = tmp_path / "publication"
    shutil.copytree(clean, broken)
    con = duckdb.connect()
    for folder in clean.iterdir():
        if not folder.name.startswith("."):  # a validated publication keeps frames in `.frames`
            con.execute(f"CREATE VIEW {folder.name} AS SELECT * FROM read_parquet('{folder}/*.parquet')")
    shutil.rmtree(broken / table)
    (broken / table).mkdir()
    con.execute(f"COPY ({sql}) TO '{broken / table}/all.parquet' (FORMAT parquet)")
    report = validate_publication(
        broken, tmp_path / "v", "r", FILES_SEEN, TODAY, only={suite}, build_docs=False
    )
    assert not report.passed
    failed = [o for o in report.critical_failures if o.suite == suite and column in o.kwargs.values()]
    assert failed, [o.line() for o in report.critical_failures]


def test_every_critical_expectation_has_a_breakage_test():
    covered = {(suite, column) for _, _, suite, column in BROKEN}
    for spec in load_specs():
        for exp in spec.expectations:
            if exp["meta"]["severity"] == "critical":
                columns = {v for k, v in exp["kwargs"].items() if k in ("column", "column_A")}
                assert any((spec.name, c) in covered for c in columns), (spec.name, exp)


def _rewrite_part(publication: Path, table: str, part: str, sql: str) -> None:
    """Replace one part of a table by `sql` over that part (as `p`)."""
    path = publication / table / f"{part}.parquet"
    with duckdb.connect() as con:
        con.execute(f"CREATE VIEW p AS SELECT * FROM read_parquet('{path}')")
        con.execute(f"COPY ({sql}) TO '{path}.tmp' (FORMAT parquet)")
    Path(f"{path}.tmp").replace(path)


def test_an_incremental_check_covers_the_recomputed_rows_of_its_parts(clean, tmp_path):
    """With `touched`, the rewritten parts' rows of the touched events (and relations pointing
    at them) are checked, and no others: a broken touched row fails, an untouched one is taken
    as the previous publication's, which passed. A suite with a `mostly` expectation
    (event_titles: a share of titles) keeps checking its whole parts."""
    from pipeline.transform.normalize import Touched

    broken = tmp_path / "publication"
    shutil.copytree(clean, broken)
    with duckdb.connect() as con:
        events = [
            r[0]
            for r in con.execute(f"SELECT event_id FROM '{broken}/events/2014.parquet' ORDER BY 1").fetchall()
        ]
        target, pointing = con.execute(
            f"SELECT related_event_id, event_id FROM '{broken}/relations/*.parquet' "
            "WHERE resolved AND related_event_id LIKE '2014-%' AND event_id NOT LIKE '2014-%' ORDER BY ALL LIMIT 1"
        ).fetchone()
    duplicated = events[0]
    _rewrite_part(
        broken, "events", "2014", f"SELECT * FROM p UNION ALL SELECT * FROM p WHERE event_id = '{duplicated}'"
    )
    year = pointing[:4]
    _rewrite_part(
        broken,
        "relations",
        year,
        f"SELECT * REPLACE (CASE WHEN related_event_id = '{target}' THEN false ELSE resolved END AS resolved) FROM p",
    )
    # As an incremental build writes them: every event table's parts of the touched years.
    rewritten = {t: sorted({"2014", year}) for t in ("events", "sources", "relations")}

    def failures(touched: list[str] | None) -> set[tuple[str, str]]:
        report = validate_publication(
            broken, tmp_path / f"v-{touched}", "r", FILES_SEEN, TODAY, only={"events", "relations"},
            build_docs=False, rewritten=rewritten,
            touched=None if touched is None else Touched(touched, [], clean),
        )  # fmt: skip
        return {
            (o.suite, next(v for k, v in o.kwargs.items() if k in ("column", "column_A")))
            for o in report.critical_failures
        }

    whole_parts = failures(None)
    assert {("events", "event_id_occurrences"), ("relations", "resolved")} <= whole_parts
    assert ("relations", "resolved") in failures([target])  # a relation pointing at a touched event
    untouched = next(e for e in events if e not in (duplicated, target))
    assert failures([untouched]) == set()  # the duplicate is not among the rows under test
    assert ("events", "event_id_occurrences") in failures([duplicated])
    # A suite with a `mostly` expectation (a share of titles) checks its whole parts.
    _rewrite_part(broken, "events", "2014", "SELECT * REPLACE ('Oops' AS title) FROM p")
    report = validate_publication(
        broken, tmp_path / "v-titles", "r", FILES_SEEN, TODAY, only={"event_titles"},
        build_docs=False, rewritten=rewritten, touched=Touched([untouched], [], clean),
    )  # fmt: skip
    assert [o.kwargs["column"] for o in report.warnings] == ["title_length"]


def test_an_incremental_check_skips_the_frames_of_suites_with_no_recomputed_row(clean, tmp_path):
    """A frame that reads `checked_` tables has a row per checked row: when every one it reads
    is empty, its suite passes without the frame being run (its joins read whole tables).
    Here `relations`' frame cannot run at all: it is skipped for an event with no related
    item, and run (failing) for one with some."""
    from pipeline.transform.normalize import Touched

    suites = tmp_path / "expectations"
    shutil.copytree(DEFAULT_EXPECTATIONS, suites)
    frame = suites / "relations.sql"
    frame.write_text(frame.read_text(encoding="utf-8") + " CROSS JOIN no_such_table\n", encoding="utf-8")
    with duckdb.connect() as con:
        lonely, related = (
            con.execute(
                f"SELECT min(event_id) FROM '{clean}/events/*.parquet' WHERE related_count {op} 0"
            ).fetchone()[0]
            for op in ("=", ">")
        )
    rewritten = {t: sorted({lonely[:4], related[:4]}) for t in ("events", "sources", "relations")}

    def check(event_id: str):
        return validate_publication(
            clean, tmp_path / f"v-{event_id[:10]}", "r", FILES_SEEN, TODAY, suites,
            only={"events", "relations"}, build_docs=False, rewritten=rewritten,
            touched=Touched([event_id], [], clean),
        )  # fmt: skip

    report = check(lonely)
    assert report.passed and {o.suite for o in report.outcomes} == {"events", "relations"}
    with pytest.raises(duckdb.CatalogException, match="no_such_table"):
        check(related)


@pytest.mark.parametrize("kept", [True, False], ids=["base-kept-its-frame", "base-kept-none"])
def test_an_incremental_check_of_a_whole_table_checks_the_rows_that_changed(clean, tmp_path, kept):
    """tags, storylines and the other whole-table suites: the frame rows that differ from the
    previous publication's are checked (a duplicated or altered row fails); rows equal to
    the previous publication's are not given to Great Expectations again. The previous
    frame is the one that publication kept, or computed again if it kept none; each
    validated publication keeps its own."""
    from pipeline.quality.validate import FRAMES
    from pipeline.transform.normalize import Touched

    base = tmp_path / "base"
    shutil.copytree(clean, base)
    if kept:
        validate_publication(
            base, tmp_path / "v-base", "r", FILES_SEEN, TODAY, only={"tags"}, build_docs=False
        )
        assert (base / FRAMES / "tags.parquet").is_file()

    def tags_failures(sql: str) -> set[str]:
        broken = tmp_path / f"publication-{abs(hash(sql))}"
        shutil.copytree(clean, broken)
        _rewrite_part(broken, "tags", "all", sql)
        report = validate_publication(
            broken, tmp_path / f"v-{abs(hash(sql))}", "r", FILES_SEEN, TODAY, only={"tags"},
            build_docs=False, rewritten={"events": []}, touched=Touched([], [], base),
        )  # fmt: skip
        # the publication keeps its frame: a row per tag
        count = "SELECT count(*) FROM read_parquet('{}')"
        assert (
            duckdb.sql(count.format(broken / FRAMES / "tags.parquet")).fetchall()
            == duckdb.sql(count.format(broken / "tags" / "*.parquet")).fetchall()
        )
        return {o.kwargs.get("column") or o.kwargs.get("column_B", "") for o in report.critical_failures}

    assert "tag_id_occurrences" in tags_failures(
        "SELECT * FROM p UNION ALL (SELECT * FROM p ORDER BY ALL LIMIT 1)"
    )
    assert "event_tag_rows" in tags_failures(
        "SELECT * REPLACE (CASE WHEN row_number() OVER () = 1 THEN event_count + 5 ELSE event_count END AS event_count) FROM p"
    )
    assert tags_failures("SELECT * FROM p") == set()


def test_a_scope_must_name_a_column_and_its_tables(tmp_path):
    shutil.copytree(DEFAULT_EXPECTATIONS, tmp_path / "exp")
    suite = json.loads((tmp_path / "exp" / "tags.json").read_text())
    suite["scope"] = {"column": "tag_id"}
    (tmp_path / "exp" / "tags.json").write_text(json.dumps(suite))
    with pytest.raises(SuiteError, match="tags.json: scope must be"):
        load_specs(tmp_path / "exp")


def test_a_scoped_frame_is_the_whole_frame_of_its_keys(clean, tmp_path):
    """A suite's `scope` promises that its frame computed over the scope tables' rows of some
    keys is the whole frame's rows of those keys: true of every shipped suite that declares
    one, for keys with rows and keys without."""
    from pipeline.core.tables import table_glob
    from pipeline.transform.scoped import scoped_query

    scoped = [s for s in load_specs() if s.scope is not None]
    assert {s.name for s in scoped} >= {"tags", "storylines", "daily"}
    with duckdb.connect() as con:
        for table in ("tags", "event_tags", "storylines", "event_storylines", "events"):
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{table_glob(clean, table)}')")
        for spec in scoped:
            assert spec.scope is not None
            column, tables = spec.scope
            keys = [
                r[0] for r in con.execute(f"SELECT DISTINCT {column} FROM {tables[0]} ORDER BY 1").fetchall()
            ]
            assert len(keys) >= 3, spec.name
            missing = "1900-01-01" if column.endswith("_date") else "no-such-key"
            chosen = [*map(str, keys[:: max(1, len(keys) // 3)][:3]), missing]
            kind = "DATE" if column.endswith("_date") else "VARCHAR"  # as validation registers them
            con.execute(
                f"CREATE OR REPLACE TABLE touched_key_{column} AS SELECT unnest(?::{kind}[]) AS {column}",
                [chosen],
            )
            views = {
                t: f"SELECT * FROM main.{t} WHERE {column} IN (SELECT {column} FROM touched_key_{column})"
                for t in tables
            }
            scoped_query(con, spec.frame_sql, "part", views)
            whole = f"SELECT * FROM ({spec.frame_sql}) WHERE {column} IN (SELECT {column} FROM touched_key_{column})"
            assert con.execute("SELECT count(*) FROM part").fetchone()[0] == 3, spec.name
            assert con.execute(f"SELECT * FROM part EXCEPT ALL {whole}").fetchall() == [], spec.name
            assert con.execute(f"{whole} EXCEPT ALL SELECT * FROM part").fetchall() == [], spec.name


def test_a_share_of_a_whole_is_checked_on_the_kept_frame_with_the_recomputed_days(clean, tmp_path):
    """`daily` (events per day, at most 1% of days outside 1-60) is a share of every day: an
    incremental check gives Great Expectations the whole frame, made of the previous
    publication's kept frame with the recomputed days counted again. A day that grows past
    60 events is seen (the sample has 9 days: one is 11%), one that is not recomputed keeps
    its previous count, and the frame kept equals the frame over the whole table."""
    from pipeline.quality.validate import FRAMES
    from pipeline.transform.normalize import Touched

    base = tmp_path / "base"
    shutil.copytree(clean, base)
    first = validate_publication(
        base, tmp_path / "v-base", "r", FILES_SEEN, TODAY, only={"daily"}, build_docs=False
    )
    assert first.passed and not first.warnings and (base / FRAMES / "daily.parquet").is_file()
    with duckdb.connect() as con:
        day = con.execute(f"SELECT min(event_date)::VARCHAR FROM '{base}/events/*.parquet'").fetchone()[0]
    grown = tmp_path / "grown"
    shutil.copytree(clean, grown)
    added = [f"{day}/added-{i:02d}" for i in range(70)]
    ids = ", ".join(f"'{e}'" for e in added)
    _rewrite_part(
        grown, "events", day[:4],
        f"SELECT * FROM p UNION ALL BY NAME SELECT unnest([{ids}]) AS event_id, DATE '{day}' AS event_date, "
        "'Added' AS title ORDER BY event_id",
    )  # fmt: skip

    def daily(publication: Path, touched: list[str], name: str):
        report = validate_publication(
            publication, tmp_path / name, "r", FILES_SEEN, TODAY, only={"daily"}, build_docs=False,
            rewritten={"events": [day[:4]]}, touched=Touched(touched, [], base, {"event_date": sorted({e[:10] for e in touched})}),
        )  # fmt: skip
        with duckdb.connect() as con:
            kept = con.execute(
                f"SELECT * FROM '{publication / FRAMES / 'daily.parquet'}' ORDER BY ALL"
            ).fetchall()
            whole = con.execute(
                f"SELECT event_date, count(*) AS events FROM '{publication}/events/*.parquet' GROUP BY 1 ORDER BY ALL"
            ).fetchall()
        return report, kept, whole

    report, kept, whole = daily(grown, added[:1], "v-grown")
    assert [o.suite for o in report.warnings] == ["daily"] and kept == whole
    # told of no day of those events, the check keeps the previous count: the kept frame is
    # the previous publication's (what the scope promises is what is checked)
    report, kept, whole = daily(grown, [], "v-untold")
    assert not report.warnings and kept != whole


def test_run_totals_count_again_only_the_parts_that_are_not_the_previous_publications(clean, tmp_path):
    """`run_summary` reads each table's totals: per part, kept with the publication. A part
    that is a hard link of the previous publication's part has the totals that publication
    kept (seen here by altering them: the check then fails), a rewritten part is counted
    again; the totals kept equal those of the whole tables."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.quality.validate import FRAMES
    from pipeline.transform.normalize import Touched

    base = tmp_path / "base"
    shutil.copytree(clean, base)
    assert validate_publication(
        base, tmp_path / "v0", "r", FILES_SEEN, TODAY, only={"run_summary"}, build_docs=False
    ).passed
    kept = base / FRAMES / "run_summary.events.parquet"
    totals = pq.read_table(kept).to_pandas()
    years = [p for p in totals["part"] if p != "none"]
    linked, rewritten = years[0], years[-1]
    # the previous publication's totals say 5 events more in each of the two parts
    totals.loc[totals["part"].isin([linked, rewritten]), "events"] += 5
    pq.write_table(pa.Table.from_pandas(totals, preserve_index=False), kept)

    def check(rewrite: list[str], name: str):
        publication = tmp_path / name
        shutil.copytree(base, publication, copy_function=os.link)
        shutil.rmtree(publication / FRAMES)
        for year in rewrite:
            _rewrite_part(publication, "events", year, "SELECT * FROM p")  # the same rows, a new file
        report = validate_publication(
            publication, tmp_path / f"v-{name}", "r", FILES_SEEN, TODAY, only={"run_summary"}, build_docs=False,
            rewritten={"events": rewrite}, touched=Touched([], [], base),
        )  # fmt: skip
        with duckdb.connect() as con:
            counted = con.execute(
                f"SELECT part, events FROM '{publication / FRAMES / 'run_summary.events.parquet'}' ORDER BY 1"
            ).fetchall()
            whole = con.execute(
                f"SELECT parse_filename(filename, true), count(*) FROM read_parquet('{publication}/events/*.parquet', "
                "filename = true) GROUP BY 1 ORDER BY 1"
            ).fetchall()
        return report, counted, [w for w in whole if w[1]]

    report, counted, whole = check([linked, rewritten], "both-rewritten")
    assert report.passed and [c for c in counted if c[1]] == whole
    report, counted, whole = check([rewritten], "one-linked")
    assert {o.kwargs.get("column_B") for o in report.critical_failures} == {"events"}
    assert (
        dict(counted)[linked] == dict(whole)[linked] + 5
        and dict(counted)[rewritten] == dict(whole)[rewritten]
    )


def test_an_incremental_check_of_a_scoped_suite_checks_the_recomputed_keys(clean, tmp_path):
    """With the tags the build recomputed (Touched.keys), the tags suite checks those tags'
    rows: a broken row among them fails, one outside them is the previous publication's."""
    from pipeline.transform.normalize import Touched

    broken = tmp_path / "publication"
    shutil.copytree(clean, broken)
    with duckdb.connect() as con:
        first, other = (
            r[0]
            for r in con.execute(
                f"SELECT tag_id FROM '{broken}/tags/*.parquet' ORDER BY 1 LIMIT 2"
            ).fetchall()
        )
    _rewrite_part(
        broken, "tags", "all",
        f"SELECT * FROM p UNION ALL SELECT * REPLACE (event_count + 5 AS event_count) FROM p WHERE tag_id = '{first}'",
    )  # fmt: skip

    def failures(keys: list[str]) -> set[str]:
        report = validate_publication(
            broken, tmp_path / f"v-{len(keys)}-{keys[0]}", "r", FILES_SEEN, TODAY, only={"tags"},
            build_docs=False, rewritten={"events": []}, touched=Touched([], [], clean, {"tag_id": keys}),
        )  # fmt: skip
        return {o.kwargs.get("column") or o.kwargs.get("column_B", "") for o in report.critical_failures}

    assert failures([first]) == {"tag_id_occurrences", "event_tag_rows"}
    assert failures([other, first]) == {"tag_id_occurrences", "event_tag_rows"}
    assert failures([other]) == set()


def test_chunks_hold_as_many_batches_as_fit_the_byte_budget():
    """Narrow frames get more rows per Great Expectations run for the same memory; a batch
    larger than the budget is a chunk alone; every chunk is one contiguous piece per column."""
    import pyarrow as pa

    from pipeline.quality.validate import _chunks

    def batches(*sizes: int) -> list[pa.RecordBatch]:
        start = 0
        out = []
        for n in sizes:
            out.append(pa.record_batch({"x": pa.array(range(start, start + n), pa.int64())}))
            start += n
        return out

    narrow = batches(100, 100, 100, 100, 0, 100)  # 800 bytes each
    chunks = list(_chunks(iter(narrow), rows=10**9, max_bytes=2_000))
    assert [c.num_rows for c in chunks] == [200, 200, 100]
    assert all(c.column("x").num_chunks == 1 for c in chunks)
    assert pa.concat_tables(chunks).column("x").to_pylist() == list(range(500))
    wide = batches(1_000, 10, 10)  # 8,000 bytes: over the budget alone
    assert [c.num_rows for c in _chunks(iter(wide), rows=10**9, max_bytes=2_000)] == [1_000, 20]
    assert [c.num_rows for c in _chunks(iter(narrow), rows=250)] == [200, 200, 100]  # by rows


def test_frames_read_ahead_arrive_in_order_and_errors_reach_the_checker():
    from pipeline.quality.validate import _ahead

    con = duckdb.connect()
    with _ahead(iter(range(50)), con, depth=2) as items:
        assert list(items) == list(range(50))

    def failing():
        yield 1
        raise RuntimeError("frame query failed")

    with pytest.raises(RuntimeError, match="frame query failed"), _ahead(failing(), con) as items:
        list(items)


def test_leaving_the_frames_early_stops_the_reader_and_its_query():
    """A check that fails (or a signal) mid-way: the thread reading ahead is stopped, its
    running query interrupted, before the connection is handed back to be closed."""
    import threading
    import time

    from pipeline.quality.validate import _ahead

    con = duckdb.connect()
    started = threading.Event()

    def frames():
        yield "first"
        started.set()
        # A query that runs for minutes unless interrupted.
        yield con.sql(
            "SELECT count(*) FROM range(10000000000) a, range(10) b WHERE a.range % 7 = b.range"
        ).fetchall()

    begun = time.monotonic()
    with pytest.raises(KeyError), _ahead(frames(), con) as items:
        for _ in items:
            assert started.wait(10)
            raise KeyError("a check failed")
    assert time.monotonic() - begun < 10
    assert not any(t.name == "validation-frames" for t in threading.enumerate())
    assert con.execute("SELECT 42").fetchone() == (42,)  # the connection is usable again


def test_a_quick_first_pass_reports_what_a_full_validation_reports(clean, tmp_path):
    """Without Data Docs, suites are first checked for pass or fail alone and a failing one
    runs again in full: its outcomes, counts and examples equal a full validation's, on a
    clean publication and on one broken for several suites (with a `mostly` expectation that
    passes with an unexpected row)."""
    from dataclasses import asdict

    broken = tmp_path / "publication"
    shutil.copytree(clean, broken)
    con = duckdb.connect()
    for folder in clean.iterdir():
        if not folder.name.startswith("."):  # a validated publication keeps frames in `.frames`
            con.execute(f"CREATE VIEW {folder.name} AS SELECT * FROM read_parquet('{folder}/*.parquet')")
    short = "SELECT * REPLACE (CASE WHEN event_id = (SELECT max(event_id) FROM events) THEN 'Short' ELSE title END AS title)"
    for table, sql in (
        ("events", f"{short} FROM ({BROKEN[1][1]})"),  # a duplicate id; a title under 10 characters
        ("sources", set_first("sources", "event_id", "NULL")),
    ):
        shutil.rmtree(broken / table)
        (broken / table).mkdir()
        con.execute(f"COPY ({sql}) TO '{broken / table}/all.parquet' (FORMAT parquet)")
    for publication in (clean, broken):
        quick = validate_publication(publication, tmp_path / "q", "r", FILES_SEEN, TODAY, build_docs=False)
        full = validate_publication(publication, tmp_path / "f", "r", FILES_SEEN, TODAY, build_docs=True)
        # Which offending rows are quoted depends on the frame's row order, which DuckDB
        # does not fix: any two validations may quote others. Whether they quote is fixed.
        for a, b in zip(quick.outcomes, full.outcomes, strict=True):
            assert asdict(a) | {"examples": bool(a.examples)} == asdict(b) | {"examples": bool(b.examples)}
            # quoted the same way: by the same key columns (`event_id=...`), or by value
            assert [e.split("=", 1)[0] for e in a.examples] == [e.split("=", 1)[0] for e in b.examples]
            if a.unexpected_count == 1:  # one offending row: the same one
                assert a.examples == b.examples
    assert not quick.passed and {o.suite for o in quick.critical_failures} >= {"events", "sources"}
    assert any(o.examples for o in quick.critical_failures)
    titles = next(o for o in quick.outcomes if o.kwargs.get("column") == "title_length")
    assert titles.success and titles.unexpected_count == 1  # a `mostly` pass, with its count


def _broken_for_two_suites(clean: Path, tmp_path: Path) -> Path:
    """A copy of the clean publication with a duplicated event id and a source with no event."""
    broken = tmp_path / "publication"
    shutil.copytree(clean, broken)
    con = duckdb.connect()
    for folder in clean.iterdir():
        if not folder.name.startswith("."):
            con.execute(f"CREATE VIEW {folder.name} AS SELECT * FROM read_parquet('{folder}/*.parquet')")
    for table, sql in (("events", BROKEN[1][1]), ("sources", set_first("sources", "event_id", "NULL"))):
        shutil.rmtree(broken / table)
        (broken / table).mkdir()
        con.execute(f"COPY ({sql}) TO '{broken / table}/all.parquet' (FORMAT parquet)")
    return broken


def test_expectation_configurations_built_once_give_the_same_outcomes(clean, tmp_path, monkeypatch):
    """Great Expectations rebuilds an expectation's configuration on every read; validation
    builds each once per expectation object (`_keep_configurations`). On a publication broken
    for several suites, every outcome (success, counts, examples) equals what GX's own
    property gives, and the cache is gone once a validation ends."""
    from dataclasses import asdict

    from great_expectations.expectations.expectation import Expectation

    from pipeline.quality import validate as module

    broken = _broken_for_two_suites(clean, tmp_path)
    kept = validate_publication(broken, tmp_path / "k", "r", FILES_SEEN, TODAY, build_docs=False)
    assert getattr(Expectation.configuration.fget, "kept", False)  # the memo was in use
    assert getattr(module._kept, "configurations", None) is None  # and is dropped after
    monkeypatch.setattr(module, "_configurations_kept", nullcontext)  # GX's own, every read
    fresh = validate_publication(broken, tmp_path / "f", "r", FILES_SEEN, TODAY, build_docs=False)
    assert not kept.passed
    for a, b in zip(kept.outcomes, fresh.outcomes, strict=True):
        assert asdict(a) | {"examples": len(a.examples)} == asdict(b) | {"examples": len(b.examples)}


def test_metric_ids_hashed_from_plain_json_are_the_converters(clean, tmp_path, monkeypatch):
    """Great Expectations hashes each metric configuration's JSON into its id; validation
    builds that JSON directly where the values are plain (`_plain_metric_ids`). On every
    value GX hashes while validating a publication broken for several suites, and on values
    that are not plain, the JSON is the one GX's own converter gives."""
    import copy
    import datetime as dt

    from great_expectations.core import id_dict
    from great_expectations.util import convert_to_json_serializable

    broken = _broken_for_two_suites(clean, tmp_path)
    validate_publication(clean, tmp_path / "c", "r", FILES_SEEN, TODAY, build_docs=False)  # installed
    plain = id_dict.convert_to_json_serializable
    assert getattr(plain, "plain", False)

    def same(data) -> bool:
        ours = plain(copy.deepcopy(data))
        theirs = convert_to_json_serializable(copy.deepcopy(data))  # it may convert in place
        return json.dumps(ours, sort_keys=True) == json.dumps(theirs, sort_keys=True)

    seen: list[bool] = []

    def checked(data):
        seen.append(same(data))
        return plain(data)

    checked.plain = True  # not wrapped again by the next context's set-up
    monkeypatch.setattr(id_dict, "convert_to_json_serializable", checked)
    report = validate_publication(broken, tmp_path / "b", "r", FILES_SEEN, TODAY, build_docs=False)
    assert not report.passed and len(seen) > 500 and all(seen)
    for data in (
        {"column": "x", "mostly": None, "n": 1.5, "nan": float("nan"), 3: True},
        [1, (2, "a"), {"k": [None]}],
        {"when": dt.date(2024, 1, 1), "ids": {"b", "a"}, "v": id_dict.IDDict(a=1)},
    ):
        assert same(data)
