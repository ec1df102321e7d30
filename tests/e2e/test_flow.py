"""The real `news-etl` flow under prefect_test_harness, end to end over examples/news."""

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.conftest import SAMPLE
from tests.e2e_support import rows

pytestmark = pytest.mark.flow


@pytest.fixture(scope="module")
def catalog(sample_build) -> Path:
    return Path(sample_build["catalog"])


def test_every_sample_file_is_accounted_for(catalog):
    files = rows(catalog, "SELECT file_path, status, reason FROM files WHERE status <> 'parsed' ORDER BY 1")
    assert files == [
        ("news/1899/12/31/before-the-archive-begins.md", "rejected", "date_out_of_range"),
        ("news/2014/06/21/index.md", "skipped", "day_index"),
        (
            "news/2014/08/3/the-islamic-state-seizes-the-yazidi-dominated-town-of-sinjar.md",
            "duplicate",
            "duplicate_event_id",
        ),
        ("news/2015/02/28/february-the-thirtieth.md", "rejected", "invalid_date"),
        ("news/2016/01/1/empty-file.md", "rejected", "empty"),
        ("news/2016/01/1/latin-1-encoded.md", "rejected", "encoding"),
        ("news/2016/01/1/no-date-line.md", "rejected", "missing_date"),
        ("news/2016/01/1/no-title.md", "rejected", "missing_title"),
    ]
    on_disk = sorted(p.relative_to(SAMPLE).as_posix() for p in SAMPLE.rglob("*.md"))
    assert [r[0] for r in rows(catalog, "SELECT file_path FROM files ORDER BY 1")] == on_disk
    assert rows(catalog, "SELECT count(*) FROM events") == [(32,)]
    assert rows(catalog, "SELECT count(*) FROM files WHERE status = 'parsed'") == [(32,)]


def test_quarantine_holds_every_bad_item_as_written(catalog):
    assert rows(
        catalog, "SELECT file_path, section, raw, reason FROM quarantine ORDER BY 1, line_number"
    ) == [
        (
            "inbox/breaking-from-wire.md",
            "related",
            "1. [Syrian civil war ceasefire talks resume in Astana. ](https://example.org/news/2023/02/01/talks.md) _Context: Syrian civil war_",
            "bad_link",
        ),
        (
            "inbox/breaking-from-wire.md",
            "related",
            "2. [Aid convoys reach Idlib. ](/news/2023/02/10/../../../etc/passwd.md) _Context: Syrian civil war_",
            "bad_link",
        ),
        (
            "news/2014/06/27/american-human-rights-group-human-rights-watch-claims-that-islamic-state-of-iraq-and-the-levant-executed-at-least-160-captives-earlier-this.md",
            "source",
            "1. [Twitter](javascript:alert('x'))",
            "bad_url",
        ),
        (
            "news/2019/04/15/a-fire-breaks-out-at-notre-dame-de-paris-cathedral-destroying-its-spire-and-much-of-its-roof.md",
            "source",
            "1. [Archive](/wiki/Notre-Dame_de_Paris_fire)",
            "bad_url",
        ),
    ]


def test_encodings_line_endings_and_identity(catalog):
    got = dict(
        rows(
            catalog,
            "SELECT event_id, (event_date, source_count, related_count, cover_image_url IS NOT NULL) FROM events",
        )
    )
    # BOM
    assert got[
        "2014-03-18/russian-president-vladimir-putin-signs-a-treaty-to-incorporate-crimea-into-the-russian-federation"
    ] == (dt.date(2014, 3, 18), 2, 2, False)
    # CR-only and CRLF
    assert got[
        "2015-02-12/leaders-of-russia-ukraine-france-and-germany-agree-on-a-ceasefire-in-donbas-minsk-ii"
    ][1:3] == (2, 2)
    assert got[
        "2014-06-27/american-human-rights-group-human-rights-watch-claims-that-islamic-state-of-iraq-and-the-levant-executed-at-least-160-captives-earlier-this"
    ][1:3] == (1, 2)
    # title-derived id outside the news/ layout; padded day path; the duplicate's winner
    assert (
        "2023-02-06/a-magnitude-7-8-earthquake-strikes-southern-turkey-and-northern-syria-killing-more-than-50-000-people"
        in got
    )
    assert (
        "2010-04-05/an-explosion-at-the-upper-big-branch-coal-mine-in-raleigh-county-west-virginia-kills-29-miners"
        in got
    )
    assert rows(catalog, "SELECT file_path FROM events WHERE event_id LIKE '2014-08-03/%'") == [
        ("news/2014/08/03/the-islamic-state-seizes-the-yazidi-dominated-town-of-sinjar.md",)
    ]


def test_summaries_sources_and_relations(catalog):
    assert rows(catalog, "SELECT summary FROM events WHERE event_id LIKE '2012-10-29/%'") == [
        (
            "At least 147 people are killed across the Caribbean, the United States and Canada.\n\n"
            "Power is cut to 8 million homes; the New York Stock Exchange closes for two days.",
        )
    ]
    assert rows(
        catalog,
        "SELECT position, name, url, host, registered_domain FROM sources WHERE event_id LIKE '2017-07-10/%'",
    ) == [
        (
            1,
            "Wikipedia",
            "https://en.wikipedia.org/wiki/Battle_of_Mosul_(2016–2017)",
            "en.wikipedia.org",
            "wikipedia.org",
        ),
        (
            2,
            "Al Jazeera",
            "https://www.aljazeera.com/news/2017/7/10/iraqs-abadi-declares-victory-over-isil-in-mosul",
            "aljazeera.com",
            "aljazeera.com",
        ),
    ]
    assert rows(
        catalog,
        "SELECT position, related_event_id, related_title, resolved, days_apart FROM relations WHERE event_id LIKE '2023-02-06/%'",
    ) == [
        (
            1,
            "2023-02-08/rescue-teams-pull-survivors-from-rubble-in-hatay-antakya",
            "Rescue teams pull survivors from rubble in Hatay [Antakya].",
            False,
            2,
        )
    ]
    assert rows(catalog, "SELECT count(*), count(*) FILTER (WHERE resolved) FROM relations") == [(61, 44)]


def test_tags(catalog):
    got = rows(
        catalog, "SELECT name, event_count FROM tags WHERE event_count > 1 ORDER BY event_count DESC, name"
    )
    assert got == [
        ("Islamic State", 7),
        ("2014 Northern Iraq offensive", 4),
        ("Russo-Ukrainian War", 4),
        ("Ukraine", 4),
        ("COVID-19 pandemic", 3),
        ("Tsunamis", 3),
        ("Brexit", 2),
        ("Ebola virus epidemic in West Africa", 2),
        ("Malaysia Airlines", 2),
        ("Notre-Dame de Paris", 2),
        ("November 2015 Paris attacks", 2),
        ("Public Health Emergency of International Concern", 2),
        ("United Kingdom–European Union relations", 2),
    ]
    assert rows(catalog, "SELECT count(*) FROM tags") == [(27,)]  # 13 above plus 14 single-event tags
    # the two spellings of the Swiss strike tie: the smaller code point wins
    assert rows(catalog, "SELECT name FROM tags WHERE name ILIKE 'frauenstreik'") == [("FRAUENSTREIK",)]


def test_catalog_opens_read_only_from_any_directory(catalog, tmp_path):
    script = (
        "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True);"
        "print(c.execute('SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM runs)').fetchone())"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(catalog)], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "(32, 1)"


def test_run_records_and_artifacts(sample_build):
    assert sample_build["validation_passed"] is True and sample_build["events"] == 32
    assert (
        sample_build["files_seen"] == 40 and sample_build["rejected"] == 6 and sample_build["duplicates"] == 1
    )
    assert Path(sample_build["data_docs"]).exists()

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["news-etl-counts", "news-etl-summary"])
            )
        )
    # Other tests' runs share the session's server: keep this run's artifacts.
    kinds = {a.key: a for a in artifacts if a.description.endswith(sample_build["run_id"])}
    assert set(kinds) == {"news-etl-counts", "news-etl-summary"}
    assert "32 events from 40 files" in kinds["news-etl-summary"].data


def test_rerun_gives_the_same_tables_and_keeps_three_publications(prefect_server, tmp_path):
    from flows.news_etl import news_etl
    from pipeline.core.tables import PUBLISHED

    tables = tuple(t for t in PUBLISHED if t not in ("runs", "changes"))
    first = news_etl(input=str(SAMPLE), output=str(tmp_path))
    snapshot = {
        t: duckdb.sql(f"SELECT * FROM read_parquet('{first['publication']}/{t}/*.parquet')").fetchall()
        for t in tables
    }
    # full refreshes publish even with nothing changed; retention 0: pruned by count alone
    results = [first] + [
        news_etl(input=str(SAMPLE), output=str(tmp_path), full_refresh=True, retention="0") for _ in range(3)
    ]
    last = duckdb.connect(results[-1]["catalog"], read_only=True)
    for t in tables:
        assert last.execute(f"SELECT * FROM {t}").fetchall() == snapshot[t], t
    assert last.execute("SELECT count(*) FROM runs").fetchone() == (4,)
    last.close()
    assert not Path(first["publication"]).exists()
    assert len(list((tmp_path / "publications").iterdir())) == 3
    assert (tmp_path / "current").resolve() == Path(results[-1]["publication"]).resolve()


def test_a_run_with_nothing_changed_publishes_nothing_and_is_logged(prefect_server, tmp_path):
    """Contract, section 4: no change since the current publication, no new publication;
    `current` and the catalog stay as they are, and the run log records the run."""
    from flows.news_etl import news_etl
    from pipeline.core.config import OutputLayout
    from pipeline.publish import runs

    archive = tmp_path / "archive"
    shutil.copytree(SAMPLE, archive)
    out = tmp_path / "out"
    first = news_etl(input=str(archive), output=str(out))
    layout = OutputLayout(out)
    catalog = layout.catalog.read_bytes()
    touched = next(p for p in sorted(archive.glob("news/2014/06/21/*.md")) if p.name != "index.md")
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))  # same bytes
    again = news_etl(input=str(archive), output=str(out))
    assert (again["published"], again["outcome"]) == (False, "unchanged")
    assert again["events"] == first["events"]
    assert (layout.current).resolve() == Path(first["publication"]).resolve()
    assert layout.catalog.read_bytes() == catalog
    assert sorted(p.name for p in layout.publications.iterdir()) == [first["run_id"]]
    log = runs.read_log(layout.run_log).to_pylist()
    assert [(r["run_id"], r["outcome"]) for r in log] == [
        (first["run_id"], "published"),
        (again["run_id"], "unchanged"),
    ]
    # the touched file was read again, so the next run reads nothing but the retried rejects
    third = news_etl(input=str(archive), output=str(out))
    assert third["outcome"] == "unchanged" and third["files_read"] == again["files_read"] - 1
    # an edit publishes again
    touched.write_text(touched.read_text(encoding="utf-8-sig") + "\n", encoding="utf-8")
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 2 * 10**9))
    fourth = news_etl(input=str(archive), output=str(out))
    assert fourth["published"] and fourth["events_changed"] == 1


def strict_expectations(tmp_path: Path) -> Path:
    """The real suites plus one critical expectation the sample cannot meet."""
    import json
    import shutil

    from pipeline.core.config import DEFAULT_EXPECTATIONS

    target = tmp_path / "expectations"
    shutil.copytree(DEFAULT_EXPECTATIONS, target)
    suite = json.loads((target / "events.json").read_text())
    suite["expectations"].append(
        {
            "type": "expect_table_row_count_to_be_between",
            "kwargs": {"max_value": 5},
            "meta": {"severity": "critical", "protects": "a test: at most 5 events"},
        }
    )
    (target / "events.json").write_text(json.dumps(suite))
    return target


def test_a_critical_failure_publishes_nothing(prefect_server, tmp_path):
    from flows.news_etl import ValidationFailed, news_etl

    good = news_etl(input=str(SAMPLE), output=str(tmp_path / "out"))
    catalog_bytes = Path(good["catalog"]).read_bytes()
    with pytest.raises(ValidationFailed) as failed:
        news_etl(
            input=str(SAMPLE), output=str(tmp_path / "out"), expectations=str(strict_expectations(tmp_path))
        )
    assert "expect_table_row_count_to_be_between" in str(failed.value)
    assert Path(good["catalog"]).read_bytes() == catalog_bytes
    assert (tmp_path / "out" / "current").resolve() == Path(good["publication"]).resolve()
    assert [p.name for p in (tmp_path / "out" / "publications").iterdir()] == [Path(good["publication"]).name]
    assert not list((tmp_path / "out").glob(".*.tmp*"))  # the catalog begun beside validation went
    assert rows(Path(good["catalog"]), "SELECT count(*) FROM events") == [(32,)]
    log = duckdb.sql(
        f"SELECT validation_passed, published FROM read_parquet('{tmp_path}/out/state/runs.parquet') ORDER BY started_at"
    ).fetchall()
    assert log == [(True, True), (False, False)]


def test_cli_lists_failed_expectations_one_per_line(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "run",
            "--input",
            str(SAMPLE),
            "--output",
            str(tmp_path / "o"),
            "--expectations",
            str(strict_expectations(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert lines[0] == "error: validation failed (1 critical expectations); nothing published"
    assert lines[1].startswith("[critical] events: expect_table_row_count_to_be_between(max_value=5)")
    assert len(lines) == 2
    assert not (tmp_path / "o" / "news.duckdb").exists()


@pytest.mark.parametrize("mode", ["one-process", "split", "docs"])
def test_an_incremental_batch_checks_early_and_late_suites_and_either_blocks_the_publish(
    prefect_server, tmp_path, monkeypatch, mode
):
    """An incremental batch begins the suites over the year-part tables while the tags and
    storylines are computed, then checks the rest: its report holds every suite, and a
    critical failure in either half publishes nothing. `split` (a watcher's batches, without
    Data Docs): the rest in a second validation process, while the first may still check its
    own. `docs` (a run's): the first suites' results join the Data Docs of the rest."""
    import json

    from flows.news_etl import ValidationFailed, news_etl
    from pipeline.core.config import DEFAULT_EXPECTATIONS
    from pipeline.quality import worker
    from pipeline.quality.validate import load_specs
    from tests.conftest import event_doc

    archive = tmp_path / "archive"
    shutil.copytree(SAMPLE, archive)
    suites = tmp_path / "expectations"
    shutil.copytree(DEFAULT_EXPECTATIONS, suites)
    for name, expectation in (
        (
            "events",
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "source_count", "max_value": 5},
            },
        ),
        (
            "tags",
            {
                "type": "expect_column_value_lengths_to_be_between",
                "kwargs": {"column": "name", "max_value": 150},
            },
        ),
    ):
        suite = json.loads((suites / f"{name}.json").read_text())
        suite["expectations"].append(expectation | {"meta": {"severity": "critical", "protects": "a test"}})
        (suites / f"{name}.json").write_text(json.dumps(suite))
    out = tmp_path / "out"
    first = news_etl(input=str(archive), output=str(out), expectations=str(suites))
    begun: list[tuple[int, list[str]]] = []
    begin = worker.begin
    monkeypatch.setattr(
        worker, "begin", lambda *a, **k: begun.append((k.get("slot", 0), k["only"])) or begin(*a, **k)
    )

    def batch(rel: str, text: str) -> dict:
        (archive / rel).parent.mkdir(parents=True, exist_ok=True)
        (archive / rel).write_text(text, encoding="utf-8")
        return news_etl(
            input=str(archive),
            output=str(out),
            expectations=str(suites),
            changed_paths=[rel],
            data_docs=mode == "docs",
            split_validation=mode == "split",
        )

    related = "1. [A](/news/2014/06/21/x.md) _Context: Islamic State_"
    good = batch(
        "news/2016/03/4/a-good-event-arrives.md",
        event_doc("2016-03-04", "A good event arrives", related=(related,)),
    )
    report = json.loads(Path(good["validation_report"]).read_text())
    assert good["published"] and {o["suite"] for o in report["outcomes"]} == {
        s.name for s in load_specs(suites)
    }
    per_batch = 2 if mode == "split" else 1
    assert (
        len(begun) == per_batch and begun[0][0] == 0 and "events" in begun[0][1] and "tags" not in begun[0][1]
    )
    if mode == "split":  # the others, in the second process
        assert begun[1][0] == 1 and "tags" in begun[1][1] and "events" not in begun[1][1]
    if mode == "docs":
        worker.finish_docs(suites)
        pages = Path(good["data_docs"]).parent / "validations"
        shown = {p.relative_to(pages).parts[0] for p in pages.rglob("*.html") if good["run_id"] in str(p)}
        assert {"events", "files", "tags", "event_tags"} <= shown  # from either half (the suites
        # with no recomputed row to check, `countries` here, have no result to show)
    published = (out / "current").resolve()
    sources = tuple(f"1. [S{i}](https://example.org/{i})" for i in range(6))
    long_context = "1. [A](/news/2014/06/21/x.md) _Context: " + "A very long context name " * 8 + "_"
    for rel, text, failing in (
        (
            "news/2016/03/5/six-sources-arrive.md",
            event_doc("2016-03-05", "Six sources arrive", sources=sources),
            "events",
        ),
        (
            "news/2016/03/6/a-long-context-arrives.md",
            event_doc("2016-03-06", "A long context arrives", related=(long_context,)),
            "tags",
        ),
    ):
        with pytest.raises(ValidationFailed) as failed:
            batch(rel, text)
        assert {o.suite for o in failed.value.report.critical_failures} == {failing}
        assert (out / "current").resolve() == published
        (archive / rel).unlink()
    assert len(begun) == 3 * per_batch and first["published"]


def test_a_watched_batch_writes_its_run_report_after_returning(prefect_server, tmp_path, monkeypatch):
    """`report_later` (a watcher's batches): the flow returns the page it will write, a
    background thread writes it, in order with the batches before it; one that cannot be
    written is a warning the watcher shows, not a failure of the published batch."""
    from flows.news_etl import news_etl
    from pipeline.core.config import OutputLayout
    from pipeline.publish import report as run_report
    from tests.conftest import event_doc

    archive = tmp_path / "archive"
    shutil.copytree(SAMPLE, archive)
    out = tmp_path / "out"
    news_etl(input=str(archive), output=str(out))
    layout = OutputLayout(out)
    gate = __import__("threading").Event()
    real = run_report.gather
    monkeypatch.setattr(run_report, "gather", lambda publication: gate.wait(30) and real(publication))

    def batch(n: int) -> dict:
        rel = f"news/2016/03/{n}/event-{n}.md"
        (archive / rel).parent.mkdir(parents=True, exist_ok=True)
        (archive / rel).write_text(event_doc(f"2016-03-0{n}", f"Event {n}"), encoding="utf-8")
        return news_etl(
            input=str(archive), output=str(out), changed_paths=[rel], data_docs=False, report_later=True
        )

    first, second = batch(1), batch(2)  # both returned while their reports wait on the gate
    pages = [Path(first["report"]), Path(second["report"])]
    assert first["published"] and second["published"] and not any(p.exists() for p in pages)
    gate.set()
    assert run_report.reports_written(timeout=30) == []
    assert second["run_id"] in pages[1].read_text() and first["run_id"] in pages[0].read_text()
    assert (layout.report / "index.html").read_text() == pages[1].read_text()  # the newest last

    monkeypatch.setattr(run_report, "gather", lambda publication: 1 / 0)
    third = batch(3)
    assert third["published"]
    assert [w.split(":")[0] for w in run_report.reports_written(timeout=30)] == ["run report not written"]
    assert run_report.reports_written(timeout=0) == []  # said once
